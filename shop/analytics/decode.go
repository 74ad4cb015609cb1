package analytics

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

// limits bound what one event may make analytics allocate.
var limits = avro.Config{MaxByteSliceSize: 1 << 20, MaxSliceAllocSize: 1 << 16}.Freeze()

// decoder reads any event with the schema it was written with: fetched
// from the registry by the id in its header, or, with no registry (id 0),
// the producer's own schema for the event type.
type decoder struct {
	reg   *serde.Client
	local map[string]avro.Schema

	mu     sync.RWMutex
	byID   map[int]avro.Schema
	failed map[int]string // ids the registry does not know, or no schema can read
}

func newDecoder(registryURL string, schemas ...fs.FS) (*decoder, error) {
	d := &decoder{local: map[string]avro.Schema{}, byID: map[int]avro.Schema{}, failed: map[int]string{}}
	if registryURL != "" {
		d.reg = serde.NewClient(registryURL, "", "")
	}
	for _, fsys := range schemas {
		entries, err := fs.ReadDir(fsys, ".")
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".avsc") {
				continue
			}
			body, err := fs.ReadFile(fsys, e.Name())
			if err != nil {
				return nil, err
			}
			s, err := schema.Parse(string(body))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			d.local[strings.TrimSuffix(e.Name(), ".avsc")] = s.Avro()
		}
	}
	return d, nil
}

// errUndecodable is an event no schema can read: stored raw, not lost.
var errUndecodable = errors.New("undecodable")

// decode returns the event as generic values and its writer schema id.
// Errors wrapping errUndecodable are about the event itself; others (the
// registry unreachable) are worth a redelivery.
func (d *decoder) decode(ctx context.Context, event string, data []byte) (map[string]any, int, error) {
	id, payload, err := serde.SplitHeader(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errUndecodable, err)
	}
	sc, err := d.writer(ctx, event, id)
	if err != nil {
		return nil, id, err
	}
	var v any
	if err := limits.Unmarshal(sc, payload, &v); err != nil {
		return nil, id, fmt.Errorf("%w: schema id %d: %w", errUndecodable, id, err)
	}
	rec, ok := v.(map[string]any)
	if !ok {
		return nil, id, fmt.Errorf("%w: schema id %d is not a record", errUndecodable, id)
	}
	return rec, id, nil
}

func (d *decoder) writer(ctx context.Context, event string, id int) (avro.Schema, error) {
	if d.reg == nil {
		if id != 0 {
			return nil, fmt.Errorf("%w: schema id %d and no registry configured (REGISTRY_URL)", errUndecodable, id)
		}
		sc, ok := d.local[event]
		if !ok {
			return nil, fmt.Errorf("%w: no schema known for event type %q", errUndecodable, event)
		}
		return sc, nil
	}
	d.mu.RLock()
	sc, ok := d.byID[id]
	reason, failed := d.failed[id]
	d.mu.RUnlock()
	if ok {
		return sc, nil
	}
	if failed {
		return nil, fmt.Errorf("%w: %s", errUndecodable, reason)
	}
	text, refs, err := d.reg.SchemaByID(ctx, id)
	if errors.Is(err, serde.ErrNotFound) {
		return nil, d.fail(id, fmt.Sprintf("schema id %d unknown to the registry", id))
	}
	if err != nil {
		return nil, fmt.Errorf("fetch schema %d: %w", id, err)
	}
	s, err := schema.ParseWithReferences(text, refs)
	if err != nil {
		return nil, d.fail(id, fmt.Sprintf("registry schema %d: %v", id, err))
	}
	d.mu.Lock()
	d.byID[id] = s.Avro()
	d.mu.Unlock()
	return s.Avro(), nil
}

func (d *decoder) fail(id int, reason string) error {
	d.mu.Lock()
	d.failed[id] = reason
	d.mu.Unlock()
	return fmt.Errorf("%w: %s", errUndecodable, reason)
}

// record is one event as analytics stores it.
type record struct {
	EventID    string
	Type       string
	Key        string
	OccurredMS int64
	SchemaID   int
	Decoded    bool
	Data       string
	OrderID    string
	Amount     int64
	Currency   string
	Reason     string
	Lines      []line
}

type line struct {
	SKU       string
	Quantity  int64
	UnitPrice int64
}

// toRecord turns a message into what is stored. An undecodable event is
// kept with its payload and the reason, so nothing is lost and a later
// version of analytics can read it.
func (d *decoder) toRecord(ctx context.Context, m bus.Message) (record, error) {
	r := record{EventID: m.ID(), Type: m.Topic, Key: m.Key}
	v, id, err := d.decode(ctx, m.Topic, m.Payload)
	r.SchemaID = id
	switch {
	case errors.Is(err, errUndecodable):
		raw, _ := json.Marshal(map[string]string{"payload": base64.StdEncoding.EncodeToString(m.Payload), "error": err.Error()})
		r.Data = string(raw)
	case err != nil:
		return r, err
	default:
		r.Decoded = true
		raw, jerr := json.Marshal(v)
		if jerr != nil {
			return r, fmt.Errorf("encode %s as JSON: %w", m.Topic, jerr)
		}
		r.Data = string(raw)
		extract(&r, v)
	}
	r.OccurredMS = occurred(m, v)
	return r, nil
}

// occurred is the event's time: the occurred-at header, else its
// timestamp field, else now.
func occurred(m bus.Message, v map[string]any) int64 {
	if t, err := time.Parse(time.RFC3339Nano, m.Headers[bus.HeaderOccurredAt]); err == nil {
		return t.UnixMilli()
	}
	switch ts := v["timestamp"].(type) {
	case time.Time:
		return ts.UnixMilli()
	case int64:
		return ts
	}
	return time.Now().UnixMilli()
}

// extract pulls out the fields the aggregates use, by name, tolerating
// versions that lack them.
func extract(r *record, v map[string]any) {
	r.OrderID = str(v["orderId"])
	r.Currency = str(v["currency"])
	r.Reason = str(v["reason"])
	switch r.Type {
	case "OrderCreated":
		r.Amount = integer(v["totalMinor"])
		if r.Amount == 0 {
			if f, ok := v["total"].(float64); ok { // the scenario's first version: major units
				r.Amount = int64(math.Round(f * 100))
			}
		}
		if ls, ok := v["lines"].([]any); ok {
			for _, l := range ls {
				if lm, ok := l.(map[string]any); ok && str(lm["sku"]) != "" {
					r.Lines = append(r.Lines, line{SKU: str(lm["sku"]), Quantity: integer(lm["quantity"]), UnitPrice: integer(lm["unitPrice"])})
				}
			}
		}
	case "ShipmentCreated":
		r.Amount = integer(v["rate"])
	default:
		r.Amount = integer(v["total"])
		if r.Amount == 0 {
			r.Amount = integer(v["amount"])
		}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func integer(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int32:
		return int64(n)
	case int:
		return int64(n)
	case float64:
		return int64(n)
	case float32:
		return int64(n)
	}
	return 0
}

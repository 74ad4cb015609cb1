package kit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"go.opentelemetry.io/otel/propagation"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
	"github.com/flotilla-ci/flotilla/tracing"
)

// ContentTypeAvro is the content-type header of Confluent-framed Avro.
const ContentTypeAvro = "application/vnd.confluent.avro"

// Codec encodes and decodes events as Avro in the Confluent wire format
// (schema/serde: magic byte 0, 4-byte big-endian schema id, Avro binary).
// With a registry it registers each producer schema under the subject
// <EventName>-value (serde.SubjectFor) and decodes through Avro schema
// resolution after checking, with schema.ReaderCanRead, that our reader
// schema can read the writer schema fetched by id. Without one (no
// REGISTRY_URL; development only) it writes schema id 0 and decodes with
// the reader schema. Decoding is bounded (decodeLimits), so a poison event
// fails instead of exhausting memory.
type Codec struct {
	reg *serde.Client
	api avro.API

	mu       sync.RWMutex
	local    map[string]*schema.Schema // event name -> our schema
	encoders map[string]*serde.Encoder
	resolved map[[2]string]avro.Schema // (event, writer id) -> schema to decode with
}

// decodeLimits bound what one event may make a consumer allocate: a
// poison event claiming a billion-element array must fail, not exhaust
// memory.
var decodeLimits = avro.Config{TagKey: "avro", MaxByteSliceSize: 1 << 20, MaxSliceAllocSize: 1 << 16}

// NewCodec returns a codec using the registry at url ("" for none).
func NewCodec(url string) (*Codec, error) {
	c := &Codec{api: decodeLimits.Freeze(), local: map[string]*schema.Schema{}, encoders: map[string]*serde.Encoder{}, resolved: map[[2]string]avro.Schema{}}
	if url != "" {
		c.reg = serde.NewClient(url, "", "")
	}
	return c, nil
}

// Load parses every <EventName>.avsc in fsys (a service's schemas folder),
// checks the record name matches the file name, and registers it when the
// codec has a registry.
func (c *Codec) Load(ctx context.Context, fsys fs.FS) error {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return fmt.Errorf("read schemas: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".avsc") {
			continue
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return err
		}
		if err := c.Add(ctx, strings.TrimSuffix(e.Name(), ".avsc"), string(body)); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return nil
}

// Add parses one schema for event and, with a registry, registers it (so
// a schema the subject's compatibility level rejects stops the service at
// start, naming the subject). Consumers Add the schemas of what they read.
func (c *Codec) Add(ctx context.Context, event, avsc string) error {
	s, err := schema.Parse(avsc)
	if err != nil {
		return fmt.Errorf("parse schema of %s: %w", event, err)
	}
	rec, ok := s.Avro().(*avro.RecordSchema)
	if !ok || rec.Name() != event {
		return fmt.Errorf("schema of %s: want a record named %s", event, event)
	}
	var enc *serde.Encoder
	if c.reg != nil {
		enc = serde.NewEncoder(c.reg, serde.SubjectFor(event), s, true)
		if _, err := enc.ID(ctx); err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.local[event] = s
	c.encoders[event] = enc
	return nil
}

// AddReader adds the reader schema of an event this service consumes
// (another service's, copied into ours): used to decode, never registered.
func (c *Codec) AddReader(event, avsc string) error {
	s, err := schema.Parse(avsc)
	if err != nil {
		return fmt.Errorf("parse reader schema of %s: %w", event, err)
	}
	if rec, ok := s.Avro().(*avro.RecordSchema); !ok || rec.Name() != event {
		return fmt.Errorf("reader schema of %s: want a record named %s", event, event)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.local[event] = s
	return nil
}

// Encode frames v, encoded with event's schema.
func (c *Codec) Encode(ctx context.Context, event string, v any) ([]byte, error) {
	c.mu.RLock()
	s, ok := c.local[event]
	enc := c.encoders[event]
	c.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("encode %s: no schema loaded", event)
	}
	if enc != nil {
		return enc.Encode(ctx, v)
	}
	body, err := c.api.Marshal(s.Avro(), v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", event, err)
	}
	return append(serde.AppendHeader(make([]byte, 0, 5+len(body)), 0), body...), nil
}

// ErrPoison marks data that can never be decoded (callers dead-letter it).
var ErrPoison = errors.New("undecodable event")

// Decode reads a framed event into v using event's reader schema.
func (c *Codec) Decode(ctx context.Context, event string, data []byte, v any) error {
	id, payload, err := serde.SplitHeader(data)
	if err != nil {
		return fmt.Errorf("decode %s: %w: %w", event, ErrPoison, err)
	}
	c.mu.RLock()
	reader, ok := c.local[event]
	c.mu.RUnlock()
	if !ok {
		return fmt.Errorf("decode %s: no schema loaded", event)
	}
	sc, err := c.readerFor(ctx, event, reader, id)
	if err != nil {
		return err
	}
	if err := c.api.Unmarshal(sc, payload, v); err != nil {
		return fmt.Errorf("decode %s (schema id %d): %w: %w", event, id, ErrPoison, err)
	}
	return nil
}

func (c *Codec) readerFor(ctx context.Context, event string, reader *schema.Schema, id int) (avro.Schema, error) {
	if c.reg == nil {
		if id != 0 {
			return nil, fmt.Errorf("decode %s: schema id %d with no registry configured (set REGISTRY_URL)", event, id)
		}
		return reader.Avro(), nil
	}
	key := [2]string{event, strconv.Itoa(id)}
	c.mu.RLock()
	sc, ok := c.resolved[key]
	c.mu.RUnlock()
	if ok {
		return sc, nil
	}
	text, refs, err := c.reg.SchemaByID(ctx, id)
	if errors.Is(err, serde.ErrNotFound) {
		return nil, fmt.Errorf("decode %s: %w: schema id %d unknown to the registry", event, ErrPoison, id)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: fetch schema %d: %w", event, id, err)
	}
	writer, err := schema.ParseWithReferences(text, refs)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w: registry schema %d: %w", event, ErrPoison, id, err)
	}
	if probs := schema.ReaderCanRead(reader, writer); len(probs) > 0 {
		return nil, fmt.Errorf("decode %s: %w: our schema cannot read writer schema %d: %v", event, ErrPoison, id, probs)
	}
	sc = reader.Avro()
	if writer.Normalized() != reader.Normalized() {
		if sc, err = avro.NewSchemaCompatibility().Resolve(reader.Avro(), writer.Avro()); err != nil {
			return nil, fmt.Errorf("decode %s: %w: resolve writer schema %d: %w", event, ErrPoison, id, err)
		}
	}
	c.mu.Lock()
	c.resolved[key] = sc
	c.mu.Unlock()
	return sc, nil
}

// Message builds the bus message of an event: Avro payload, the standard
// headers, and the trace context of ctx.
func (c *Codec) Message(ctx context.Context, event, key string, v any) (bus.Message, error) {
	payload, err := c.Encode(ctx, event, v)
	if err != nil {
		return bus.Message{}, err
	}
	h := map[string]string{
		bus.HeaderEventID:     NewID(),
		bus.HeaderEventType:   event,
		bus.HeaderContentType: ContentTypeAvro,
	}
	tracing.Propagator.Inject(ctx, propagation.MapCarrier(h))
	if h[bus.HeaderTraceparent] == "" {
		h[bus.HeaderTraceparent] = Traceparent(ctx)
	}
	return bus.Message{Topic: event, Key: key, Payload: payload, Headers: h}, nil
}

// WithTraceparent returns ctx with the W3C traceparent tp as its remote
// parent span context (ctx unchanged when tp is not valid).
func WithTraceparent(ctx context.Context, tp string) context.Context {
	ctx, _ = tracing.ContextWithTraceparent(ctx, tp)
	return ctx
}

// Traceparent returns the W3C traceparent of ctx's span, or a new root one.
func Traceparent(ctx context.Context) string {
	if tp := tracing.Traceparent(ctx); tp != "" {
		return tp
	}
	return newTraceparent()
}

func validTraceparent(tp string) bool {
	_, ok := tracing.ContextWithTraceparent(context.Background(), tp)
	return ok
}

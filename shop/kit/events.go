package kit

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/bus"
)

// ContentTypeAvro is the content-type header of Confluent-framed Avro.
const ContentTypeAvro = "application/vnd.confluent.avro"

// Codec encodes and decodes events as Avro in the Confluent wire format
// (magic byte 0, 4-byte big-endian schema id, Avro binary). With a registry
// it registers each producer schema under the subject <EventName>-value
// (TopicNameStrategy; topic = event name) and resolves a consumer's reader
// schema against the writer schema fetched by id. Without one (no
// REGISTRY_URL; development only) it writes schema id 0 and decodes with
// the reader schema.
type Codec struct {
	reg *sr.Client
	api avro.API

	mu      sync.RWMutex
	local   map[string]avro.Schema // event name -> our schema
	ids     map[string]int         // event name -> registered id
	writers map[int]avro.Schema
	resolve map[[2]string]avro.Schema
}

// decodeLimits bound what one event may make a consumer allocate: a
// poison event claiming a billion-element array must fail, not exhaust
// memory.
var decodeLimits = avro.Config{TagKey: "avro", MaxByteSliceSize: 1 << 20, MaxSliceAllocSize: 1 << 16}

// NewCodec returns a codec using the registry at url ("" for none).
func NewCodec(url string) (*Codec, error) {
	c := &Codec{api: decodeLimits.Freeze(), local: map[string]avro.Schema{}, ids: map[string]int{}, writers: map[int]avro.Schema{}, resolve: map[[2]string]avro.Schema{}}
	if url != "" {
		cl, err := sr.NewClient(sr.URLs(url))
		if err != nil {
			return nil, fmt.Errorf("registry client %s: %w", url, err)
		}
		c.reg = cl
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

// Add parses one schema for event and registers it when there is a
// registry. Consumers Add the schemas of the events they read.
func (c *Codec) Add(ctx context.Context, event, avsc string) error {
	s, err := avro.Parse(avsc)
	if err != nil {
		return fmt.Errorf("parse schema of %s: %w", event, err)
	}
	rec, ok := s.(*avro.RecordSchema)
	if !ok || rec.Name() != event {
		return fmt.Errorf("schema of %s: want a record named %s", event, event)
	}
	id := 0
	if c.reg != nil {
		ss, err := c.reg.CreateSchema(ctx, event+"-value", sr.Schema{Schema: s.String(), Type: sr.TypeAvro})
		if err != nil {
			return fmt.Errorf("register %s-value: %w", event, err)
		}
		id = ss.ID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.local[event] = s
	c.ids[event] = id
	if c.reg != nil {
		c.writers[id] = s
	}
	return nil
}

// Encode frames v, encoded with event's schema.
func (c *Codec) Encode(event string, v any) ([]byte, error) {
	c.mu.RLock()
	s, ok := c.local[event]
	id := c.ids[event]
	c.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("encode %s: no schema loaded", event)
	}
	body, err := c.api.Marshal(s, v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", event, err)
	}
	out := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, body...), nil
}

// ErrPoison marks data that can never be decoded (callers dead-letter it).
var ErrPoison = errors.New("undecodable event")

// Decode reads a framed event into v using event's reader schema.
func (c *Codec) Decode(ctx context.Context, event string, data []byte, v any) error {
	if len(data) < 5 || data[0] != 0 {
		return fmt.Errorf("decode %s: %w: not Confluent-framed Avro (want magic byte 0 and a 4-byte schema id)", event, ErrPoison)
	}
	id := int(binary.BigEndian.Uint32(data[1:5]))
	c.mu.RLock()
	reader, ok := c.local[event]
	c.mu.RUnlock()
	if !ok {
		return fmt.Errorf("decode %s: no schema loaded", event)
	}
	schema, err := c.readerFor(ctx, event, reader, id)
	if err != nil {
		return err
	}
	if err := c.api.Unmarshal(schema, data[5:], v); err != nil {
		return fmt.Errorf("decode %s (schema id %d): %w: %v", event, id, ErrPoison, err)
	}
	return nil
}

func (c *Codec) readerFor(ctx context.Context, event string, reader avro.Schema, id int) (avro.Schema, error) {
	if c.reg == nil {
		if id != 0 {
			return nil, fmt.Errorf("decode %s: schema id %d with no registry configured (set REGISTRY_URL)", event, id)
		}
		return reader, nil
	}
	c.mu.RLock()
	writer, ok := c.writers[id]
	c.mu.RUnlock()
	if !ok {
		if c.reg == nil {
			if id != 0 {
				return nil, fmt.Errorf("decode %s: schema id %d with no registry configured (set REGISTRY_URL)", event, id)
			}
			return reader, nil
		}
		ss, err := c.reg.SchemaByID(ctx, id)
		if err != nil {
			var re *sr.ResponseError
			if errors.As(err, &re) && re.StatusCode == 404 {
				return nil, fmt.Errorf("decode %s: %w: schema id %d unknown to the registry", event, ErrPoison, id)
			}
			return nil, fmt.Errorf("decode %s: fetch schema %d: %w", event, id, err)
		}
		if writer, err = avro.Parse(ss.Schema); err != nil {
			return nil, fmt.Errorf("decode %s: %w: registry schema %d: %v", event, ErrPoison, id, err)
		}
		c.mu.Lock()
		c.writers[id] = writer
		c.mu.Unlock()
	}
	if writer.Fingerprint() == reader.Fingerprint() {
		return reader, nil
	}
	key := [2]string{reader.String(), writer.String()}
	c.mu.RLock()
	r, ok := c.resolve[key]
	c.mu.RUnlock()
	if ok {
		return r, nil
	}
	r, err := avro.NewSchemaCompatibility().Resolve(reader, writer)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w: writer schema %d incompatible with ours: %v", event, ErrPoison, id, err)
	}
	c.mu.Lock()
	c.resolve[key] = r
	c.mu.Unlock()
	return r, nil
}

// Message builds the bus message of an event: Avro payload, the standard
// headers, and the trace context of ctx.
func (c *Codec) Message(ctx context.Context, event, key string, v any) (bus.Message, error) {
	payload, err := c.Encode(event, v)
	if err != nil {
		return bus.Message{}, err
	}
	return bus.Message{Topic: event, Key: key, Payload: payload, Headers: map[string]string{
		bus.HeaderEventID:     NewID(),
		bus.HeaderEventType:   event,
		bus.HeaderContentType: ContentTypeAvro,
		bus.HeaderTraceparent: Traceparent(ctx),
	}}, nil
}

type traceKey struct{}

// WithTraceparent returns ctx carrying a W3C traceparent.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceKey{}, tp)
}

// Traceparent returns ctx's W3C traceparent, or a new root one.
func Traceparent(ctx context.Context) string {
	if tp, ok := ctx.Value(traceKey{}).(string); ok && validTraceparent(tp) {
		return tp
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

func validTraceparent(tp string) bool {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return false
	}
	for _, p := range parts {
		if _, err := hex.DecodeString(p); err != nil {
			return false
		}
	}
	return parts[1] != strings.Repeat("0", 32) && parts[2] != strings.Repeat("0", 16)
}

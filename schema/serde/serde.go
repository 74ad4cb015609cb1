// Package serde encodes and decodes events in the Confluent wire format:
// byte 0 (the magic byte), the writer schema's registry id as a 4-byte
// big-endian integer, then the Avro binary encoding. Any Confluent
// deserializer reads what Encoder writes, and Decoder reads what Confluent
// serializers write.
//
// The Encoder registers (or looks up) its schema once, on first use, and
// caches the id. The Decoder fetches each writer schema by id once, checks
// that its reader schema can read it (schema.ReaderCanRead) and decodes
// through Avro schema resolution, so a consumer built against version 1
// reads events written with version 2 and the other way round, as the
// subject's compatibility level promises.
//
// # Subject naming
//
// flotilla names an event's subject "<EventName>-value" (SubjectFor): the
// Confluent TopicNameStrategy with the topic named after the event. The
// shop publishes each event type on its own NATS subject or Kafka topic
// named after the event, so one subject holds exactly one event's lineage
// and its compatibility level guards exactly the consumers of that
// topic; it is Confluent's default, so stock Kafka serializers and tools
// pointed at topic OrderCreated find the same subject; and it is derived
// from the event names the manifest already lists under publishes and
// subscribes, with no namespace to keep in sync.
package serde

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/flotilla-ci/flotilla/schema"
)

// SubjectFor returns the registry subject of an event's value schema.
func SubjectFor(event string) string { return event + "-value" }

// Registry is what the serde needs from a schema registry. Client
// implements it over the Confluent REST API.
type Registry interface {
	// Register registers the schema under subject (or finds it there) and
	// returns its id. A schema the subject's level rejects is an error
	// wrapping ErrIncompatible.
	Register(ctx context.Context, subject, schema string) (int, error)
	// Lookup returns the id of a schema already registered under subject;
	// ErrNotFound when it is not.
	Lookup(ctx context.Context, subject, schema string) (int, error)
	// SchemaByID returns the text of the schema with the id and the texts
	// of the schemas it references (Confluent schema references), each
	// one's own references before it; ErrNotFound when there is none.
	SchemaByID(ctx context.Context, id int) (text string, refs []string, err error)
}

// Errors.
var (
	ErrBadHeader    = errors.New("not in the Confluent wire format (want magic byte 0 and a 4-byte schema id)")
	ErrNotFound     = errors.New("not found in the schema registry")
	ErrIncompatible = errors.New("incompatible with the subject's registered schemas")
)

// magic is the wire format's first byte (format V0).
const magic = 0

// AppendHeader appends the 5-byte wire header for schema id to dst.
func AppendHeader(dst []byte, id int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, magic), uint32(id))
}

// SplitHeader returns the schema id and the Avro payload of a message.
func SplitHeader(msg []byte) (id int, payload []byte, err error) {
	if len(msg) < 5 || msg[0] != magic {
		return 0, nil, ErrBadHeader
	}
	return int(int32(binary.BigEndian.Uint32(msg[1:5]))), msg[5:], nil
}

// Encoder writes values with one schema under one subject.
type Encoder struct {
	reg      Registry
	subject  string
	schema   *schema.Schema
	register bool

	mu sync.Mutex
	id int // 0 until resolved
}

// NewEncoder returns an encoder of values of s under subject. When register
// is false the schema must already be registered (Confluent's
// auto.register.schemas=false, for producers without write access).
func NewEncoder(reg Registry, subject string, s *schema.Schema, register bool) *Encoder {
	return &Encoder{reg: reg, subject: subject, schema: s, register: register}
}

// ID returns the schema's registry id, registering or looking it up on the
// first call; later calls answer from memory.
func (e *Encoder) ID(ctx context.Context) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.id != 0 {
		return e.id, nil
	}
	var id int
	var err error
	if e.register {
		id, err = e.reg.Register(ctx, e.subject, e.schema.String())
	} else {
		id, err = e.reg.Lookup(ctx, e.subject, e.schema.String())
	}
	if err != nil {
		return 0, fmt.Errorf("schema of %s: %w", e.subject, err)
	}
	e.id = id
	return id, nil
}

// Encode returns v in the wire format.
func (e *Encoder) Encode(ctx context.Context, v any) ([]byte, error) {
	id, err := e.ID(ctx)
	if err != nil {
		return nil, err
	}
	body, err := avro.Marshal(e.schema.Avro(), v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.subject, err)
	}
	return append(AppendHeader(make([]byte, 0, 5+len(body)), id), body...), nil
}

// decodeAPI bounds what one message may make a consumer allocate: a poison
// message claiming a billion-element array or a gigabyte string fails
// instead of exhausting memory.
var decodeAPI = avro.Config{TagKey: "avro", MaxByteSliceSize: 8 << 20, MaxSliceAllocSize: 1 << 20}.Freeze()

// Decoder reads messages into values of its reader schema, whatever
// registered schema wrote them. A string or bytes value over 8 MiB, or an
// array or map over 2^20 items, is an error.
type Decoder struct {
	reg    Registry
	reader *schema.Schema

	mu       sync.Mutex
	resolved map[int]avro.Schema // writer id -> schema to decode with
}

// NewDecoder returns a decoder into values of reader.
func NewDecoder(reg Registry, reader *schema.Schema) *Decoder {
	return &Decoder{reg: reg, reader: reader, resolved: map[int]avro.Schema{}}
}

// Decode decodes msg into v (a pointer to a struct, map or value that the
// reader schema describes).
func (d *Decoder) Decode(ctx context.Context, msg []byte, v any) error {
	id, payload, err := SplitHeader(msg)
	if err != nil {
		return err
	}
	sc, err := d.schemaFor(ctx, id)
	if err != nil {
		return err
	}
	if err := decodeAPI.Unmarshal(sc, payload, v); err != nil {
		return fmt.Errorf("decode with writer schema %d: %w", id, err)
	}
	return nil
}

func (d *Decoder) schemaFor(ctx context.Context, id int) (avro.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sc, ok := d.resolved[id]; ok {
		return sc, nil
	}
	text, refs, err := d.reg.SchemaByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("writer schema %d: %w", id, err)
	}
	writer, err := schema.ParseWithReferences(text, refs)
	if err != nil {
		return nil, fmt.Errorf("writer schema %d: %w", id, err)
	}
	if probs := schema.ReaderCanRead(d.reader, writer); len(probs) > 0 {
		return nil, fmt.Errorf("reader schema %s cannot read writer schema %d: %v: %w", d.reader.Name(), id, probs, ErrIncompatible)
	}
	sc := d.reader.Avro()
	if writer.Normalized() != d.reader.Normalized() {
		// A fresh checker per resolution: hamba's caches answers under a
		// fingerprint that ignores defaults.
		sc, err = avro.NewSchemaCompatibility().Resolve(d.reader.Avro(), writer.Avro())
		if err != nil {
			return nil, fmt.Errorf("resolve writer schema %d into %s: %w", id, d.reader.Name(), err)
		}
	}
	d.resolved[id] = sc
	return sc, nil
}

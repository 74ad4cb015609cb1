package serde_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

const (
	orderV1 = `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[
		{"name":"order_id","type":"string"},
		{"name":"total_cents","type":"long"}]}`
	orderV2 = `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[
		{"name":"order_id","type":"string"},
		{"name":"total_cents","type":"long"},
		{"name":"currency","type":"string","default":"EUR"}]}`
)

type OrderV1 struct {
	OrderID    string `avro:"order_id"`
	TotalCents int64  `avro:"total_cents"`
}

type OrderV2 struct {
	OrderID    string `avro:"order_id"`
	TotalCents int64  `avro:"total_cents"`
	Currency   string `avro:"currency"`
}

func startRegistry(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(st, registry.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestEvolution(t *testing.T) {
	ctx := context.Background()
	cl := serde.NewClient(startRegistry(t), "", "")
	subject := serde.SubjectFor("OrderCreated")
	v1, v2 := schema.MustParse(orderV1), schema.MustParse(orderV2)
	enc1 := serde.NewEncoder(cl, subject, v1, true)
	enc2 := serde.NewEncoder(cl, subject, v2, true)

	msg1, err := enc1.Encode(ctx, OrderV1{OrderID: "o-1", TotalCents: 1250})
	if err != nil {
		t.Fatal(err)
	}
	msg2, err := enc2.Encode(ctx, OrderV2{OrderID: "o-2", TotalCents: 990, Currency: "SEK"})
	if err != nil {
		t.Fatal(err)
	}
	if id1, id2 := mustID(t, msg1), mustID(t, msg2); id1 == id2 {
		t.Fatalf("v1 and v2 share id %d", id1)
	}

	// A consumer built against v2 reads v1 events (currency defaulted)...
	dec2 := serde.NewDecoder(cl, v2)
	var got2 OrderV2
	if err := dec2.Decode(ctx, msg1, &got2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(OrderV2{OrderID: "o-1", TotalCents: 1250, Currency: "EUR"}, got2); diff != "" {
		t.Errorf("v2 reading v1 (-want +got):\n%s", diff)
	}
	// ...and one built against v1 reads v2 events (currency skipped).
	dec1 := serde.NewDecoder(cl, v1)
	var got1 OrderV1
	if err := dec1.Decode(ctx, msg2, &got1); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(OrderV1{OrderID: "o-2", TotalCents: 990}, got1); diff != "" {
		t.Errorf("v1 reading v2 (-want +got):\n%s", diff)
	}

	// A reader that cannot read the writer says so.
	strict := schema.MustParse(`{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[
		{"name":"order_id","type":"string"},{"name":"coupon","type":"string"}]}`)
	if err := serde.NewDecoder(cl, strict).Decode(ctx, msg1, &map[string]any{}); !errors.Is(err, serde.ErrIncompatible) {
		t.Errorf("incompatible reader: %v", err)
	}
	// An encoder whose schema the subject rejects fails before writing.
	bad := serde.NewEncoder(cl, subject, strict, true)
	if _, err := bad.Encode(ctx, map[string]any{"order_id": "x", "coupon": "y"}); !errors.Is(err, serde.ErrIncompatible) {
		t.Errorf("incompatible producer: %v", err)
	}
	// Without auto-registration the schema must exist.
	unreg := serde.NewEncoder(cl, "Other-value", v1, false)
	if _, err := unreg.Encode(ctx, OrderV1{}); !errors.Is(err, serde.ErrNotFound) {
		t.Errorf("unregistered schema without auto-register: %v", err)
	}
	for _, msg := range [][]byte{nil, {0, 0, 0}, {1, 0, 0, 0, 1, 2}} {
		if err := dec1.Decode(ctx, msg, &got1); !errors.Is(err, serde.ErrBadHeader) {
			t.Errorf("Decode(%v) = %v, want ErrBadHeader", msg, err)
		}
	}
}

func mustID(t *testing.T, msg []byte) int {
	t.Helper()
	id, _, err := serde.SplitHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Bytes from flotilla's encoder decode with a plain Confluent-format reader
// (magic byte, big-endian id, hamba/avro) and with franz-go's sr.Serde; bytes
// those write decode with flotilla's decoder.
func TestWireFormatInterop(t *testing.T) {
	ctx := context.Background()
	base := startRegistry(t)
	cl := serde.NewClient(base, "", "")
	v2 := schema.MustParse(orderV2)
	enc := serde.NewEncoder(cl, serde.SubjectFor("OrderCreated"), v2, true)
	want := OrderV2{OrderID: "o-9", TotalCents: 4200, Currency: "USD"}
	msg, err := enc.Encode(ctx, want)
	if err != nil {
		t.Fatal(err)
	}

	// A plain reader: no flotilla code on this path but the HTTP server.
	if msg[0] != 0 {
		t.Fatalf("magic byte %d", msg[0])
	}
	id := int(binary.BigEndian.Uint32(msg[1:5]))
	src, err := sr.NewClient(sr.URLs(base))
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := src.SchemaByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	plainSchema, err := avro.ParseWithCache(fetched.Schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	var plain OrderV2
	if err := avro.Unmarshal(plainSchema, msg[5:], &plain); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, plain); diff != "" {
		t.Errorf("plain reader (-want +got):\n%s", diff)
	}

	// franz-go's serde, registered with the id the registry handed out.
	var fs sr.Serde
	fs.Register(id, OrderV2{},
		sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(plainSchema, v) }),
		sr.DecodeFn(func(b []byte, v any) error { return avro.Unmarshal(plainSchema, b, v) }))
	var viaFranz OrderV2
	if err := fs.Decode(msg, &viaFranz); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, viaFranz); diff != "" {
		t.Errorf("franz-go serde (-want +got):\n%s", diff)
	}

	// The reverse: a plain writer and franz-go's serde, read by flotilla.
	payload, err := avro.Marshal(plainSchema, OrderV2{OrderID: "p-1", TotalCents: 1, Currency: "NOK"})
	if err != nil {
		t.Fatal(err)
	}
	plainMsg := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(id)), payload...)
	franzMsg, err := fs.Encode(OrderV2{OrderID: "f-1", TotalCents: 2, Currency: "DKK"})
	if err != nil {
		t.Fatal(err)
	}
	dec := serde.NewDecoder(cl, schema.MustParse(orderV1))
	for _, tc := range []struct {
		msg  []byte
		want OrderV1
	}{{plainMsg, OrderV1{"p-1", 1}}, {franzMsg, OrderV1{"f-1", 2}}} {
		var got OrderV1
		if err := dec.Decode(ctx, tc.msg, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("flotilla decoder (-want +got):\n%s", diff)
		}
	}
}

// countingRegistry counts calls to show the caches work.
type countingRegistry struct {
	serde.Registry
	mu             sync.Mutex
	register, byID int
}

func (c *countingRegistry) Register(ctx context.Context, subject, s string) (int, error) {
	c.mu.Lock()
	c.register++
	c.mu.Unlock()
	return c.Registry.Register(ctx, subject, s)
}

func (c *countingRegistry) SchemaByID(ctx context.Context, id int) (string, []string, error) {
	c.mu.Lock()
	c.byID++
	c.mu.Unlock()
	return c.Registry.SchemaByID(ctx, id)
}

func TestCachesOncePerSchema(t *testing.T) {
	ctx := context.Background()
	reg := &countingRegistry{Registry: serde.NewClient(startRegistry(t), "", "")}
	v1 := schema.MustParse(orderV1)
	enc := serde.NewEncoder(reg, "OrderCreated-value", v1, true)
	dec := serde.NewDecoder(reg, v1)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				msg, err := enc.Encode(ctx, OrderV1{OrderID: "o", TotalCents: int64(i)})
				if err != nil {
					t.Error(err)
					return
				}
				var got OrderV1
				if err := dec.Decode(ctx, msg, &got); err != nil || got.TotalCents != int64(i) {
					t.Errorf("round trip %d: %+v, %v", i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if reg.register != 1 || reg.byID != 1 {
		t.Errorf("registry calls: %d registrations, %d lookups by id; want 1 and 1", reg.register, reg.byID)
	}
}

// A writer schema registered with references (Confluent schema references)
// is fetched with them and decodes into a self-contained reader schema.
func TestDecodeWriterWithReferences(t *testing.T) {
	ctx := context.Background()
	base := startRegistry(t)
	src, err := sr.NewClient(sr.URLs(base))
	if err != nil {
		t.Fatal(err)
	}
	money := `{"type":"record","name":"Money","namespace":"shop.common","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}`
	order := `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[{"name":"order_id","type":"string"},{"name":"total","type":"shop.common.Money"}]}`
	if _, err := src.CreateSchema(ctx, "shop.common.Money-value", sr.Schema{Schema: money}); err != nil {
		t.Fatal(err)
	}
	ss, err := src.CreateSchema(ctx, "OrderCreated-value", sr.Schema{Schema: order,
		References: []sr.SchemaReference{{Name: "shop.common.Money", Subject: "shop.common.Money-value", Version: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	// Write with the writer schema as any Confluent producer would.
	writer := schema.Must(schema.ParseWithReferences(order, []string{money}))
	type Money struct {
		Cents    int64  `avro:"cents"`
		Currency string `avro:"currency"`
	}
	type Order struct {
		OrderID string `avro:"order_id"`
		Total   Money  `avro:"total"`
	}
	payload, err := avro.Marshal(writer.Avro(), Order{"o-7", Money{1999, "EUR"}})
	if err != nil {
		t.Fatal(err)
	}
	msg := append(serde.AppendHeader(nil, ss.ID), payload...)

	reader := schema.MustParse(`{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[
		{"name":"order_id","type":"string"},
		{"name":"total","type":{"type":"record","name":"Money","namespace":"shop.common","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}},
		{"name":"channel","type":"string","default":"web"}]}`)
	var got struct {
		OrderID string `avro:"order_id"`
		Total   Money  `avro:"total"`
		Channel string `avro:"channel"`
	}
	if err := serde.NewDecoder(serde.NewClient(base, "", ""), reader).Decode(ctx, msg, &got); err != nil {
		t.Fatal(err)
	}
	if got.OrderID != "o-7" || got.Total != (Money{1999, "EUR"}) || got.Channel != "web" {
		t.Errorf("decoded %+v", got)
	}
}

// Resolution cases beyond added/removed fields: an unknown enum symbol
// takes the reader's enum default, a renamed field is read through its
// alias, a renamed record through its alias, an int is promoted to long.
func TestResolution(t *testing.T) {
	ctx := context.Background()
	cl := serde.NewClient(startRegistry(t), "", "")
	tests := []struct {
		name, writer, reader string
		value                any
		want                 map[string]any
	}{
		{"enum default",
			`{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}]}`,
			`{"type":"record","name":"R","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}}]}`,
			map[string]any{"e": "C"}, map[string]any{"e": "A"}},
		{"field alias",
			`{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`,
			`{"type":"record","name":"R","fields":[{"name":"b","type":"int","aliases":["a"]}]}`,
			map[string]any{"a": 7}, map[string]any{"b": 7}},
		{"record alias and promotion",
			`{"type":"record","name":"Old","namespace":"x","fields":[{"name":"n","type":"int"}]}`,
			`{"type":"record","name":"New","namespace":"x","aliases":["Old"],"fields":[{"name":"n","type":"long"}]}`,
			map[string]any{"n": 5}, map[string]any{"n": int64(5)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := serde.NewEncoder(cl, fmt.Sprintf("case%d-value", i), schema.MustParse(tt.writer), true)
			msg, err := enc.Encode(ctx, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{}
			if err := serde.NewDecoder(cl, schema.MustParse(tt.reader)).Decode(ctx, msg, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzDecode feeds arbitrary payloads behind a real schema id: a decode
// may fail, never panic or allocate without bound.
func FuzzDecode(f *testing.F) {
	ctx := context.Background()
	cl := serde.NewClient(startRegistry(f), "", "")
	writer := schema.MustParse(`{"type":"record","name":"R","fields":[
		{"name":"id","type":"string"},{"name":"n","type":"long"},
		{"name":"tags","type":{"type":"array","items":"string"}},
		{"name":"attrs","type":{"type":"map","values":["null","bytes"]}}]}`)
	enc := serde.NewEncoder(cl, "R-value", writer, true)
	good, err := enc.Encode(ctx, map[string]any{"id": "x", "n": int64(3), "tags": []any{"a"}, "attrs": map[string]any{"k": nil}})
	if err != nil {
		f.Fatal(err)
	}
	dec := serde.NewDecoder(cl, writer)
	f.Add(good[5:])
	f.Add([]byte{0x02, 'x', 0x06, 0xfe, 0xff, 0xff, 0xff, 0x0f}) // a claimed huge array
	f.Fuzz(func(t *testing.T, payload []byte) {
		msg := append(append([]byte{}, good[:5]...), payload...)
		var v map[string]any
		_ = dec.Decode(ctx, msg, &v)
	})
}

// One decoder, writer versions interleaved: each message is resolved with
// its own writer schema (resolutions that look alike must not share a
// decoder underneath).
func TestInterleavedWriterVersions(t *testing.T) {
	ctx := context.Background()
	cl := serde.NewClient(startRegistry(t), "", "")
	w1 := schema.MustParse(`{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`)
	w2 := schema.MustParse(`{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}`)
	reader := schema.MustParse(`{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0},{"name":"c","type":"string","default":"x"}]}`)
	m2, err := serde.NewEncoder(cl, "R-value", w2, true).Encode(ctx, map[string]any{"a": "two", "b": int64(42)})
	if err != nil {
		t.Fatal(err)
	}
	m1, err := serde.NewEncoder(cl, "R-value", w1, true).Encode(ctx, map[string]any{"a": "one"})
	if err != nil {
		t.Fatal(err)
	}
	dec := serde.NewDecoder(cl, reader)
	want2 := map[string]any{"a": "two", "b": int64(42), "c": "x"}
	want1 := map[string]any{"a": "one", "b": int64(0), "c": "x"}
	for i, tc := range []struct {
		msg  []byte
		want map[string]any
	}{{m2, want2}, {m1, want1}, {m2, want2}, {m1, want1}} {
		got := map[string]any{}
		if err := dec.Decode(ctx, tc.msg, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("message %d (-want +got):\n%s", i, diff)
		}
	}
}

package serde_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

func Example() {
	ctx := context.Background()
	// A registry to talk to (in production: flotilla's control plane, or
	// any Confluent-compatible registry).
	db, _ := sqldb.Open(ctx, "")
	defer func() { _ = db.Close() }()
	store, _ := sqlstore.New(ctx, db)
	srv, _ := registry.New(store, registry.DefaultConfig(), nil)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	reg := serde.NewClient(ts.URL, "", "")

	// The producer writes version 2 of OrderCreated...
	v2 := schema.MustParse(`{"type":"record","name":"OrderCreated","fields":[
		{"name":"order_id","type":"string"},
		{"name":"currency","type":"string","default":"EUR"}]}`)
	enc := serde.NewEncoder(reg, serde.SubjectFor("OrderCreated"), v2, true)
	msg, err := enc.Encode(ctx, map[string]any{"order_id": "o-1", "currency": "SEK"})
	if err != nil {
		panic(err)
	}
	id, _, _ := serde.SplitHeader(msg)
	fmt.Printf("magic %d, schema id %d, %d bytes\n", msg[0], id, len(msg))

	// ...and a consumer still built against version 1 reads it.
	v1 := schema.MustParse(`{"type":"record","name":"OrderCreated","fields":[{"name":"order_id","type":"string"}]}`)
	var got struct {
		OrderID string `avro:"order_id"`
	}
	if err := serde.NewDecoder(reg, v1).Decode(ctx, msg, &got); err != nil {
		panic(err)
	}
	fmt.Println(got.OrderID)
	// Output:
	// magic 0, schema id 1, 13 bytes
	// o-1
}

package kit_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

const v1 = `{"type":"record","name":"OrderCreated","namespace":"shop","fields":[
 {"name":"orderId","type":"string"},{"name":"total","type":"long"}]}`
const v2 = `{"type":"record","name":"OrderCreated","namespace":"shop","fields":[
 {"name":"orderId","type":"string"},{"name":"total","type":"long"},
 {"name":"currency","type":"string","default":"EUR"}]}`

type orderV1 struct {
	OrderID string `avro:"orderId"`
	Total   int64  `avro:"total"`
}
type orderV2 struct {
	OrderID  string `avro:"orderId"`
	Total    int64  `avro:"total"`
	Currency string `avro:"currency"`
}

func TestCodecWithRegistry(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	ctx := context.Background()
	producer, _ := kit.NewCodec(reg.URL())
	if err := producer.Add(ctx, "OrderCreated", v1); err != nil {
		t.Fatal(err)
	}
	data, err := producer.Encode(ctx, "OrderCreated", orderV1{"o-1", 1250})
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != 0 || data[1]|data[2]|data[3]|data[4] == 0 {
		t.Fatalf("frame % x: want magic 0 and a registry id", data[:5])
	}
	// A consumer on the newer schema reads it through resolution (default fills in).
	consumer, _ := kit.NewCodec(reg.URL())
	if err := consumer.Add(ctx, "OrderCreated", v2); err != nil {
		t.Fatal(err)
	}
	var got orderV2
	if err := consumer.Decode(ctx, "OrderCreated", data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(orderV2{"o-1", 1250, "EUR"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for name, bad := range map[string][]byte{
		"short":      {0, 0},
		"magic":      {1, 0, 0, 0, 1, 2},
		"unknown id": {0, 0, 0, 0x7f, 0x7f, 2},
		"truncated":  data[:6],
	} {
		if err := consumer.Decode(ctx, "OrderCreated", bad, &got); !errors.Is(err, kit.ErrPoison) {
			t.Errorf("%s: err = %v, want ErrPoison", name, err)
		}
	}
}

func TestCodecRejectsMismatchedRecordName(t *testing.T) {
	c, _ := kit.NewCodec("")
	if err := c.Add(context.Background(), "OrderConfirmed", v1); err == nil {
		t.Error("record OrderCreated accepted as OrderConfirmed")
	}
}

// The same against flotilla's own registry (registry/ over SQLite): and
// a producer schema the subject's BACKWARD level rejects stops at Add.
func TestCodecWithFlotillaRegistry(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	store, err := sqlstore.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := registry.New(store, registry.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	producer, _ := kit.NewCodec(ts.URL)
	if err := producer.Add(ctx, "OrderCreated", v2); err != nil {
		t.Fatal(err)
	}
	data, err := producer.Encode(ctx, "OrderCreated", orderV2{"o-2", 99, "USD"})
	if err != nil {
		t.Fatal(err)
	}
	consumer, _ := kit.NewCodec(ts.URL)
	if err := consumer.Add(ctx, "OrderCreated", v1); err == nil {
		t.Log("v1 registered after v2 (allowed by BACKWARD)")
	}
	var got orderV1
	if err := consumer.Decode(ctx, "OrderCreated", data, &got); err != nil {
		t.Fatal(err)
	}
	if got != (orderV1{"o-2", 99}) {
		t.Errorf("decoded %+v", got)
	}
	// A new required field without a default breaks BACKWARD: refused.
	const v3 = `{"type":"record","name":"OrderCreated","namespace":"shop","fields":[
 {"name":"orderId","type":"string"},{"name":"total","type":"long"},{"name":"coupon","type":"string"}]}`
	bad, _ := kit.NewCodec(ts.URL)
	err = bad.Add(ctx, "OrderCreated", v3)
	if err == nil || !strings.Contains(err.Error(), "OrderCreated-value") {
		t.Errorf("incompatible schema: err = %v, want a refusal naming OrderCreated-value", err)
	}
}

package kit_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr/srfake"

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
	data, err := producer.Encode("OrderCreated", orderV1{"o-1", 1250})
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

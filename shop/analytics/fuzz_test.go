package analytics

import (
	"context"
	"testing"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/user"
)

// Whatever bytes arrive on a topic, analytics stores a record (decoded,
// or raw with the reason) and never panics or asks for a redelivery that
// could never succeed.
func FuzzToRecord(f *testing.F) {
	d, err := newDecoder("", user.Schemas(), product.Schemas(), inventory.Schemas(), payment.Schemas(), order.Schemas(), shipping.Schemas())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), []byte{0, 0, 0, 0, 0, 2, 'o', '1'})
	f.Add(uint8(10), []byte{0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0x0f}) // OrderCreated claiming a huge string
	f.Add(uint8(3), []byte("not avro"))
	f.Add(uint8(200), []byte{})
	f.Fuzz(func(t *testing.T, topic uint8, payload []byte) {
		ev := "UnknownEvent"
		if int(topic) < len(Events) {
			ev = Events[topic]
		}
		m := bus.Message{Topic: ev, Key: "k", Payload: payload, Headers: map[string]string{bus.HeaderEventID: "e-1"}}
		r, err := d.toRecord(context.Background(), m)
		if err != nil {
			t.Fatalf("toRecord: %v (without a registry every failure is the event's own)", err)
		}
		if r.EventID != "e-1" || r.Type != ev || r.Data == "" {
			t.Fatalf("record %+v", r)
		}
	})
}

package shipping_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractProvider verifies every consumer's message pact with
// shipping-service: the real shipping-service, behind the real order path
// of the shop, ships real orders, and each message is what it wrote to
// its outbox for one.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	s := shoptest.Start(t, env, shoptest.Options{Products: 3})
	s.Stock(t, 3, 1000)
	cfg := env.Config(t, shipping.Service)
	cfg.Deps["order"], cfg.Deps["user"] = s.Order.URL(), s.User.URL()
	m := &shipping.Main{Config: shipping.Config{Kit: cfg, Rates: shipping.RateTable{Home: "DE", Rates: shipping.DefaultRates(), Undeliverable: []string{"ZZ"}},
		LabelAfter: 10 * time.Millisecond, DeliverAfter: 10 * time.Millisecond, Tick: 20 * time.Millisecond}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })

	n := 0
	// ship places an order for a new customer (with a German address when
	// addressed, else one no carrier serves) and waits for shipping-service to write event for it.
	ship := func(ctx context.Context, event string, addressed bool) (contract.Message, error) {
		n++
		// Checkout wants an address: an undeliverable one (ZZ) fails the
		// shipment instead of none.
		country := "ZZ"
		if addressed {
			country = "DE"
		}
		customer := s.CustomerIn(t, fmt.Sprintf("shipped-%d@shop.test", n), country)
		s.Fill(t, customer, map[string]int{"SKU-0001": 2})
		r := kittest.Call(t, "POST", s.Order.URL()+"/orders", customer, nil)
		var o order.Order
		r.JSON(t, &o)
		if r.Status != 201 && r.Status != 202 {
			return contract.Message{}, fmt.Errorf("place an order: %d %s", r.Status, r.Body)
		}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var c int
			if err := m.App().DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE topic = $1 AND msg_key = $2`, event, o.ID).Scan(&c); err != nil {
				return contract.Message{}, err
			}
			if c > 0 {
				break
			}
			if time.Now().After(deadline) {
				return contract.Message{}, fmt.Errorf("no %s for order %s after 15s", event, o.ID)
			}
		}
		avsc, err := shoppact.Schema(shipping.Schemas(), event)
		if err != nil {
			return contract.Message{}, err
		}
		return shoppact.Outboxed(ctx, m.App(), avsc, event)
	}
	producer := func(event string, addressed bool) contract.MessageProducer {
		return func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			return ship(ctx, event, addressed)
		}
	}
	v := shoppact.Verifier(t, shipping.Service, m.URL(), &shoppact.Auth{}, nil)
	v.MessageProducers = map[string]contract.MessageProducer{
		"a ShipmentFailed event":    producer("ShipmentFailed", false),
		"a ShipmentCreated event":   producer("ShipmentCreated", true),
		"a ShipmentDelivered event": producer("ShipmentDelivered", true),
	}
	contract.Verify(t, v)
}

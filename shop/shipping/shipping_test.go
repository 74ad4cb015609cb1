package shipping_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

func TestQuote(t *testing.T) {
	table := shipping.RateTable{Home: "DE", Rates: shipping.DefaultRates(), Undeliverable: []string{"ZZ"}}
	for _, tc := range []struct {
		name    string
		country string
		weight  int64
		want    string // carrier/service
		wantErr bool
	}{
		{"domestic light takes the cheaper carrier", "DE", 1000, "Hermes/standard", false},
		{"domestic heavy needs the carrier that takes it", "DE", 20000, "DHL/paket", false},
		{"eu", "FR", 2000, "DPD/classic-eu", false},
		{"eu heavy", "FR", 15000, "DHL/paket-eu", false},
		{"world", "US", 2000, "UPS/worldwide-saver", false},
		{"too heavy for anyone", "US", 40000, "", true},
		{"country nobody serves", "ZZ", 500, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := table.Quote(tc.country, tc.weight)
			if tc.wantErr {
				if !errors.Is(err, shipping.ErrUndeliverable) {
					t.Fatalf("Quote = %+v, %v; want ErrUndeliverable", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Carrier + "/" + r.Service; got != tc.want {
				t.Errorf("Quote(%s, %d) = %s, want %s", tc.country, tc.weight, got, tc.want)
			}
		})
	}
}

// clock is the simulated carrier's clock, moved by the test.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }
func statuses(s shipping.Shipment) []string {
	out := []string{}
	for _, h := range s.History {
		out = append(out, h.Status)
	}
	return out
}

func TestShipping(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		// Every event twice: a duplicated OrderConfirmed must not make a
		// second shipment.
		shop := shoptest.Start(t, env, shoptest.Options{Products: 3, Faults: map[string]kit.Faults{order.Service: {Duplicate: true}}})
		shop.Stock(t, 3, 100)
		clk := &clock{}
		kc := env.Config(t, shipping.Service)
		kc.Deps["order"], kc.Deps["user"] = shop.Order.URL(), shop.User.URL()
		sm := &shipping.Main{Config: shipping.Config{Kit: kc,
			Rates: shipping.RateTable{Home: "DE", Undeliverable: []string{"ZZ"}}, LabelAfter: time.Hour, DeliverAfter: 2 * time.Hour,
			Tick: 20 * time.Millisecond, Now: clk.Now}}
		if err := sm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sm.Close() })

		placeOrder := func(t *testing.T, email, country string) (token, orderID string) {
			t.Helper()
			token = shop.CustomerIn(t, email, country)
			shop.Fill(t, token, map[string]int{"SKU-0001": 2, "SKU-0002": 1})
			r := kittest.Call(t, "POST", shop.Order.URL()+"/orders", token, nil)
			var o order.Order
			r.JSON(t, &o)
			if r.Status != 201 || o.Status != order.Confirmed {
				t.Fatalf("place order: %d %s", r.Status, r.Body)
			}
			return token, o.ID
		}
		waitFor := func(t *testing.T, token, orderID, status string) shipping.Shipment {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for {
				r := kittest.Call(t, "GET", sm.URL()+"/orders/"+orderID+"/shipment", token, nil)
				var s shipping.Shipment
				if r.Status == 200 {
					r.JSON(t, &s)
					if s.Status == status {
						return s
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("shipment of %s: want %s, have %d %s", orderID, status, r.Status, r.Body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		events := func(t *testing.T, orderID string) []string {
			t.Helper()
			rs, err := sm.App().DB.QueryContext(context.Background(), `SELECT topic FROM outbox WHERE msg_key = $1 ORDER BY id`, orderID)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = rs.Close() }()
			out := []string{}
			for rs.Next() {
				var topic string
				if err := rs.Scan(&topic); err != nil {
					t.Fatal(err)
				}
				out = append(out, topic)
			}
			return out
		}

		t.Run("delivered on the carrier's clock", func(t *testing.T) {
			token, id := placeOrder(t, "ada@shop.test", "DE")
			s := waitFor(t, token, id, shipping.LabelCreated)
			if s.Carrier != "Hermes" || s.Rate != 449 || s.WeightG != 1500 || s.TrackingNumber == "" || s.Address == nil || s.Address.Country != "DE" {
				t.Errorf("shipment = %+v; want Hermes at 449 for 1500 g to DE with a tracking number", s)
			}
			time.Sleep(100 * time.Millisecond) // the worker does not move it before its time
			if s := waitFor(t, token, id, shipping.LabelCreated); len(s.History) != 2 {
				t.Errorf("history = %v before the clock moved", statuses(s))
			}
			clk.Advance(time.Hour)
			waitFor(t, token, id, shipping.InTransit)
			clk.Advance(2 * time.Hour)
			s = waitFor(t, token, id, shipping.Delivered)
			if diff := cmp.Diff([]string{shipping.Pending, shipping.LabelCreated, shipping.InTransit, shipping.Delivered}, statuses(s)); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"ShipmentCreated", "ShipmentDelivered"}, events(t, id)); diff != "" {
				t.Errorf("events of the order (-want +got):\n%s", diff)
			}
			r := kittest.Call(t, "GET", sm.URL()+"/shipments/"+s.ID, shop.AdminToken, nil)
			if r.Status != 200 {
				t.Errorf("admin reads shipment: %d %s", r.Status, r.Body)
			}
		})

		for _, tc := range []struct{ name, email, country, reason string }{
			{"a country no carrier serves fails the shipment", "zz@shop.test", "ZZ", shipping.ReasonUndeliverable},
		} {
			t.Run(tc.name, func(t *testing.T) {
				token, id := placeOrder(t, tc.email, tc.country)
				s := waitFor(t, token, id, shipping.Failed)
				if s.Reason != tc.reason {
					t.Errorf("reason = %q, want %q", s.Reason, tc.reason)
				}
				if diff := cmp.Diff([]string{"ShipmentFailed"}, events(t, id)); diff != "" {
					t.Errorf("events of the order (-want +got):\n%s", diff)
				}
				// order-service hears ShipmentFailed: refund, stock back, CANCELLED.
				var o order.Order
				deadline := time.Now().Add(20 * time.Second)
				for o.Status != order.Cancelled && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					kittest.Call(t, "GET", shop.Order.URL()+"/orders/"+id, token, nil).JSON(t, &o)
				}
				if o.Status != order.Cancelled || o.Reason != "shipment_failed: "+tc.reason {
					t.Errorf("order after ShipmentFailed: %s %q; want CANCELLED with the shipment's reason", o.Status, o.Reason)
				}
			})
		}

		t.Run("tracking is the owner's", func(t *testing.T) {
			_, id := placeOrder(t, "owner@shop.test", "DE")
			other := shop.Customer(t, "other@shop.test")
			for _, tc := range []struct {
				name, url, token string
				want             int
			}{
				{"another user", "/orders/" + id + "/shipment", other, 403},
				{"no token", "/orders/" + id + "/shipment", "", 401},
				{"unknown order", "/orders/nope/shipment", other, 404},
				{"unknown shipment", "/shipments/nope", other, 404},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if r := kittest.Call(t, "GET", sm.URL()+tc.url, tc.token, nil); r.Status != tc.want {
						t.Errorf("GET %s: %d %s, want %d", tc.url, r.Status, r.Body, tc.want)
					}
				})
			}
		})

		t.Run("one shipment per order despite duplicated events", func(t *testing.T) {
			var n, created int
			db := sm.App().DB
			if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM shipments`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox WHERE topic = 'ShipmentCreated'`).Scan(&created); err != nil {
				t.Fatal(err)
			}
			var orders int
			if err := shop.Order.App().DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM orders`).Scan(&orders); err != nil {
				t.Fatal(err)
			}
			if n != orders {
				t.Errorf("%d shipments for %d orders (each confirmed when placed)", n, orders)
			}
			if created != 2 { // ada and owner have addresses in DE
				t.Errorf("%d ShipmentCreated events, want 2", created)
			}
			fmt.Fprintf(testWriter{t}, "%d orders, %d shipments\n", orders, n)
		})
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

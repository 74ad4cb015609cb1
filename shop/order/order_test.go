package order_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

type stock struct{ Available, Reserved, Committed, Received int64 }

func getStock(t *testing.T, s *shoptest.Shop, sku string) stock {
	t.Helper()
	var st stock
	r := kittest.Call(t, "GET", s.Inventory.URL()+"/stock/"+sku, s.AdminToken, nil)
	r.JSON(t, &st)
	return st
}

type crash struct{ point string }

func TestOrderSaga(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		s := shoptest.Start(t, env, shoptest.Options{
			Products: 5,
			Faults: map[string]kit.Faults{
				"payment-service": {PaymentFailureRate: 0.5},
				"order-service":   {Crash: map[string]int{"saga.after_charge": 1}},
			},
			Crash: func(service, point string) { panic(crash{point}) },
			Order: order.Config{Lease: time.Second, ResumeInterval: 100 * time.Millisecond},
		})
		s.Stock(t, 4, 1000)
		ada := s.Customer(t, "ada@shop.test")
		bob := s.Customer(t, "bob@shop.test")
		url := s.Order.URL()

		place := func(tok, key string) order.Order {
			t.Helper()
			r := kittest.Call(t, "POST", url+"/orders", tok, nil, "Idempotency-Key", key)
			var o order.Order
			if r.Status == 500 { // the crash point: the client saw the process die
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					r = kittest.Call(t, "POST", url+"/orders", tok, nil, "Idempotency-Key", key)
					r.JSON(t, &o)
					if o.Status != order.Pending {
						return o
					}
					time.Sleep(100 * time.Millisecond)
				}
				t.Fatalf("order %s never settled after the crash: %+v", key, o)
			}
			if r.Status != 201 && r.Status != 200 {
				t.Fatalf("place order: %d %s", r.Status, r.Body)
			}
			r.JSON(t, &o)
			return o
		}

		t.Run("empty cart and bad input", func(t *testing.T) {
			if r := kittest.Call(t, "POST", url+"/orders", ada, nil); r.Status != 422 || r.ErrorCode() != "empty_cart" {
				t.Errorf("empty cart: %d %s", r.Status, r.Body)
			}
			if r := kittest.Call(t, "POST", url+"/orders", ada, `{"items":[]}`); r.Status != 400 {
				t.Errorf("unknown field: %d %s", r.Status, r.Body)
			}
			if r := kittest.Call(t, "POST", url+"/orders", "", nil); r.Status != 401 {
				t.Errorf("no token: %d", r.Status)
			}
		})

		// Orders until both payment outcomes (and the crash) have happened.
		confirmed, cancelled := 0, 0
		var last order.Order
		for i := 0; i < 30 && (confirmed < 2 || cancelled < 2); i++ {
			s.Fill(t, ada, map[string]int{"SKU-0001": 2, "SKU-0002": 1})
			o := place(ada, fmt.Sprintf("k-%d", i))
			again := place(ada, fmt.Sprintf("k-%d", i))
			if again.ID != o.ID || again.Status != o.Status {
				t.Errorf("same Idempotency-Key gave another order: %+v vs %+v", again, o)
			}
			var pay struct{ Status string }
			kittest.Call(t, "GET", s.Payment.URL()+"/payments?orderId="+o.ID, "", nil, kit.CallerHeader, order.Service).JSON(t, &pay)
			switch o.Status {
			case order.Confirmed:
				confirmed++
				if pay.Status != "CAPTURED" || o.Total != 2*1237+1974 {
					t.Errorf("confirmed order %s: payment %s, total %d", o.ID, pay.Status, o.Total)
				}
				var c struct{ Items []any }
				for i := 0; i < 40; i++ { // after a crash the resumer empties it
					kittest.Call(t, "GET", s.Cart.URL()+"/carts/me", ada, nil).JSON(t, &c)
					if len(c.Items) == 0 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if len(c.Items) != 0 {
					t.Errorf("cart not emptied after confirmation")
				}
			case order.Cancelled:
				cancelled++
				if pay.Status != "FAILED" || o.Reason == "" {
					t.Errorf("cancelled order %s: payment %s, reason %q", o.ID, pay.Status, o.Reason)
				}
				kittest.Call(t, "DELETE", s.Cart.URL()+"/carts/me", ada, nil)
			default:
				t.Fatalf("order %s settled as %s", o.ID, o.Status)
			}
			last = o
		}
		if confirmed < 2 || cancelled < 2 {
			t.Fatalf("%d confirmed, %d cancelled; want both outcomes", confirmed, cancelled)
		}
		st1 := getStock(t, s, "SKU-0001")
		if st1.Committed != int64(2*confirmed) || st1.Reserved != 0 || st1.Available != 1000-int64(2*confirmed) {
			t.Errorf("SKU-0001 %+v after %d confirmed orders of 2", st1, confirmed)
		}

		t.Run("out of stock cancels with nothing charged", func(t *testing.T) {
			s.Fill(t, bob, map[string]int{"SKU-0001": 1, "SKU-0005": 1})
			o := place(bob, "oos")
			if o.Status != order.Cancelled || o.Reason == "" || o.Reason[:12] != "out_of_stock" {
				t.Errorf("order %+v; want cancelled, out_of_stock", o)
			}
			if r := kittest.Call(t, "GET", s.Payment.URL()+"/payments?orderId="+o.ID, "", nil, kit.CallerHeader, order.Service); r.Status != 404 {
				t.Errorf("payment for an out-of-stock order: %d %s", r.Status, r.Body)
			}
			if st := getStock(t, s, "SKU-0001"); st != st1 {
				t.Errorf("stock moved by a refused order: %+v vs %+v", st, st1)
			}
		})

		t.Run("ownership", func(t *testing.T) {
			if r := kittest.Call(t, "GET", url+"/orders/"+last.ID, bob, nil); r.Status != 403 {
				t.Errorf("bob reading ada's order: %d", r.Status)
			}
			if r := kittest.Call(t, "GET", url+"/orders/"+last.ID, ada, nil); r.Status != 200 {
				t.Errorf("ada reading her order: %d", r.Status)
			}
			if r := kittest.Call(t, "GET", url+"/orders/nope", ada, nil); r.Status != 404 {
				t.Errorf("unknown order: %d", r.Status)
			}
		})

		t.Run("a failed shipment returns the stock and refunds", func(t *testing.T) {
			var o order.Order
			for i := 0; i < 20; i++ {
				s.Fill(t, bob, map[string]int{"SKU-0004": 3})
				o = place(bob, fmt.Sprintf("ship-%d", i))
				if o.Status == order.Confirmed {
					break
				}
				kittest.Call(t, "DELETE", s.Cart.URL()+"/carts/me", bob, nil)
			}
			if o.Status != order.Confirmed {
				t.Fatal("no confirmed order to fail the shipment of")
			}
			before := getStock(t, s, "SKU-0004")
			avsc, err := os.ReadFile("readers/ShipmentFailed.avsc")
			if err != nil {
				t.Fatal(err)
			}
			codec, _ := kit.NewCodec("")
			if err := codec.Add(context.Background(), "ShipmentFailed", string(avsc)); err != nil {
				t.Fatal(err)
			}
			msg, err := codec.Message(context.Background(), "ShipmentFailed", o.ID, map[string]any{
				"shipmentId": "s-1", "orderId": o.ID, "userId": o.UserID, "reason": "no_address", "detail": "", "timestamp": time.Now(), "version": 1})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Order.App().Bus.Publish(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				kittest.Call(t, "GET", url+"/orders/"+o.ID, bob, nil).JSON(t, &o)
				if o.Status == order.Cancelled {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if o.Status != order.Cancelled || o.Reason != "shipment_failed: no_address" {
				t.Fatalf("after ShipmentFailed: %s %q", o.Status, o.Reason)
			}
			var pay struct {
				Status   string
				Refunded int64
			}
			kittest.Call(t, "GET", s.Payment.URL()+"/payments?orderId="+o.ID, "", nil, kit.CallerHeader, order.Service).JSON(t, &pay)
			if pay.Status != "REFUNDED" || pay.Refunded != o.Total {
				t.Errorf("payment after a failed shipment: %+v, want REFUNDED %d", pay, o.Total)
			}
			after := getStock(t, s, "SKU-0004")
			if after.Committed != before.Committed-3 || after.Available != before.Available+3 {
				t.Errorf("stock %+v after the return, was %+v", after, before)
			}
		})

		n, err := s.Order.Unsettled(context.Background())
		if err != nil || n != 0 {
			t.Errorf("%d orders unsettled, %v", n, err)
		}
	})
}

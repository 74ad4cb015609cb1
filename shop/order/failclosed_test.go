package order_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

// settle places the cart's order and follows it until it leaves PENDING
// (a bounded poll: the resumer drives a saga that had to wait).
func settle(t *testing.T, s *shoptest.Shop, tok, key string) order.Order {
	t.Helper()
	r := kittest.Call(t, "POST", s.Order.URL()+"/orders", tok, nil, "Idempotency-Key", key)
	var o order.Order
	if r.Status != 201 && r.Status != 202 && r.Status != 200 {
		t.Fatalf("place order: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &o)
	deadline := time.Now().Add(60 * time.Second)
	for o.Status == order.Pending && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		kittest.Call(t, "GET", s.Order.URL()+"/orders/"+o.ID, tok, nil).JSON(t, &o)
	}
	if o.Status == order.Pending {
		t.Fatalf("order %s still PENDING after a minute: %+v", o.ID, o)
	}
	return o
}

// TestSagaGivesUp: a reservation that never answers in time (inventory
// slower than the saga's call timeout) makes the saga give up after its
// maximum attempts: the order ends CANCELLED, whatever stock the late
// reserves took is released, nothing is charged; never stuck, never
// confirmed.
func TestSagaGivesUp(t *testing.T) {
	s := shoptest.Start(t, kittest.SQLiteEnv(t), shoptest.Options{
		Products: 2,
		Faults:   map[string]kit.Faults{"inventory-service": {InventorySlow: 700 * time.Millisecond}},
		Order:    order.Config{MaxAttempts: 3, CallTimeout: 200 * time.Millisecond, Lease: time.Second, ResumeInterval: 100 * time.Millisecond},
	})
	s.Stock(t, 2, 10)
	ada := s.Customer(t, "ada@shop.test")
	s.Fill(t, ada, map[string]int{"SKU-0001": 2})
	o := settle(t, s, ada, "gives-up")
	if o.Status != order.Cancelled || !strings.HasPrefix(o.Reason, "reserve_unavailable") {
		t.Fatalf("order %+v; want CANCELLED reserve_unavailable", o)
	}
	if r := kittest.Call(t, "GET", s.Payment.URL()+"/payments?orderId="+o.ID, "", nil, kit.CallerHeader, order.Service); r.Status != 404 {
		t.Errorf("a payment for an order that gave up: %d %s", r.Status, r.Body)
	}
	// A reserve the saga stopped waiting for may still land: bounded
	// poll until inventory holds nothing for the order.
	deadline := time.Now().Add(30 * time.Second)
	var st stock
	for {
		st = getStock(t, s, "SKU-0001")
		var res struct{ Status string }
		r := kittest.Call(t, "GET", s.Inventory.URL()+"/reservations?orderId="+o.ID, "", nil, kit.CallerHeader, order.Service)
		if r.Status == 200 {
			r.JSON(t, &res)
		}
		held := r.Status == 200 && res.Status != "RELEASED" && res.Status != "EXPIRED"
		if !held && st.Reserved == 0 || time.Now().After(deadline) {
			if held {
				t.Errorf("reservation of the cancelled order is %s", res.Status)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Available != 10 || st.Reserved != 0 || st.Committed != 0 {
		t.Errorf("SKU-0001 %+v after an order that gave up; want all 10 available", st)
	}
}

// TestReservationLapsedBeforeCommit: the stock reservation expires while
// the charge settles; inventory refuses the commit, and the saga
// compensates: the order ends CANCELLED, the capture refunded, the stock
// back where it was.
func TestReservationLapsedBeforeCommit(t *testing.T) {
	s := shoptest.Start(t, kittest.SQLiteEnv(t), shoptest.Options{
		Products: 2,
		// The charge settles a while after it was sent, time for the
		// reservation to lapse.
		Faults: map[string]kit.Faults{"payment-service": {PaymentLatency: 2 * time.Second}},
		Order:  order.Config{Lease: time.Second, ResumeInterval: 100 * time.Millisecond},
	})
	s.Stock(t, 2, 10)
	ada := s.Customer(t, "ada@shop.test")
	s.Fill(t, ada, map[string]int{"SKU-0002": 3})
	lapsed := make(chan int, 1)
	go func() {
		// As inventory's sweeper does once the TTL passed: expire the
		// order's reservation as soon as it exists, before the charge
		// settles.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if n, err := s.Inventory.Sweep(context.Background(), time.Now().Add(24*time.Hour)); err != nil || n > 0 {
				lapsed <- n
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		lapsed <- 0
	}()
	o := settle(t, s, ada, "lapsed")
	if n := <-lapsed; n != 1 {
		t.Fatalf("swept %d reservations, want the order's", n)
	}
	if o.Status != order.Cancelled || !strings.HasPrefix(o.Reason, "reservation_expired") {
		t.Fatalf("order %+v; want CANCELLED, reservation_expired", o)
	}
	var pay struct {
		Status   string
		Amount   int64
		Refunded int64
	}
	kittest.Call(t, "GET", s.Payment.URL()+"/payments?orderId="+o.ID, "", nil, kit.CallerHeader, order.Service).JSON(t, &pay)
	if pay.Status != "REFUNDED" || pay.Refunded != o.Total || pay.Amount != o.Total {
		t.Errorf("payment %+v; want the capture of %d refunded", pay, o.Total)
	}
	if st := getStock(t, s, "SKU-0002"); st.Available != 10 || st.Reserved != 0 || st.Committed != 0 {
		t.Errorf("SKU-0002 %+v; want all 10 available again", st)
	}
	if n, err := s.Order.Unsettled(context.Background()); err != nil || n != 0 {
		t.Errorf("%d orders unsettled, %v", n, err)
	}
}

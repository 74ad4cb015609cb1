package payment

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func TestPaymentService(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		users, custTok, adminTok := usertest.StartForTest(t, env)
		otherTok := usertest.Token(t, users.URL(), "other@shop.test")
		cfg := env.Config(t, Service)
		cfg.Deps["user"] = users.URL()
		cfg.Faults.PaymentFailureRate = 0.3
		cfg.Faults.PaymentLatency = 20 * time.Millisecond
		m := &Main{Config: Config{Kit: cfg, Seed: 7}}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close() }()
		url := m.URL()
		var mu sync.Mutex
		events := map[string]int{}
		for _, topic := range []string{"PaymentCompleted", "PaymentFailed", "PaymentRefunded"} {
			sub, err := m.app.Bus.Subscribe(context.Background(), bus.Subscription{Topic: topic, Group: "test", Handler: func(_ context.Context, msg bus.Message) error {
				var e paymentEvent
				if err := m.app.Codec.Decode(context.Background(), msg.Topic, msg.Payload, &e); err != nil {
					t.Errorf("decode %s: %v", msg.Topic, err)
				}
				mu.Lock()
				events[msg.Topic]++
				mu.Unlock()
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Close() }()
		}
		charge := func(tok, key string, body ChargeRequest) kittest.Response {
			return kittest.Call(t, "POST", url+"/payments", tok, body, kittest.AsService(t, "order-service", tok, "Idempotency-Key", key)...)
		}

		t.Run("bad input writes nothing", func(t *testing.T) {
			ok := ChargeRequest{OrderID: "o-x", Amount: 100, Currency: "EUR"}
			for _, tc := range []struct {
				name, key string
				body      any
				status    int
				code      string
			}{
				{"no key", "", ok, 400, "bad_request"},
				{"negative", "k-bad", ChargeRequest{OrderID: "o-x", Amount: -1, Currency: "EUR"}, 400, "bad_request"},
				{"zero", "k-bad", ChargeRequest{OrderID: "o-x", Amount: 0, Currency: "EUR"}, 400, "bad_request"},
				{"currency", "k-bad", ChargeRequest{OrderID: "o-x", Amount: 1, Currency: "eur"}, 400, "bad_request"},
				{"no order", "k-bad", ChargeRequest{Amount: 1, Currency: "EUR"}, 400, "bad_request"},
				{"malformed", "k-bad", `{"amount":`, 400, "bad_request"},
			} {
				r := kittest.Call(t, "POST", url+"/payments", custTok, tc.body, kittest.AsService(t, "order-service", custTok, "Idempotency-Key", tc.key)...)
				if r.Status != tc.status || r.ErrorCode() != tc.code {
					t.Errorf("%s: %d %s", tc.name, r.Status, r.Body)
				}
			}
			var n int
			if err := m.app.DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM payments`).Scan(&n); err != nil {
				t.Fatalf("count payments: %v", err)
			}
			if n != 0 {
				t.Errorf("%d payments written by bad requests", n)
			}
		})

		t.Run("charges, idempotency, failure rate", func(t *testing.T) {
			captured, failed := 0, 0
			var wg sync.WaitGroup
			var cmu sync.Mutex
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := ChargeRequest{OrderID: fmt.Sprintf("o-%d", i), Amount: int64(100 + i), Currency: "EUR"}
					key := fmt.Sprintf("order-o-%d", i)
					// Two identical requests at once (a client retry racing the first).
					r1, r2 := make(chan kittest.Response), make(chan kittest.Response)
					go func() { r1 <- charge(custTok, key, body) }()
					go func() { r2 <- charge(custTok, key, body) }()
					a, b := <-r1, <-r2
					var p Payment
					for _, r := range []kittest.Response{a, b} {
						switch {
						case r.Status == 201 || r.Status == 200:
							r.JSON(t, &p)
						case r.Status == 409 && r.ErrorCode() == "in_progress":
						default:
							t.Errorf("charge: %d %s", r.Status, r.Body)
						}
					}
					// A later retry returns the stored answer.
					var again Payment
					r := charge(custTok, key, body)
					r.JSON(t, &again)
					if r.Status != 200 || again.ID != p.ID || again.Status != p.Status {
						t.Errorf("retry: %d %+v vs %+v", r.Status, again, p)
					}
					cmu.Lock()
					defer cmu.Unlock()
					switch p.Status {
					case Captured:
						captured++
					case Failed:
						failed++
					default:
						t.Errorf("status %s", p.Status)
					}
				}()
			}
			wg.Wait()
			if captured+failed != 100 || failed < 15 || failed > 45 {
				t.Errorf("%d captured, %d failed; want about 30%% failed", captured, failed)
			}
			var n int
			if err := m.app.DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM payments`).Scan(&n); err != nil {
				t.Fatalf("count payments: %v", err)
			}
			if n != 100 {
				t.Errorf("%d payments for 100 orders charged twice each", n)
			}
			if r := charge(custTok, "order-o-1", ChargeRequest{OrderID: "o-1", Amount: 999, Currency: "EUR"}); r.Status != 422 {
				t.Errorf("key reused for another charge: %d", r.Status)
			}
		})

		t.Run("status, refund, ownership", func(t *testing.T) {
			var p Payment
			for i := 0; ; i++ {
				kittest.Call(t, "GET", url+fmt.Sprintf("/payments?orderId=o-%d", i), custTok, nil, kittest.AsService(t, "order-service", custTok)...).JSON(t, &p)
				if p.Status == Captured {
					break
				}
			}
			if r := kittest.Call(t, "GET", url+"/payments/"+p.ID, otherTok, nil); r.Status != 403 {
				t.Errorf("other user's status: %d", r.Status)
			}
			if r := kittest.Call(t, "GET", url+"/payments/"+p.ID, adminTok, nil, kittest.AsService(t, "order-service", adminTok)...); r.Status != 200 {
				t.Errorf("admin status: %d", r.Status)
			}
			if r := kittest.Call(t, "POST", url+"/payments/"+p.ID+"/refund", otherTok, nil); r.Status != 403 {
				t.Errorf("other user's refund: %d", r.Status)
			}
			for i := 0; i < 2; i++ {
				r := kittest.Call(t, "POST", url+"/payments/"+p.ID+"/refund", custTok, nil, kittest.AsService(t, "order-service", custTok)...)
				var got Payment
				r.JSON(t, &got)
				if r.Status != 200 || got.Status != Refunded || got.Refunded != p.Amount {
					t.Errorf("refund #%d: %d %s", i+1, r.Status, r.Body)
				}
			}
			var f Payment
			for i := 0; ; i++ {
				kittest.Call(t, "GET", url+fmt.Sprintf("/payments?orderId=o-%d", i), custTok, nil, kittest.AsService(t, "order-service", custTok)...).JSON(t, &f)
				if f.Status == Failed {
					break
				}
			}
			if r := kittest.Call(t, "POST", url+"/payments/"+f.ID+"/refund", custTok, nil, kittest.AsService(t, "order-service", custTok)...); r.Status != 409 {
				t.Errorf("refund of a failed payment: %d", r.Status)
			}
		})

		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			n := events["PaymentCompleted"] + events["PaymentFailed"]
			r := events["PaymentRefunded"]
			mu.Unlock()
			if n == 100 && r == 1 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		if events["PaymentCompleted"]+events["PaymentFailed"] != 100 || events["PaymentRefunded"] != 1 {
			t.Errorf("events %v; want 100 completed+failed and 1 refunded", events)
		}
	})
}

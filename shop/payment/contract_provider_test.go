package payment_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// TestContractProvider verifies every consumer's pact with payment-service
// against the real service and user-service; state handlers charge through
// its API and hand the payment's id to the pacts' provider-state paths.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	users, customer, _ := usertest.StartForTest(t, env)
	cfg := env.Config(t, payment.Service)
	cfg.Deps["user"] = users.URL()
	m := &payment.Main{Config: payment.Config{Kit: cfg}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	auth := &shoppact.Auth{}
	auth.Set(customer)
	none := func(context.Context, bool, map[string]any) (map[string]any, error) { return nil, nil }
	states := map[string]contract.StateHandler{
		"the payment processor accepts charges": none,
		"order o-unpaid was never charged":      none,
		"order o-paid was charged": func(_ context.Context, _ bool, p map[string]any) (map[string]any, error) {
			order := fmt.Sprint(p["orderId"])
			r := kittest.Call(t, "POST", m.URL()+"/payments", "", map[string]any{"orderId": order, "amount": 2474, "currency": "EUR"}, "Idempotency-Key", "order-"+order, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42")
			if r.Status != 201 && r.Status != 200 {
				return nil, fmt.Errorf("charge %s: %d %s", order, r.Status, r.Body)
			}
			var got payment.Payment
			r.JSON(t, &got)
			return map[string]any{"paymentId": got.ID}, nil
		},
	}
	v := shoppact.Verifier(t, payment.Service, m.URL(), auth, states)
	// Messages are what charging and refunding through the API wrote to
	// the outbox.
	// A second payment-service whose processor declines every charge.
	dcfg := env.Config(t, payment.Service)
	dcfg.Deps["user"] = users.URL()
	dcfg.Faults.PaymentFailureRate = 1
	declining := &payment.Main{Config: payment.Config{Kit: dcfg}}
	if err := declining.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = declining.Close() })
	charged := 0
	charge := func(ctx context.Context, svc *payment.Main, event string) (contract.Message, error) {
		charged++
		order := fmt.Sprintf("o-event-%d", charged)
		r := kittest.Call(t, "POST", svc.URL()+"/payments", "", map[string]any{"orderId": order, "amount": 2474, "currency": "EUR"}, "Idempotency-Key", "order-"+order, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42")
		if r.Status != 201 {
			return contract.Message{}, fmt.Errorf("charge %s: %d %s", order, r.Status, r.Body)
		}
		avsc, err := shoppact.Schema(payment.Schemas(), event)
		if err != nil {
			return contract.Message{}, err
		}
		return shoppact.Outboxed(ctx, svc.App(), avsc, event)
	}
	v.MessageProducers = map[string]contract.MessageProducer{
		"a PaymentCompleted event": func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			return charge(ctx, m, "PaymentCompleted")
		},
		"a PaymentFailed event": func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			return charge(ctx, declining, "PaymentFailed")
		},
		"a PaymentRefunded event": func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			st, err := states["order o-paid was charged"](ctx, true, map[string]any{"orderId": "o-refunded"})
			if err != nil {
				return contract.Message{}, err
			}
			if r := kittest.Call(t, "POST", m.URL()+"/payments/"+fmt.Sprint(st["paymentId"])+"/refund", "", nil, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42"); r.Status != 200 {
				return contract.Message{}, fmt.Errorf("refund: %d %s", r.Status, r.Body)
			}
			avsc, err := shoppact.Schema(payment.Schemas(), "PaymentRefunded")
			if err != nil {
				return contract.Message{}, err
			}
			return shoppact.Outboxed(ctx, m.App(), avsc, "PaymentRefunded")
		},
	}
	contract.Verify(t, v)
}

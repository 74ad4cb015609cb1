package order

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// addCharge adds the saga's charge (captured as p-1).
func addCharge(p *contract.ConsumerPact) {
	p.AddInteraction().
		Given("the payment processor accepts charges").
		UponReceiving("a request to charge an order").
		WithRequest(contract.Req{Method: "POST", Path: "/payments", Headers: map[string]any{
			kit.CallerHeader:     Service,
			kit.OnBehalfOfHeader: contract.Like("u-42"),
			"Idempotency-Key":    contract.Regex("order-o-charge", `^order-.+$`),
		}, Body: map[string]any{"orderId": contract.Like("o-charge"), "amount": contract.Integer(2474), "currency": contract.Regex("EUR", `^[A-Z]{3}$`)}}).
		WillRespondWith(contract.Resp{Status: 201, Headers: jsonHeaders(), Body: map[string]any{"id": contract.Like("p-1"), "status": "CAPTURED", "amount": contract.Integer(2474)}})
}

// TestContractPayment records order-service's pact with payment-service:
// the charge, the status query a lost answer falls back to, and the
// refund, driven through the saga's charge and refund steps.
func TestContractPayment(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "payment-service"})
	captured := func(id any) map[string]any {
		return map[string]any{"id": id, "status": "CAPTURED", "amount": contract.Integer(2474)}
	}
	addCharge(p)
	p.AddInteraction().
		Given("order o-paid was charged", contract.Params{"orderId": "o-paid"}).
		UponReceiving("a request for an order's payment").
		WithRequest(contract.Req{Method: "GET", Path: "/payments", Query: map[string]any{"orderId": "o-paid"}, Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200, Headers: jsonHeaders(), Body: captured(contract.FromProviderState("${paymentId}", "p-2"))})
	p.AddInteraction().
		Given("order o-paid was charged", contract.Params{"orderId": "o-paid"}).
		UponReceiving("a request to refund a payment").
		WithRequest(contract.Req{Method: "POST", Path: contract.FromProviderState("/payments/${paymentId}/refund", "/payments/p-2/refund"), Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200})
	p.AddInteraction().
		Given("order o-unpaid was never charged", contract.Params{"orderId": "o-unpaid"}).
		UponReceiving("a request for the payment of an order never charged").
		WithRequest(contract.Req{Method: "GET", Path: "/payments", Query: map[string]any{"orderId": "o-unpaid"}, Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 404, Body: map[string]any{"code": "not_found", "detail": contract.Like("no payment for order o-unpaid")}})

	p.Run(t, func(base string) error {
		m := &Main{payments: kit.NewClient("payment-service", base)}
		ctx := kit.WithService(context.Background(), Service)
		tr, err := m.charge(ctx, Order{ID: "o-charge", UserID: "u-42", Total: 2474, Currency: "EUR"})
		if err != nil || tr.step != StepConfirm || tr.paymentID != "p-1" {
			return fmt.Errorf("charge: %+v, %v", tr, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
		}
		tr, err = m.refund(ctx, Order{ID: "o-paid", UserID: "u-42", Total: 2474, Currency: "EUR", Reason: "shipment_failed: no_address"})
		if err != nil || tr.status != Cancelled || tr.paymentID != "p-2" {
			return fmt.Errorf("refund: %+v, %v", tr, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
		}
		tr, err = m.refund(ctx, Order{ID: "o-unpaid", UserID: "u-42", Reason: "out_of_stock: SKU-0003"})
		if err != nil || tr.status != Cancelled || tr.detail != "nothing charged" {
			return fmt.Errorf("refund of an order never charged: %+v, %v", tr, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
		}
		return nil
	})
}

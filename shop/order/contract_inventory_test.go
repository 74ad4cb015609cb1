package order

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

func jsonHeaders() map[string]any { return map[string]any{"Content-Type": shoppact.JSONType()} }

// sagaHeaders are the saga's calls' headers: order-service's identity (the
// mesh passes it) and the user it acts for; no user token.
func sagaHeaders() map[string]any {
	return map[string]any{kit.CallerHeader: Service, kit.OnBehalfOfHeader: contract.Like("u-42")}
}

// addReserve adds the saga's reservation of SKU-0001 (the answer's id is
// r-1).
func addReserve(p *contract.ConsumerPact) {
	p.AddInteraction().
		Given("SKU-0001 is in stock", contract.Params{"sku": "SKU-0001"}).
		UponReceiving("a request to reserve stock for an order").
		WithRequest(contract.Req{Method: "POST", Path: "/reservations", Headers: sagaHeaders(), Body: map[string]any{
			"orderId":    contract.Like("o-reserve"),
			"items":      contract.EachLike(map[string]any{"sku": contract.Equality("SKU-0001"), "quantity": contract.Integer(2)}, 1, 0),
			"ttlSeconds": contract.Integer(300),
		}}).
		WillRespondWith(contract.Resp{Status: 201, Headers: jsonHeaders(), Body: map[string]any{"id": contract.Like("r-1"), "status": "RESERVED"}})
}

// addCommit adds the saga's commit of reservation r-1.
func addCommit(p *contract.ConsumerPact) {
	p.AddInteraction().
		Given("stock is reserved for order o-commit", contract.Params{"orderId": "o-commit"}).
		UponReceiving("a request to commit a reservation").
		WithRequest(contract.Req{Method: "POST", Path: contract.FromProviderState("/reservations/${reservationId}/commit", "/reservations/r-1/commit"), Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200})
}

// TestContractInventory records order-service's pact with
// inventory-service: every call the saga's steps make (reserve, confirm,
// release, return), driven through the steps themselves.
func TestContractInventory(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "inventory-service"})
	addReserve(p)
	p.AddInteraction().
		Given("SKU-0003 is out of stock", contract.Params{"sku": "SKU-0003"}).
		UponReceiving("a request to reserve stock that is not there").
		WithRequest(contract.Req{Method: "POST", Path: "/reservations", Headers: sagaHeaders(), Body: map[string]any{
			"orderId":    contract.Like("o-short"),
			"items":      contract.EachLike(map[string]any{"sku": contract.Equality("SKU-0003"), "quantity": contract.Integer(2)}, 1, 0),
			"ttlSeconds": contract.Integer(300),
		}}).
		WillRespondWith(contract.Resp{Status: 409, Body: map[string]any{"code": "out_of_stock", "detail": contract.Like("SKU-0003: 0 available")}})
	addCommit(p)
	p.AddInteraction().
		Given("stock is reserved for order o-release", contract.Params{"orderId": "o-release"}).
		UponReceiving("a request for an order's reservation").
		WithRequest(contract.Req{Method: "GET", Path: "/reservations", Query: map[string]any{"orderId": "o-release"}, Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200, Headers: jsonHeaders(), Body: map[string]any{
			"id": contract.FromProviderState("${reservationId}", "r-2"), "status": "RESERVED"}})
	p.AddInteraction().
		Given("stock is reserved for order o-release", contract.Params{"orderId": "o-release"}).
		UponReceiving("a request to release a reservation").
		WithRequest(contract.Req{Method: "POST", Path: contract.FromProviderState("/reservations/${reservationId}/release", "/reservations/r-2/release"), Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200})
	p.AddInteraction().
		Given("no stock is reserved for order o-none", contract.Params{"orderId": "o-none"}).
		UponReceiving("a request for the reservation of an order that has none").
		WithRequest(contract.Req{Method: "GET", Path: "/reservations", Query: map[string]any{"orderId": "o-none"}, Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 404, Body: map[string]any{"code": "not_found", "detail": contract.Like("no reservation for order o-none")}})
	p.AddInteraction().
		Given("the stock of order o-return is sold", contract.Params{"orderId": "o-return"}).
		UponReceiving("a request to return sold stock").
		WithRequest(contract.Req{Method: "POST", Path: contract.FromProviderState("/reservations/${reservationId}/return", "/reservations/r-3/return"), Headers: sagaHeaders()}).
		WillRespondWith(contract.Resp{Status: 200})

	p.Run(t, func(base string) error {
		m := &Main{Config: Config{ReservationTTL: 5 * time.Minute}, inventory: kit.NewClient("inventory-service", base)}
		ctx := kit.WithService(context.Background(), Service)
		order := func(id, sku string) Order {
			return Order{ID: id, UserID: "u-42", Items: []Item{{SKU: sku, Name: "Demo product", Quantity: 2, UnitPrice: 1237}}}
		}
		steps := []struct {
			name string
			run  func() (transition, error)
			want string
		}{
			{"reserve", func() (transition, error) { return m.reserve(ctx, order("o-reserve", "SKU-0001")) }, StepCharge},
			{"reserve out of stock", func() (transition, error) { return m.reserve(ctx, order("o-short", "SKU-0003")) }, StepRelease},
			{"confirm", func() (transition, error) {
				o := order("o-commit", "SKU-0001")
				o.ReservationID = "r-1"
				return m.confirm(ctx, o)
			}, StepDone},
			{"release", func() (transition, error) { return m.release(ctx, order("o-release", "SKU-0001")) }, StepRefund},
			{"release without a reservation", func() (transition, error) { return m.release(ctx, order("o-none", "SKU-0001")) }, StepRefund},
			{"return", func() (transition, error) {
				o := order("o-return", "SKU-0001")
				o.ReservationID = "r-3"
				return m.returnStock(ctx, o)
			}, StepRefund},
		}
		for _, s := range steps {
			tr, err := s.run()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if tr.step != s.want {
				return fmt.Errorf("%s: next step %s, want %s (%+v)", s.name, tr.step, s.want, tr)
			}
		}
		return nil
	})
}

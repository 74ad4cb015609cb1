package order

import (
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

const cartState = "the caller's cart holds 2 of SKU-0001"

// cartBody is the priced cart order-service reads: 2 of SKU-0001.
func cartBody() map[string]any {
	return map[string]any{
		"items": contract.EachLike(map[string]any{
			"sku": contract.Like("SKU-0001"), "name": contract.Like("Demo product 1"),
			"quantity": contract.Integer(2), "unitPrice": contract.Integer(1237),
		}, 1, 0),
		"total":    contract.Integer(2474),
		"currency": contract.Regex("EUR", `^[A-Z]{3}$`),
	}
}

// addCart adds the read of the caller's cart in state.
func addCart(p *contract.ConsumerPact, state, desc string, body map[string]any) {
	p.AddInteraction().
		Given(state).
		UponReceiving(desc).
		WithRequest(contract.Req{Method: "GET", Path: "/carts/me", Query: map[string]any{"refresh": "true"}, Headers: authHeaders()}).
		WillRespondWith(contract.Resp{Status: 200, Headers: jsonHeaders(), Body: body})
}

// TestContractCart records order-service's pact with cart-service: the
// priced cart it reads to place an order, through the real order-service.
func TestContractCart(t *testing.T) {
	cases := []struct {
		state, desc string
		body        map[string]any
		want        int
	}{{
		state: cartState,
		desc:  "a request for the caller's cart, re-priced",
		body:  cartBody(),
		want:  202, // accepted: inventory-service is down here, the saga goes on
	}, {
		state: "the caller's cart is empty",
		desc:  "a request for the caller's empty cart, re-priced",
		body:  map[string]any{"items": []any{}, "total": 0},
		want:  422,
	}}
	for _, c := range cases {
		t.Run(c.state, func(t *testing.T) {
			p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "cart-service"})
			addCart(p, c.state, c.desc, c.body)
			userPact().Run(t, func(users string) error {
				var err error
				p.Run(t, func(carts string) error {
					m := startOrder(t, map[string]string{"user": users, "cart": carts})
					r := kittest.Call(t, "POST", m.URL()+"/orders", shoppact.Token(t, "u-42", kit.RoleCustomer), nil)
					var o Order
					if r.Status != c.want {
						err = fmt.Errorf("place an order: %d %s, want %d", r.Status, r.Body, c.want)
					} else if r.Status == 202 {
						r.JSON(t, &o)
						if o.Total != 2474 || o.Currency != "EUR" || len(o.Items) != 1 || o.Items[0].Quantity != 2 {
							err = fmt.Errorf("order placed from the cart: %s", r.Body)
						}
					}
					_ = m.Close()
					return err
				})
				return err
			})
		})
	}
}

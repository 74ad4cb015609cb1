package cart_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/cart"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// TestContractProvider verifies every consumer's pact with cart-service
// against the real service, with the real user-service and product-service
// behind it; state handlers fill the caller's cart through its API and the
// request filter sends the caller's token.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	users, customer, _ := usertest.StartForTest(t, env)
	products := producttest.Start(t, env, users.URL(), 1)
	cfg := env.Config(t, cart.Service)
	cfg.Deps["user"], cfg.Deps["product"] = users.URL(), products.URL()
	m := &cart.Main{Config: cart.Config{Kit: cfg}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	auth := &shoppact.Auth{}
	auth.Set(customer)
	var me struct{ ID string }
	kittest.Call(t, "GET", users.URL()+"/users/me", customer, nil).JSON(t, &me)
	empty := func() error {
		if r := kittest.Call(t, "DELETE", m.URL()+"/carts/me", customer, nil); r.Status != 200 {
			return fmt.Errorf("empty the cart: %d %s", r.Status, r.Body)
		}
		return nil
	}
	states := map[string]contract.StateHandler{
		"the caller's cart is empty": func(context.Context, bool, map[string]any) (map[string]any, error) { return nil, empty() },
		"the caller's cart holds 2 of SKU-0001": func(context.Context, bool, map[string]any) (map[string]any, error) {
			if err := empty(); err != nil {
				return nil, err
			}
			if r := kittest.Call(t, "POST", m.URL()+"/carts/me/items", customer, map[string]any{"sku": "SKU-0001", "quantity": 2}); r.Status != 200 {
				return nil, fmt.Errorf("fill the cart: %d %s", r.Status, r.Body)
			}
			return map[string]any{"userId": me.ID}, nil
		},
	}
	contract.Verify(t, shoppact.Verifier(t, cart.Service, m.URL(), auth, states))
}

package product_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// TestContractProvider verifies every consumer's pact with product-service
// against the real service (and the real user-service its admin API
// needs); state handlers shape the catalog through the admin API.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	users, _, admin := usertest.StartForTest(t, env)
	m := producttest.Start(t, env, users.URL(), 0)
	create := func(sku string) error {
		r := kittest.Call(t, "POST", m.URL()+"/products", admin, map[string]any{"sku": sku, "name": "Demo product " + sku, "category": "kitchen", "price": 1237, "currency": "EUR"})
		if r.Status != 201 && r.Status != 409 {
			return fmt.Errorf("create %s: %d %s", sku, r.Status, r.Body)
		}
		return nil
	}
	sku := func(p map[string]any) string { s, _ := p["sku"].(string); return s }
	states := map[string]contract.StateHandler{}
	for _, s := range []string{"SKU-0001", "SKU-0003"} {
		states["product "+s+" exists"] = func(_ context.Context, setup bool, p map[string]any) (map[string]any, error) {
			return nil, create(sku(p))
		}
	}
	states["product SKU-0002 is withdrawn"] = func(_ context.Context, setup bool, p map[string]any) (map[string]any, error) {
		if err := create(sku(p)); err != nil {
			return nil, err
		}
		if r := kittest.Call(t, "DELETE", m.URL()+"/products/"+sku(p), admin, nil); r.Status != 200 {
			return nil, fmt.Errorf("withdraw %s: %d %s", sku(p), r.Status, r.Body)
		}
		return nil, nil
	}
	states["product SKU-9999 does not exist"] = func(context.Context, bool, map[string]any) (map[string]any, error) { return nil, nil }
	contract.Verify(t, shoppact.Verifier(t, product.Service, m.URL(), &shoppact.Auth{}, states))
}

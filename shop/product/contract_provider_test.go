package product_test

import (
	"context"
	"fmt"
	"strings"
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
	v := shoppact.Verifier(t, product.Service, m.URL(), &shoppact.Auth{}, states)
	// Messages come from the real handlers: each producer acts through the
	// admin API and hands over what that wrote to the outbox.
	event := func(name string, act func() error) contract.MessageProducer {
		return func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			if err := act(); err != nil {
				return contract.Message{}, err
			}
			avsc, err := shoppact.Schema(product.Schemas(), name)
			if err != nil {
				return contract.Message{}, err
			}
			return shoppact.Outboxed(ctx, m.App(), avsc, name)
		}
	}
	call := func(method, path string, body any) error {
		if r := kittest.Call(t, method, m.URL()+path, admin, body); r.Status != 200 {
			return fmt.Errorf("%s %s: %d %s", method, path, r.Status, r.Body)
		}
		return nil
	}
	v.MessageProducers = map[string]contract.MessageProducer{
		"a ProductCreated event": event("ProductCreated", func() error { return create("SKU-0500") }),
		"a ProductUpdated event": event("ProductUpdated", func() error {
			if err := create("SKU-0500"); err != nil {
				return err
			}
			return call("PUT", "/products/SKU-0500", map[string]any{"name": "Teapot", "description": "Holds tea.", "category": "kitchen"})
		}),
		"a PriceChanged event": event("PriceChanged", func() error {
			if err := create("SKU-0500"); err != nil {
				return err
			}
			return call("PUT", "/products/SKU-0500/price", map[string]any{"price": 1999, "currency": "EUR"})
		}),
	}
	contract.Verify(t, v)

	// The same message pacts fail against a producer that renamed a field.
	t.Run("broken producer fails", func(t *testing.T) {
		bv := v
		bv.Sources, bv.Publisher = shoppact.Files(t), nil // broken on purpose: pacts/, nothing published
		bv.FilterDescription = "^a ProductCreated event$"
		created := v.MessageProducers["a ProductCreated event"]
		bv.MessageProducers = map[string]contract.MessageProducer{
			"a ProductCreated event": func(ctx context.Context, states []contract.ProviderState) (contract.Message, error) {
				msg, err := created(ctx, states)
				if err != nil {
					return msg, err
				}
				var body map[string]any
				if err := msg.JSON(&body); err != nil {
					return msg, err
				}
				body["priceMinor"] = body["price"]
				delete(body, "price")
				return contract.JSONMessage(body, msg.Metadata)
			},
		}
		rep, err := bv.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var failed []string
		for _, p := range rep.Pacts {
			for _, in := range p.Interactions {
				if !in.OK() {
					failed = append(failed, contract.FormatInteraction(p, in))
				}
			}
		}
		if rep.OK() || !strings.Contains(strings.Join(failed, "\n"), "$.price") {
			t.Fatalf("verification against a producer without $.price passed or did not name it:\n%s", strings.Join(failed, "\n"))
		}
		t.Logf("as expected:\n%s", strings.Join(failed, "\n"))
	})
}

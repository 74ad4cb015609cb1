package inventory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// TestContractProvider verifies every consumer's pact with
// inventory-service against the real service, with the real user-service
// and product-service (SKU-0001..3) behind it; state handlers receive
// stock and reserve it through the API, and return the reservation's id
// for the pacts' provider-state paths.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	users, customer, admin := usertest.StartForTest(t, env)
	products := producttest.Start(t, env, users.URL(), 3)
	cfg := env.Config(t, inventory.Service)
	cfg.Deps["user"], cfg.Deps["product"] = users.URL(), products.URL()
	m := &inventory.Main{Config: inventory.Config{Kit: cfg, Users: users.URL()}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	auth := &shoppact.Auth{}
	auth.Set(customer)

	stock := func(sku string) error {
		if r := kittest.Call(t, "POST", m.URL()+"/stock/"+sku, admin, map[string]int{"add": 100}); r.Status != 200 {
			return fmt.Errorf("receive %s: %d %s", sku, r.Status, r.Body)
		}
		return nil
	}
	reserve := func(p map[string]any) (string, error) {
		if err := stock("SKU-0001"); err != nil {
			return "", err
		}
		r := kittest.Call(t, "POST", m.URL()+"/reservations", "", map[string]any{
			"orderId": p["orderId"], "items": []map[string]any{{"sku": "SKU-0001", "quantity": 1}}, "ttlSeconds": 300}, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42")
		var res inventory.Reservation
		if r.Status != 201 && r.Status != 200 {
			return "", fmt.Errorf("reserve for %v: %d %s", p["orderId"], r.Status, r.Body)
		}
		r.JSON(t, &res)
		return res.ID, nil
	}
	none := func(context.Context, bool, map[string]any) (map[string]any, error) { return nil, nil }
	reserved := func(_ context.Context, _ bool, p map[string]any) (map[string]any, error) {
		id, err := reserve(p)
		return map[string]any{"reservationId": id}, err
	}
	states := map[string]contract.StateHandler{
		"SKU-0001 is in stock": func(_ context.Context, _ bool, p map[string]any) (map[string]any, error) {
			return nil, stock(fmt.Sprint(p["sku"]))
		},
		"SKU-0003 is out of stock":              none,
		"no stock is reserved for order o-none": none,
		"stock is reserved for order o-commit":  reserved,
		"stock is reserved for order o-release": reserved,
		"the stock of order o-return is sold": func(ctx context.Context, setup bool, p map[string]any) (map[string]any, error) {
			id, err := reserve(p)
			if err != nil {
				return nil, err
			}
			if r := kittest.Call(t, "POST", m.URL()+"/reservations/"+id+"/commit", "", nil, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42"); r.Status != 200 && r.Status != 409 {
				return nil, fmt.Errorf("commit %s: %d %s", id, r.Status, r.Body)
			}
			return map[string]any{"reservationId": id}, nil
		},
	}
	v := shoppact.Verifier(t, inventory.Service, m.URL(), auth, states)
	// Messages are what reserving, releasing and selling out through the
	// API wrote to the outbox.
	orders := 0
	event := func(name string, act func() error) contract.MessageProducer {
		return func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			if err := act(); err != nil {
				return contract.Message{}, err
			}
			avsc, err := shoppact.Schema(inventory.Schemas(), name)
			if err != nil {
				return contract.Message{}, err
			}
			return shoppact.Outboxed(ctx, m.App(), avsc, name)
		}
	}
	reserveNew := func() (string, error) {
		orders++
		return reserve(map[string]any{"orderId": fmt.Sprintf("o-event-%d", orders)})
	}
	v.MessageProducers = map[string]contract.MessageProducer{
		"a StockReserved event": event("StockReserved", func() error { _, err := reserveNew(); return err }),
		"a StockReleased event": event("StockReleased", func() error {
			id, err := reserveNew()
			if err != nil {
				return err
			}
			if r := kittest.Call(t, "POST", m.URL()+"/reservations/"+id+"/release", "", nil, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42"); r.Status != 200 {
				return fmt.Errorf("release %s: %d %s", id, r.Status, r.Body)
			}
			return nil
		}),
		"a StockDepleted event": event("StockDepleted", func() error {
			// Sell out SKU-0002: reserve every unit available.
			if r := kittest.Call(t, "POST", m.URL()+"/stock/SKU-0002", admin, map[string]int{"add": 3}); r.Status != 200 {
				return fmt.Errorf("receive SKU-0002: %d %s", r.Status, r.Body)
			}
			var st inventory.Stock
			kittest.Call(t, "GET", m.URL()+"/stock/SKU-0002", customer, nil).JSON(t, &st)
			orders++
			r := kittest.Call(t, "POST", m.URL()+"/reservations", "", map[string]any{
				"orderId": fmt.Sprintf("o-event-%d", orders), "items": []map[string]any{{"sku": "SKU-0002", "quantity": st.Available}}, "ttlSeconds": 300}, kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-42")
			if r.Status != 201 {
				return fmt.Errorf("reserve all of SKU-0002: %d %s", r.Status, r.Body)
			}
			return nil
		}),
	}
	contract.Verify(t, v)
}

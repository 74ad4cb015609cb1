package cart

import (
	"context"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func TestCartService(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		users, custTok, adminTok := usertest.StartForTest(t, env)
		products := producttest.Start(t, env, users.URL(), 3)
		cfg := env.Config(t, Service)
		cfg.Deps["user"], cfg.Deps["product"] = users.URL(), products.URL()
		m := &Main{Config: Config{Kit: cfg}}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close() }()
		url := m.URL()
		otherTok := usertest.Token(t, users.URL(), "other@shop.test")

		// Seeded prices: SKU-0001 = 500 + 737 = 1237, SKU-0002 = 500 + 1474 = 1974.
		var c Cart
		for _, add := range []qty{{"SKU-0001", 2}, {"SKU-0002", 1}, {"SKU-0001", 1}} {
			r := kittest.Call(t, "POST", url+"/carts/me/items", custTok, add)
			if r.Status != 200 {
				t.Fatalf("add %+v: %d %s", add, r.Status, r.Body)
			}
			r.JSON(t, &c)
		}
		if len(c.Items) != 2 || c.Items[0].Quantity != 3 || c.Total != 3*1237+1974 || c.Currency != "EUR" {
			t.Fatalf("cart %+v", c)
		}
		for _, tc := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"unknown sku", "POST", "/carts/me/items", qty{"NOPE-1", 1}, 422, "unknown_sku"},
			{"negative", "POST", "/carts/me/items", qty{"SKU-0001", -1}, 400, "bad_request"},
			{"zero add", "POST", "/carts/me/items", qty{"SKU-0001", 0}, 400, "bad_request"},
			{"over max", "POST", "/carts/me/items", qty{"SKU-0001", 998}, 400, "bad_request"},
			{"missing sku", "POST", "/carts/me/items", map[string]int{"quantity": 1}, 400, "bad_request"},
			{"malformed", "POST", "/carts/me/items", `{"sku":`, 400, "bad_request"},
			{"set negative", "PUT", "/carts/me/items/SKU-0001", map[string]int{"quantity": -2}, 400, "bad_request"},
			{"remove absent", "DELETE", "/carts/me/items/SKU-0003", nil, 404, "not_found"},
		} {
			r := kittest.Call(t, tc.method, url+tc.path, custTok, tc.body)
			if r.Status != tc.status || r.ErrorCode() != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
		kittest.Call(t, "GET", url+"/carts/me", custTok, nil).JSON(t, &c)
		if c.Total != 3*1237+1974 {
			t.Errorf("bad requests changed the cart: %+v", c)
		}
		// Another user sees only their own (empty) cart, and cannot read ours.
		if r := kittest.Call(t, "GET", url+"/carts/"+c.UserID, otherTok, nil); r.Status != 403 {
			t.Errorf("other user's cart: %d", r.Status)
		}
		if r := kittest.Call(t, "GET", url+"/carts/"+c.UserID, adminTok, nil); r.Status != 200 {
			t.Errorf("admin reading a cart: %d", r.Status)
		}
		var other Cart
		kittest.Call(t, "GET", url+"/carts/me", otherTok, nil).JSON(t, &other)
		if len(other.Items) != 0 {
			t.Errorf("other user's cart %+v", other)
		}
		// A price change reaches the cart on refresh.
		if r := kittest.Call(t, "PUT", products.URL()+"/products/SKU-0002/price", adminTok, map[string]any{"price": 2000, "currency": "EUR"}); r.Status != 200 {
			t.Fatalf("reprice: %d %s", r.Status, r.Body)
		}
		kittest.Call(t, "GET", url+"/carts/me?refresh=true", custTok, nil).JSON(t, &c)
		if c.Total != 3*1237+2000 {
			t.Errorf("after refresh total %d", c.Total)
		}
		kittest.Call(t, "PUT", url+"/carts/me/items/SKU-0001", custTok, map[string]int{"quantity": 0}).JSON(t, &c)
		if len(c.Items) != 1 || c.Total != 2000 {
			t.Errorf("after removing by quantity 0: %+v", c)
		}
		kittest.Call(t, "DELETE", url+"/carts/me", custTok, nil)
		kittest.Call(t, "GET", url+"/carts/me", custTok, nil).JSON(t, &c)
		if len(c.Items) != 0 || c.Total != 0 {
			t.Errorf("after clear: %+v", c)
		}
	})
}

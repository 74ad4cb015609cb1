package product

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func count(t *testing.T, m *Main) int {
	var n int
	if err := m.app.DB.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM products").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProductService(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		users, custTok, adminTok := usertest.StartForTest(t, env)
		cfg := env.Config(t, Service)
		cfg.Deps["user"] = users.URL()
		m := &Main{Config: Config{Kit: cfg, Seed: 12}}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close() }()
		url := m.URL()

		got := map[string][]bus.Message{}
		done := make(chan bus.Message, 100)
		for _, topic := range []string{"ProductCreated", "ProductUpdated", "PriceChanged"} {
			sub, err := m.app.Bus.Subscribe(context.Background(), bus.Subscription{Topic: topic, Group: "test", Handler: func(_ context.Context, msg bus.Message) error {
				done <- msg
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Close() }()
		}

		p := map[string]any{"sku": "MUG-1", "name": "Blue mug", "description": "Holds tea.", "category": "kitchen", "price": 1299, "currency": "EUR"}
		r := kittest.Call(t, "POST", url+"/products", adminTok, p)
		if r.Status != 201 {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		var created Product
		r.JSON(t, &created)
		if created.SellerName != "Shop Admin" || created.SellerID == "" { // the admin made from the start-up secret
			t.Errorf("seller not resolved with user-service: %+v", created)
		}

		t.Run("bad input writes nothing", func(t *testing.T) {
			before := count(t, m)
			with := func(k string, v any) map[string]any {
				c := map[string]any{}
				for kk, vv := range p {
					c[kk] = vv
				}
				c["sku"] = "NEW-1"
				if v == nil {
					delete(c, k)
				} else {
					c[k] = v
				}
				return c
			}
			for _, tc := range []struct {
				name   string
				token  string
				body   any
				status int
				msg    string
			}{
				{"customer", custTok, with("sku", "NEW-2"), 403, "role customer"},
				{"no token", "", with("sku", "NEW-2"), 401, "missing bearer token"},
				{"duplicate", adminTok, with("sku", "MUG-1"), 409, "already exists"},
				{"bad sku", adminTok, with("sku", "mug one"), 400, "sku"},
				{"missing name", adminTok, with("name", nil), 400, "name is required"},
				{"negative price", adminTok, with("price", -5), 400, "price -5"},
				{"zero price", adminTok, with("price", 0), 400, "price 0"},
				{"bad currency", adminTok, with("currency", "euro"), 400, "currency"},
				{"fractional price", adminTok, with("price", 12.5), 400, "want int64"},
				{"malformed", adminTok, `{"sku":`, 400, "malformed"},
			} {
				r := kittest.Call(t, "POST", url+"/products", tc.token, tc.body)
				if r.Status != tc.status || !strings.Contains(string(r.Body), tc.msg) {
					t.Errorf("%s: %d %s, want %d %q", tc.name, r.Status, r.Body, tc.status, tc.msg)
				}
			}
			if after := count(t, m); after != before {
				t.Errorf("bad requests wrote %d products", after-before)
			}
		})

		t.Run("list", func(t *testing.T) {
			var page Page
			r := kittest.Call(t, "GET", url+"/products?limit=5&sort=-price", "", nil)
			r.JSON(t, &page)
			if page.Total != 13 || len(page.Items) != 5 || page.NextOffset == nil || *page.NextOffset != 5 {
				t.Fatalf("page: total %d, %d items, next %v", page.Total, len(page.Items), page.NextOffset)
			}
			for i := 1; i < len(page.Items); i++ {
				if page.Items[i].Price > page.Items[i-1].Price {
					t.Errorf("not sorted by -price: %d after %d", page.Items[i].Price, page.Items[i-1].Price)
				}
			}
			kittest.Call(t, "GET", url+"/products?category=kitchen&q=MUG", "", nil).JSON(t, &page)
			if page.Total != 1 || page.Items[0].SKU != "MUG-1" {
				t.Errorf("filter: %+v", page)
			}
			kittest.Call(t, "GET", url+"/products?offset=10&limit=5", "", nil).JSON(t, &page)
			if len(page.Items) != 3 || page.NextOffset != nil {
				t.Errorf("last page: %d items, next %v", len(page.Items), page.NextOffset)
			}
			for _, q := range []string{"limit=0", "limit=101", "offset=-1", "sort=cheapest", "minPrice=x", "color=red"} {
				if r := kittest.Call(t, "GET", url+"/products?"+q, "", nil); r.Status != 400 {
					t.Errorf("%s: %d, want 400", q, r.Status)
				}
			}
		})

		t.Run("update, reprice, withdraw", func(t *testing.T) {
			if r := kittest.Call(t, "PUT", url+"/products/MUG-1", adminTok, map[string]string{"name": "Big blue mug", "description": "", "category": "kitchen"}); r.Status != 200 {
				t.Errorf("update: %d %s", r.Status, r.Body)
			}
			if r := kittest.Call(t, "PUT", url+"/products/MUG-1/price", adminTok, map[string]any{"price": 1499, "currency": "EUR"}); r.Status != 200 {
				t.Errorf("reprice: %d %s", r.Status, r.Body)
			}
			if r := kittest.Call(t, "PUT", url+"/products/MUG-1/price", adminTok, map[string]any{"price": 1499, "currency": "USD"}); r.Status != 400 {
				t.Errorf("reprice in another currency: %d", r.Status)
			}
			if r := kittest.Call(t, "PUT", url+"/products/NOPE/price", adminTok, map[string]any{"price": 1, "currency": "EUR"}); r.Status != 404 {
				t.Errorf("reprice unknown: %d", r.Status)
			}
			if r := kittest.Call(t, "PUT", url+"/products/MUG-1/price", custTok, map[string]any{"price": 1, "currency": "EUR"}); r.Status != 403 {
				t.Errorf("customer reprice: %d", r.Status)
			}
			var got Product
			kittest.Call(t, "GET", url+"/products/MUG-1", "", nil).JSON(t, &got)
			if got.Name != "Big blue mug" || got.Price != 1499 || !got.Active {
				t.Errorf("after update: %+v", got)
			}
			if r := kittest.Call(t, "DELETE", url+"/products/MUG-1", adminTok, nil); r.Status != 200 {
				t.Errorf("withdraw: %d", r.Status)
			}
			var page Page
			kittest.Call(t, "GET", url+"/products?q=mug", "", nil).JSON(t, &page)
			if page.Total != 0 {
				t.Errorf("withdrawn product still listed")
			}
		})

		// 12 seeded + 1 created, 2 updates (rename, withdraw), 1 price change.
		want := map[string]int{"ProductCreated": 13, "ProductUpdated": 2, "PriceChanged": 1}
		deadline := time.After(10 * time.Second)
		for n := 0; n < 16; n++ {
			select {
			case msg := <-done:
				got[msg.Topic] = append(got[msg.Topic], msg)
			case <-deadline:
				t.Fatalf("events so far %v, want %v", len(got), want)
			}
		}
		for topic, n := range want {
			if len(got[topic]) != n {
				t.Errorf("%s: %d events, want %d", topic, len(got[topic]), n)
			}
		}
		var pc priceChanged
		if err := m.app.Codec.Decode(context.Background(), "PriceChanged", got["PriceChanged"][0].Payload, &pc); err != nil || pc.OldPrice != 1299 || pc.NewPrice != 1499 || pc.SKU != "MUG-1" {
			t.Errorf("PriceChanged %+v %v", pc, err)
		}
		_ = kit.RoleAdmin
	})
}

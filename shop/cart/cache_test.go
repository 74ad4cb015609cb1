package cart

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/rediscache"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// Carts are read through the cache (in-process by default, Redis when
// configured) and every change invalidates the cart at once.
func TestCartCache(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			var c cache.Cache
			if backend == "redis" {
				rc, err := rediscache.Open(testenv.Server(t, testenv.Redis), fmt.Sprintf("test:%d:", time.Now().UnixNano()))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = rc.Clear(context.Background()); _ = rc.Close() })
				c = rc
			}
			env := kittest.SQLiteEnv(t)
			users, tok, _ := usertest.StartForTest(t, env)
			products := producttest.Start(t, env, users.URL(), 2)
			cfg := env.Config(t, Service)
			cfg.Deps["user"], cfg.Deps["product"] = users.URL(), products.URL()
			m := &Main{Config: Config{Kit: cfg, Cache: c}}
			if err := m.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close() })
			get := func() Cart {
				t.Helper()
				r := kittest.Call(t, "GET", m.URL()+"/carts/me", tok, nil)
				if r.Status != 200 {
					t.Fatalf("get cart: %d %s", r.Status, r.Body)
				}
				var out Cart
				r.JSON(t, &out)
				return out
			}
			call := func(method, path string, body any) {
				t.Helper()
				if r := kittest.Call(t, method, m.URL()+path, tok, body); r.Status != 200 {
					t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
				}
			}
			if n := len(get().Items); n != 0 {
				t.Fatalf("new cart has %d items", n)
			}
			call("POST", "/carts/me/items", qty{"SKU-0001", 1})
			if n := len(get().Items); n != 1 {
				t.Fatalf("after an add the cart has %d items, want 1 (stale cache?)", n)
			}
			call("PUT", "/carts/me/items/SKU-0001", map[string]int{"quantity": 4})
			if q := get().Items[0].Quantity; q != 4 {
				t.Fatalf("after a set the quantity is %d, want 4", q)
			}
			call("DELETE", "/carts/me/items/SKU-0001", nil)
			if n := len(get().Items); n != 0 {
				t.Fatalf("after a remove the cart has %d items", n)
			}
			call("POST", "/carts/me/items", qty{"SKU-0002", 2})
			get()
			call("DELETE", "/carts/me", nil)
			if n := len(get().Items); n != 0 {
				t.Fatalf("after clearing the cart has %d items", n)
			}
			s := m.CacheStats()
			if s.Hits == 0 && s.Misses == 0 {
				t.Errorf("no cart read went through the cache: %+v", s)
			}
			get()
			if s2 := m.CacheStats(); s2.Hits != s.Hits+1 {
				t.Errorf("an unchanged cart read twice did not hit: %+v then %+v", s, s2)
			}
		})
	}
}

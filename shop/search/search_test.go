package search_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/product/producttest"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func start(t *testing.T, kc kit.Config, dir string) *search.Main {
	t.Helper()
	m := &search.Main{Config: search.Config{Kit: kc, Users: kc.Deps["user"], RetryEvery: 200 * time.Millisecond,
		Open:  func() (search.Index, error) { return bleveindex.Open(dir) },
		Reset: func() error { return bleveindex.Reset(dir) }}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func query(t *testing.T, m *search.Main, q string) search.Result {
	t.Helper()
	r := kittest.Call(t, "GET", m.URL()+"/search?"+q, "", nil)
	if r.Status != 200 {
		t.Fatalf("search %s: %d %s", q, r.Status, r.Body)
	}
	var res search.Result
	r.JSON(t, &res)
	return res
}

// eventually polls cond for up to 20s.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after 20s; last: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func publisher(t *testing.T, env kittest.Env) (bus.Bus, *kit.Codec) {
	t.Helper()
	ctx := context.Background()
	b, err := kit.Dial(ctx, env.BusURL, env.BusStream, "test", false, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	codec, _ := kit.NewCodec("")
	if err := codec.Load(ctx, order.Schemas()); err != nil {
		t.Fatal(err)
	}
	return b, codec
}

type line struct {
	SKU       string `avro:"sku"`
	Quantity  int    `avro:"quantity"`
	UnitPrice int64  `avro:"unitPrice"`
}

func TestSearchService(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		ctx := context.Background()
		users, customer, admin := usertest.StartForTest(t, env)
		products := producttest.Start(t, env, users.URL(), 10)
		kc := env.Config(t, search.Service)
		kc.Deps["product"], kc.Deps["user"] = products.URL(), users.URL()
		dir := filepath.Join(t.TempDir(), "index")
		m := start(t, kc, dir)

		total := func(q string, want int) func() (bool, string) {
			return func() (bool, string) {
				r := query(t, m, q)
				return r.Total == want, fmt.Sprintf("total %d, want %d", r.Total, want)
			}
		}
		eventually(t, "the empty index rebuilt from product-service", total("limit=1", 10))

		call := func(method, path string, body any, want int) {
			t.Helper()
			if r := kittest.Call(t, method, products.URL()+path, admin, body); r.Status != want {
				t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
			}
		}
		call("POST", "/products", map[string]any{"sku": "HOSE-1", "name": "Red garden hose", "description": "Twenty metres", "category": "garden", "price": 2499, "currency": "EUR"}, 201)
		eventually(t, "ProductCreated indexed", total("q=hose", 1))
		call("PUT", "/products/HOSE-1/price", map[string]any{"price": 1999, "currency": "EUR"}, 200)
		eventually(t, "PriceChanged indexed", total("q=hose&minPrice=1999&maxPrice=1999", 1))
		call("PUT", "/products/HOSE-1", map[string]any{"name": "Blue garden hose", "description": "Twenty metres", "category": "garden"}, 200)
		eventually(t, "ProductUpdated indexed", total("q=blue&category=garden", 1))

		// Popularity: the confirmation first, then the order's lines, every
		// event delivered twice.
		b, codec := publisher(t, env)
		pub := func(event, key string, v any) {
			msg, err := codec.Message(ctx, event, key, v)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, msg, msg); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now().UTC()
		for i, id := range []string{"o-1", "o-2"} {
			pub("OrderConfirmed", id, map[string]any{"orderId": id, "userId": "u", "total": int64(5997), "currency": "EUR", "paymentId": "p", "reservationId": "r", "timestamp": now, "version": 1})
			pub("OrderCreated", id, map[string]any{"orderId": id, "userId": "u", "items": []string{"HOSE-1", "SKU-0002"}, "total": 59.97, "timestamp": now.UnixMilli(), "version": "1.1",
				"lines": []line{{"HOSE-1", 2 + i, 1999}, {"SKU-0002", 1, 500}}, "totalMinor": int64(5997), "currency": "EUR"})
		}
		// An order never confirmed counts for nothing.
		pub("OrderCreated", "o-3", map[string]any{"orderId": "o-3", "userId": "u", "items": []string{"SKU-0003"}, "total": 1.0, "timestamp": now.UnixMilli(), "version": "1.1",
			"lines": []line{{"SKU-0003", 50, 100}}, "totalMinor": int64(100), "currency": "EUR"})
		eventually(t, "popularity counted once per confirmed order", func() (bool, string) {
			r := query(t, m, "sort=popularity&limit=3&facets=false")
			got := fmt.Sprintf("%s %d %s %d %d", r.Hits[0].SKU, r.Hits[0].Popularity, r.Hits[1].SKU, r.Hits[1].Popularity, r.Hits[2].Popularity)
			return got == "HOSE-1 5 SKU-0002 2 0", got
		})

		// Bad queries are one clear 400.
		for _, q := range []string{"sort=name", "minPrice=9&maxPrice=1", "limit=1000", "colour=red", "q=%ff"} {
			r := kittest.Call(t, "GET", m.URL()+"/search?"+q, "", nil)
			if r.Status != 400 || r.ErrorCode() != "bad_query" {
				t.Errorf("search?%s: %d %s, want 400 bad_query", q, r.Status, r.Body)
			}
		}

		call("DELETE", "/products/HOSE-1", nil, 200)
		eventually(t, "a withdrawn product leaves the index", total("q=hose", 0))

		// The admin rebuild: an admin's token, as for every admin route.
		for _, c := range []struct {
			name, token string
			status      int
			code        string
		}{
			{"no token", "", 401, "unauthorized"},
			{"a forged token", "some.user.jwt", 401, "unauthorized"},
			{"a customer's token", customer, 403, "forbidden"},
		} {
			for _, method := range []string{"POST", "GET"} {
				if r := kittest.Call(t, method, m.URL()+"/admin/reindex", c.token, nil); r.Status != c.status || r.ErrorCode() != c.code {
					t.Errorf("%s /admin/reindex with %s: %d %s, want %d %s", method, c.name, r.Status, r.Body, c.status, c.code)
				}
			}
		}
		if r := kittest.Call(t, "POST", m.URL()+"/admin/reindex", admin, nil); r.Status != 202 {
			t.Fatalf("reindex: %d %s", r.Status, r.Body)
		}
		eventually(t, "the admin rebuild finished", func() (bool, string) {
			st := m.Status()
			return !st.Running && st.FinishedAt != nil && st.Error == "" && st.Listed == 10 && st.Indexed == 10, fmt.Sprintf("%+v", st)
		})
		var st search.RebuildStatus
		if r := kittest.Call(t, "GET", m.URL()+"/admin/reindex", admin, nil); r.Status != 200 {
			t.Errorf("the rebuild's status: %d %s", r.Status, r.Body)
		} else if r.JSON(t, &st); st.Reason != "requested by an admin" || st.Indexed != 10 {
			t.Errorf("the rebuild's status: %+v", st)
		}

		// A lost index, then a corrupt one, are rebuilt at start, popularity kept.
		for _, damage := range []string{"lost", "corrupt"} {
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "lost":
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			case "corrupt":
				if err := os.WriteFile(filepath.Join(dir, "index_meta.json"), []byte("\x00garbage"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m = start(t, kc, dir)
			eventually(t, damage+" index rebuilt", func() (bool, string) {
				r := query(t, m, "sort=popularity&limit=1&facets=false")
				if r.Total != 10 {
					return false, fmt.Sprintf("total %d", r.Total)
				}
				return r.Hits[0].SKU == "SKU-0002" && r.Hits[0].Popularity == 2, fmt.Sprintf("%+v", r.Hits[0])
			})
		}
	})
}

// product-service unavailable when search-service starts with an empty
// index: the rebuild fails, says why, and is retried until it succeeds.
func TestRebuildRetriesUntilProductServiceAnswers(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	users, _, _ := usertest.StartForTest(t, env)
	products := producttest.Start(t, env, users.URL(), 4)
	var up atomic.Bool
	target, _ := url.Parse(products.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, `{"error":{"code":"not_ready","message":"starting"}}`, http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer gate.Close()
	kc := env.Config(t, search.Service)
	kc.Deps["product"] = gate.URL
	m := start(t, kc, filepath.Join(t.TempDir(), "index"))
	eventually(t, "the failed rebuild reported", func() (bool, string) {
		st := m.Status()
		return st.Error != "" && strings.Contains(st.Error, "503"), fmt.Sprintf("%+v", st)
	})
	up.Store(true)
	eventually(t, "the rebuild retried and done", func() (bool, string) {
		r := query(t, m, "limit=1")
		return r.Total == 4, fmt.Sprintf("total %d, status %+v", r.Total, m.Status())
	})
}

// Events applied out of order keep the newest version of each group of
// fields: a price change that overtook its product's creation keeps its
// price, and an update older than what is indexed is ignored.
func TestOutOfOrderProductEvents(t *testing.T) {
	ctx := context.Background()
	env := kittest.SQLiteEnv(t)
	kc := env.Config(t, search.Service)
	kc.Deps["product"] = "http://127.0.0.1:9" // the index is made non-empty below, so no rebuild runs
	dir := filepath.Join(t.TempDir(), "index")
	idx, err := bleveindex.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.Put(ctx, search.Doc{SKU: "SEED-1", Name: "seed", Category: "toys", Price: 1, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	_ = idx.Close()
	m := start(t, kc, dir)
	b, codec := publisher(t, env)
	if err := codec.Load(ctx, product.Schemas()); err != nil {
		t.Fatal(err)
	}
	pub := func(event string, v any) {
		msg, err := codec.Message(ctx, event, "LAMP-1", v)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	pub("PriceChanged", map[string]any{"sku": "LAMP-1", "oldPrice": int64(1000), "newPrice": int64(1500), "currency": "EUR", "timestamp": t0.Add(2 * time.Second), "version": 1})
	pub("ProductUpdated", map[string]any{"sku": "LAMP-1", "name": "Brass lamp", "description": "", "category": "home", "active": true, "timestamp": t0.Add(3 * time.Second), "version": 1})
	pub("ProductCreated", map[string]any{"sku": "LAMP-1", "name": "Desk lamp", "description": "", "category": "home", "price": int64(1000), "currency": "EUR", "sellerId": "s", "timestamp": t0, "version": 1})
	pub("ProductUpdated", map[string]any{"sku": "LAMP-1", "name": "Old lamp", "description": "", "category": "home", "active": true, "timestamp": t0.Add(time.Second), "version": 1})
	eventually(t, "the newest name and price indexed", func() (bool, string) {
		r := query(t, m, "q=lamp&facets=false")
		if r.Total != 1 {
			return false, fmt.Sprintf("total %d", r.Total)
		}
		h := r.Hits[0]
		return h.Name == "Brass lamp" && h.Price == 1500, fmt.Sprintf("%+v", h)
	})
	// Give the stale update time to arrive, then check again.
	time.Sleep(300 * time.Millisecond)
	if h := query(t, m, "q=lamp&facets=false").Hits[0]; h.Name != "Brass lamp" || h.Price != 1500 {
		t.Fatalf("after every event: %+v, want Brass lamp at 1500", h)
	}
}

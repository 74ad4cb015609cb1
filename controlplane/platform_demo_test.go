package controlplane

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestLoadDemoStock: the demo's first run stocks DemoStock of each product
// through inventory-service's API; a later run tops up what the demo sold
// under DemoRestockBelow, and leaves alone what still has enough.
func TestLoadDemoStock(t *testing.T) {
	var mu sync.Mutex
	available := map[string]int64{} // inventory-service's stock
	added := map[string][]int64{}   // every POST /stock/{sku} add
	products := map[string]bool{}   // product-service's catalog
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /api/user/users", func(w http.ResponseWriter, r *http.Request) { ok(w, 201, map[string]string{}) })
	mux.HandleFunc("POST /api/user/login", func(w http.ResponseWriter, r *http.Request) { ok(w, 200, map[string]string{"token": "admin-token"}) })
	var addresses int
	mux.HandleFunc("GET /api/user/users/me/addresses", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		ok(w, 200, map[string]any{"addresses": make([]map[string]string, addresses)})
	})
	mux.HandleFunc("POST /api/user/users/me/addresses", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		addresses++
		mu.Unlock()
		ok(w, 201, map[string]string{})
	})
	mux.HandleFunc("GET /api/product/products/{sku}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !products[r.PathValue("sku")] {
			ok(w, 404, map[string]any{"code": "not_found"})
			return
		}
		ok(w, 200, map[string]string{"sku": r.PathValue("sku")})
	})
	mux.HandleFunc("POST /api/product/products", func(w http.ResponseWriter, r *http.Request) {
		var p struct{ SKU string }
		_ = json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		products[p.SKU] = true
		mu.Unlock()
		ok(w, 201, p)
	})
	mux.HandleFunc("GET /api/inventory/stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n, found := available[r.PathValue("sku")]
		if !found {
			ok(w, 404, map[string]any{"code": "not_found"})
			return
		}
		ok(w, 200, map[string]any{"sku": r.PathValue("sku"), "available": n})
	})
	mux.HandleFunc("POST /api/inventory/stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			ok(w, 403, map[string]any{"code": "forbidden"})
			return
		}
		var in struct{ Add int64 }
		_ = json.NewDecoder(r.Body).Decode(&in)
		sku := r.PathValue("sku")
		mu.Lock()
		defer mu.Unlock()
		available[sku] += in.Add
		added[sku] = append(added[sku], in.Add)
		ok(w, 200, map[string]any{"sku": sku, "available": available[sku]})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	names := []string{"user-service", "product-service", "inventory-service"}
	s := &secrets{AdminPassword: "a"}

	demo, err := LoadDemo(context.Background(), srv.URL, names, s)
	if err != nil {
		t.Fatal(err)
	}
	if demo.Products != len(demoProducts) || demo.Stocked != len(demoProducts) || demo.Restocked != len(demoProducts) {
		t.Errorf("first run: %+v", demo)
	}
	for _, p := range demoProducts {
		if available[p.SKU] != DemoStock || len(added[p.SKU]) != 1 {
			t.Errorf("%s: %d available after %v added; want %d", p.SKU, available[p.SKU], added[p.SKU], DemoStock)
		}
	}

	// The demo sold: the mug ran low, the kettle sold less than half.
	mug, kettle := demoProducts[0].SKU, demoProducts[1].SKU
	available[mug], available[kettle] = 7, DemoRestockBelow+1
	demo, err = LoadDemo(context.Background(), srv.URL, names, s)
	if err != nil {
		t.Fatal(err)
	}
	if demo.Restocked != 1 || available[mug] != DemoStock || available[kettle] != DemoRestockBelow+1 {
		t.Errorf("second run: %+v; mug %d, kettle %d available", demo, available[mug], available[kettle])
	}
	if got := added[mug]; len(got) != 2 || got[1] != DemoStock-7 {
		t.Errorf("mug restocked with %v, want %d", got, DemoStock-7)
	}
	for _, p := range demoProducts[1:] {
		if len(added[p.SKU]) != 1 {
			t.Errorf("%s restocked with enough stock: %v", p.SKU, added[p.SKU])
		}
	}

	t.Run("a refused restock is an error naming the product", func(t *testing.T) {
		available[mug] = 0
		s := &secrets{AdminPassword: "a"}
		bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/api/inventory/stock/") {
				ok(w, 400, map[string]any{"error": map[string]string{"code": "bad_request", "message": "add too large"}})
				return
			}
			mux.ServeHTTP(w, r)
		}))
		defer bad.Close()
		if _, err := LoadDemo(context.Background(), bad.URL, names, s); err == nil || !strings.Contains(err.Error(), "restock "+mug) {
			t.Errorf("err = %v; want one naming %s", err, mug)
		}
	})
}

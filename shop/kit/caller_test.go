package kit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

// Calls a service makes while handling a request, and in its background
// work, name it in CallerHeader: the mesh authorises them by it.
func TestCallsNameTheirCaller(t *testing.T) {
	var mu sync.Mutex
	var got []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get(kit.CallerHeader))
		mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	}))
	defer upstream.Close()

	cfg := kittest.SQLiteEnv(t).Config(t, "cart-service")
	app, err := kit.Start(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = app.Close() }()
	client := kit.NewClient("product-service", upstream.URL)
	app.Mux.Handle("GET /call", kit.Handle(func(w http.ResponseWriter, r *http.Request) error {
		if err := client.Do(r.Context(), "GET", "/products/1", "", nil, nil, nil); err != nil {
			return err
		}
		kit.WriteJSON(w, 200, map[string]string{})
		return nil
	}))
	background := make(chan error, 1)
	app.Go(func(ctx context.Context) { background <- client.Do(ctx, "GET", "/products/2", "", nil, nil, nil) })
	app.Serve()
	if err := <-background; err != nil {
		t.Fatal(err)
	}
	if r := kittest.Call(t, "GET", app.URL()+"/call", "", nil); r.Status != 200 {
		t.Fatalf("GET /call: %d %s", r.Status, r.Body)
	}
	// A call outside any service's context names nobody.
	if err := client.Do(context.Background(), "GET", "/products/3", "", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"cart-service", "cart-service", ""}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("%s values = %q, want %q", kit.CallerHeader, got, want)
	}
}

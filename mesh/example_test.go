package mesh_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/flotilla-ci/flotilla/mesh"
)

// A service with a stable and a canary version: 95/5 by weight, the
// canary lane and a version pin, then the canary promoted and the old
// version drained.
func Example() {
	ctx := context.Background()
	v1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v1") }))
	defer v1.Close()
	v2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v2") }))
	defer v2.Close()

	m, err := mesh.New(mesh.Config{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authz:  mesh.AuthzConfig{Mode: mesh.AuthzEnforce, Policy: mesh.NewPolicy(map[string][]string{"cart-service": {"order-service"}, "payment-service": nil})},
	})
	if err != nil {
		panic(err)
	}
	defer func() { _ = m.Close(ctx) }()
	addr, _ := m.AddService(ctx, mesh.ServiceConfig{Name: "order-service"})
	_ = m.SetSubset(ctx, "order-service", mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(v1.URL, "http://")}})
	_ = m.SetSubset(ctx, "order-service", mesh.Subset{Name: "v2", Canary: true, Endpoints: []string{strings.TrimPrefix(v2.URL, "http://")}})
	_ = m.SetWeights(ctx, "order-service", map[string]int{"v1": 95, "v2": 5})

	get := func(hdr ...string) string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/orders/1", nil)
		req.Header.Set(mesh.CallerHeader, "cart-service")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	counts := map[string]int{}
	for range 100 {
		counts[get()]++
	}
	fmt.Println("by weight:", counts)
	fmt.Println("canary lane:", get("X-Canary", "true"))
	fmt.Println("pinned:", get("X-Flotilla-Version", "v1", "X-Canary", "true"))
	fmt.Println("undeclared caller:", get(mesh.CallerHeader, "payment-service")[:3])

	_ = m.SetWeights(ctx, "order-service", map[string]int{"v2": 100})
	_ = m.RemoveSubset(ctx, "order-service", "v1") // returns once v1's requests are done
	fmt.Println("after promotion:", get())
	// Output:
	// by weight: map[200 v1:95 200 v2:5]
	// canary lane: 200 v2
	// pinned: 200 v1
	// undeclared caller: 403
	// after promotion: 200 v2
}

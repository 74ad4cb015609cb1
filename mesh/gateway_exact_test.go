package mesh

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Exact routes: a template's parameters take one segment each and fill
// the rewrite; a more literal template wins; anything undeclared is a 404
// problem; bodies over the limit are 413 whether announced or streamed;
// an endpoint that refuses connections is a problem naming the service,
// not its address.
func TestGatewayExactRoutes(t *testing.T) {
	ctx := context.Background()
	m := newTestMesh(t, Config{})
	var got []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get(CallerHeader))
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(204)
	}))
	defer backend.Close()
	for _, s := range []string{"orders", "down"} {
		if _, err := m.AddService(ctx, ServiceConfig{Name: s}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SetSubset(ctx, "orders", Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(backend.URL, "http://")}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "down", Subset{Name: "v1", Endpoints: []string{"127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultGatewayConfig()
	cfg.MaxBody = 1000
	cfg.Routes = []RouteEntry{
		{Path: "/api/orders/{id}", Rewrite: "/orders/{id}", Exact: true, Public: true, Service: "orders", Methods: []string{"GET", "POST"}},
		{Path: "/api/orders/mine", Rewrite: "/orders/me", Exact: true, Public: true, Service: "orders", Methods: []string{"GET"}},
		{Path: "/api/down/{x}", Rewrite: "/{x}", Exact: true, Public: true, Service: "down"},
	}
	g, err := NewGateway(cfg, m, GatewayOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	do := func(method, path string, body io.Reader, chunked bool) (int, string, string) {
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if chunked {
			req.ContentLength = -1
		}
		req.Header.Set(CallerHeader, "order-service") // a client's claim: replaced
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, c := range []struct {
		method, path string
		body         []byte
		chunked      bool
		status       int
		code         string
	}{
		{"GET", "/api/orders/o-1", nil, false, 204, ""},
		{"GET", "/api/orders/mine", nil, false, 204, ""},
		{"GET", "/api/orders/o-1/refund", nil, false, 404, "not_found"},
		{"GET", "/api/orders", nil, false, 404, "not_found"},
		{"DELETE", "/api/orders/o-1", nil, false, 405, "method_not_allowed"},
		{"POST", "/api/orders/o-1", bytes.Repeat([]byte("x"), 1001), false, 413, "too_large"},
		{"POST", "/api/orders/o-1", bytes.Repeat([]byte("x"), 5000), true, 413, "too_large"},
		{"POST", "/api/orders/o-1", bytes.Repeat([]byte("x"), 900), true, 204, ""},
		{"GET", "/api/down/x", nil, false, 502, "upstream"},
	} {
		var body io.Reader
		if c.body != nil {
			body = bytes.NewReader(c.body)
			if c.chunked {
				body = io.MultiReader(body)
			}
		}
		st, ct, b := do(c.method, c.path, body, c.chunked)
		if st != c.status || (c.code != "" && (ct != ProblemContentType || !strings.Contains(b, `"code":"`+c.code+`"`))) {
			t.Errorf("%s %s: %d %s %s; want %d %s", c.method, c.path, st, ct, b, c.status, c.code)
		}
		if strings.Contains(b, "127.0.0.1") {
			t.Errorf("%s %s names an address: %s", c.method, c.path, b)
		}
	}
	want := []string{"GET /orders/o-1 " + GatewayCaller, "GET /orders/me " + GatewayCaller, "POST /orders/o-1 " + GatewayCaller}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the service got %q, want %q", got, want)
	}
}

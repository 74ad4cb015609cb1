package mesh

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSetAuthzChangesModeAtRuntime(t *testing.T) {
	m := newTestMesh(t, Config{Authz: AuthzConfig{Mode: AuthzWarn, Policy: shopPolicy}})
	up := newUpstream(t, "inventory", nil)
	url := addService(t, m, ServiceConfig{Name: "inventory-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
	hdr := map[string]string{CallerHeader: "payment-service"} // not a dependency
	if r := do(t, "GET", url+"/", hdr, ""); r.status != 200 {
		t.Fatalf("warn mode: status %d, want 200", r.status)
	}
	if err := m.SetAuthz(AuthzConfig{Mode: AuthzEnforce, Policy: shopPolicy}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", url+"/", hdr, ""); r.status != http.StatusForbidden {
		t.Errorf("after SetAuthz(enforce): status %d, want 403", r.status)
	}
	if err := m.SetAuthz(AuthzConfig{Mode: "strict"}); err == nil || !strings.Contains(err.Error(), "strict") {
		t.Errorf("SetAuthz(strict) = %v, want an error naming the mode", err)
	}
	if r := do(t, "GET", url+"/", hdr, ""); r.status != http.StatusForbidden {
		t.Errorf("after a refused SetAuthz: status %d, want the previous enforce (403)", r.status)
	}
	if err := m.SetAuthz(AuthzConfig{Mode: AuthzEnforce}); err != nil { // no policy: all allowed
		t.Fatal(err)
	}
	if r := do(t, "GET", url+"/", hdr, ""); r.status != 200 {
		t.Errorf("enforce without a policy: status %d, want 200", r.status)
	}
}

func TestServiceOnAGivenListener(t *testing.T) {
	m := newTestMesh(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, "a", nil)
	addr, err := m.AddService(context.Background(), ServiceConfig{Name: "a-service", Addr: "ignored:1", Listener: ln})
	if err != nil || addr != ln.Addr().String() {
		t.Fatalf("AddService on a listener = %q, %v; want %s", addr, err, ln.Addr())
	}
	if err := m.SetSubset(context.Background(), "a-service", Subset{Name: "v1", Endpoints: []string{up.addr()}}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", "http://"+addr+"/", nil, ""); r.status != 200 || r.body != "a" {
		t.Errorf("through the given listener: %+v", r)
	}
	// A failed AddService closes the listener it was given.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddService(context.Background(), ServiceConfig{Name: "a-service", Listener: ln2}); err == nil {
		t.Fatal("a second a-service was accepted")
	}
	if _, err := ln2.Accept(); err == nil {
		t.Error("the listener of a refused AddService is still open")
	}
}

func TestRetiredGatewayLeavesTheMetrics(t *testing.T) {
	m := newTestMesh(t, Config{})
	up := newUpstream(t, "a", nil)
	addService(t, m, ServiceConfig{Name: "a-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
	cfg := DefaultGatewayConfig()
	cfg.Routes = []RouteEntry{{Path: "/a/**", Service: "a-service", Public: true}}
	g1, err := NewGateway(cfg, m, GatewayOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(g *Gateway) {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", "/a/x", nil))
		if rec.Code != 200 {
			t.Fatalf("gateway: %d", rec.Code)
		}
	}
	serve(g1)
	g2, err := NewGateway(cfg, m, GatewayOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	g1.Retire()
	serve(g2)
	serve(g2)
	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "flotilla_gateway_requests_total{") {
			lines = append(lines, l)
		}
	}
	want := []string{`flotilla_gateway_requests_total{route="/a/**",service="a-service",status_class="2xx"} 2`}
	if d := cmp.Diff(want, lines); d != "" {
		t.Errorf("gateway request counters after a retire (-want +got):\n%s", d)
	}
}

func TestGatewayConfigJSONRoundTrip(t *testing.T) {
	cfg := DefaultGatewayConfig()
	cfg.Timeout = Duration(45 * time.Second)
	cfg.Routes = []RouteEntry{{Path: "/a/**", Service: "a-service", Rewrite: "/", Methods: []string{"GET"}, RateLimit: &RateLimit{RequestsPerSecond: 5}, Timeout: Duration(time.Second)}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"timeout":"45s"`) || !strings.Contains(string(b), `"jwks_url"`) {
		t.Errorf("JSON %s: want snake_case names and durations as strings", b)
	}
	var back GatewayConfig
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(cfg, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	for _, bad := range []string{`{"timeout": 30}`, `{"timeout": "soon"}`, `{"timeout": "-1s"}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}

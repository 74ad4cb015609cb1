package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

func newClient(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestClientIsARouter drives a real data plane through the Client as the
// orchestrator does (the same steps as deploy/local's MeshRouter test).
func TestClientIsARouter(t *testing.T) {
	ctx := context.Background()
	dir := shortDir(t)
	startMain(t, dir)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	port := taken.Addr().(*net.TCPAddr).Port
	r := newClient(t, ClientConfig{Socket: SocketIn(dir), Ports: map[string]int{"fixed-service": port}})

	if _, err := r.Weights(ctx, "alpha-service"); !errors.Is(err, canary.ErrUnknownService) {
		t.Errorf("Weights of an undeclared service = %v, want ErrUnknownService", err)
	}
	if err := r.SetWeights(ctx, "alpha-service", map[string]int{"v1": 1}); !errors.Is(err, canary.ErrUnknownService) {
		t.Errorf("SetWeights of an undeclared service = %v, want ErrUnknownService", err)
	}
	a1, err := r.Declare(ctx, "alpha-service")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := r.Declare(ctx, "alpha-service")
	if err != nil || a2 != a1 {
		t.Errorf("second Declare = %q, %v; want the same address %q", a2, err, a1)
	}
	v1, v2 := upstream(t, "v1"), upstream(t, "v2")
	if err := r.SetSubset(ctx, "alpha-service", deploy.Subset{Name: "v1", Endpoints: []string{v1}}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetSubset(ctx, "alpha-service", deploy.Subset{Name: "v2", Canary: true, Endpoints: []string{v2}}); err != nil {
		t.Fatal(err)
	}
	w, err := r.Weights(ctx, "alpha-service")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int{"v1": 100, "v2": 0}, w); d != "" {
		t.Errorf("a new subset beside a serving one (-want +got):\n%s", d)
	}
	if _, body := get(t, a1, "/"); body != "v1" {
		t.Errorf("before the shift: %q", body)
	}
	if _, body := get(t, a1, "/", deploy.CanaryHeader, "true"); body != "v2" {
		t.Errorf("the canary lane: %q", body)
	}
	// A refusal comes back as the error, and the previous weights stay.
	err = r.SetWeights(ctx, "alpha-service", map[string]int{"v1": 0})
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "every weight is 0") {
		t.Errorf("SetWeights to all 0 = %v, want the data plane's refusal", err)
	}
	if w, _ := r.Weights(ctx, "alpha-service"); !cmp.Equal(w, map[string]int{"v1": 100, "v2": 0}) {
		t.Errorf("weights after a refusal = %v", w)
	}
	if err := r.SetWeights(ctx, "alpha-service", map[string]int{"v3": 100}); !errors.Is(err, mesh.ErrUnknownSubset) {
		t.Errorf("SetWeights of an unknown subset = %v, want ErrUnknownSubset", err)
	}
	if err := r.RemoveSubset(ctx, "alpha-service", "v1"); err == nil || !strings.Contains(err.Error(), "shift the weights first") {
		t.Errorf("removing the subset with all the traffic = %v", err)
	}
	if err := r.SetWeights(ctx, "alpha-service", map[string]int{"v2": 100}); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, a1, "/"); body != "v2" {
		t.Errorf("after the shift: %q", body)
	}
	if err := r.RemoveSubset(ctx, "alpha-service", "v1"); err != nil {
		t.Fatal(err)
	}
	if w, _ := r.Weights(ctx, "alpha-service"); !cmp.Equal(w, map[string]int{"v2": 100}) {
		t.Errorf("weights after the shift and removal = %v", w)
	}
	if err := r.RemoveSubset(ctx, "alpha-service", "v1"); !errors.Is(err, mesh.ErrUnknownSubset) {
		t.Errorf("removing it again = %v, want ErrUnknownSubset", err)
	}
	_, err = r.Declare(ctx, "fixed-service")
	if err == nil || !strings.Contains(err.Error(), "mesh address of fixed-service") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("Declare on a taken port = %v, want an error naming the service and port %d", err, port)
	}

	// The data plane's measurements.
	st, err := r.Stats(ctx, "alpha-service", "v2", time.Minute)
	if err != nil || st.Requests < 2 || st.Window < time.Minute {
		t.Errorf("Stats = %+v, %v; want the requests v2 served", st, err)
	}
	// With their latency histogram, which the baseline comparison's rank
	// test needs.
	var inHist int64
	for _, c := range st.Latency.Counts {
		inHist += c
	}
	if len(st.Latency.Bounds) == 0 || len(st.Latency.Counts) != len(st.Latency.Bounds)+1 || inHist != st.Requests {
		t.Errorf("Stats latency histogram %+v; want the %d requests in its buckets", st.Latency, st.Requests)
	}
	if _, err := r.Stats(ctx, "alpha-service", "v9", time.Minute); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("Stats of a version without requests = %v, want ErrNoData", err)
	}
	rec := httptest.NewRecorder()
	r.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), `flotilla_mesh_subset_weight{destination="alpha-service",version="v2"} 100`) {
		t.Errorf("metrics through the client lack the weight:\n%s", body)
	}
}

// TestClientPushesAfterARestart: a data plane that lost its state is given
// the whole configuration again, on the same addresses; a new control
// plane adopts what runs.
func TestClientPushesAfterARestart(t *testing.T) {
	ctx := context.Background()
	dir := shortDir(t)
	ports := filepath.Join(t.TempDir(), "ports.json")
	dp := startMain(t, dir)
	c := newClient(t, ClientConfig{Socket: SocketIn(dir), PortsFile: ports})
	addr, err := c.Declare(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	v1 := upstream(t, "v1")
	if err := c.SetSubset(ctx, "a", deploy.Subset{Name: "v1", Endpoints: []string{v1}}); err != nil {
		t.Fatal(err)
	}
	gw, err := c.SetGateway(ctx, &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{{Path: "/a/**", Service: "a", Public: true, Rewrite: "/"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Asked to listen elsewhere, the gateway moves; asked for port 0, it
	// stays where it is.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	moved := free.Addr().String()
	_ = free.Close()
	gwc := mesh.GatewayConfig{Listen: moved, Routes: []mesh.RouteEntry{{Path: "/a/**", Service: "a", Public: true, Rewrite: "/"}}}
	if got, err := c.SetGateway(ctx, &gwc); err != nil || got != moved {
		t.Fatalf("SetGateway to %s = %q, %v", moved, got, err)
	}
	if code, _ := get(t, gw, "/a/x"); code != 0 {
		t.Errorf("the gateway's old address %s still answers %d", gw, code)
	}
	gw = moved
	gwc.Listen = "127.0.0.1:0"
	if got, err := c.SetGateway(ctx, &gwc); err != nil || got != moved {
		t.Errorf("SetGateway to port 0 = %q, %v; want it kept at %s", got, err, moved)
	}
	if err := c.SetAuthz(ctx, Authz{Mode: mesh.AuthzEnforce, Policy: map[string][]string{"a": nil}}); err != nil {
		t.Fatal(err)
	}
	want := c.Desired()

	// A control plane that restarts adopts the running configuration.
	c2 := newClient(t, ClientConfig{Socket: SocketIn(dir), PortsFile: ports})
	if err := c2.Adopt(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, c2.Desired()); d != "" {
		t.Errorf("adopted (-pushed +adopted):\n%s", d)
	}
	if a, err := c2.Declare(ctx, "a"); err != nil || a != addr {
		t.Errorf("Declare after adopting = %q, %v; want %s", a, err, addr)
	}

	// The data plane loses its state (a new state directory) and restarts.
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, addr, "/"); code != 0 {
		t.Fatalf("a stopped data plane still answers %d", code)
	}
	startMain(t, dir+"x")
	t.Cleanup(func() { _ = removeAll(dir + "x") })
	c3 := newClient(t, ClientConfig{Socket: SocketIn(dir + "x")})
	c3.mu.Lock()
	c3.desired = want.Clone()
	c3.mu.Unlock()
	if err := c3.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, addr, "/", mesh.CallerHeader, "a"); code != 403 {
		t.Errorf("after the push, a call a does not declare gets %d %q, want 403 (enforce kept)", code, body)
	}
	if code, body := get(t, gw, "/a/x"); code != 200 || body != "v1" {
		t.Errorf("after the push, the gateway at %s serves %d %q", gw, code, body)
	}
	st, err := c3.Status(ctx)
	if err != nil || st.Version <= want.Version-1 || st.Flotilla != "test" || st.Listeners["a"] != addr {
		t.Errorf("status = %+v, %v", st, err)
	}
}

// TestDeclareRemembersPorts: a service declared on a new data plane gets
// the port it had, which its running dependants were told.
func TestDeclareRemembersPorts(t *testing.T) {
	ctx := context.Background()
	ports := filepath.Join(t.TempDir(), "ports.json")
	d1 := shortDir(t)
	dp := startMain(t, d1)
	addr, err := newClient(t, ClientConfig{Socket: SocketIn(d1), PortsFile: ports}).Declare(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	_ = dp.Close()
	d2 := shortDir(t)
	startMain(t, d2)
	again, err := newClient(t, ClientConfig{Socket: SocketIn(d2), PortsFile: ports}).Declare(ctx, "a")
	if err != nil || again != addr {
		t.Errorf("Declare on a new data plane = %q, %v; want the remembered %s", again, err, addr)
	}
}

package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/mesh"
)

func apply(t *testing.T, s *Server, snap *Snapshot) *Ack {
	t.Helper()
	ack, err := s.Apply(context.Background(), snap)
	if err != nil {
		t.Fatalf("apply version %d: %v", snap.Version, err)
	}
	return ack
}

func TestRefusedSnapshotLeavesThePreviousServing(t *testing.T) {
	s, m := newServer(t, "")
	a := upstream(t, "a-v1")
	ack := apply(t, s, &Snapshot{Version: 1, Services: []Service{{Name: "a", Addr: "127.0.0.1:0",
		Subsets: []Subset{{Name: "v1", Endpoints: []string{a}}}, Weights: map[string]int{"v1": 100}}}})
	addr := ack.Listeners["a"]
	if code, body := get(t, addr, "/"); code != 200 || body != "a-v1" {
		t.Fatalf("version 1 serves %d %q", code, body)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()

	b := upstream(t, "a-v2")
	tests := []struct {
		name string
		snap *Snapshot
		want []string // in the reason
	}{
		{"invalid weights and a new service", &Snapshot{Version: 2, Services: []Service{
			{Name: "a", Addr: addr, Subsets: []Subset{{Name: "v2", Endpoints: []string{b}}}, Weights: map[string]int{"v1": 100}},
			{Name: "b", Addr: "127.0.0.1:0"},
		}}, []string{"services[0] (a): weights: v1 is not one of its subsets"}},
		{"a port in use", &Snapshot{Version: 2, Services: []Service{
			{Name: "a", Addr: addr, Subsets: []Subset{{Name: "v2", Endpoints: []string{b}}}, Weights: map[string]int{"v2": 100}},
			{Name: "b", Addr: "127.0.0.1:0"},
			{Name: "c", Addr: taken.Addr().String()},
		}}, []string{"service c: listen on " + taken.Addr().String()}},
		{"a service asked to move", &Snapshot{Version: 2, Services: []Service{
			{Name: "a", Addr: taken.Addr().String()},
		}}, []string{"service a listens on " + addr + ": it cannot move"}},
		{"an endpoint that is the data plane's own", &Snapshot{Version: 2, Services: []Service{
			{Name: "a", Addr: addr, Subsets: []Subset{{Name: "v2", Endpoints: []string{addr}}}, Weights: map[string]int{"v2": 100}},
		}}, []string{"endpoint " + addr + " is the data plane's own address for services[0] (a)"}},
		{"a gateway route to no service", &Snapshot{Version: 2, Services: []Service{{Name: "a", Addr: addr}},
			Gateway: &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{{Path: "/x/**", Service: "x", Public: true}}}},
			[]string{`gateway: routes[0] (/x/**): service "x" is not among the snapshot's services`}},
		{"an older version", &Snapshot{Version: 0}, []string{"version: want 1 or more"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(context.Background(), tc.snap)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("Apply = %v, want a *RefusedError", err)
			}
			if re.Acked != 1 {
				t.Errorf("refusal says version %d serves, want 1", re.Acked)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("refusal %q does not say %q", err, w)
				}
			}
			if s.Acked() != 1 {
				t.Errorf("acknowledged %d after a refusal, want 1", s.Acked())
			}
			if got := m.Services(); !cmp.Equal(got, []string{"a"}) {
				t.Errorf("services after a refusal = %v, want [a] (nothing half-applied)", got)
			}
			if code, body := get(t, addr, "/"); code != 200 || body != "a-v1" {
				t.Errorf("after a refusal a serves %d %q, want version 1", code, body)
			}
			saved, err := load(s.cfg.State)
			if err != nil || saved.Version != 1 {
				t.Errorf("saved snapshot = %v, %v; want version 1", saved, err)
			}
		})
	}
	// The port of a refused new service was let go.
	if _, err := s.Apply(context.Background(), &Snapshot{Version: 2, Services: []Service{{Name: "a", Addr: addr}, {Name: "b", Addr: "127.0.0.1:0"}}}); err != nil {
		t.Fatal(err)
	}
	// A stale version is refused as such.
	_, err = s.Apply(context.Background(), &Snapshot{Version: 1, Services: []Service{{Name: "a", Addr: addr}}})
	var re *RefusedError
	if !errors.As(err, &re) || !re.Stale {
		t.Errorf("version 1 after 2 = %v, want a stale refusal", err)
	}
	// The same version again with the same content is acknowledged again
	// (a push repeated), with another content refused.
	if _, err := s.Apply(context.Background(), &Snapshot{Version: 2, Services: []Service{{Name: "a", Addr: addr}, {Name: "b", Addr: "127.0.0.1:0"}}}); err != nil {
		t.Errorf("version 2 repeated: %v", err)
	}
	if _, err := s.Apply(context.Background(), &Snapshot{Version: 2, Services: []Service{{Name: "a", Addr: addr}}}); !errors.As(err, &re) || !re.Stale {
		t.Errorf("version 2 with other content = %v, want a stale refusal", err)
	}
}

func TestReconcile(t *testing.T) {
	s, m := newServer(t, "")
	v1, v2, c1 := upstream(t, "v1"), upstream(t, "v2"), upstream(t, "c1")
	ack := apply(t, s, &Snapshot{Version: 1, Authz: Authz{Mode: mesh.AuthzEnforce, Policy: map[string][]string{"a": {"b"}, "b": nil}},
		Services: []Service{
			{Name: "a", Addr: "127.0.0.1:0", Subsets: []Subset{{Name: "v1", Endpoints: []string{v1}}}, Weights: map[string]int{"v1": 100}},
			{Name: "b", Addr: "127.0.0.1:0", Subsets: []Subset{{Name: "c1", Endpoints: []string{c1}}}, Weights: map[string]int{"c1": 1}},
		}})
	a, b := ack.Listeners["a"], ack.Listeners["b"]
	if a == "" || b == "" || strings.HasSuffix(a, ":0") {
		t.Fatalf("listeners %v: want a port taken for each", ack.Listeners)
	}
	if code, _ := get(t, b, "/", mesh.CallerHeader, "a"); code != 200 {
		t.Errorf("a → b (declared): %d", code)
	}
	if code, _ := get(t, a, "/", mesh.CallerHeader, "b"); code != 403 {
		t.Errorf("b → a (not declared, enforce): %d, want 403", code)
	}

	// A canary beside v1, no traffic but its lane.
	apply(t, s, &Snapshot{Version: 2, Authz: Authz{Mode: mesh.AuthzWarn, Policy: map[string][]string{"a": {"b"}, "b": nil}},
		Services: []Service{
			{Name: "a", Addr: a, Subsets: []Subset{{Name: "v1", Endpoints: []string{v1}}, {Name: "v2", Canary: true, Endpoints: []string{v2}}}, Weights: map[string]int{"v1": 100}},
			{Name: "b", Addr: "127.0.0.1:0", Subsets: []Subset{{Name: "c1", Endpoints: []string{c1}}}, Weights: map[string]int{"c1": 1}},
		}})
	if _, body := get(t, a, "/"); body != "v1" {
		t.Errorf("weights 100/0: %q, want v1", body)
	}
	if _, body := get(t, a, "/", mesh.CanaryHeader, "true"); body != "v2" {
		t.Errorf("the canary lane: %q, want v2", body)
	}
	if code, _ := get(t, a, "/", mesh.CallerHeader, "b"); code != 200 {
		t.Errorf("b → a in warn mode: %d, want 200", code)
	}
	if got := s.Current().Service("b").Addr; got != b {
		t.Errorf("b with port 0 again: %s, want it kept at %s", got, b)
	}

	// All to v2, v1 removed, b removed.
	apply(t, s, &Snapshot{Version: 3, Services: []Service{
		{Name: "a", Addr: a, Subsets: []Subset{{Name: "v2", Endpoints: []string{v2}}}, Weights: map[string]int{"v2": 100}},
	}})
	for range 4 {
		if _, body := get(t, a, "/"); body != "v2" {
			t.Errorf("after the shift: %q, want v2", body)
		}
	}
	st := m.Status()
	want := []mesh.ServiceStatus{{Name: "a", Addr: a, Subsets: []mesh.SubsetStatus{{Name: "v2", Canary: false, Weight: 100, Endpoints: []mesh.EndpointStatus{{Addr: v2}}}}}}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("mesh after version 3 (-want +got):\n%s", d)
	}
	if code, _ := get(t, b, "/"); code != 0 {
		t.Errorf("removed service b still answers %d", code)
	}
	// Nothing left, then a gateway in front of a new service.
	apply(t, s, &Snapshot{Version: 4})
	if got := m.Services(); len(got) != 0 {
		t.Errorf("services after an empty snapshot: %v", got)
	}
	ack = apply(t, s, &Snapshot{Version: 5, Services: []Service{
		{Name: "a", Addr: "127.0.0.1:0", Subsets: []Subset{{Name: "v1", Endpoints: []string{v1}}}, Weights: map[string]int{"v1": 1}},
	}, Gateway: &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{{Path: "/a/**", Service: "a", Public: true, Rewrite: "/"}}}})
	if code, body := get(t, ack.Gateway, "/a/x"); code != 200 || body != "v1" {
		t.Errorf("through the gateway: %d %q", code, body)
	}
	gw := ack.Gateway
	apply(t, s, &Snapshot{Version: 6, Services: []Service{
		{Name: "a", Addr: ack.Listeners["a"], Subsets: []Subset{{Name: "v1", Endpoints: []string{v1}}}, Weights: map[string]int{"v1": 1}},
	}, Gateway: &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{{Path: "/b/**", Service: "a", Public: true, Rewrite: "/"}}}})
	if code, _ := get(t, gw, "/a/x"); code != 404 {
		t.Errorf("old gateway route after a replace: %d, want 404", code)
	}
	if code, body := get(t, gw, "/b/x"); code != 200 || body != "v1" {
		t.Errorf("new gateway route on the same address: %d %q", code, body)
	}
	apply(t, s, &Snapshot{Version: 7})
	if code, _ := get(t, gw, "/b/x"); code != 0 {
		t.Errorf("removed gateway still answers %d", code)
	}
}

func TestSnapshotPersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s, _ := newServer(t, dir)
	v1 := upstream(t, "v1")
	in := &Snapshot{Version: 7, Authz: Authz{Mode: mesh.AuthzEnforce, Unknown: mesh.UnknownDeny, Policy: map[string][]string{"a": {"a"}}},
		Services: []Service{{Name: "a", Addr: "127.0.0.1:0", Subsets: []Subset{{Name: "v1", Canary: true, Endpoints: []string{v1}}}, Weights: map[string]int{"v1": 5}}},
		Gateway:  &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{{Path: "/a/**", Service: "a", Public: true, Methods: []string{"GET"}}}}}
	apply(t, s, in)
	want := s.Current()
	if want.Service("a").Addr == "127.0.0.1:0" || want.Gateway.Listen == "127.0.0.1:0" {
		t.Fatalf("the saved snapshot keeps port 0: %+v", want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10e9)
	defer cancel()
	_ = s.Close(ctx)
	_ = s.cfg.Mesh.Close(ctx)
	if entries, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(entries) > 0 {
		t.Errorf("temporary files left: %v", entries)
	}

	s2, _ := newServer(t, dir)
	if err := s2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, s2.Current()); d != "" {
		t.Errorf("after a restart (-before +after):\n%s", d)
	}
	if code, body := get(t, want.Service("a").Addr, "/", mesh.CallerHeader, "a"); code != 200 || body != "v1" {
		t.Errorf("restarted, a serves %d %q", code, body)
	}
	if code, body := get(t, want.Gateway.Listen, "/a/x"); code != 200 || body != "v1" {
		t.Errorf("restarted, the gateway serves %d %q", code, body)
	}
	if code, _ := get(t, want.Service("a").Addr, "/"); code != 403 {
		t.Errorf("restarted, an unknown caller gets %d, want 403 (unknown: deny kept)", code)
	}
}

func TestCorruptSnapshotIsReportedNotServed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SnapshotFile), []byte("{\"version\": 3,\n \"services\": [{\"name\": \"a\", \"adr\": \"x\"}]}"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := newServer(t, dir)
	err := s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), SnapshotFile) || !strings.Contains(err.Error(), `unknown field "adr"`) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Start on a corrupt snapshot = %v, want the file, line and field named", err)
	}
	if st := s.Status(); st.Version != 0 || st.LoadError == "" {
		t.Errorf("status = %+v, want version 0 and the load error", st)
	}
	apply(t, s, &Snapshot{Version: 1})
	if st := s.Status(); st.LoadError != "" {
		t.Errorf("load error kept after a push: %q", st.LoadError)
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "empty"},
		{`{"version": 1}{}`, "more than one JSON value"},
		{`{"version": 1, "services": [{"name": "a", "addr": "127.0.0.1:0", "weights": {"v": "x"}}]}`, "line 1"},
		{"{\"version\": 1,\n\"services\": [{\"name\": \"a b\", \"addr\": \"nowhere\"}]}", `services[0]: name: "a b"`},
		{`{"version": 1, "services": [{"name": "a", "addr": "nowhere"}]}`, `addr "nowhere": want host:port`},
		{`{"version": 1, "authz": {"mode": "strict"}}`, `authz: mode "strict"`},
		{`{"version": 1, "gateway": {"listen": "127.0.0.1:0", "timeout": 5}}`, `want a string like "30s"`},
	} {
		_, err := Decode("push", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "push: ") {
			t.Errorf("Decode(%s) = %v, want an error saying %q", tc.in, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version": 1, "services": [{"name": "a", "addr": "127.0.0.1:0", "subsets": [{"name": "v1", "canary": true, "endpoints": ["127.0.0.1:1"]}], "weights": {"v1": 100}}], "authz": {"mode": "enforce", "policy": {"a": ["b"]}}, "gateway": {"listen": "127.0.0.1:0", "routes": [{"path": "/a/**", "service": "a", "public": true}]}}`))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`{"version": 1, "services": [{"name": "a", "addr": "[::1]:99999"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Errorf("error %q does not name its input", err)
			}
			return
		}
		// What decodes validates, survives a clone and a JSON round trip.
		if err := s.Validate(); err != nil {
			t.Fatalf("decoded but invalid: %v", err)
		}
		c := s.Clone()
		if !sameConfig(s, c) || c.Version != s.Version {
			t.Fatalf("clone differs")
		}
	})
}

// TestRemovedSubsetDrainsFirst: a snapshot that removes a subset is
// acknowledged once the subset's request in flight has its answer; the
// status answers meanwhile.
func TestRemovedSubsetDrainsFirst(t *testing.T) {
	s, m := newServer(t, "")
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "slow")
	}))
	defer slow.Close()
	fast := upstream(t, "fast")
	ack := apply(t, s, &Snapshot{Version: 1, Services: []Service{{Name: "a", Addr: "127.0.0.1:0",
		Subsets: []Subset{{Name: "old", Endpoints: []string{strings.TrimPrefix(slow.URL, "http://")}}, {Name: "new", Endpoints: []string{fast}}},
		Weights: map[string]int{"old": 100}}}})
	addr := ack.Listeners["a"]
	answered := make(chan string, 1)
	go func() {
		_, body := get(t, addr, "/")
		answered <- body
	}()
	<-arrived
	applied := make(chan error, 1)
	go func() {
		_, err := s.Apply(context.Background(), &Snapshot{Version: 2, Services: []Service{{Name: "a", Addr: addr,
			Subsets: []Subset{{Name: "new", Endpoints: []string{fast}}}, Weights: map[string]int{"new": 1}}}})
		applied <- err
	}()
	// While the old subset drains, new requests go to the new one and the
	// status answers (with the version still acknowledged).
	waitFor(t, "the weights moved", func() bool { w, _ := m.Weights(context.Background(), "a"); return w["new"] == 1 })
	if _, body := get(t, addr, "/"); body != "fast" {
		t.Errorf("a new request while the old subset drains got %q, want the new subset's answer", body)
	}
	if st := s.Status(); st.Version != 1 {
		t.Errorf("status while draining: version %d, want 1 (2 is not acknowledged yet)", st.Version)
	}
	select {
	case err := <-applied:
		t.Fatalf("Apply returned (%v) before the request in flight was answered", err)
	default:
	}
	close(release)
	if body := <-answered; body != "slow" {
		t.Errorf("the request in flight got %q, want its answer", body)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if s.Acked() != 2 {
		t.Errorf("acknowledged %d after the drain, want 2", s.Acked())
	}
}

package controlplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// A control plane that stops in the middle of a canary leaves the traffic
// split as it was; the next one routes both versions again and resumes
// the canary where it was (here held for lack of traffic), and a manual
// promotion then finishes it: the history says it was resumed, the old
// version is stopped.
func TestLocalCanaryResumedAfterARestart(t *testing.T) {
	ctx := context.Background()
	write, open := localCanaryFixture(t, heldPolicy)
	l, ms := open(write("REV: '1'"))
	rep, err := l.Orchestrator.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1 := rep.Outcomes[0].Version

	// v2's canary: no traffic, so held at its first step; the control
	// plane stops under it.
	write("REV: '2'")
	dctx, stopDeploy := context.WithCancel(ctx)
	done := make(chan error, 1)
	var v2 string
	go func() {
		rep, err := l.Orchestrator.Deploy(dctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
		if rep != nil && len(rep.Outcomes) == 1 {
			v2 = rep.Outcomes[0].Version
		}
		done <- err
	}()
	waitUntil(t, "the canary held", func() bool {
		st, ok := l.Canary.Analysis().Status("delta-service")
		return ok && st.Phase == canary.PhaseHeld
	})
	stopDeploy()
	if err := <-done; !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("the release stopped under its canary = %v; want it failed as interrupted", err)
	}
	w, _ := l.Router.Weights(ctx, "delta-service")
	if w[v1] != 50 || w[v2] != 50 {
		t.Fatalf("weights after the stop %v; want the split left as it was", w)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	_ = ms.Close(ctx)

	l, ms = open(write("REV: '2'"))
	defer func() { _ = ms.Close(ctx) }()
	defer func() { _ = l.Shutdown(ctx) }()
	waitUntil(t, "the canary resumed and held again", func() bool {
		st, ok := l.Canary.Analysis().Status("delta-service")
		if !ok || st.Version != v2 || st.Phase != canary.PhaseHeld {
			return false
		}
		for _, d := range st.Decisions {
			if d.Action == canary.ActionResume {
				return true
			}
		}
		return false
	})
	w, _ = l.Router.Weights(ctx, "delta-service")
	if w[v1] != 50 || w[v2] != 50 {
		t.Errorf("weights after the restart %v; want the split routed again", w)
	}
	// The resumed analysis takes overrides once its loop runs again.
	waitUntil(t, "the promotion accepted", func() bool {
		err := l.Canary.Analysis().Promote("delta-service", "by hand")
		if err != nil && !errors.Is(err, canary.ErrNotRunning) {
			t.Fatal(err)
		}
		return err == nil
	})
	waitUntil(t, "the old version stopped after the promotion", func() bool {
		insts, _ := l.Target.Status(ctx, "delta-service")
		return len(insts) == 1 && insts[0].Version == v2
	})
	hist, err := l.Store.List(ctx, "delta-service", 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := hist[0]; h.Version != v2 || h.Result != deploy.Succeeded || !strings.Contains(h.Reason, "resumed after a control-plane restart") {
		t.Errorf("the history's last record %+v; want %s deployed by the resumed canary", h, v2)
	}
}

// heldPolicy holds a canary without traffic at its first step.
const heldPolicy = "    canary: {steps: [50, 100], interval: 1s, threshold: 2, min_requests: 5, inconclusive_limit: 0, bake: 0s}\n"

// localCanaryFixture is a local control plane's makings on a copy of the
// deploy tests' shop whose delta-service has a quick canary policy:
// write sets delta's deploy env and loads the manifest, open opens a
// control plane on it (the same data directory every time).
func localCanaryFixture(t *testing.T, policy string) (write func(env string) *graph.Graph, open func(*graph.Graph) (*controlplane.Local, *mesh.Mesh)) {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../deploy/testdata/shop")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, graph.FileName)
	_ = os.Chmod(file, 0o644)
	write = func(env string) *graph.Graph {
		t.Helper()
		src, err := os.ReadFile(filepath.Join("../deploy/testdata/shop", graph.FileName))
		if err != nil {
			t.Fatal(err)
		}
		m := strings.Replace(string(src), "  delta-service:\n    paths: [delta]\n    health: /ready\n    deploy: {package: ./cmd/svc}\n",
			"  delta-service:\n    paths: [delta]\n    health: /ready\n    deploy: {package: ./cmd/svc, env: {"+env+"}}\n"+policy, 1)
		if err := os.WriteFile(file, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
		mf, _, err := graph.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		return graph.New(mf)
	}
	data := filepath.Join(root, ".flotilla")
	open = func(g *graph.Graph) (*controlplane.Local, *mesh.Mesh) {
		ms, err := mesh.New(mesh.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		l, err := controlplane.OpenLocal(ctx, controlplane.LocalConfig{Graph: g, Data: data, Mesh: ms, Logger: quiet,
			Target: local.Config{ProbeInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		return l, ms
	}
	return write, open
}

// A control plane shut down while a release waits on a held canary does
// not wait for it: the canary is interrupted (its state kept), the
// release ends as interrupted, and the services stop.
func TestLocalShutdownInterruptsACanary(t *testing.T) {
	ctx := context.Background()
	write, open := localCanaryFixture(t, heldPolicy)
	l, ms := open(write("REV: '1'"))
	defer func() { _ = ms.Close(ctx) }()
	srv := httptest.NewServer(l.API.Handler())
	defer srv.Close()
	c := controlplane.NewClient(srv.URL)
	if _, err := c.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	write("REV: '2'")
	done := make(chan error, 1)
	go func() {
		_, err := c.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
		done <- err
	}()
	waitUntil(t, "the canary held", func() bool {
		st, ok := l.Canary.Analysis().Status("delta-service")
		return ok && st.Phase == canary.PhaseHeld
	})
	stopped := make(chan error, 1)
	go func() { stopped <- l.Shutdown(ctx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Shutdown waited on the held canary for 2 minutes")
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("the release under the canary = %v; want it ended as interrupted", err)
	}
	cs, err := c.Canaries(ctx, "delta-service")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Phase != canary.PhaseHeld {
		t.Errorf("the canary's state after the shutdown %+v; want it kept as it was (held), for the next control plane", cs)
	}
}

// FuzzCanaryRoutes sends arbitrary services and bodies to the canary
// routes' real handlers. Whatever they are, nothing panics, the answer is
// a JSON {"error"} with 400 (an unknown service, a body that is not one
// CanaryOverride), 404 (no canary yet) or 422 (none in progress: none
// runs here), and no canary state appears.
func FuzzCanaryRoutes(f *testing.F) {
	for _, seed := range []struct{ service, body string }{
		{"delta-service", `{"who":"ada","reason":"checked"}`},
		{"delta-service", `{}`},
		{"zulu-service", `{"who":"ada"}`},
		{"delta-service", `{"who":1}`},
		{"delta-service", `{"reason":"x"} {}`},
		{"alpha-service", `{"unknown":true}`},
		{"", ``},
	} {
		f.Add(seed.service, seed.body)
	}
	a := newFuzzAPI(f)
	ms, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = ms.Close(context.Background()) })
	dir := f.TempDir()
	c, err := controlplane.NewCanary(controlplane.CanaryConfig{Metrics: ms, Graph: a.orch.Graph, Router: &local.MeshRouter{Mesh: ms}, Dir: dir, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })
	h := a.api.WithCanary(c).Handler()
	f.Fuzz(func(t *testing.T, service, body string) {
		for _, path := range []string{"/api/canaries/" + url.PathEscape(service) + "/promote", "/api/canaries/" + url.PathEscape(service) + "/abort", "/api/canaries?service=" + url.QueryEscape(service)} {
			method := http.MethodPost
			if strings.HasPrefix(path, "/api/canaries?") {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, "http://flotilla"+path, strings.NewReader(body))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var e struct {
				Error string `json:"error"`
			}
			switch w.Code {
			case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
				continue // the router cleans the path ("//"): no handler ran
			case http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusMethodNotAllowed:
			case http.StatusOK:
				if method == http.MethodGet && service == "" {
					continue // the list of every canary: none
				}
				t.Fatalf("%s %s %q = 200 with no canary running: %s", method, path, body, w.Body)
			default:
				t.Fatalf("%s %s %q = %d: %s", method, path, body, w.Code, w.Body)
			}
			routed := w.Code != http.StatusMethodNotAllowed && w.Body.String() != "404 page not found\n"
			if routed && (json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "") {
				t.Fatalf("%s %s %q = %d without a JSON error: %s", method, path, body, w.Code, w.Body)
			}
		}
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			t.Fatalf("canary states appeared: %v", ents)
		}
	})
}

// Every policy of the shop's manifest maps onto one the analysis accepts,
// field for field.
func TestPolicyOfTheShopsManifest(t *testing.T) {
	m, _, err := graph.Load("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Services {
		p := controlplane.PolicyOf(s.Policy)
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if string(p.Strategy) != string(s.Policy.Strategy) || p.Interval != s.Policy.Interval.D() || p.Bake != s.Policy.Bake.D() ||
			p.Threshold != s.Policy.Threshold || p.MinRequests != int64(s.Policy.MinRequests) || p.MaxErrorRate != s.Policy.MaxErrorRate ||
			p.MaxP99 != s.Policy.MaxP99.D() || p.LaneFirst != s.Policy.LaneFirst || p.Compare.Baseline != (s.Policy.Compare == graph.CompareBaseline) ||
			len(p.Steps) != len(s.Policy.Steps) || p.InconclusiveLimit != s.Policy.InconclusiveLimit {
			t.Errorf("%s: %+v from %+v", s.Name, p, s.Policy)
		}
	}
	if p := controlplane.PolicyOf(m.Service("payment-service").Policy); p.Strategy != canary.StrategyCanary || len(p.Steps) != 4 || p.Steps[0] != 5 {
		t.Errorf("payment-service's policy %+v; want the scenario's canary from 5%%", p)
	}
}

// A bake interrupted by a stop is resumed by the next control plane, the
// old version still on standby; once it passes, the old version goes. The
// history has the version's one deployment: a bake resumed is no new one.
func TestLocalBakeResumedAfterARestart(t *testing.T) {
	ctx := context.Background()
	write, open := localCanaryFixture(t, "    canary: {interval: 1s, bake: 10m}\n")
	l, ms := open(write("REV: '1'"))
	rep, err := l.Orchestrator.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1 := rep.Outcomes[0].Version
	write("REV: '2'")
	rep, err = l.Orchestrator.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2 := rep.Outcomes[0].Version
	if st, _ := l.Canary.Analysis().Status("delta-service"); st.Phase != canary.PhaseBaking {
		t.Fatalf("after the release the canary is %s, want baking", st.Phase)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	_ = ms.Close(ctx)

	l, ms = open(write("REV: '2'"))
	defer func() { _ = ms.Close(ctx) }()
	defer func() { _ = l.Shutdown(ctx) }()
	if insts, _ := l.Target.Status(ctx, "delta-service"); len(insts) != 2 {
		t.Fatalf("after the restart delta runs %+v, want %s serving and %s on standby", insts, v2, v1)
	}
	waitUntil(t, "the bake resumed and its end taken by hand", func() bool {
		err := l.Canary.Analysis().Promote("delta-service", "by hand")
		if err != nil && !errors.Is(err, canary.ErrNotRunning) {
			t.Fatal(err)
		}
		return err == nil
	})
	waitUntil(t, "the old version stopped after the bake", func() bool {
		insts, _ := l.Target.Status(ctx, "delta-service")
		return len(insts) == 1 && insts[0].Version == v2
	})
	hist, err := l.Store.List(ctx, "delta-service", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Version != v2 || hist[0].Result != deploy.Succeeded {
		t.Errorf("history %+v; want %s's one deployment after %s's", hist, v2, v1)
	}
	st, _ := l.Canary.Analysis().Status("delta-service")
	resumed := false
	for _, d := range st.Decisions {
		resumed = resumed || d.Action == canary.ActionResume
	}
	if st.Phase != canary.PhaseSucceeded || !resumed {
		t.Errorf("canary %s with decisions %+v; want succeeded after a resumed bake", st.Phase, st.Decisions)
	}
}

// With no traffic at all, a canary with synthetic_load is judged on the
// requests driven through its header lane, and promoted.
func TestLocalSyntheticLoadJudgesACanaryWithoutTraffic(t *testing.T) {
	ctx := context.Background()
	write, open := localCanaryFixture(t, "    canary: {steps: [50, 100], interval: 1s, threshold: 2, min_requests: 5, synthetic_load: {rate: 20}, inconclusive_limit: 0, bake: 0s}\n")
	l, ms := open(write("REV: '1'"))
	defer func() { _ = ms.Close(ctx) }()
	defer func() { _ = l.Shutdown(ctx) }()
	if _, err := l.Orchestrator.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	write("REV: '2'")
	dctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // a held canary would wait for ever
	defer cancel()
	rep, err := l.Orchestrator.Deploy(dctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
	if err != nil {
		t.Fatalf("the canary with synthetic load: %v", err)
	}
	st, _ := l.Canary.Analysis().Status("delta-service")
	judged := 0
	for _, d := range st.Decisions {
		if d.Verdict == canary.Pass {
			judged++
		}
	}
	if st.Phase != canary.PhaseSucceeded || st.Version != rep.Outcomes[0].Version || judged < 2 {
		t.Errorf("canary %s, %d passing interval(s): %+v; want promoted after every step passed", st.Phase, judged, st.Decisions)
	}
}

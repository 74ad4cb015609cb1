package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// bakingShifter switches at once, then "bakes": the test ends the bake
// (endBake). With interrupt it stops half way as a control plane's
// shutdown stops a canary; it resumes such a shift to 100%.
type bakingShifter struct {
	interrupt, noBake bool

	mu        sync.Mutex
	done      map[string]func(context.Context, error)
	left      []deploy.Interrupted
	resumed   []string
	abandoned []string
	lastShift deploy.ShiftRequest
}

func (s *bakingShifter) Describe(_, version string) string {
	return "100% to " + version + ", then a bake"
}

func (s *bakingShifter) Shift(ctx context.Context, req deploy.ShiftRequest) error {
	s.mu.Lock()
	s.lastShift = req
	s.mu.Unlock()
	if req.Progress != nil {
		req.Progress("progressing 0% pass advance: lane passed")
	}
	if s.interrupt {
		w := map[string]int{req.Version: 50}
		for _, o := range req.Old {
			w[o] = 50
		}
		if err := req.Router.SetWeights(ctx, req.Service, w); err != nil {
			return err
		}
		s.mu.Lock()
		s.left = append(s.left, deploy.Interrupted{Service: req.Service, Version: req.Version, Weights: w})
		s.mu.Unlock()
		return fmt.Errorf("canary %s@%s: %w", req.Service, req.Version, deploy.ErrInterrupted)
	}
	return req.Router.SetWeights(ctx, req.Service, map[string]int{req.Version: 100})
}

func (s *bakingShifter) Baking(service, version string, done func(context.Context, error)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = map[string]func(context.Context, error){}
	}
	s.done[service+"@"+version] = done
	return !s.noBake
}

// endBake ends a bake: on failure after putting the old weights back.
func (s *bakingShifter) endBake(t *testing.T, r deploy.Router, service, version string, restore map[string]int, err error) {
	t.Helper()
	s.mu.Lock()
	done := s.done[service+"@"+version]
	s.mu.Unlock()
	if done == nil {
		t.Fatalf("no bake of %s@%s was handed over", service, version)
	}
	if restore != nil {
		if err := r.SetWeights(context.Background(), service, restore); err != nil {
			t.Fatal(err)
		}
	}
	done(context.Background(), err)
}

func (s *bakingShifter) Interrupted(context.Context) ([]deploy.Interrupted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]deploy.Interrupted(nil), s.left...), nil
}

func (s *bakingShifter) Resume(ctx context.Context, req deploy.ShiftRequest) error {
	s.mu.Lock()
	s.resumed = append(s.resumed, req.Service+"@"+req.Version)
	s.mu.Unlock()
	return req.Router.SetWeights(ctx, req.Service, map[string]int{req.Version: 100})
}

func (s *bakingShifter) Abandon(_ context.Context, service, version, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandoned = append(s.abandoned, service+"@"+version+": "+reason)
}

// runningVersions are the versions of a service the target runs.
func runningVersions(t *testing.T, tg deploy.Target, service string) []string {
	t.Helper()
	insts, err := tg.Status(context.Background(), service)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, in := range insts {
		if !seen[in.Version] {
			seen[in.Version] = true
			out = append(out, in.Version)
		}
	}
	return out
}

// waitFor polls cond (bounded) and fails the test with what when it
// never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shifterOrch(t *testing.T, f *fixture, rev string, s deploy.Shifter) *deploy.Orchestrator {
	t.Helper()
	f.load(map[string]cfg{"delta-service": {env: "REV: '" + rev + "'"}})
	mf, _, err := graph.Load(filepath.Join(f.root, graph.FileName))
	if err != nil {
		t.Fatal(err)
	}
	o, err := deploy.New(deploy.Config{Graph: graph.New(mf), Target: f.target, Router: f.router, Store: f.store, Shifter: s, Logger: quiet, DrainTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o
}

// A bake does not hold the release: the version is reported deployed at
// once, the old one stays on standby until the bake passes; a failed bake
// removes the new version and the history says why.
func TestBakeKeepsTheOldVersionOnStandby(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	if _, err := f.deploy(deploy.Request{Services: []string{"delta-service"}}); err != nil {
		t.Fatal(err)
	}
	v1 := f.serving("delta-service")
	s := &bakingShifter{}
	o := shifterOrch(t, f, "2", s)
	var analysis []string
	rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, func(e deploy.Event) {
		if e.Step == deploy.StepAnalysis {
			analysis = append(analysis, e.Msg)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	v2 := versions(rep)["delta-service"]
	if outcome(rep, "delta-service").Result != deploy.Succeeded || f.serving("delta-service") != v2 {
		t.Fatalf("the release: %+v; want %s deployed and serving", rep.Outcomes, v2)
	}
	if len(analysis) != 2 || !strings.Contains(analysis[0], "lane passed") || !strings.Contains(analysis[1], "baking in the background; "+v1+" on standby") {
		t.Errorf("analysis events %q; want the shifter's progress, then the bake", analysis)
	}
	if d := cmp.Diff([]string{v1, v2}, runningVersions(t, f.target, "delta-service")); d != "" && cmp.Diff([]string{v2, v1}, runningVersions(t, f.target, "delta-service")) != "" {
		t.Errorf("during the bake the target runs (-want +got):\n%s", d)
	}
	s.endBake(t, f.router, "delta-service", v2, nil, nil)
	waitFor(t, "the old version stopped after the bake passed", func() bool { return len(runningVersions(t, f.target, "delta-service")) == 1 })
	if got := runningVersions(t, f.target, "delta-service"); got[0] != v2 {
		t.Fatalf("after the bake the target runs %v, want %s", got, v2)
	}

	// The next version's bake fails: it goes, v2 serves again.
	o = shifterOrch(t, f, "3", s)
	rep, err = o.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v3 := versions(rep)["delta-service"]
	s.endBake(t, f.router, "delta-service", v3, map[string]int{v2: 100}, errors.New("canary delta rolled back during the bake: error rate 31.0% > 1.0%"))
	waitFor(t, "the baked version removed", func() bool { return len(runningVersions(t, f.target, "delta-service")) == 1 })
	if got := f.serving("delta-service"); got != v2 {
		t.Errorf("delta serves %s after the failed bake, want %s", got, v2)
	}
	hist, err := f.store.List(ctx, "delta-service", 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := hist[0]; h.Action != deploy.RecordRollback || h.Version != v2 || h.Previous != v3 || h.Result != deploy.Succeeded || !strings.Contains(h.Reason, "error rate 31.0% > 1.0%") || h.Spec.Version != v2 {
		t.Errorf("the history's last record %+v; want the bake's rollback %s → %s with its reason", h, v3, v2)
	}
}

// A shift interrupted by a stopping control plane leaves the traffic
// split and the new version running; the next control plane routes them
// as they were and resumes it.
func TestInterruptedShiftIsResumedAfterARestart(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	if _, err := f.deploy(deploy.Request{Services: []string{"delta-service"}}); err != nil {
		t.Fatal(err)
	}
	v1 := f.serving("delta-service")
	s := &bakingShifter{interrupt: true}
	o := shifterOrch(t, f, "2", s)
	rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, nil)
	if !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Fatalf("Deploy = %v, want the interrupted release failed", err)
	}
	v2 := versions(rep)["delta-service"]
	w, _ := f.router.Weights(ctx, "delta-service")
	if d := cmp.Diff(map[string]int{v1: 50, v2: 50}, w); d != "" {
		t.Errorf("weights after the interruption (-want +got):\n%s", d)
	}

	// The control plane goes away and comes back.
	if err := f.target.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.mesh.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f.openTarget()
	m, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.mesh, f.router = m, &local.MeshRouter{Mesh: m}
	left, _ := s.Interrupted(ctx)
	s = &bakingShifter{noBake: true, left: left}
	o = shifterOrch(t, f, "2", s)
	if err := o.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resumed shift finished and the old version stopped", func() bool {
		vs := runningVersions(t, f.target, "delta-service")
		return len(vs) == 1 && vs[0] == v2
	})
	if got := f.serving("delta-service"); got != v2 {
		t.Errorf("delta serves %s after the resumed shift, want %s", got, v2)
	}
	s.mu.Lock()
	resumed := s.resumed
	s.mu.Unlock()
	if d := cmp.Diff([]string{"delta-service@" + v2}, resumed); d != "" {
		t.Errorf("resumed (-want +got):\n%s", d)
	}
	hist, err := f.store.List(ctx, "delta-service", 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := hist[0]; h.Action != deploy.RecordDeploy || h.Version != v2 || h.Result != deploy.Succeeded || !strings.Contains(h.Reason, "resumed after a control-plane restart") {
		t.Errorf("the history's last record %+v; want %s deployed by the resumed shift", h, v2)
	}
}

// An interrupted shift whose new version no longer runs after the restart
// is not resumed: the old version gets the traffic back, the Shifter is
// told, and the history records the rollback.
func TestInterruptedShiftWhoseVersionIsGoneIsRolledBack(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	if _, err := f.deploy(deploy.Request{Services: []string{"delta-service"}}); err != nil {
		t.Fatal(err)
	}
	v1 := f.serving("delta-service")
	s := &bakingShifter{interrupt: true}
	o := shifterOrch(t, f, "2", s)
	rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, nil)
	if !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Fatalf("Deploy = %v, want the interrupted release failed", err)
	}
	v2 := versions(rep)["delta-service"]
	if err := f.target.Remove(ctx, "delta-service", v2); err != nil {
		t.Fatal(err)
	}
	if err := f.target.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.mesh.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f.openTarget()
	m, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.mesh, f.router = m, &local.MeshRouter{Mesh: m}
	left, _ := s.Interrupted(ctx)
	s = &bakingShifter{left: left}
	o = shifterOrch(t, f, "2", s)
	if err := o.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.serving("delta-service"); got != v1 {
		t.Errorf("delta serves %s after the restart, want %s back", got, v1)
	}
	if len(s.resumed) != 0 || len(s.abandoned) != 1 || !strings.Contains(s.abandoned[0], v2+" no longer runs") && !strings.Contains(s.abandoned[0], "which no longer runs") {
		t.Errorf("resumed %q, abandoned %q; want the shift abandoned with the reason", s.resumed, s.abandoned)
	}
	hist, err := f.store.List(ctx, "delta-service", 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := hist[0]; h.Action != deploy.RecordRollback || h.Version != v1 || h.Previous != v2 || !strings.Contains(h.Reason, "the control plane restarted during the shift") {
		t.Errorf("the history's last record %+v; want the rollback to %s with why", h, v1)
	}
}

// A bake that ends after the service was rolled back by hand leaves what
// serves alone.
func TestBakeEndedAfterARollbackTouchesNothing(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	if _, err := f.deploy(deploy.Request{Services: []string{"delta-service"}}); err != nil {
		t.Fatal(err)
	}
	v1 := f.serving("delta-service")
	s := &bakingShifter{}
	o := shifterOrch(t, f, "2", s)
	rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2 := versions(rep)["delta-service"]
	if _, err := o.Rollback(ctx, deploy.RollbackRequest{Service: "delta-service", Who: "tester"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.serving("delta-service"); got != v1 {
		t.Fatalf("delta serves %s after the rollback, want %s", got, v1)
	}
	s.endBake(t, f.router, "delta-service", v2, nil, nil)
	if got := f.serving("delta-service"); got != v1 {
		t.Errorf("delta serves %s after the stale bake ended, want %s", got, v1)
	}
	if got := runningVersions(t, f.target, "delta-service"); len(got) != 1 || got[0] != v1 {
		t.Errorf("the target runs %v after the stale bake ended, want %s alone", got, v1)
	}
}

package deploy_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
)

// keepRecorder is the local target with its prune replaced by a record
// of what it was asked to keep.
type keepRecorder struct {
	*local.Target
	keep map[string][]deploy.Spec
}

func (k *keepRecorder) Prune(_ context.Context, keep map[string][]deploy.Spec) (deploy.Pruned, error) {
	k.keep = keep
	return deploy.Pruned{Artifacts: []string{"x"}, Bytes: 1}, nil
}

// GC keeps, per service, the serving and canary versions, the previous
// one (what the last record replaced, what a rollback goes back to), and
// the newest KeepVersions others that succeeded; it is refused while a
// release runs.
func TestGCKeepsWhatRollbackNeeds(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	m, _, err := graph.Load(filepath.Join(f.root, graph.FileName))
	if err != nil {
		t.Fatal(err)
	}
	tg := &keepRecorder{Target: f.target}
	o, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: tg, Router: f.router, Store: f.store, Logger: quiet, KeepVersions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	add := func(version, previous, action string, result deploy.Result) {
		t.Helper()
		id, err := f.store.StartRelease(ctx, "tester", []string{"alpha-service"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		spec := deploy.Spec{Service: "alpha-service", Version: version, Build: deploy.Build{Package: "./cmd/svc", Digest: "d-" + version}}
		if _, err := f.store.Add(ctx, deploy.Record{Release: id, Service: "alpha-service", Version: version, Previous: previous,
			Action: action, Result: result, Who: "tester", Started: time.Now(), Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	prev := ""
	for _, v := range []string{"v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"} {
		add(v, prev, deploy.RecordDeploy, deploy.Succeeded)
		prev = v
	}
	add("v9", "v8", deploy.RecordDeploy, deploy.Failed)
	add("v3", "v8", deploy.RecordRollback, deploy.Succeeded)
	// v3 serves; v6 is a canary at 0%.
	if _, err := f.router.Declare(ctx, "alpha-service"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v3", "v6"} {
		if err := f.router.SetSubset(ctx, "alpha-service", deploy.Subset{Name: v, Endpoints: []string{"127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.router.SetWeights(ctx, "alpha-service", map[string]int{"v3": 100, "v6": 0}); err != nil {
		t.Fatal(err)
	}
	p, err := o.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, s := range tg.keep["alpha-service"] {
		kept = append(kept, s.Version)
		if s.Build.Digest != "d-"+s.Version {
			t.Errorf("kept %s with digest %q: want the recorded spec", s.Version, s.Build.Digest)
		}
	}
	// v3 serves, v6 is the canary, v8 is previous (and rollback's
	// default), v7 the newest other one; v9 failed.
	if want := []string{"v3", "v6", "v7", "v8"}; !slices.Equal(kept, want) {
		t.Errorf("GC kept %v of alpha-service, want %v", kept, want)
	}
	if len(p.Artifacts) != 1 || p.Kept != len(kept) {
		t.Errorf("GC = %+v, want the target's prune with %d kept", p, len(kept))
	}

	// While a release runs, GC is refused.
	tg.keep = nil
	blocked := make(chan struct{})
	release := make(chan struct{})
	gate := deploy.GateFunc{GateName: "hold", Fn: func(ctx context.Context, _ deploy.GateRequest) (deploy.GateResult, error) {
		close(blocked)
		<-release
		return deploy.GateResult{Pass: false, Reason: "held"}, nil
	}}
	o2, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: tg, Router: f.router, Store: f.store, Logger: quiet, Gates: []deploy.Gate{gate}, KeepVersions: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := o2.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, nil)
		done <- err
	}()
	<-blocked
	_, err = o2.GC(ctx)
	close(release)
	if !errors.Is(err, deploy.ErrBusy) {
		t.Errorf("GC during a release = %v, want ErrBusy", err)
	}
	if err := <-done; !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Errorf("the held release = %v, want it failed at its closed gate", err)
	}
	if tg.keep != nil {
		t.Errorf("KeepVersions -1: a release pruned (keep %v)", tg.keep)
	}
}

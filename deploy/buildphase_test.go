package deploy_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
)

// progressTarget is the local target reporting a batch build's progress
// as a go command would, with every artifact to be built.
type progressTarget struct {
	*local.Target
}

func (p progressTarget) Built(deploy.Spec) bool { return false }

func (p progressTarget) BuildManyProgress(ctx context.Context, specs []deploy.Spec, progress func(deploy.BuildProgress)) []error {
	for i, pkg := range []string{"example.com/kit", "example.com/cmd/svc", "example.com/cmd/other"} {
		progress(deploy.BuildProgress{Compiled: i + 1, Package: pkg})
	}
	progress(deploy.BuildProgress{Compiled: 3, Package: "example.com/cmd/other", Packages: 40})
	return p.Target.BuildManyProgress(ctx, specs, nil)
}

// A release builds first, as a phase of its own with its progress, and
// its waves start once it is over: no service's deploy (and so no wave's
// time) includes the build.
func TestReleaseBuildPhase(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	m, _, err := graph.Load(filepath.Join(f.root, graph.FileName))
	if err != nil {
		t.Fatal(err)
	}
	o, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: progressTarget{f.target}, Router: f.router, Store: f.store,
		Env: func(service string) map[string]string {
			return map[string]string{"DATABASE_URL": "test-" + service + ".db"}
		},
		Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := o.Deploy(context.Background(), deploy.Request{All: true, Who: "tester"}, f.record)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Build <= 0 || rep.Build > rep.Duration {
		t.Errorf("report: build %v of %v, want the build phase's time within the release's", rep.Build, rep.Duration)
	}
	f.evMu.Lock()
	defer f.evMu.Unlock()
	var phase []string
	firstWave := -1
	for i, e := range f.events {
		switch {
		case e.Service == "" && e.Step == deploy.StepBuild:
			if firstWave >= 0 {
				t.Errorf("build event %q after wave %d began", e.Msg, f.events[firstWave].Wave)
			}
			phase = append(phase, e.Msg)
		case e.Wave > 0 && firstWave < 0:
			firstWave = i
		}
	}
	// Progress comes in steps of a twentieth of the packages (or 25
	// while their number is unknown), not one line per package.
	want := []string{"4 artifact(s) to build", "compiled 1 package(s) (example.com/kit)",
		"compiled 3 of 40 package(s) (example.com/cmd/other)", "4 artifact(s) ready in"}
	if len(phase) != len(want) {
		t.Fatalf("build phase events %q, want %q", phase, want)
	}
	for i := range want {
		if !strings.HasPrefix(phase[i], want[i]) {
			t.Errorf("build phase event %d = %q, want %q…", i, phase[i], want[i])
		}
	}
	if last := phase[len(phase)-1]; !strings.Contains(last, "3 of 40 package(s) compiled, the rest from the build cache") {
		t.Errorf("build phase summary %q does not say how many packages were compiled", last)
	}
}

package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
)

// Prune removes the artifacts and logs of the versions not kept, and
// keeps an artifact a kept version shares (a config-only change) and what
// a build is writing.
func TestPrune(t *testing.T) {
	dir, arts := t.TempDir(), t.TempDir()
	tg := newTarget(t, dir, func(c *Config) { c.ArtifactDir = arts })
	write := func(path string, size int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(version, digest string) deploy.Spec {
		return deploy.Spec{Service: "svc", Version: version, Build: deploy.Build{Package: "./cmd/svc", Digest: digest}}
	}
	for _, d := range []string{"d1", "d2", "d3"} {
		write(filepath.Join(arts, "svc", d, "svc"), 1000)
	}
	write(filepath.Join(arts, "svc", "d4", "svc.tmp123"), 10) // a build writing
	write(filepath.Join(arts, ".batch-1", "svc"), 10)
	for _, f := range []string{"v1.log", "v1.log.1", "v2.log", "v3.log", "v3-abc123.log"} {
		write(filepath.Join(dir, "logs", "svc", f), 100)
	}
	write(filepath.Join(dir, "run", "svc", "v1", "data"), 5)
	// v3 and v3-abc123 (a config change of it) share d3; v1 is not kept.
	got, err := tg.Prune(context.Background(), map[string][]deploy.Spec{"svc": {spec("v2", "d2"), spec("v3-abc123", "d3")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"svc@d1"}; !slices.Equal(got.Artifacts, want) {
		t.Errorf("artifacts pruned %v, want %v", got.Artifacts, want)
	}
	if want := []string{"svc@v1", "svc@v3"}; !slices.Equal(got.Logs, want) {
		t.Errorf("logs pruned %v, want %v", got.Logs, want)
	}
	if got.Bytes != 1000+3*100+5 {
		t.Errorf("freed %d bytes, want %d", got.Bytes, 1000+3*100+5)
	}
	for _, p := range []string{"svc/d2/svc", "svc/d3/svc", "svc/d4/svc.tmp123", ".batch-1/svc"} {
		if _, err := os.Stat(filepath.Join(arts, p)); err != nil {
			t.Errorf("%s pruned: %v", p, err)
		}
	}
	for _, p := range []string{"logs/svc/v2.log", "logs/svc/v3-abc123.log"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s pruned: %v", p, err)
		}
	}
	for _, p := range []string{"logs/svc/v1.log", "logs/svc/v1.log.1", "run/svc/v1"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s kept (%v), want it pruned", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(arts, "svc", "d1")); !os.IsNotExist(err) {
		t.Errorf("the pruned artifact's folder stays: %v", err)
	}
	// Nothing more to prune.
	again, err := tg.Prune(context.Background(), map[string][]deploy.Spec{"svc": {spec("v2", "d2"), spec("v3-abc123", "d3")}})
	if err != nil || len(again.Artifacts)+len(again.Logs) != 0 || again.Bytes != 0 {
		t.Errorf("second prune = %+v, %v; want nothing", again, err)
	}
}

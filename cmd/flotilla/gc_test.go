package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy/local"
)

// gc prunes an artifact and a log no version in the history needs, keeps
// the serving version's, and says what it freed.
func TestGCCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs services")
	}
	cp := newTestControlPlane(t, nil)
	if code, out, errOut := cp.cli("deploy", "alpha-service"); code != 0 {
		t.Fatalf("deploy: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := cp.cli("gc")
	if code != 0 || out != "nothing to prune: 1 version(s) kept for rollback\n" {
		t.Fatalf("gc after one deploy: exit %d, %q %q", code, out, errOut)
	}
	dir := local.DirIn(filepath.Join(filepath.Dir(cp.file), ".flotilla"))
	stale := filepath.Join(dir, "bin", "alpha-service", "0123456789ab", "alpha-service")
	oldLog := filepath.Join(dir, "logs", "alpha-service", "0123456789ab.log")
	for path, size := range map[string]int{stale: 2000, oldLog: 48} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut = cp.cli("gc")
	want := "freed 2.0 KiB: 1 artifact(s), the logs of 1 version(s); 1 version(s) kept for rollback\n" +
		"  artifacts (1): alpha-service@0123456789ab\n  logs (1): alpha-service@0123456789ab\n"
	if code != 0 || out != want {
		t.Fatalf("gc: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	for _, p := range []string{stale, oldLog} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s not pruned (%v)", p, err)
		}
	}
	// The serving version's artifact and log stay.
	arts, _ := filepath.Glob(filepath.Join(dir, "bin", "alpha-service", "*", "alpha-service"))
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "alpha-service", "*.log"))
	if len(arts) != 1 || len(logs) != 1 || strings.Contains(arts[0], "0123456789ab") {
		t.Errorf("after gc: artifacts %v, logs %v; want the serving version's", arts, logs)
	}
}

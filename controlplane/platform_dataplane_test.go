package controlplane_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// TestPlatformDataplaneRestartedAfterKill9: the data plane runs in a
// process of its own; killed with SIGKILL, it is restarted by the
// platform's supervisor and given its configuration again, and the
// gateway serves as before.
func TestPlatformDataplaneRestartedAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user-service")
	}
	manifest, err := filepath.Abs("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.Services = []string{"user-service"}
	cfg.Demo = false
	info, stop := runPlatform(t, cfg)
	ready := func() int {
		resp, err := http.Get(info.Gateway + "/api/user/ready")
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if st := ready(); st != http.StatusOK {
		t.Fatalf("GET /api/user/ready through the gateway: %d", st)
	}
	dir := filepath.Join(data, "dataplane")
	before, err := supervise.ReadState(dir, "dataplane")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	failed := 0
	deadline := killed.Add(time.Minute)
	for {
		if st := ready(); st == http.StatusOK {
			break
		}
		failed++
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not serve again within a minute of the data plane's kill -9")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("serving again %v after the kill -9 (%d failed probes in between)", time.Since(killed), failed)
	after, err := supervise.ReadState(dir, "dataplane")
	if err != nil || after.PID == before.PID {
		t.Errorf("data plane state after the restart: %+v, %v; want a new pid", after, err)
	}
	// The API's metrics come from the new data plane.
	st, _, body := call(t, "GET", info.API+"/metrics", "", nil)
	if st != http.StatusOK || !strings.Contains(body, `flotilla_mesh_subset_weight{destination="user-service"`) {
		t.Errorf("GET /metrics after the restart: %d\n%s", st, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := supervise.ReadState(dir, "dataplane"); err == nil {
		t.Errorf("the data plane's state file is left after the platform stopped")
	}
	if syscall.Kill(after.PID, 0) == nil {
		t.Errorf("the data plane (pid %d) runs on after the platform stopped", after.PID)
	}
}

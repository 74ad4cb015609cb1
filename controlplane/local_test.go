package controlplane_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// A control plane that goes away leaves its services running; the next
// one adopts them and routes them again, and Shutdown stops them.
func TestLocalControlPlaneSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../deploy/testdata/shop")); err != nil {
		t.Fatal(err)
	}
	m, _, err := graph.Load(filepath.Join(root, graph.FileName))
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, ".flotilla")
	open := func() (*controlplane.Local, *mesh.Mesh) {
		ms, err := mesh.New(mesh.Config{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		l, err := controlplane.OpenLocal(ctx, controlplane.LocalConfig{Graph: graph.New(m), Data: data, Mesh: ms, Logger: quiet,
			Target: local.Config{ProbeInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		return l, ms
	}
	l, ms := open()
	rep, err := l.Orchestrator.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}, Who: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := rep.Outcomes[0].Version
	insts, _ := l.Target.Status(ctx, "delta-service")
	addr1, err := ms.Addr("delta-service")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	_ = ms.Close(ctx)

	l, ms = open()
	defer func() { _ = ms.Close(ctx) }()
	stopped := false
	defer func() {
		if !stopped {
			_ = l.Shutdown(ctx)
		}
	}()
	srv := httptest.NewServer(l.API.Handler())
	defer srv.Close()
	st, err := controlplane.NewClient(srv.URL).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Service == "delta-service" && (s.Stable != v || s.Health != "ready" || len(s.Instances) != 1 || s.Instances[0].PID != insts[0].PID) {
			t.Errorf("delta after the restart: %+v; want %s ready in the adopted pid %d", s, v, insts[0].PID)
		}
	}
	addr, err := ms.Addr("delta-service")
	if err != nil {
		t.Fatal(err)
	}
	// The same stable address as before the restart: what its callers
	// were told.
	if addr != addr1 {
		t.Errorf("delta's mesh address after the restart %s, want %s as before", addr, addr1)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if body["version"] != v {
		t.Errorf("delta through the new mesh answers %v, want version %s", body, v)
	}
	if err := l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if syscall.Kill(insts[0].PID, 0) == nil {
		t.Errorf("pid %d still runs after Shutdown", insts[0].PID)
	}
}

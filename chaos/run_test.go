package chaos

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/mesh"
)

// platform is the chaos API of a control plane over a real mesh with
// inventory-service behind it; the "gateway" the probes go through is
// inventory-service's mesh address.
func platform(t *testing.T) (*controlplane.Client, string, *mesh.Mesh) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := mesh.New(mesh.Config{Logger: quiet, Retry: mesh.RetryConfig{Attempts: -1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	ctx := context.Background()
	addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: "inventory-service"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "inventory-service", mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(up.URL, "http://")}}); err != nil {
		t.Fatal(err)
	}
	c := controlplane.NewChaos(controlplane.ChaosConfig{
		DependsOn: shopGraph,
		SetFaults: func(_ context.Context, fs []mesh.Fault) error { return m.SetFaults(fs) },
		Logger:    quiet,
	})
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	mux := http.NewServeMux()
	c.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return controlplane.NewClient(srv.URL), "http://" + addr, m
}

const abortExperiment = `name: inventory aborts
duration: 10s
hypothesis:
  probes:
    - /ready
  max_error_rate: 0
  max_p99: 1s
  window: 500ms
  interval: 20ms
  recover_within: 5s
  orders_final_within: 0s
faults:
  - name: inventory 503
    kind: abort
    destination: inventory-service
    start: 200ms
    duration: 1s
`

// TestRunMeasuresFailuresAndRecovery runs an experiment against a real
// mesh: the probes fail during the abort, the hypothesis holds again
// soon after it ends, and no fault is left.
func TestRunMeasuresFailuresAndRecovery(t *testing.T) {
	api, gw, m := platform(t)
	e, err := Parse("abort.yaml", []byte(abortExperiment))
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, err := (&Runner{API: api, Gateway: gw, Progress: &progress, Lease: 3 * time.Second}).Run(context.Background(), e)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	rep.Write(&out)
	t.Logf("\n%s%s", progress.String(), out.String())
	if !rep.SteadyBefore || !rep.Held || len(rep.Faults) != 1 {
		t.Fatalf("report %+v", rep)
	}
	f := rep.Faults[0]
	if got := f.Ended.Sub(f.Started); got < 900*time.Millisecond || got > 1100*time.Millisecond {
		t.Errorf("the fault lasted %v, want 1s", got)
	}
	if f.FailedDuring < 20 {
		t.Errorf("%d probes failed during a 1s abort of every call at 50/s, want about 50", f.FailedDuring)
	}
	if !f.Recovered || f.MTTR > time.Second {
		t.Errorf("recovered %v after %v, want within 1s of the fault's end", f.Recovered, f.MTTR)
	}
	if fs, _ := m.Faults(); len(fs) != 0 {
		t.Errorf("faults left in the mesh: %v", fs)
	}
	if l, err := api.Faults(context.Background()); err != nil || l.Experiment != nil {
		t.Errorf("the experiment still runs: %+v, %v", l, err)
	}
}

// TestRunInterruptedRemovesItsFaults: Ctrl-C during a fault removes it
// at once, and a second experiment cannot start while one runs.
func TestRunInterruptedRemovesItsFaults(t *testing.T) {
	api, gw, m := platform(t)
	e, err := Parse("abort.yaml", []byte(strings.Replace(abortExperiment, "duration: 1s", "duration: 8s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := (&Runner{API: api, Gateway: gw, Lease: 3 * time.Second}).Run(ctx, e)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fs, _ := m.Faults(); len(fs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fault was never injected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := api.BeginExperiment(context.Background(), controlplane.ExperimentRequest{Name: "second"}); err == nil || !strings.Contains(err.Error(), "one experiment at a time") {
		t.Errorf("a second experiment while one runs = %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("interrupted run = %v, want context.Canceled", err)
	}
	if fs, _ := m.Faults(); len(fs) != 0 {
		t.Errorf("faults left after Ctrl-C: %v", fs)
	}
}

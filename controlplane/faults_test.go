package controlplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

// chaosFixture is the chaos API over a real mesh (inventory-service and
// order-service behind it), a real process standing for the bus, and a
// kill that kills a real process: the API is served with the platform's
// tokens.
type chaosFixture struct {
	chaos   *Chaos
	mesh    *mesh.Mesh
	admin   *Client
	read    *Client
	inv     string // inventory-service's mesh address
	bus     *exec.Cmd
	victims map[string]*exec.Cmd
}

func newChaosFixture(t *testing.T) *chaosFixture {
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
	f := &chaosFixture{mesh: m, victims: map[string]*exec.Cmd{}}
	for _, s := range []string{"inventory-service", "order-service"} {
		addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: s})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetSubset(ctx, s, mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(up.URL, "http://")}}); err != nil {
			t.Fatal(err)
		}
		if s == "inventory-service" {
			f.inv = addr
		}
	}
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	f.bus = start()
	f.victims["payment-service"] = start()
	f.chaos = NewChaos(ChaosConfig{
		DependsOn: map[string][]string{"order-service": {"inventory-service", "payment-service"}, "inventory-service": nil, "payment-service": nil, "cart-service": {"inventory-service"}},
		SetFaults: func(_ context.Context, fs []mesh.Fault) error { return m.SetFaults(fs) },
		Kill: func(_ context.Context, service string, all bool) ([]deploy.Instance, error) {
			v := f.victims[service]
			if v == nil {
				return nil, deploy.ErrNotFound
			}
			if err := v.Process.Kill(); err != nil {
				return nil, err
			}
			return []deploy.Instance{{Service: service, PID: v.Process.Pid}}, nil
		},
		BusPID: func() int { return f.bus.Process.Pid },
		Logger: quiet,
	})
	t.Cleanup(func() { _ = f.chaos.Close(context.Background()) })
	data := t.TempDir()
	toks, err := EnsureTokens(data)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.chaos.Routes(mux)
	srv := httptest.NewServer(toks.Middleware(mux))
	t.Cleanup(srv.Close)
	admin, _ := ReadToken(TokenFile(data, RoleAdmin))
	read, _ := ReadToken(TokenFile(data, RoleRead))
	f.admin = NewClient(srv.URL).WithToken(admin)
	f.read = NewClient(srv.URL).WithToken(read)
	return f
}

func (f *chaosFixture) call(t *testing.T, caller string) (int, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+f.inv+"/x", nil)
	req.Header.Set(mesh.CallerHeader, caller)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// procState is the state letter of /proc/PID/stat (T: stopped).
func procState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(b), ')')
	return b[i+2]
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestChaosInjectsAndRemovesEachKind(t *testing.T) {
	f := newChaosFixture(t)
	ctx := context.Background()
	if _, err := f.read.BeginExperiment(ctx, ExperimentRequest{Name: "x"}); err == nil || !strings.Contains(err.Error(), "needs the admin token") {
		t.Errorf("the read-only token began an experiment: %v", err)
	}
	exp, err := f.admin.BeginExperiment(ctx, ExperimentRequest{Name: "game day", Lease: Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.BeginExperiment(ctx, ExperimentRequest{Name: "another"}); !errors.Is(err, deploy.ErrBusy) || !strings.Contains(err.Error(), "game day") {
		t.Errorf("a second experiment = %v, want 409 naming the running one", err)
	}

	// A delay on order -> inventory, measured at the client.
	d, err := f.admin.InjectFault(ctx, FaultRequest{Experiment: exp.ID, Kind: FaultDelay, Source: "order-service", Destination: "inventory-service", Delay: Duration(300 * time.Millisecond), Duration: Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if code, took := f.call(t, "order-service"); code != 200 || took < 300*time.Millisecond {
		t.Errorf("delayed call: %d in %v, want 200 after 300ms or more", code, took)
	}
	if err := f.admin.RemoveFault(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, took := f.call(t, "order-service"); took > 250*time.Millisecond {
		t.Errorf("after removal the call took %v", took)
	}

	// A partition, then a bus stall; the list shows both; the kill
	// kills.
	if _, err := f.admin.InjectFault(ctx, FaultRequest{Experiment: exp.ID, Kind: FaultPartition, Source: "order-service", Destination: "inventory-service", Duration: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if code, _ := f.call(t, "order-service"); code != http.StatusServiceUnavailable {
		t.Errorf("partitioned call: %d, want 503", code)
	}
	if _, err := f.admin.InjectFault(ctx, FaultRequest{Experiment: exp.ID, Kind: FaultBusStall, Duration: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if s := procState(t, f.bus.Process.Pid); s != 'T' {
		t.Errorf("bus state %c during a stall, want T (stopped)", s)
	}
	k, err := f.admin.InjectFault(ctx, FaultRequest{Experiment: exp.ID, Kind: FaultKill, Service: "payment-service"})
	if err != nil || len(k.Killed) != 1 {
		t.Fatalf("kill = %+v, %v", k, err)
	}
	list, err := f.read.Faults(ctx)
	if err != nil || list.Experiment == nil || len(list.Faults) != 3 {
		t.Fatalf("list = %+v, %v; want the experiment and 3 faults", list, err)
	}

	// The experiment's client stops renewing: the lease expires and every
	// fault goes.
	if _, err := f.admin.RenewExperiment(ctx, exp.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, _ := f.read.Faults(ctx)
		if l != nil && l.Experiment == nil && len(l.Faults) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease did not expire: %+v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := f.call(t, "order-service"); code != 200 {
		t.Errorf("after the lease expired: %d, want 200", code)
	}
	if s := procState(t, f.bus.Process.Pid); s == 'T' {
		t.Error("the bus is still stopped after the lease expired")
	}
	if _, err := f.admin.RenewExperiment(ctx, exp.ID); !strings.Contains(fmtErr(err), "no such experiment") {
		t.Errorf("renewing an expired experiment = %v", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestChaosFaultsEndOnTimeAndStop(t *testing.T) {
	f := newChaosFixture(t)
	ctx := context.Background()
	exp, err := f.admin.BeginExperiment(ctx, ExperimentRequest{Name: "short"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.InjectFault(ctx, FaultRequest{Experiment: exp.ID, Kind: FaultAbort, Destination: "inventory-service", Status: 500, Duration: Duration(500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if code, _ := f.call(t, "cart-service"); code != 500 {
		t.Errorf("during the abort: %d", code)
	}
	time.Sleep(800 * time.Millisecond)
	if code, _ := f.call(t, "cart-service"); code != 200 {
		t.Errorf("after the abort's duration: %d", code)
	}
	if l, _ := f.read.Faults(ctx); l == nil || len(l.Faults) != 0 || l.Experiment == nil {
		t.Errorf("after its end the fault is still listed, or the experiment ended: %+v", l)
	}
	if _, err := f.admin.InjectFault(ctx, FaultRequest{Experiment: exp.ID, Kind: FaultBusSlow, Delay: Duration(300 * time.Millisecond), Duration: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	removed, err := f.admin.StopFaults(ctx)
	if err != nil || len(removed) != 1 {
		t.Fatalf("stop = %v, %v", removed, err)
	}
	time.Sleep(50 * time.Millisecond)
	if s := procState(t, f.bus.Process.Pid); s == 'T' {
		t.Error("the bus is still stopped after chaos stop")
	}
	if l, _ := f.read.Faults(ctx); l == nil || l.Experiment != nil {
		t.Errorf("chaos stop left the experiment running: %+v", l)
	}
}

// TestChaosRefusesBadFaults: each bad fault is refused with a message
// naming what is wrong, and nothing is injected.
func TestChaosRefusesBadFaults(t *testing.T) {
	f := newChaosFixture(t)
	ctx := context.Background()
	exp, err := f.admin.BeginExperiment(ctx, ExperimentRequest{Name: "bad input", Deadline: time.Now().Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	min := Duration(time.Second)
	for _, tc := range []struct {
		name string
		req  FaultRequest
		want string
	}{
		{"unknown service", FaultRequest{Kind: FaultDelay, Destination: "nope-service", Delay: min, Duration: min}, `destination: unknown service "nope-service"`},
		{"an edge the graph lacks", FaultRequest{Kind: FaultAbort, Source: "inventory-service", Destination: "order-service", Duration: min}, "the graph has no such edge"},
		{"partition without an edge", FaultRequest{Kind: FaultPartition, Source: "payment-service", Destination: "cart-service", Duration: min}, "no edge between them"},
		{"percent over 100", FaultRequest{Kind: FaultAbort, Destination: "inventory-service", Percent: 150, Duration: min}, "percent 150"},
		{"outlives the experiment", FaultRequest{Kind: FaultAbort, Destination: "inventory-service", Duration: Duration(time.Hour)}, "after the experiment's deadline"},
		{"no duration", FaultRequest{Kind: FaultAbort, Destination: "inventory-service"}, "every fault ends"},
		{"unknown kind", FaultRequest{Kind: "meteor", Duration: min}, `kind "meteor"`},
		{"kill of an unknown service", FaultRequest{Kind: FaultKill, Service: "ghost"}, `service: unknown service "ghost"`},
		{"another experiment", FaultRequest{Experiment: "exp-other", Kind: FaultAbort, Destination: "inventory-service", Duration: min}, "no such experiment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Experiment == "" {
				tc.req.Experiment = exp.ID
			}
			_, err := f.admin.InjectFault(ctx, tc.req)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("= %v, want 400 saying %q", err, tc.want)
			}
		})
	}
	if fs, _ := f.mesh.Faults(); len(fs) != 0 {
		t.Errorf("refused faults reached the mesh: %v", fs)
	}
	if l, _ := f.read.Faults(ctx); len(l.Faults) != 0 {
		t.Errorf("refused faults are listed: %+v", l.Faults)
	}
	if s := procState(t, f.victims["payment-service"].Process.Pid); s == 'Z' {
		t.Error("a refused kill killed")
	}
}

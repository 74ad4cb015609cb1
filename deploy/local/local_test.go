package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/deploy"
)

// artifacts is shared by every test of the run, so each test service is
// linked once.
var artifacts string

func TestMain(m *testing.M) {
	if dir := os.Getenv("FLOTILLA_LOCAL_HELPER_DIR"); dir != "" {
		controlPlaneHelper(dir)
		return
	}
	dir, err := os.MkdirTemp("", "flotilla-local-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	artifacts = filepath.Join(dir, "bin")
	code := m.Run()
	// No process started from a test artifact may outlive the tests.
	if left := processesUnder(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "orphaned processes after the tests: %v\n", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		code = 1
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// processesUnder lists the pids whose executable lies under dir.
func processesUnder(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			out = append(out, pid)
		}
	}
	return out
}

func testRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../testdata/shop")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func newTarget(t *testing.T, dir string, mod func(*Config)) *Target {
	t.Helper()
	cfg := DefaultConfig(dir, testRoot(t))
	cfg.ArtifactDir = artifacts
	cfg.ReadyTimeout = 20 * time.Second
	cfg.StopTimeout = 5 * time.Second
	cfg.Backoff = 20 * time.Millisecond
	cfg.ProbeInterval = 20 * time.Millisecond
	cfg.HealthInterval = 20 * time.Millisecond
	cfg.Logger = quiet
	if mod != nil {
		mod(&cfg)
	}
	tg, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		insts, _ := tg.Status(ctx, "")
		_ = tg.Shutdown(ctx)
		for _, in := range insts {
			if in.PID != 0 && alive(in.PID) {
				t.Errorf("%s@%s pid %d still runs after Shutdown", in.Service, in.Version, in.PID)
			}
		}
	})
	return tg
}

func spec(service, version, mode string) deploy.Spec {
	s := deploy.Spec{Service: service, Version: version, Build: deploy.Build{Package: "./cmd/svc", Digest: "svc1"}, Health: "/ready"}
	if mode != "" {
		s.Env = map[string]string{"MODE": mode}
	}
	return s
}

func get(t *testing.T, addr, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

func TestApplyStatusRemove(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tg := newTarget(t, dir, func(c *Config) { c.Env = map[string]string{"DEP_URL": "http://127.0.0.1:1"} })
	insts, err := tg.Apply(ctx, spec("alpha-service", "v1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 1 || insts[0].State != deploy.StateReady {
		t.Fatalf("Apply = %+v, want one ready instance", insts)
	}
	code, body := get(t, insts[0].Addr, "/")
	want := map[string]any{"service": "alpha-service", "version": "v1", "dep": "http://127.0.0.1:1",
		"db": filepath.Join(dir, "data", "alpha-service.db"), "wd": filepath.Join(dir, "run", "alpha-service", "v1")}
	if code != 200 || !cmp.Equal(body, want) {
		t.Errorf("GET / = %d %v, want 200 %v", code, body, want)
	}
	// A second version runs next to the first.
	insts2, err := tg.Apply(ctx, spec("alpha-service", "v2", ""))
	if err != nil {
		t.Fatal(err)
	}
	st, err := tg.Status(ctx, "alpha-service")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range st {
		got = append(got, in.Version+" "+string(in.State))
	}
	if d := cmp.Diff([]string{"v1 ready", "v2 ready"}, got); d != "" {
		t.Errorf("Status (-want +got):\n%s", d)
	}
	// Applying a running version returns it again.
	again, err := tg.Apply(ctx, spec("alpha-service", "v2", ""))
	if err != nil || again[0].PID != insts2[0].PID {
		t.Errorf("re-Apply v2 = %+v, %v; want the running instance pid %d", again, err, insts2[0].PID)
	}
	if err := tg.Remove(ctx, "alpha-service", "v1"); err != nil {
		t.Fatal(err)
	}
	if alive(insts[0].PID) {
		t.Errorf("v1 pid %d still runs after Remove", insts[0].PID)
	}
	if err := tg.Remove(ctx, "alpha-service", "v1"); !errors.Is(err, deploy.ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	log, err := os.ReadFile(tg.LogFile("alpha-service", "v1"))
	if err != nil || !strings.Contains(string(log), "svc v1 listening") || !strings.Contains(string(log), "drained, bye") {
		t.Errorf("v1 log = %q, %v; want its start and its graceful stop", log, err)
	}
}

func TestBuildCacheAndErrors(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), nil)
	s := spec("bravo-service", "b1", "")
	s.Build.Digest = "bravo-cache"
	if err := tg.Build(ctx, s); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(tg.artifact(s))
	if err != nil {
		t.Fatal(err)
	}
	// The same digest under a new version (a config change) is not rebuilt.
	s2 := s
	s2.Version, s2.Env = "b2", map[string]string{"X": "1"}
	if err := tg.Build(ctx, s2); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(tg.artifact(s2))
	if !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Error("a second build of the same digest rewrote the artifact")
	}

	tests := []struct {
		name string
		spec deploy.Spec
		want []string
	}{
		{"compile error", deploy.Spec{Service: "broken-service", Version: "x1", Build: deploy.Build{Package: "./cmd/broken", Digest: "broken1"}},
			[]string{"build broken-service@x1 (./cmd/broken)", "undefined: undefinedFunction"}},
		{"no such package", deploy.Spec{Service: "ghost-service", Version: "x1", Build: deploy.Build{Package: "./cmd/ghost", Digest: "ghost1"}},
			[]string{"build ghost-service@x1", "cmd/ghost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tg.Apply(ctx, tt.spec)
			var be *deploy.BuildError
			if !errors.Is(err, deploy.ErrBuild) || !errors.As(err, &be) {
				t.Fatalf("Apply = %v, want a BuildError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if st, _ := tg.Status(ctx, tt.spec.Service); len(st) != 0 {
				t.Errorf("Status after a failed build = %+v, want none", st)
			}
		})
	}
}

func TestFailedVersionsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), func(c *Config) { c.MaxRestarts = 2 })
	tests := []struct {
		name    string
		spec    deploy.Spec
		wantErr error
		want    []string
	}{
		{"never ready", func() deploy.Spec {
			s := spec("charlie-service", "nr1", "never-ready")
			s.ReadyTimeout = time.Second
			return s
		}(), deploy.ErrNotReady, []string{"charlie-service@nr1", "/ready", "503 Service Unavailable", "within 1s"}},
		{"crash loop", spec("charlie-service", "cl1", "crash"), deploy.ErrCrashLoop,
			[]string{"charlie-service@cl1", "exited 3 times", "exit status 3", "cannot open the database"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tg.Apply(ctx, tt.spec)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if st, _ := tg.Status(ctx, "charlie-service"); len(st) != 0 {
				t.Errorf("Status after the failure = %+v, want nothing left", st)
			}
		})
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), nil)
	insts, err := tg.Apply(ctx, spec("delta-service", "d1", ""))
	if err != nil {
		t.Fatal(err)
	}
	old := insts[0]
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	in := waitFor(t, tg, "delta-service", func(in deploy.Instance) bool {
		return in.Restarts == 1 && in.State == deploy.StateReady
	})
	if in.PID == old.PID || !strings.Contains(in.LastExit, "killed") {
		t.Errorf("after a crash: %+v, want a new pid and the kill as the last exit", in)
	}
	if code, _ := get(t, in.Addr, "/"); code != 200 {
		t.Errorf("restarted instance answers %d", code)
	}
}

// waitFor polls Status until cond holds for the service's only instance.
func waitFor(t *testing.T, tg *Target, service string, cond func(deploy.Instance) bool) deploy.Instance {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []deploy.Instance
	for time.Now().Before(deadline) {
		last, _ = tg.Status(context.Background(), service)
		if len(last) == 1 && cond(last[0]) {
			return last[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never reached the wanted state; last %+v", service, last)
	return deploy.Instance{}
}

func TestReadinessFollowedAfterStart(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), nil)
	insts, err := tg.Apply(ctx, spec("india-service", "i1", ""))
	if err != nil {
		t.Fatal(err)
	}
	toggle := func() {
		t.Helper()
		resp, err := http.Post("http://"+insts[0].Addr+"/toggle-ready", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	toggle()
	waitFor(t, tg, "india-service", func(in deploy.Instance) bool { return in.State == deploy.StateUnready })
	toggle()
	in := waitFor(t, tg, "india-service", func(in deploy.Instance) bool { return in.State == deploy.StateReady })
	if in.PID != insts[0].PID || in.Restarts != 0 {
		t.Errorf("an instance failing its probe for a while was restarted: %+v", in)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), func(c *Config) { c.StopTimeout = 200 * time.Millisecond })
	insts, err := tg.Apply(ctx, spec("echo-service", "e1", "ignore-term"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Remove(ctx, "echo-service", "e1"); err != nil {
		t.Fatal(err)
	}
	if alive(insts[0].PID) {
		t.Errorf("pid %d ignores SIGTERM and survived Remove", insts[0].PID)
	}
}

func TestFixedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	tg := newTarget(t, t.TempDir(), nil)
	s := spec("foxtrot-service", "f1", "")
	s.Port = ln.Addr().(*net.TCPAddr).Port
	_, err = tg.Apply(context.Background(), s)
	if !errors.Is(err, deploy.ErrPortInUse) || !strings.Contains(err.Error(), fmt.Sprintf("port %d", s.Port)) {
		t.Errorf("Apply on a taken port = %v, want ErrPortInUse naming port %d", err, s.Port)
	}
}

func TestReopenAdoptsOrRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first := newTarget(t, dir, nil)
	a, err := first.Apply(ctx, spec("golf-service", "g1", ""))
	if err != nil {
		t.Fatal(err)
	}
	b, err := first.Apply(ctx, spec("hotel-service", "h1", ""))
	if err != nil {
		t.Fatal(err)
	}
	// One control plane per data directory.
	cfg := DefaultConfig(dir, testRoot(t))
	cfg.ArtifactDir, cfg.Logger = artifacts, quiet
	if _, err := Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is in use by another control plane (pid %d)", os.Getpid())) {
		t.Fatalf("a second Open of a data directory in use = %v, want it refused naming pid %d", err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// The control plane is gone; its instances run on. One dies meanwhile.
	if code, _ := get(t, a[0].Addr, "/"); code != 200 {
		t.Fatalf("golf-service after Close answers %d", code)
	}
	if err := syscall.Kill(b[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for alive(b[0].PID) {
		time.Sleep(10 * time.Millisecond)
	}

	second := newTarget(t, dir, nil)
	g := waitFor(t, second, "golf-service", func(in deploy.Instance) bool { return in.State == deploy.StateReady })
	if g.PID != a[0].PID || g.Addr != a[0].Addr {
		t.Errorf("golf-service = pid %d at %s, want the adopted pid %d at %s", g.PID, g.Addr, a[0].PID, a[0].Addr)
	}
	h := waitFor(t, second, "hotel-service", func(in deploy.Instance) bool { return in.State == deploy.StateReady })
	if h.PID == b[0].PID {
		t.Errorf("hotel-service kept its dead pid %d, want a restart", h.PID)
	}
	// The adopted process is stopped like any other.
	if err := second.Remove(ctx, "golf-service", "g1"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(a[0].PID) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(a[0].PID) {
		t.Errorf("adopted pid %d survived Remove", a[0].PID)
	}
}

func TestReplicas(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), nil)
	s := spec("juliet-service", "j1", "")
	s.Replicas = 3
	insts, err := tg.Apply(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]bool{}
	for i, in := range insts {
		if in.Index != i || in.State != deploy.StateReady {
			t.Errorf("instance %d = %+v, want ready with index %d", i, in, i)
		}
		addrs[in.Addr] = true
		if code, body := get(t, in.Addr, "/"); code != 200 || body["version"] != "j1" {
			t.Errorf("instance %d answers %d %v", i, code, body)
		}
	}
	if len(addrs) != 3 || len(deploy.Endpoints(insts)) != 3 {
		t.Errorf("3 replicas on %d addresses, want 3", len(addrs))
	}
	if err := tg.Remove(ctx, "juliet-service", "j1"); err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		if alive(in.PID) {
			t.Errorf("replica %d (pid %d) survived Remove", in.Index, in.PID)
		}
	}
}

// controlPlaneHelper is a control plane in a process of its own: it opens
// a target on dir, deploys one service, says so, and waits to be killed.
func controlPlaneHelper(dir string) {
	cfg := DefaultConfig(dir, os.Getenv("FLOTILLA_LOCAL_HELPER_ROOT"))
	cfg.ArtifactDir = os.Getenv("FLOTILLA_LOCAL_HELPER_ARTIFACTS")
	cfg.ProbeInterval, cfg.Logger = 20*time.Millisecond, quiet
	tg, err := Open(context.Background(), cfg)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	insts, err := tg.Apply(context.Background(), spec("kilo-service", "k1", os.Getenv("FLOTILLA_LOCAL_HELPER_MODE")))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready", insts[0].PID, insts[0].Addr)
	select {}
}

// A control plane killed with SIGKILL leaves its services running, and
// the next one adopts them (the lock died with it) and can stop them.
func TestKilledControlPlane(t *testing.T) {
	dir := t.TempDir()
	cmd, pid, addr := startControlPlaneProcess(t, dir, "")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !alive(pid) {
		t.Fatalf("the service (pid %d) died with its control plane", pid)
	}
	if code, _ := get(t, addr, "/"); code != 200 {
		t.Errorf("the orphaned service answers %d", code)
	}
	tg := newTarget(t, dir, nil)
	in := waitFor(t, tg, "kilo-service", func(in deploy.Instance) bool { return in.State == deploy.StateReady })
	if in.PID != pid {
		t.Errorf("after the kill: pid %d, want the adopted %d", in.PID, pid)
	}
	if err := tg.Remove(context.Background(), "kilo-service", "k1"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the adopted service (pid %d) survived Remove", pid)
	}
}

func TestConcurrentApplyStartsOnce(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), nil)
	var wg sync.WaitGroup
	pids := make([]int, 3)
	errs := make([]error, 3)
	for i := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			insts, err := tg.Apply(ctx, spec("lima-service", "l1", ""))
			errs[i] = err
			if err == nil {
				pids[i] = insts[0].PID
			}
		}()
	}
	wg.Wait()
	for i := range pids {
		if errs[i] != nil || pids[i] != pids[0] {
			t.Errorf("Apply %d = pid %d, %v; want the one instance, pid %d", i, pids[i], errs[i], pids[0])
		}
	}
	if st, _ := tg.Status(ctx, "lima-service"); len(st) != 1 {
		t.Errorf("%d instances after three concurrent Applies of one version, want 1", len(st))
	}
}

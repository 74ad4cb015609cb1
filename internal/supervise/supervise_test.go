package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// helperEnv makes the test binary a platform process: it serves GET
// /ready on 127.0.0.1:0 and writes its address to the file named by its
// last argument. The value says how it behaves: "serve" exits on SIGTERM,
// "stubborn" ignores SIGTERM, "crash" exits at once.
const helperEnv = "SUPERVISE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func helper(mode, addrFile string) int {
	if mode == "crash" {
		fmt.Println("crashing on purpose")
		return 3
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	var ln net.Listener
	var err error
	if os.Getenv(supervise.FilesEnv) == "1" {
		// The listener its supervisor keeps for it.
		f := os.NewFile(3, "inherited")
		ln, err = net.FileListener(f)
		_ = f.Close()
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = fmt.Fprint(w, os.Getpid())
		}))
	}()
	tmp := addrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o644); err != nil {
		return 1
	}
	if err := os.Rename(tmp, addrFile); err != nil {
		return 1
	}
	for range term {
		if mode != "stubborn" {
			fmt.Println("SIGTERM: stopping")
			return 0
		}
	}
	return 0
}

// spec is a helper process in a fresh directory whose readiness probe
// asks it for its pid: a probe answered by an older process (whose
// address is still in the file) does not count.
func spec(t *testing.T, dir, mode string) supervise.Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "addr")
	return supervise.Spec{
		Name: "helper", Dir: dir, Path: exe, Args: []string{"-test.run=^$", addrFile},
		Env:     append(os.Environ(), helperEnv+"="+mode),
		Version: "test", Addrs: map[string]string{"http": "file:" + addrFile},
		Ready: func(ctx context.Context) error {
			b, err := os.ReadFile(addrFile)
			if err != nil {
				return err
			}
			return supervise.HTTPReady("http://" + string(b) + "/ready")(ctx)
		},
		ReadyTimeout: 60 * time.Second, StopTimeout: 30 * time.Second,
		Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// answers returns the pid the helper at dir's address answers with.
func answers(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "addr"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + string(b) + "/")
	if err != nil {
		t.Fatalf("the process does not answer: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var pid int
	if _, err := fmt.Fscan(resp.Body, &pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func start(t *testing.T, s supervise.Spec) *supervise.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := supervise.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	p := start(t, spec(t, dir, "serve"))
	st := p.Status()
	if st.Phase != supervise.Ready || st.PID == 0 || st.Adopted || st.Restarts != 0 || st.Version != "test" {
		t.Fatalf("status after start: %+v", st)
	}
	if got := answers(t, dir); got != st.PID {
		t.Fatalf("answered by pid %d, status says %d", got, st.PID)
	}
	rec, err := supervise.ReadState(dir, "helper")
	if err != nil {
		t.Fatal(err)
	}
	if rec.PID != st.PID || rec.Version != "test" || rec.Path == "" || rec.Addrs["http"] == "" {
		t.Fatalf("state file: %+v", rec)
	}
	if ok, why := rec.Running(); !ok {
		t.Fatalf("state says not running: %s", why)
	}
	// Its own session, so a Ctrl-C at the control plane's terminal does
	// not reach it.
	if sid, _ := getsid(st.PID); sid != st.PID {
		t.Fatalf("session of %d is %d; want its own", st.PID, sid)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if supervise.Alive(st.PID) {
		t.Fatalf("process %d still runs after Stop", st.PID)
	}
	if p.Status().Phase != supervise.Stopped {
		t.Fatalf("phase after stop: %s", p.Status().Phase)
	}
	if _, err := supervise.ReadState(dir, "helper"); !errors.Is(err, supervise.ErrNoState) {
		t.Fatalf("state file after stop: %v", err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "helper.log"))
	if !strings.Contains(string(log), "SIGTERM: stopping") {
		t.Fatalf("the process was not asked to stop with SIGTERM; log:\n%s", log)
	}
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

func TestAdoptAfterDetachThenRestart(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "serve")
	p1, err := supervise.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	pid := p1.Status().PID
	p1.Detach() // as a kill -9 of the control plane leaves it
	if !supervise.Alive(pid) {
		t.Fatal("the process died with its supervisor")
	}
	if p1.Status().Phase != supervise.Detached {
		t.Fatalf("phase after detach: %s", p1.Status().Phase)
	}

	var mu sync.Mutex
	var restarted []supervise.Status
	s.OnRestart = func(_ context.Context, st supervise.Status) {
		mu.Lock()
		restarted = append(restarted, st)
		mu.Unlock()
	}
	p2 := start(t, s)
	st := p2.Status()
	if st.PID != pid || !st.Adopted || st.Phase != supervise.Ready {
		t.Fatalf("second supervisor did not adopt pid %d: %+v", pid, st)
	}
	// An adopted process is not a child: its death is found by polling.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the OnRestart callback runs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(restarted) == 1
	})
	st = p2.Status()
	if st.PID == pid || st.Adopted || st.Restarts != 1 || st.Phase != supervise.Ready || restarted[0].PID != st.PID {
		t.Fatalf("after kill -9 of the adopted process: %+v (callback got %+v)", st, restarted[0])
	}
	if got := answers(t, dir); got != st.PID {
		t.Fatalf("answered by %d, want the restarted %d", got, st.PID)
	}
	rec, err := supervise.ReadState(dir, "helper")
	if err != nil || rec.PID != st.PID || rec.Restarts != 1 {
		t.Fatalf("state after restart: %+v, %v", rec, err)
	}
}

func TestRestartAfterKill(t *testing.T) {
	dir := t.TempDir()
	restarts := make(chan supervise.Status, 10)
	s := spec(t, dir, "serve")
	s.OnRestart = func(_ context.Context, st supervise.Status) { restarts <- st }
	p := start(t, s)
	for i := 1; i <= 3; i++ {
		pid := p.Status().PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var st supervise.Status
		select {
		case st = <-restarts:
		case <-time.After(time.Minute):
			t.Fatalf("no restart %d after kill -9", i)
		}
		if st.PID == pid || st.Restarts != i || !strings.Contains(st.LastExit, "killed") {
			t.Fatalf("restart %d: %+v", i, st)
		}
		if got := answers(t, dir); got != st.PID {
			t.Fatalf("answered by %d, want %d", got, st.PID)
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "helper.log"))
	if !strings.Contains(string(log), "restarting") {
		t.Fatalf("the log does not note the restarts:\n%s", log)
	}
}

// A state file whose pid now belongs to another program (the pid was
// reused after a reboot or a long time) is not adopted, and that program
// is left alone.
func TestRefuseReusedPID(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "serve")
	other := exec.Command("sleep", "300")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })

	// A first run records what a real state looks like; then its pid is
	// swapped for the sleeping program's.
	p1, err := supervise.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := supervise.State{Name: "helper", PID: other.Process.Pid, Path: s.Path, Args: s.Args, Started: time.Now()}
	writeJSON(t, supervise.StatePath(dir, "helper"), st)
	rec, err := supervise.ReadState(dir, "helper")
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := rec.Running(); ok || !strings.Contains(why, "another program") {
		t.Fatalf("a pid running another program counts as the recorded process (%v, %q)", ok, why)
	}

	p := start(t, s)
	got := p.Status()
	if got.Adopted || got.PID == other.Process.Pid {
		t.Fatalf("adopted another program: %+v", got)
	}
	if !supervise.Alive(other.Process.Pid) {
		t.Fatal("the other program was signalled")
	}
	if answers(t, dir) != got.PID {
		t.Fatal("the new process does not answer")
	}
}

func writeJSON(t *testing.T, path string, st supervise.State) {
	t.Helper()
	// The real state's encoding, with an identity that names this pid's
	// program as the helper would have been recorded.
	data := fmt.Sprintf(`{"name":%q,"pid":%d,"path":%q,"args":[%q,%q],"started":%q,"identity":{"exe":%q}}`,
		st.Name, st.PID, st.Path, st.Args[0], st.Args[1], st.Started.Format(time.RFC3339Nano), st.Path)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBusy(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "serve")
	p := start(t, s)
	_, err := supervise.Start(context.Background(), s)
	if !errors.Is(err, supervise.ErrBusy) {
		t.Fatalf("second supervisor while the first holds it: %v; want ErrBusy", err)
	}
	if p.Status().Phase != supervise.Ready {
		t.Fatal("the first supervisor was disturbed")
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "stubborn")
	s.StopTimeout = 200 * time.Millisecond
	p := start(t, s)
	pid := p.Status().PID
	err := p.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop of a process ignoring SIGTERM: %v; want an error saying it was killed", err)
	}
	if supervise.Alive(pid) {
		t.Fatal("still running")
	}
}

func TestStartNotReady(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "crash")
	_, err := supervise.Start(context.Background(), s)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "crashing on purpose") {
		t.Fatalf("start of a crashing process: %v; want its exit and its log", err)
	}
	// The lock is released: another try may follow.
	_, err = supervise.Start(context.Background(), s)
	if errors.Is(err, supervise.ErrBusy) {
		t.Fatal("a failed start kept the lock")
	}
}

// A recorded process that runs with other arguments than asked for is
// replaced, not adopted.
func TestReplaceOtherArguments(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "serve")
	p1, err := supervise.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	old := p1.Status().PID
	p1.Detach()
	s.Args = append([]string{"-test.v=false"}, s.Args...)
	p2 := start(t, s)
	if st := p2.Status(); st.Adopted || st.PID == old {
		t.Fatalf("adopted a process with other arguments: %+v", st)
	}
	waitFor(t, "the old process is gone", func() bool { return !supervise.Alive(old) })
}

func TestSpecErrors(t *testing.T) {
	_, err := supervise.Start(context.Background(), supervise.Spec{Name: "../x"})
	for _, want := range []string{"plain file name", "no state directory", "no program"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

func TestRuns(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !supervise.Runs(os.Getpid(), exe) {
		t.Errorf("Runs(self, %s) = false", exe)
	}
	if supervise.Runs(os.Getpid(), "/bin/true") {
		t.Error("Runs(self, /bin/true) = true")
	}
	if supervise.Alive(0) || supervise.Alive(-1) {
		t.Error("Alive of pid 0 or -1")
	}
}

package supervise_test

import (
	"context"
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

	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// dupFile is a copy of a listener's descriptor that stays non-blocking
// (what a keeper of listening sockets hands a process it starts).
func dupFile(t *testing.T, ln net.Listener) *os.File {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		nfd, derr = int(r), nil
		if errno != 0 {
			derr = errno
		}
	}); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	return os.NewFile(uintptr(nfd), "listener")
}

// pidAt asks the helper serving addr for its pid.
func pidAt(ctx context.Context, client *http.Client, addr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// A listening socket the supervisor keeps (ExtraFiles) is what every
// process it starts serves: an upgrade to another program (Handover)
// starts the new one on it beside the old one and stops the old one
// once the new one answers, and a process killed with SIGKILL leaves it
// open, so a connection made while it restarts waits in the backlog and
// is answered by the next process instead of being refused.
func TestHandoverAndRestartKeepTheListener(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	addr := ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	s := spec(t, dir, "serve")
	s.ExtraFiles = func(context.Context) []*os.File { return []*os.File{dupFile(t, ln)} }
	s.ReadyPID = func(ctx context.Context, pid int) error {
		got, err := pidAt(ctx, client, addr)
		if err == nil && got != pid {
			err = fmt.Errorf("answered by pid %d, not %d", got, pid)
		}
		return err
	}
	p1, err := supervise.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	old := p1.Status().PID
	p1.Detach()

	// Requests all along, each on a new connection.
	stop := make(chan struct{})
	var (
		mu       sync.Mutex
		failures []string
		atKill   []string // failed requests that were in flight at the SIGKILL
		killedAt time.Time
		byPID    = map[int]int{}
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			began := time.Now()
			pid, err := pidAt(context.Background(), client, addr)
			mu.Lock()
			switch {
			case err != nil && !killedAt.IsZero() && began.Before(killedAt):
				// A connection the killed process had already accepted
				// dies with it: SIGKILL leaves nothing to drain it.
				atKill = append(atKill, err.Error())
			case err != nil:
				failures = append(failures, err.Error())
			default:
				byPID[pid]++
			}
			mu.Unlock()
		}
	}()

	// The upgrade: another program (a copy of this one).
	exe, _ := os.Executable()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	s.Path = filepath.Join(t.TempDir(), "helper-v2")
	if err := os.WriteFile(s.Path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Handover = true
	p2 := start(t, s)
	st := p2.Status()
	if !st.HandedOver || st.Adopted || st.PID == old || !strings.Contains(st.HandedOverFrom, strconv.Itoa(old)) {
		t.Fatalf("status after the upgrade: %+v", st)
	}
	if supervise.Alive(old) {
		t.Fatalf("the old process %d runs on after handing over", old)
	}
	if rec, err := supervise.ReadState(dir, "helper"); err != nil || rec.PID != st.PID || rec.Path != s.Path {
		t.Fatalf("state after the upgrade: %+v, %v", rec, err)
	}

	// A crash: the next process serves the same socket; a request made
	// at once waits for it.
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed process is gone", func() bool { return !supervise.Alive(st.PID) })
	got, err := pidAt(context.Background(), client, addr)
	if err != nil || got == st.PID {
		t.Fatalf("a request just after the kill: pid %d, %v; want the restarted process's answer", got, err)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("answers by pid across the upgrade and the kill: %v", byPID)
	if len(atKill) > 1 {
		t.Errorf("%d requests in flight at the kill failed; one at a time were sent: %v", len(atKill), atKill)
	} else if len(atKill) == 1 {
		t.Logf("the one request in flight at the kill failed with the process: %s", atKill[0])
	}
	if len(failures) > 0 {
		t.Errorf("%d requests failed: %v", len(failures), failures[:min(len(failures), 5)])
	}
	if byPID[old] == 0 || byPID[st.PID] == 0 {
		t.Errorf("answers by pid %v: want both the old (%d) and the new process (%d)", byPID, old, st.PID)
	}
}

// A new program that does not get ready beside the old one (an old
// program that cannot hand over, or a broken new one) is not left
// half-way: the old process is replaced the plain way, stopped first, and
// the new program's failure to start is the error.
func TestHandoverFallsBackToReplacing(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, dir, "serve")
	p1, err := supervise.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	old := p1.Status().PID
	p1.Detach()
	exe, _ := os.Executable()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	s.Path = filepath.Join(t.TempDir(), "helper-v2")
	if err := os.WriteFile(s.Path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Handover = true
	s.Env = append(os.Environ(), helperEnv+"=crash")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	s.ReadyPID = func(ctx context.Context, pid int) error {
		addr, err := os.ReadFile(filepath.Join(dir, "addr"))
		if err != nil {
			return err
		}
		got, err := pidAt(ctx, client, string(addr))
		if err == nil && got != pid {
			err = fmt.Errorf("answered by pid %d, not %d", got, pid)
		}
		return err
	}
	p2, err := supervise.Start(context.Background(), s)
	if p2 != nil {
		_ = p2.Stop(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("start of a program that crashes: %v", err)
	}
	if supervise.Alive(old) {
		t.Errorf("the old process %d runs on", old)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "helper.log"))
	if !strings.Contains(string(log), "did not take over") {
		t.Errorf("the log does not say the hand-over failed:\n%s", log)
	}
}

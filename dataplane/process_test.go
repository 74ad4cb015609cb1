package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/internal/supervise"
	"github.com/flotilla-ci/flotilla/mesh"
)

// childEnv makes the test binary run a data plane on the state directory
// it names, as `flotilla dataplane --state DIR` does.
const childEnv = "FLOTILLA_DATAPLANE_TEST_STATE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		inherited, err := InheritedListeners()
		if err != nil {
			fmt.Fprintln(os.Stderr, "dataplane:", err)
			os.Exit(1)
		}
		dp := &Main{Config: Config{State: dir, Version: "test-child", DrainTimeout: 30 * time.Second,
			Inherited: inherited, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}}
		err = dp.Run(ctx)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "dataplane:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a data-plane process.
type child struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when it exited, with err
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startChild(t *testing.T, dir string, inherit ...*os.File) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), stderr: &syncBuffer{}, done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childEnv+"="+dir)
	if len(inherit) > 0 {
		c.cmd.ExtraFiles = inherit
		c.cmd.Env = append(c.cmd.Env, fmt.Sprintf("%s=%d", supervise.FilesEnv, len(inherit)))
		defer func() {
			for _, f := range inherit {
				_ = f.Close()
			}
		}()
	}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("data plane (pid %d) log:\n%s", c.cmd.Process.Pid, c.stderr.String())
		}
	})
	return c
}

// waitFor polls cond every 10ms until it holds, for at most a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProcessServesAfterKill9 runs the data plane as a process, kills it
// with SIGKILL, starts it again and sees it serve the last configuration
// before any push.
func TestProcessServesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	ctx := context.Background()
	dir := shortDir(t)
	c := startChild(t, dir)
	cl := newClient(t, ClientConfig{Socket: SocketIn(dir)})
	waitFor(t, "the data plane's admin socket", func() bool { _, err := cl.Status(ctx); return err == nil })
	addr, err := cl.Declare(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SetSubset(ctx, "a", deploy.Subset{Name: "v1", Endpoints: []string{upstream(t, "v1")}}); err != nil {
		t.Fatal(err)
	}
	gw, err := cl.SetGateway(ctx, &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{{Path: "/a/**", Service: "a", Public: true, Rewrite: "/"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{addr, gw} {
		if code, body := get(t, a, "/a/x"); code != 200 || body != "v1" {
			t.Fatalf("through %s: %d %q", a, code, body)
		}
	}
	acked := cl.Desired().Version

	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	if code, _ := get(t, addr, "/"); code != 0 {
		t.Fatalf("a killed data plane still answers %d", code)
	}
	started := time.Now()
	startChild(t, dir)
	waitFor(t, "a served again", func() bool { code, _ := get(t, addr, "/"); return code == 200 })
	t.Logf("serving again %v after the start (figures: bench/dataplane)", time.Since(started))
	if code, body := get(t, gw, "/a/x"); code != 200 || body != "v1" {
		t.Errorf("the gateway after the restart: %d %q", code, body)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.Version != acked || st.LoadError != "" {
		t.Errorf("status after the restart = %+v, %v; want version %d without a push", st, err, acked)
	}
}

// TestProcessDrainsOnSIGTERM: a request in flight when SIGTERM arrives
// is answered; the process then exits 0.
func TestProcessDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	ctx := context.Background()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = w.Write([]byte("late"))
	}))
	defer slow.Close()
	defer close(release)
	dir := shortDir(t)
	c := startChild(t, dir)
	cl := newClient(t, ClientConfig{Socket: SocketIn(dir)})
	waitFor(t, "the data plane's admin socket", func() bool { _, err := cl.Status(ctx); return err == nil })
	addr, err := cl.Declare(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SetSubset(ctx, "a", deploy.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(slow.URL, "http://")}}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		code, body := get(t, addr, "/")
		got <- answer{code, body}
	}()
	<-arrived
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: the listener is closed to new connections...
	waitFor(t, "the listener closed", func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return err != nil
	})
	// ...and the request in flight still gets its answer.
	release <- struct{}{}
	if a := <-got; a.code != 200 || a.body != "late" {
		t.Errorf("the request in flight at SIGTERM got %d %q, want 200 late", a.code, a.body)
	}
	<-c.done
	if c.err != nil {
		t.Errorf("the data plane exited with %v after SIGTERM, want 0", c.err)
	}
}

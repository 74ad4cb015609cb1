package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// busProcessEnv makes the test binary a bus process (what `flotilla bus`
// runs): its value is "dir addr".
const busProcessEnv = "BUSNATS_TEST_BUS_PROCESS"

func TestMain(m *testing.M) {
	if v := os.Getenv(busProcessEnv); v != "" {
		os.Exit(busProcess(v))
	}
	os.Exit(m.Run())
}

func busProcess(v string) int {
	dir, addr, _ := strings.Cut(v, " ")
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	m := &busnats.Main{Config: busnats.ServerConfig{Dir: dir, Host: host, Port: p},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// busSpec runs the bus as a supervised process of its own.
func busSpec(t *testing.T, dir, addr string) supervise.Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + addr
	return supervise.Spec{
		Name: "bus", Dir: dir, Path: exe, Args: []string{"-test.run=^$"},
		Env:          append(os.Environ(), busProcessEnv+"="+filepath.Join(dir, "nats")+" "+addr),
		Ready:        func(ctx context.Context) error { return busnats.Probe(ctx, url) },
		ReadyTimeout: time.Minute, StopTimeout: 30 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// Nothing acknowledged is lost when the bus process is killed with
// SIGKILL: its supervisor restarts it on the same store and address, the
// publisher's connection comes back, and a consumer gets every message.
func TestBusProcessKeepsAcknowledgedAcrossKill9(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	restarted := make(chan supervise.Status, 1)
	s := busSpec(t, dir, addr)
	s.OnRestart = func(_ context.Context, st supervise.Status) { restarted <- st }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := supervise.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Errorf("stop the bus: %v", err)
		}
	})
	cfg := busnats.DefaultConfig("nats://" + addr)
	cfg.Logger = slog.New(slog.DiscardHandler)
	b, err := busnats.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	const n = 100
	publish := func(i int) {
		// Publish returns once JetStream acknowledged the message; while
		// the bus is coming back it fails, and is retried.
		for {
			err := b.Publish(ctx, bus.Message{Topic: "T", Key: "k", Payload: []byte{byte(i)}})
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range n / 2 {
		publish(i)
	}
	pid := p.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-restarted:
		if st.PID == pid {
			t.Fatalf("restarted with the same pid: %+v", st)
		}
	case <-ctx.Done():
		t.Fatal("the bus was not restarted after kill -9")
	}
	for i := n / 2; i < n; i++ {
		publish(i)
	}

	got := make(chan byte, n)
	sub, err := b.Subscribe(ctx, bus.Subscription{Topic: "T", Group: "g", Handler: func(_ context.Context, m bus.Message) error {
		got <- m.Payload[0]
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	for i := range n {
		select {
		case v := <-got:
			if int(v) != i {
				t.Fatalf("message %d after the kill is %d", i, v)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d acknowledged messages survived kill -9 of the bus", i, n)
		}
	}
}

// SIGTERM shuts the bus process down cleanly, in time, and the log says
// so.
func TestBusProcessStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := supervise.Start(ctx, busSpec(t, dir, freeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Status().PID
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("the bus did not stop on SIGTERM: %v", err)
	}
	if supervise.Alive(pid) {
		t.Fatal("still running")
	}
	log, _ := os.ReadFile(filepath.Join(dir, "bus.log"))
	if !strings.Contains(string(log), "bus stopped") {
		t.Fatalf("no clean shutdown in the log:\n%s", log)
	}
}

func TestMainCloseBeforeReady(t *testing.T) {
	m := &busnats.Main{Config: busnats.ServerConfig{Dir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler)}
	_ = m.Close()
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after Close")
	}
}

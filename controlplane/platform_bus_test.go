package controlplane_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// tinyRepo is a repository with one small service that builds in seconds.
func tinyRepo(t *testing.T) (manifest string) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"go.mod":        "module example.com/tiny\n\ngo 1.22\n",
		"flotilla.yaml": "services:\n  tiny-service:\n    paths: [cmd/tiny]\n    health: /ready\n",
		"cmd/tiny/main.go": `// Command tiny answers /ready.
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	_ = http.ListenAndServe(os.Getenv("ADDR"), nil)
}
`,
	}
	for name, body := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "flotilla.yaml")
}

// startPlatform runs a platform until ready; done yields Run's result.
func startPlatform(t *testing.T, cfg controlplane.PlatformConfig) (*controlplane.Platform, controlplane.PlatformInfo, context.CancelFunc, <-chan error) {
	t.Helper()
	ready := make(chan controlplane.PlatformInfo, 1)
	cfg.Ready = func(i controlplane.PlatformInfo) { ready <- i }
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case info := <-ready:
		rememberToken(t, info)
		return p, info, cancel, done
	case err := <-done:
		cancel()
		t.Fatalf("platform did not come up: %v", err)
	}
	panic("unreachable")
}

func busStatus(t *testing.T, p *controlplane.Platform) supervise.Status {
	t.Helper()
	for _, st := range p.Processes() {
		if st.Name == "bus" {
			return st
		}
	}
	t.Fatalf("the platform has no bus process: %+v", p.Processes())
	return supervise.Status{}
}

// The event bus runs apart from the control plane: a control plane that
// goes away without stopping it (kill -9, or Detach) leaves it running,
// a subscriber keeps its connection and receives what is published
// meanwhile, and the next platform on the data directory adopts the same
// process. Close stops it, after the services.
func TestPlatformBusOutlivesTheControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a small service")
	}
	manifest := tinyRepo(t)
	data := filepath.Join(filepath.Dir(manifest), ".flotilla")
	cfg := platformConfig(manifest, data)
	// Its service is no shop/kit service and speaks no TLS: permissive
	// mode lets it in and the mesh and the probes speak plaintext to it.
	cfg.MTLS = identity.Permissive
	cfg.Demo = false
	t.Cleanup(func() {
		// Whatever a failed run left behind.
		if st, err := supervise.ReadState(controlplane.ProcessDir(data), "bus"); err == nil {
			if ok, _ := st.Running(); ok {
				_ = syscall.Kill(-st.PID, syscall.SIGKILL)
			}
		}
		for _, pr := range processesUnder(t, data) {
			if pid, err := strconv.Atoi(strings.Fields(pr)[0]); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	p1, info1, cancel1, done1 := startPlatform(t, cfg)
	defer cancel1()
	bus1 := busStatus(t, p1)
	if bus1.Adopted || bus1.PID == os.Getpid() || !supervise.Alive(bus1.PID) {
		t.Fatalf("the bus is not a process of its own: %+v", bus1)
	}

	var disconnects atomic.Int32
	sub, err := nats.Connect(info1.NATS, nats.DisconnectErrHandler(func(*nats.Conn, error) { disconnects.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan *nats.Msg, 16)
	if _, err := sub.ChanSubscribe("orders.>", got); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(info1.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	send := func(subject string) {
		t.Helper()
		if err := pub.Publish(subject, []byte(subject)); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m.Subject != subject {
				t.Fatalf("received %s, want %s", m.Subject, subject)
			}
		case <-time.After(time.Minute):
			t.Fatalf("the subscriber did not receive %s", subject)
		}
	}
	send("orders.before")

	// The control plane goes away without stopping what it started.
	if err := p1.Detach(); err != nil {
		t.Fatal(err)
	}
	cancel1()
	if err := <-done1; err != nil {
		t.Fatalf("Run after Detach: %v", err)
	}
	if !supervise.Alive(bus1.PID) {
		t.Fatal("the bus died with the control plane")
	}
	send("orders.meanwhile")

	p2, info2, cancel2, done2 := startPlatform(t, cfg)
	defer cancel2()
	bus2 := busStatus(t, p2)
	if bus2.PID != bus1.PID || !bus2.Adopted {
		t.Fatalf("the next platform did not adopt the running bus %d: %+v", bus1.PID, bus2)
	}
	if info2.NATS != info1.NATS {
		t.Fatalf("the bus moved from %s to %s", info1.NATS, info2.NATS)
	}
	send("orders.after")
	var pi controlplane.PlatformInfo
	code := get(t, info2.API+"/api/platform", &pi)
	adopted := map[string]bool{}
	for _, pr := range pi.Processes {
		adopted[pr.Name] = pr.Adopted && (pr.Name != "bus" || pr.PID == bus1.PID) && (pr.Name != "dataplane" || pr.ConfigVersion > 0)
		if pr.Name == "control plane" {
			adopted[pr.Name] = !pr.Adopted && pr.PID == os.Getpid()
		}
	}
	if code != 200 || len(pi.Processes) != 3 || !adopted["control plane"] || !adopted["bus"] || !adopted["dataplane"] {
		t.Fatalf("GET /api/platform: %d, processes %+v; want this control plane, the adopted bus %d and the adopted data plane with its configuration acknowledged", code, pi.Processes, bus1.PID)
	}
	if n := disconnects.Load(); n != 0 || !sub.IsConnected() {
		t.Fatalf("the subscriber lost its connection %d time(s) (connected: %v)", n, sub.IsConnected())
	}

	// Ctrl-C: everything stops, the bus too.
	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if supervise.Alive(bus1.PID) {
		t.Fatal("the bus still runs after the platform was closed")
	}
	if _, err := supervise.ReadState(controlplane.ProcessDir(data), "bus"); !errors.Is(err, supervise.ErrNoState) {
		t.Fatalf("the bus's state after Close: %v", err)
	}
	if left := processesUnder(t, data); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
}

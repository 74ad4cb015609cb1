package dataplane

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

// TestProcessHandsItsSocketsOver: a keeper (the control plane) holds
// copies of a data plane's listening sockets. A new data plane started
// with them serves the same addresses beside the old one, which drains a
// request in flight after SIGTERM and exits, while steady requests see
// no failure; a data plane killed with SIGKILL leaves the sockets
// listening, and a request made before the next one started is answered
// by it.
func TestProcessHandsItsSocketsOver(t *testing.T) {
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
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	defer releaseAll()
	dir := shortDir(t)
	a := startChild(t, dir)
	cl := newClient(t, ClientConfig{Socket: SocketIn(dir)})
	waitFor(t, "the data plane's admin socket", func() bool { _, err := cl.Status(ctx); return err == nil })
	addr, err := cl.Declare(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.SetSubset(ctx, "a", deploy.Subset{Name: "v1", Endpoints: []string{upstream(t, "v1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Declare(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetSubset(ctx, "slow", deploy.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(slow.URL, "http://")}}); err != nil {
		t.Fatal(err)
	}
	gw, err := cl.SetGateway(ctx, &mesh.GatewayConfig{Listen: "127.0.0.1:0", Routes: []mesh.RouteEntry{
		{Path: "/a/**", Service: "a", Public: true, Rewrite: "/"},
		{Path: "/slow/**", Service: "slow", Public: true, Rewrite: "/"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	keeper := NewKeeper(dir)
	defer keeper.Close()
	if err := keeper.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !keeper.Covers(&Ack{Listeners: st.Listeners, Gateway: st.Gateway}) || len(keeper.Sockets()) != 4 {
		t.Fatalf("the keeper holds %s; want the admin socket, the gateway, a and slow", keeper)
	}

	// A request in flight at the old data plane, and steady traffic.
	type answer struct {
		code int
		body string
	}
	inflight := make(chan answer, 1)
	go func() {
		code, body := get(t, gw, "/slow/x")
		inflight <- answer{code, body}
	}()
	<-arrived
	var (
		mu       sync.Mutex
		n        int
		failures []string
	)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, target := range []string{addr, gw} {
				code, body := get(t, target, "/a/x")
				mu.Lock()
				n++
				if code != 200 || body != "v1" {
					failures = append(failures, target+": "+body)
				}
				mu.Unlock()
			}
		}
	}()

	// The new data plane takes the sockets over; the old one drains.
	b := startChild(t, dir, keeper.Files()...)
	bpid := b.cmd.Process.Pid
	waitFor(t, "the new data plane answers on the admin socket", func() bool {
		st, err := ProbeStatus(ctx, SocketIn(dir))
		return err == nil && st.PID == bpid
	})
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old data plane stops accepting", func() bool {
		// Its admin server is shut: only the new one answers.
		for i := 0; i < 5; i++ {
			if st, err := ProbeStatus(ctx, SocketIn(dir)); err != nil || st.PID != bpid {
				return false
			}
		}
		return true
	})
	releaseAll()
	if got := <-inflight; got.code != 200 || got.body != "late" {
		t.Errorf("the request in flight at the old data plane got %d %q, want 200 late", got.code, got.body)
	}
	<-a.done
	if a.err != nil {
		t.Errorf("the old data plane exited with %v, want 0", a.err)
	}
	waitFor(t, "requests answered by the new data plane alone", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n > 50
	})
	close(stop)
	<-stopped
	mu.Lock()
	t.Logf("%d requests across the hand-over", n)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed across the hand-over: %v", len(failures), n, failures[:min(len(failures), 5)])
	}
	mu.Unlock()

	// A crash: the keeper's copies keep the ports listening.
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.done
	queued := make(chan answer, 1)
	go func() {
		code, body := get(t, gw, "/a/x")
		queued <- answer{code, body}
	}()
	select {
	case got := <-queued:
		t.Fatalf("a request with no data plane running was answered at once: %d %q; want it to wait in the backlog", got.code, got.body)
	case <-time.After(200 * time.Millisecond):
	}
	startChild(t, dir, keeper.Files()...)
	if got := <-queued; got.code != 200 || got.body != "v1" {
		t.Errorf("the request made while no data plane ran got %d %q, want the next one's 200 v1", got.code, got.body)
	}
}

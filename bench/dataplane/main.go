// Command dataplane measures the data plane as its own process: the time
// from a weight change pushed by the control plane's client to the first
// request routed by it (the goal: p99 under 50 ms), the time the
// push takes to be acknowledged (applied and saved), and the time a data
// plane killed with SIGKILL takes to serve again with its saved
// configuration, from the start of the new process.
//
//	go run ./bench/dataplane                  # 300 pushes, 10 restarts
//	go run ./bench/dataplane -pushes 1000 -restarts 20
//
// The data plane runs in its own process (this binary with -role
// dataplane, the same dataplane.Main `flotilla dataplane` runs); the two
// upstreams and a prober, which sends one request after another through
// the service's stable address on a keep-alive connection, run here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/internal/supervise"
	"github.com/flotilla-ci/flotilla/mesh"
)

func main() {
	role := flag.String("role", "", "internal: run as the data plane (dataplane)")
	state := flag.String("state", "", "internal: the data plane's state directory")
	pushes := flag.Int("pushes", 300, "weight changes to measure")
	restarts := flag.Int("restarts", 10, "kill -9 and restarts to measure")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "dataplane":
		debug.SetGCPercent(400)
		inherited, lerr := dataplane.InheritedListeners()
		if lerr != nil {
			err = lerr
			break
		}
		m := &dataplane.Main{Config: dataplane.Config{State: *state, Version: "bench", Inherited: inherited,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		err = m.Run(ctx)
	case "":
		err = run(ctx, *pushes, *restarts)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/dataplane:", err)
		os.Exit(1)
	}
}

func startDataplane(dir string, inherit ...*os.File) (*exec.Cmd, error) {
	cmd := exec.Command(os.Args[0], "-role", "dataplane", "-state", dir)
	cmd.Stderr = os.Stderr
	if len(inherit) > 0 {
		cmd.ExtraFiles = inherit
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", supervise.FilesEnv, len(inherit)))
		defer func() {
			for _, f := range inherit {
				_ = f.Close()
			}
		}()
	}
	return cmd, cmd.Start()
}

type seen struct {
	version string
	at      time.Time
}

func run(ctx context.Context, pushes, restarts int) error {
	dir, err := os.MkdirTemp("", "dpbench")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	dp, err := startDataplane(dir)
	if err != nil {
		return err
	}
	defer func() { _ = dp.Process.Kill(); _ = dp.Wait() }()
	c, err := dataplane.NewClient(dataplane.ClientConfig{Socket: dataplane.SocketIn(dir)})
	if err != nil {
		return err
	}
	if err := poll(ctx, func() bool { _, err := c.Status(ctx); return err == nil }); err != nil {
		return fmt.Errorf("the data plane did not start: %w", err)
	}
	ups := map[string]string{}
	for _, v := range []string{"blue", "green"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
		defer srv.Close()
		ups[v] = strings.TrimPrefix(srv.URL, "http://")
	}
	addr, err := c.Declare(ctx, "svc")
	if err != nil {
		return err
	}
	for _, v := range []string{"blue", "green"} {
		if err := c.SetSubset(ctx, "svc", deploy.Subset{Name: v, Endpoints: []string{ups[v]}}); err != nil {
			return err
		}
	}

	// The prober: one request after another, reporting every change of
	// the version that answers.
	changes := make(chan seen, 16)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	go func() {
		last := ""
		for pctx.Err() == nil {
			req, _ := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+addr+"/", nil)
			resp, err := hc.Do(req)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if v := resp.Header.Get(mesh.UpstreamVersionHeader); v != last && v != "" {
				last = v
				select {
				case changes <- seen{v, time.Now()}:
				case <-pctx.Done():
				}
			}
		}
	}()
	cur := (<-changes).version
	var effect, ack []time.Duration
	for i := 0; i < pushes && ctx.Err() == nil; i++ {
		next := "green"
		if cur == "green" {
			next = "blue"
		}
		t0 := time.Now()
		if err := c.SetWeights(ctx, "svc", map[string]int{next: 100}); err != nil {
			return err
		}
		ack = append(ack, time.Since(t0))
		for s := range changes {
			if s.version == next {
				effect = append(effect, s.at.Sub(t0))
				break
			}
		}
		cur = next
	}
	cancel()

	// Restarts: kill -9, start again, time to the first answer.
	var serve []time.Duration
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < restarts && ctx.Err() == nil; i++ {
		_ = dp.Process.Signal(syscall.SIGKILL)
		_ = dp.Wait()
		t0 := time.Now()
		if dp, err = startDataplane(dir); err != nil {
			return err
		}
		if err := poll(ctx, func() bool {
			resp, err := probe.Get("http://" + addr + "/")
			if err != nil {
				return false
			}
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}); err != nil {
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		serve = append(serve, time.Since(t0))
	}

	// The same with the listening sockets kept (what the control plane's
	// keeper does): a request sent right after the kill waits in the
	// backlog for the next process.
	keeper := dataplane.NewKeeper(dir)
	defer keeper.Close()
	if err := keeper.Sync(ctx); err != nil {
		return err
	}
	var kept []time.Duration
	refused := 0
	for i := 0; i < restarts && ctx.Err() == nil; i++ {
		_ = dp.Process.Signal(syscall.SIGKILL)
		_ = dp.Wait()
		t0 := time.Now()
		answered := make(chan error, 1)
		go func() {
			resp, err := probe.Get("http://" + addr + "/")
			if err == nil {
				_ = resp.Body.Close()
			}
			answered <- err
		}()
		if dp, err = startDataplane(dir, keeper.Files()...); err != nil {
			return err
		}
		if err := <-answered; err != nil {
			refused++
			if err := poll(ctx, func() bool { _, err := dataplane.ProbeStatus(ctx, dataplane.SocketIn(dir)); return err == nil }); err != nil {
				return err
			}
			continue
		}
		kept = append(kept, time.Since(t0))
	}

	// Hand-overs: a new process on the same sockets, then SIGTERM to the
	// old one, under a prober that counts failed requests.
	var handovers []time.Duration
	failed, sent := 0, 0
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	proberDone := make(chan struct{})
	go func() {
		defer close(proberDone)
		for hctx.Err() == nil {
			resp, err := probe.Get("http://" + addr + "/")
			sent++
			if err != nil {
				failed++
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed++
			}
		}
	}()
	for i := 0; i < restarts && ctx.Err() == nil; i++ {
		if err := keeper.Sync(ctx); err != nil {
			return err
		}
		t0 := time.Now()
		next, err := startDataplane(dir, keeper.Files()...)
		if err != nil {
			return err
		}
		if err := poll(ctx, func() bool {
			st, err := dataplane.ProbeStatus(ctx, dataplane.SocketIn(dir))
			return err == nil && st.PID == next.Process.Pid
		}); err != nil {
			return fmt.Errorf("hand-over %d: %w", i+1, err)
		}
		_ = dp.Process.Signal(syscall.SIGTERM)
		_ = dp.Wait()
		handovers = append(handovers, time.Since(t0))
		dp = next
	}
	hcancel()
	<-proberDone

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("bench/dataplane on %d cores, %s/%s, load average %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Println()
	report("weight change pushed → first request routed by it", effect)
	report("weight change pushed → acknowledged (applied, saved)", ack)
	report("kill -9, new process started → serving its saved snapshot", serve)
	report("kill -9 with the sockets kept → a request sent at once answered", kept)
	fmt.Printf("  of which refused or failed: %d of %d\n", refused, restarts)
	report("hand-over: new process started → old one drained and gone", handovers)
	fmt.Printf("  requests failed during the hand-overs: %d of %d\n", failed, sent)
	p99 := percentile(effect, 0.99)
	verdict := "met"
	if p99 >= 50*time.Millisecond {
		verdict = "NOT met"
	}
	fmt.Printf("goal: weight change in effect within 50 ms at p99: %s (p99 %v)\n", verdict, p99.Round(10*time.Microsecond))
	return nil
}

func poll(ctx context.Context, cond func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func report(what string, d []time.Duration) {
	r := func(x time.Duration) string { return x.Round(10 * time.Microsecond).String() }
	fmt.Printf("%-60s n=%-4d p50 %-9s p90 %-9s p99 %-9s max %s\n", what, len(d),
		r(percentile(d, 0.5)), r(percentile(d, 0.9)), r(percentile(d, 0.99)), r(percentile(d, 1)))
}

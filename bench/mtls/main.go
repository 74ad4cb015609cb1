// Command mtls measures what mutual TLS adds to the mesh's hop: the same
// mesh, upstream and client, once in plaintext and once with mutual TLS
// on both legs (client → mesh listener, mesh → instance), side by side in
// one run, with connection reuse (keep-alive) as services call each other.
//
//	go run ./bench/mtls [-rate 1000] [-duration 5s] [-repeats 3] [-conns 16]
//
// For each mode it reports the latency the hop adds over calling the
// upstream directly (p50, p99), alternating the modes every repeat, then
// the most requests per second a closed loop of -conns clients gets
// through, per core of CPU the whole process used (client, mesh and
// upstream run in this one process, so the figure is the system's).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/mesh"
)

func main() {
	rate := flag.Int("rate", 1000, "requests per second of the latency runs")
	dur := flag.Duration("duration", 5*time.Second, "length of each latency run")
	repeats := flag.Int("repeats", 3, "latency runs per mode")
	conns := flag.Int("conns", 16, "concurrent clients of the throughput runs")
	flag.Parse()
	debug.SetGCPercent(400)
	if err := run(*rate, *dur, *repeats, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "mtls:", err)
		os.Exit(1)
	}
}

type setup struct {
	name   string
	client *http.Client
	url    string
	caller string // X-Flotilla-Caller (plaintext: the only way to name one)
}

func (s setup) get() (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	if s.caller != "" {
		req.Header.Set(mesh.CallerHeader, s.caller)
	}
	return s.client.Do(req)
}

func run(rate int, dur time.Duration, repeats, conns int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-mtls-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ca, err := identity.OpenCA(filepath.Join(dir, "ca"), identity.DefaultTrustDomain, nil)
	if err != nil {
		return err
	}
	w := &identity.Workloads{CA: ca, Dir: filepath.Join(dir, "workloads"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	td := ca.TrustDomain()
	src := func(ns, name string) (*identity.Source, error) {
		id, err := identity.WorkloadID(td, ns, name)
		if err != nil {
			return nil, err
		}
		d, err := w.Ensure(id)
		if err != nil {
			return nil, err
		}
		return identity.NewSource(d)
	}
	meshSrc, err := src(identity.SystemNamespace, identity.Mesh)
	if err != nil {
		return err
	}
	svcSrc, err := src(identity.DefaultNamespace, "payment-service")
	if err != nil {
		return err
	}
	callerSrc, err := src(identity.DefaultNamespace, "order-service")
	if err != nil {
		return err
	}
	body := []byte(`{"id":"p-1","status":"captured","amount_cents":4200}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	serve := func(ln net.Listener) {
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
	}
	// The upstreams: one plaintext, one mutual TLS (as a shop service).
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	serve(plainLn)
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	meshID := meshSrc.ID()
	serve(identity.Listen(tlsLn, identity.ServerConfig(svcSrc, identity.AllowIDs(meshID)), identity.Strict, nil))

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	policy := mesh.NewPolicy(map[string][]string{"order-service": {"payment-service"}, "payment-service": nil})
	newMesh := func(tlsCfg *mesh.TLSConfig, upstream string) (string, error) {
		m, err := mesh.New(mesh.Config{Logger: quiet, TLS: tlsCfg, Authz: mesh.AuthzConfig{Mode: mesh.AuthzEnforce, Unknown: mesh.UnknownDeny, Policy: policy}})
		if err != nil {
			return "", err
		}
		addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: "payment-service"})
		if err != nil {
			return "", err
		}
		return addr, m.SetSubset(ctx, "payment-service", mesh.Subset{Name: "v1", Endpoints: []string{upstream}})
	}
	plainMesh, err := newMesh(nil, plainLn.Addr().String())
	if err != nil {
		return err
	}
	tlsMesh, err := newMesh(&mesh.TLSConfig{Source: meshSrc, Mode: identity.Strict}, tlsLn.Addr().String())
	if err != nil {
		return err
	}
	plainClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	d := &identity.Dialer{Config: identity.ClientConfig(callerSrc, identity.AllowIDs(meshID))}
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 256}}
	direct := setup{"direct", plainClient, "http://" + plainLn.Addr().String() + "/payments/p-1", ""}
	setups := []setup{
		{"plaintext", plainClient, "http://" + plainMesh + "/payments/p-1", "order-service"},
		{"mtls", tlsClient, "http://" + tlsMesh + "/payments/p-1", ""},
	}
	// Warm up every path (connections made, handshakes done).
	for _, s := range append([]setup{direct}, setups...) {
		if _, err := attack(s, 200, time.Second); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	fmt.Printf("mesh hop, mutual TLS against plaintext: %d req/s, %d × %v per mode, keep-alive; load average %s\n\n", rate, repeats, dur, loadAvg())
	added := map[string][][2]time.Duration{}
	for r := 0; r < repeats; r++ {
		base, err := attack(direct, rate, dur)
		if err != nil {
			return err
		}
		for _, s := range setups {
			lat, err := attack(s, rate, dur)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			added[s.name] = append(added[s.name], [2]time.Duration{q(lat, 0.5) - q(base, 0.5), q(lat, 0.99) - q(base, 0.99)})
		}
	}
	fmt.Println("| mode | added p50 (median of repeats) | added p99 (median) | repeats p50 | repeats p99 | req/s per core |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, s := range setups {
		var p50s, p99s []time.Duration
		for _, a := range added[s.name] {
			p50s = append(p50s, a[0])
			p99s = append(p99s, a[1])
		}
		perCore, err := throughput(s, conns, 3*time.Second)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %.0f |\n", s.name, us(median(p50s)), us(median(p99s)), usList(p50s), usList(p99s), perCore)
	}
	return nil
}

// attack sends rate requests a second for d and returns their latencies.
func attack(s setup, rate int, d time.Duration) ([]time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := s.get()
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			el := time.Since(start)
			mu.Lock()
			lat = append(lat, el)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d requests failed: %w", f, *firstErr.Load())
	}
	slices.Sort(lat)
	return lat, nil
}

// throughput runs conns closed loops for d: requests per CPU-second of
// this process.
func throughput(s setup, conns int, d time.Duration) (float64, error) {
	var n atomic.Int64
	var bad atomic.Int64
	end := time.Now().Add(d)
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				resp, err := s.get()
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		return 0, fmt.Errorf("%s: %d requests failed", s.name, bad.Load())
	}
	return float64(n.Load()) / (cpuTime() - cpu0).Seconds(), nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func q(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func median(ds []time.Duration) time.Duration {
	c := slices.Clone(ds)
	slices.Sort(c)
	return c[len(c)/2]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func usList(ds []time.Duration) string {
	s := "["
	for i, d := range ds {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.0f", float64(d)/1e3)
	}
	return s + "]"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "?"
	}
	return string(b[:14])
}

// Command up measures the local platform of `flotilla up` on the shop's
// real manifest, all ten services:
//
//   - up from a clean data directory with a warm Go build cache to
//     all-ready (demo data loaded): the target is 15 s. The go
//     build of each service only links; a first run warms the cache and
//     is reported apart. Up again on the same data directory (the
//     artifacts there, nothing built) is reported too.
//   - a full deploy of all ten services with their artifacts already
//     built and no canary analysis: a deploy-time config change
//     (LOG_LEVEL in every service's deploy env) is a new version of each,
//     started from the same binary beside the old one, smoke-checked,
//     given the traffic, the old one drained and stopped, wave by wave;
//     the target is 20 s.
//   - the resident memory of the control plane (this process) plus the
//     ten services, summed from /proc: the target is 1 GB.
//
// The platform runs on a copy of flotilla.yaml beside it (the services'
// paths are relative to the manifest's directory, and the deploys edit the
// copy); the copy is removed at the end.
//
//	go run ./bench/up               # from the repository root
//	go run ./bench/up -deploys 5
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/deploy"
)

func main() {
	// The platform runs its event bus and its data plane as this
	// program's bus and dataplane subcommands.
	if len(os.Args) > 1 && (os.Args[1] == "bus" || os.Args[1] == "dataplane") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		var err error
		if os.Args[1] == "bus" {
			err = controlplane.ServeBus(ctx, os.Args[2:], os.Stderr)
		} else {
			err = dataplane.Command(ctx, os.Args[2:], os.Stderr, "bench")
		}
		stop()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench/up %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	deploys := flag.Int("deploys", 3, "full deploys of the ten services to time")
	ups := flag.Int("ups", 3, "ups from a clean data directory to time (after one that warms the build cache)")
	file := flag.String("f", "flotilla.yaml", "the shop's manifest (run from the repository root)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *file, *ups, *deploys); err != nil {
		fmt.Fprintln(os.Stderr, "bench/up:", err)
		os.Exit(1)
	}
}

// platform is a running platform.
type platform struct {
	info controlplane.PlatformInfo
	stop func() error
}

func up(ctx context.Context, manifest, data string) (*platform, error) {
	return upWith(ctx, manifest, data, nil)
}

func upWith(ctx context.Context, manifest, data string, events func(deploy.Event)) (*platform, error) {
	cfg := controlplane.DefaultPlatformConfig(manifest)
	cfg.Events = events
	cfg.Data = data
	cfg.APIAddr, cfg.GatewayAddr, cfg.RegistryAddr, cfg.BrokerAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan controlplane.PlatformInfo, 1)
	cfg.Ready = func(i controlplane.PlatformInfo) { ready <- i }
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	select {
	case info := <-ready:
		return &platform{info: info, stop: func() error { cancel(); return <-done }}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("up: %w", err)
	}
}

func run(ctx context.Context, file string, ups, deploys int) error {
	real, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(real)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(real), "flotilla.e2e-bench-*.yaml")
	if err != nil {
		return err
	}
	manifest := f.Name()
	defer func() { _ = os.Remove(manifest) }()
	if _, err := f.Write(src); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "flotilla-bench-up-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	fmt.Printf("load average before: %s\n", loadavg())

	// Up from a clean data directory, the Go build cache warm.
	var times, builds []time.Duration
	var last string
	for i := 0; i <= ups; i++ {
		data := filepath.Join(tmp, "up"+strconv.Itoa(i))
		var bs buildSpans
		t0 := time.Now()
		p, err := upWith(ctx, manifest, data, bs.event)
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if i > 0 {
			builds = append(builds, bs.total())
		}
		if err := p.stop(); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		if i == 0 {
			fmt.Printf("up (warming the Go build cache): %d services ready in %v\n", len(p.info.Services), d.Round(time.Millisecond))
			continue
		}
		times = append(times, d)
		last = data
		fmt.Printf("up %d from a clean data directory: %d services ready, demo data loaded, in %v, of which %v building (the waves' go build spans)\n",
			i, len(p.info.Services), d.Round(time.Millisecond), bs.total().Round(time.Millisecond))
	}
	med := median(times)
	fmt.Printf("flotilla up, warm build cache, to all-ready: median %v over %d runs, of which %v building (target 15 s: %s)\n",
		med.Round(time.Millisecond), len(times), median(builds).Round(time.Millisecond), against(med, 15*time.Second))

	// Up again on the last data directory: the artifacts are there.
	t0 := time.Now()
	p, err := up(ctx, manifest, last)
	if err != nil {
		return err
	}
	defer func() { _ = p.stop() }()
	fmt.Printf("up again on the same data directory (nothing to build): %v\n", time.Since(t0).Round(time.Millisecond))
	rss, n, err := residentMemory(ctx, &p.info)
	if err != nil {
		return err
	}
	fmt.Printf("resident memory after up: %s (control plane %s + %d services %s)\n", mib(rss[0]+rss[1]), mib(rss[0]), n, mib(rss[1]))

	// Full deploys: a config change is a new version of every service.
	client := apiClient(&p.info)
	times = nil
	for i := 1; i <= deploys; i++ {
		changed, err := withDeployEnv(src, "LOG_LEVEL", []string{"warn", "info", "debug", "error"}[i%4])
		if err != nil {
			return err
		}
		if err := os.WriteFile(manifest, changed, 0o644); err != nil {
			return err
		}
		t := time.Now()
		rep, err := client.Deploy(ctx, deploy.Request{All: true, Who: "bench"}, nil)
		if err != nil {
			return fmt.Errorf("deploy %d: %w", i, err)
		}
		d := time.Since(t)
		ok := 0
		for _, oc := range rep.Outcomes {
			if oc.Result == deploy.Succeeded {
				ok++
			}
		}
		if ok != len(p.info.Services) {
			return fmt.Errorf("deploy %d: %d of %d services succeeded", i, ok, len(p.info.Services))
		}
		times = append(times, d)
		fmt.Printf("deploy %d: all %d services to a new version in %d waves: %v\n", i, ok, len(rep.Plan.Waves), d.Round(time.Millisecond))
	}
	med = median(times)
	fmt.Printf("full deploy of the ten shop services, artifacts built, no canary analysis: median %v over %d runs (target 20 s: %s; the scenario's 15 minutes: %.0fx faster)\n",
		med.Round(time.Millisecond), len(times), against(med, 20*time.Second), (15*time.Minute).Seconds()/med.Seconds())
	rss, n, err = residentMemory(ctx, &p.info)
	if err != nil {
		return err
	}
	fmt.Printf("resident memory after the deploys: %s (control plane %s + %d services %s; target 1 GB)\n", mib(rss[0]+rss[1]), mib(rss[0]), n, mib(rss[1]))
	fmt.Printf("load average after: %s\n", loadavg())
	return nil
}

// residentMemory sums VmRSS of this process (the control plane) and of
// every service instance the platform's status lists.
func residentMemory(ctx context.Context, info *controlplane.PlatformInfo) (rss [2]int64, n int, err error) {
	st, err := apiClient(info).Status(ctx)
	if err != nil {
		return rss, 0, err
	}
	if rss[0], err = vmRSS(os.Getpid()); err != nil {
		return rss, 0, err
	}
	for _, s := range st.Services {
		for _, in := range s.Instances {
			r, err := vmRSS(in.PID)
			if err != nil {
				return rss, 0, fmt.Errorf("%s: %w", s.Service, err)
			}
			rss[1] += r
			n++
		}
	}
	return rss, n, nil
}

// vmRSS reads a process's resident set size from /proc, in bytes.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
}

// against compares a figure with its target.
func against(d, target time.Duration) string {
	if d <= target {
		return fmt.Sprintf("met, %.1fx under it", target.Seconds()/d.Seconds())
	}
	return fmt.Sprintf("missed, %.1fx over it", d.Seconds()/target.Seconds())
}

// buildSpans collects, per wave, the span from its first build step to
// its last start step: the time the release's critical path spends
// building (waves run one after the other, their services in parallel).
type buildSpans struct {
	mu    sync.Mutex
	first map[int]time.Time
	last  map[int]time.Time
}

func (b *buildSpans) event(e deploy.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.first == nil {
		b.first, b.last = map[int]time.Time{}, map[int]time.Time{}
	}
	switch e.Step {
	case deploy.StepBuild:
		if t, ok := b.first[e.Wave]; !ok || e.Time.Before(t) {
			b.first[e.Wave] = e.Time
		}
	case deploy.StepStart:
		if e.Time.After(b.last[e.Wave]) {
			b.last[e.Wave] = e.Time
		}
	}
}

func (b *buildSpans) total() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var d time.Duration
	for w, t := range b.first {
		if l, ok := b.last[w]; ok && l.After(t) {
			d += l.Sub(t)
		}
	}
	return d
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// withDeployEnv returns the manifest src with key=value in every
// service's deploy.env.
func withDeployEnv(src []byte, key, value string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	child := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		v := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
		return v
	}
	services := child(doc.Content[0], "services")
	for i := 1; i < len(services.Content); i += 2 {
		v := child(child(child(services.Content[i], "deploy"), "env"), key)
		v.Kind, v.Tag, v.Value = yaml.ScalarNode, "!!str", value
	}
	return yaml.Marshal(&doc)
}

// apiClient is a client of the platform's API with its admin token.
func apiClient(info *controlplane.PlatformInfo) *controlplane.Client {
	tok, _ := controlplane.ReadToken(controlplane.TokenFile(info.Data, controlplane.RoleAdmin))
	return controlplane.NewClient(info.API).WithToken(tok)
}

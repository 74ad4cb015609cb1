// Command canaryrelease measures canary releases on the local platform of
// `flotilla up`, the shop's real manifest and all ten services, as users
// run them:
//
//   - the MTTR of an obviously bad canary: a user-service version failing
//     50% of its requests (http.error_rate=0.5) released under steady
//     traffic with steps 5/25/50/100, an interval of 2 s and a threshold
//     of 2, timed from the deploy's start to 100% back on the stable
//     version (the rollback decision), and from the first failed request
//     a client saw to the same point; the target is 10 s;
//   - a release of all ten services with canaries (steps 10/50/100,
//     interval 5 s, the project's defaults otherwise), five waves, each
//     canary judged on the traffic its synthetic load drives through its
//     lane (the services' smoke checks replayed) when the interval lacks
//     min_requests; the target is 3 minutes.
//
// The platform runs on a copy of flotilla.yaml beside it (the deploys edit
// the copy), removed at the end. The bad version has no smoke checks, so
// its canary, not a smoke check, is what catches it.
//
//	go run ./bench/canaryrelease                # from the repository root
//	go run ./bench/canaryrelease -mttr 5 -releases 2
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/identity"
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
			fmt.Fprintf(os.Stderr, "bench/canaryrelease %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	mttr := flag.Int("mttr", 3, "bad canaries to time")
	releases := flag.Int("releases", 1, "releases of all ten services with canaries to time")
	file := flag.String("f", "flotilla.yaml", "the shop's manifest (run from the repository root)")
	rate := flag.Int("rate", 50, "requests per second of steady traffic to user-service during the bad canaries")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *file, *mttr, *releases, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "bench/canaryrelease:", err)
		os.Exit(1)
	}
}

const (
	badPolicy  = `{steps: [5, 25, 50, 100], interval: 2s, threshold: 2, min_requests: 5, max_error_rate: 0.01, lane_first: false, bake: 0s}`
	tenDefault = `{steps: [10, 50, 100], interval: 5s, threshold: 2, min_requests: 20, max_error_rate: 0.01, lane_first: false, synthetic_load: {rate: 20}, bake: 1m, inconclusive_limit: 8}`
)

// edit returns the manifest with every service's canary block removed
// (the defaults then apply to all), the defaults' canary replaced by def,
// every service's deploy env given REV=rev, and user-service's given
// policy and faults (and no smoke checks) when bad.
func edit(src []byte, def string, rev int, bad string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	get := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		v := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
		return v
	}
	del := func(m *yaml.Node, key string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
				return
			}
		}
	}
	mapping := func(s string) (*yaml.Node, error) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			return nil, err
		}
		return n.Content[0], nil
	}
	root := doc.Content[0]
	d, err := mapping(def)
	if err != nil {
		return nil, err
	}
	*get(get(root, "defaults"), "canary") = *d
	services := get(root, "services")
	for i := 0; i+1 < len(services.Content); i += 2 {
		name, svc := services.Content[i].Value, services.Content[i+1]
		del(svc, "canary")
		env := get(get(svc, "deploy"), "env")
		v := get(env, "REV")
		v.Kind, v.Tag, v.Value = yaml.ScalarNode, "!!str", strconv.Itoa(rev)
		if name == "user-service" && bad != "" {
			p, err := mapping(badPolicy)
			if err != nil {
				return nil, err
			}
			*get(svc, "canary") = *p
			del(svc, "smoke")
			f := get(env, "FAULTS")
			f.Kind, f.Tag, f.Value = yaml.ScalarNode, "!!str", bad
		}
	}
	return yaml.Marshal(&doc)
}

func run(ctx context.Context, file string, mttrRuns, releases, rate int) error {
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
	rev := 0
	first, err := edit(src, tenDefault, rev, "")
	if err == nil {
		_, err = f.Write(first)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	data, err := os.MkdirTemp("", "flotilla-bench-canary-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(data) }()
	fmt.Printf("load average before: %s\n", loadavg())

	cfg := controlplane.DefaultPlatformConfig(manifest)
	cfg.Data, cfg.Demo = data, false
	// The load below calls user-service's mesh address in plaintext:
	// permissive mode lets it in (and counts it).
	cfg.MTLS = identity.Permissive
	cfg.APIAddr, cfg.GatewayAddr, cfg.RegistryAddr, cfg.BrokerAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan controlplane.PlatformInfo, 1)
	cfg.Ready = func(i controlplane.PlatformInfo) { ready <- i }
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- p.Run(pctx) }()
	var info controlplane.PlatformInfo
	select {
	case info = <-ready:
	case err := <-done:
		cancel()
		return fmt.Errorf("up: %w", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "stop:", err)
		}
	}()
	fmt.Printf("up: %d services ready in %v\n", len(info.Services), time.Since(t0).Round(time.Millisecond))
	tok, err := controlplane.ReadToken(controlplane.TokenFile(info.Data, controlplane.RoleAdmin))
	if err != nil {
		return err
	}
	api := controlplane.NewClient(info.API).WithToken(tok)
	var userAddr string
	for _, s := range info.Services {
		if s.Name == "user-service" {
			userAddr = s.Mesh
		}
	}

	// The MTTR of a bad canary under steady traffic.
	var sinceDeploy, sinceFailure []time.Duration
	for i := 1; i <= mttrRuns; i++ {
		rev++
		changed, err := edit(src, tenDefault, rev, "http.error_rate=0.5")
		if err != nil {
			return err
		}
		if err := os.WriteFile(manifest, changed, 0o644); err != nil {
			return err
		}
		l := startLoad("http://"+userAddr+"/.well-known/jwks.json", rate)
		start := time.Now()
		rep, err := api.Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Who: "bench"}, nil)
		took := time.Since(start)
		sent, failed, firstFail := l.stop()
		if !errors.Is(err, deploy.ErrReleaseFailed) {
			return fmt.Errorf("bad canary %d: %w, want it rolled back", i, err)
		}
		cs, err := api.Canaries(ctx, "user-service")
		if err != nil {
			return err
		}
		var back time.Time
		var maxWeight int
		for _, d := range cs[0].Decisions {
			maxWeight = max(maxWeight, d.Weight)
			if d.Action == canary.ActionRollback {
				back = d.Time
			}
		}
		if back.IsZero() || cs[0].Version != rep.Outcomes[0].Version {
			return fmt.Errorf("bad canary %d: no rollback decision in %+v", i, cs[0])
		}
		sinceDeploy = append(sinceDeploy, back.Sub(start))
		fromFail := time.Duration(0)
		if !firstFail.IsZero() {
			fromFail = back.Sub(firstFail)
			sinceFailure = append(sinceFailure, fromFail)
		}
		fmt.Printf("bad canary %d: 100%% back on stable %v after the deploy began (%v after the first failed request; the deploy returned after %v, the bad version stopped); at most %d%% of the traffic, %d of %d requests failed\n",
			i, back.Sub(start).Round(time.Millisecond), fromFail.Round(time.Millisecond), took.Round(time.Millisecond), maxWeight, failed, sent)
	}
	if len(sinceDeploy) > 0 {
		med := median(sinceDeploy)
		fmt.Printf("MTTR of a canary failing 50%% (interval 2 s, threshold 2), deploy to 100%% on stable: median %v, min %v, max %v over %d runs (target 10 s: %s); from the first failed request: median %v\n",
			med.Round(time.Millisecond), minOf(sinceDeploy).Round(time.Millisecond), maxOf(sinceDeploy).Round(time.Millisecond), len(sinceDeploy), against(med, 10*time.Second), median(sinceFailure).Round(time.Millisecond))
	}

	// Releases of all ten services with canaries.
	var times []time.Duration
	for i := 1; i <= releases; i++ {
		rev++
		changed, err := edit(src, tenDefault, rev, "")
		if err != nil {
			return err
		}
		if err := os.WriteFile(manifest, changed, 0o644); err != nil {
			return err
		}
		var mu sync.Mutex
		waves := map[int][2]time.Time{}
		start := time.Now()
		rep, err := api.Deploy(ctx, deploy.Request{All: true, Who: "bench"}, func(e deploy.Event) {
			mu.Lock()
			defer mu.Unlock()
			w := waves[e.Wave]
			if w[0].IsZero() || e.Time.Before(w[0]) {
				w[0] = e.Time
			}
			if e.Time.After(w[1]) {
				w[1] = e.Time
			}
			waves[e.Wave] = w
		})
		d := time.Since(start)
		if err != nil {
			return fmt.Errorf("release %d: %w", i, err)
		}
		ok := 0
		for _, oc := range rep.Outcomes {
			if oc.Result == deploy.Succeeded {
				ok++
			}
		}
		if ok != len(info.Services) {
			return fmt.Errorf("release %d: %d of %d services promoted", i, ok, len(info.Services))
		}
		times = append(times, d)
		var spans []string
		for w := 1; w <= len(rep.Plan.Waves); w++ {
			spans = append(spans, fmt.Sprintf("wave %d %v", w, waves[w][1].Sub(waves[w][0]).Round(100*time.Millisecond)))
		}
		fmt.Printf("release %d: all %d services promoted through their canaries in %d waves in %v (%s)\n", i, ok, len(rep.Plan.Waves), d.Round(time.Millisecond), strings.Join(spans, ", "))
	}
	if len(times) > 0 {
		med := median(times)
		fmt.Printf("release of the ten shop services with canaries (steps 10/50/100, interval 5 s): median %v over %d run(s) (target 3 min: %s); the floor is 5 waves x 3 intervals = 75 s\n",
			med.Round(time.Millisecond), len(times), against(med, 3*time.Minute))
	}
	fmt.Printf("load average after: %s\n", loadavg())
	return nil
}

// load is steady traffic to one URL.
type load struct {
	halt      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	sent      int
	failed    int
	firstFail time.Time
}

func startLoad(url string, rate int) *load {
	l := &load{halt: make(chan struct{})}
	c := &http.Client{Timeout: 5 * time.Second}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-l.halt:
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				resp, err := c.Get(url)
				bad := err != nil
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					bad = resp.StatusCode >= 500
				}
				l.mu.Lock()
				defer l.mu.Unlock()
				l.sent++
				if bad {
					l.failed++
					if l.firstFail.IsZero() {
						l.firstFail = time.Now()
					}
				}
			}()
		}
	}()
	return l
}

func (l *load) stop() (sent, failed int, firstFail time.Time) {
	close(l.halt)
	l.wg.Wait()
	return l.sent, l.failed, l.firstFail
}

// against compares a figure with its target.
func against(d, target time.Duration) string {
	if d <= target {
		return fmt.Sprintf("met, %.1fx under it", target.Seconds()/d.Seconds())
	}
	return fmt.Sprintf("missed, %.1fx over it", d.Seconds()/target.Seconds())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func minOf(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return m
}

func maxOf(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// Command mesh measures the latency flotilla's built-in mesh adds to one
// hop, side by side with nginx as a reverse proxy in front of the same
// upstream and with the direct call, at a fixed open-loop rate (vegeta).
//
// The upstream, the mesh and nginx each run in their own process; the
// load generator runs here. Within a repeat the targets alternate every
// second (the order rotating), so bursts of other work on the machine hit
// all of them alike; each proxy's added latency is taken against the
// direct call of the same repeat; the report gives the median of the repeats, as
// ../shared/ref/mesh-baseline.md recommends on this noisy 2-core machine.
//
//	go run ./bench/mesh                       # 1000 req/s, 3 repeats of 10 s
//	go run ./bench/mesh -repeats 5 -duration 20s
//
// nginx (Debian package nginx) is started with a generated config in a
// temporary directory and stopped at the end; without it the benchmark
// says so and reports the mesh against the direct call only.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/mesh"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func main() {
	role := flag.String("role", "", "internal: run as the upstream or the mesh process")
	upstreamAddr := flag.String("upstream", "", "internal: the upstream's address (mesh role)")
	rate := flag.Int("rate", 1000, "requests per second (open loop)")
	duration := flag.Duration("duration", 10*time.Second, "measured load per target and repeat")
	slice := flag.Duration("slice", time.Second, "the targets alternate every slice within a repeat")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load on each target before the first repeat")
	repeats := flag.Int("repeats", 3, "interleaved repeats (the report gives their median)")
	workers := flag.Int("nginx-workers", 2, "nginx worker_processes")
	gogc := flag.Int("mesh-gogc", 400, "GOGC of the mesh process")
	procs := flag.Int("mesh-procs", 0, "GOMAXPROCS of the mesh process (0: all cores)")
	cpuprofile := flag.String("mesh-cpuprofile", "", "write the mesh process's CPU profile to this file")
	std := flag.Bool("std", false, "mesh role: forward with net/http's server and Transport; bench: also measure that variant (mesh-std)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "upstream":
		err = runUpstream(ctx)
	case "mesh":
		err = runMesh(ctx, *upstreamAddr, *gogc, *std, *cpuprofile)
	case "":
		err = runBench(ctx, benchConfig{rate: *rate, duration: *duration, slice: *slice, warmup: *warmup, repeats: *repeats, nginxWorkers: *workers, gogc: *gogc, procs: *procs, std: *std, cpuprofile: *cpuprofile})
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/mesh:", err)
		os.Exit(1)
	}
}

// body is what the upstream answers: a small JSON document.
var body = []byte(`{"id":"9f1c2d3e","sku":"SKU-1234","name":"Espresso beans 1kg","price_cents":2450,"stock":118}` + "\n")

func runUpstream(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	fmt.Println("ADDR", ln.Addr().String())
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runMesh(ctx context.Context, upstream string, gogc int, std bool, cpuprofile string) (retErr error) {
	debug.SetGCPercent(gogc)
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer func() {
			// The profile is written as it is stopped: a failed close is a
			// lost profile.
			if err := f.Close(); err != nil && retErr == nil {
				retErr = fmt.Errorf("cpu profile: %w", err)
			}
		}()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	m, err := mesh.New(mesh.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StdServer: std, StdTransport: std})
	if err != nil {
		return err
	}
	addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: "product-service"})
	if err != nil {
		return err
	}
	if err := m.SetSubset(ctx, "product-service", mesh.Subset{Name: "v1", Endpoints: []string{upstream}}); err != nil {
		return err
	}
	fmt.Println("ADDR", addr)
	<-ctx.Done()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return m.Close(c)
}

type benchConfig struct {
	rate                    int
	duration, warmup, slice time.Duration
	repeats, nginxWorkers   int
	gogc, procs             int
	std                     bool
	cpuprofile              string
}

type target struct {
	// client is the target's own keep-alive pool, shared by the attacker
	// of every slice (a vegeta attacker cannot be reused).
	client *http.Client
	name   string
	url    string
	pids   func() []int // processes whose CPU is the proxy's (nil for direct)
}

type run struct {
	p50, p90, p99, max time.Duration
	n, errs            int
	cpuPerReq          time.Duration // the proxy's CPU per request
}

func runBench(ctx context.Context, cfg benchConfig) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	up, upAddr, err := startChild(ctx, exe, nil, "-role", "upstream")
	if err != nil {
		return fmt.Errorf("start upstream: %w", err)
	}
	defer stopChild(up)
	env := []string{"GOGC=" + strconv.Itoa(cfg.gogc)}
	if cfg.procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(cfg.procs))
	}
	margs := []string{"-role", "mesh", "-upstream", upAddr, "-mesh-gogc", strconv.Itoa(cfg.gogc)}
	if cfg.cpuprofile != "" {
		margs = append(margs, "-mesh-cpuprofile", cfg.cpuprofile)
	}
	mp, meshAddr, err := startChild(ctx, exe, env, margs...)
	if err != nil {
		return fmt.Errorf("start mesh: %w", err)
	}
	defer stopChild(mp)
	targets := []target{
		{name: "direct", url: "http://" + upAddr + "/products/1"},
		{name: "mesh", url: "http://" + meshAddr + "/products/1", pids: func() []int { return []int{mp.Process.Pid} }},
	}
	if cfg.std {
		sp, stdAddr, err := startChild(ctx, exe, env, "-role", "mesh", "-std", "-upstream", upAddr, "-mesh-gogc", strconv.Itoa(cfg.gogc))
		if err != nil {
			return fmt.Errorf("start mesh-std: %w", err)
		}
		defer stopChild(sp)
		targets = append(targets, target{name: "mesh-std", url: "http://" + stdAddr + "/products/1", pids: func() []int { return []int{sp.Process.Pid} }})
	}
	ng, ngAddr, err := startNginx(ctx, upAddr, cfg.nginxWorkers)
	switch {
	case errors.Is(err, exec.ErrNotFound):
		fmt.Println("nginx is not installed (apt-get install -y nginx): reporting the mesh against the direct call only")
	case err != nil:
		return fmt.Errorf("start nginx: %w", err)
	default:
		defer ng.stop()
		targets = append(targets, target{name: "nginx", url: "http://" + ngAddr + "/products/1", pids: ng.pids})
	}

	load0 := loadAvg()
	fmt.Printf("mesh hop latency: %d req/s open loop (vegeta), %d repeats of %v per target, alternating every %v; %d cores, %s; mesh GOGC=%d GOMAXPROCS=%s; nginx worker_processes %d\n",
		cfg.rate, cfg.repeats, cfg.duration, cfg.slice, runtime.NumCPU(), runtime.Version(), cfg.gogc, procsString(cfg.procs), cfg.nginxWorkers)
	for i := range targets {
		targets[i].client = &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 256, DisableCompression: true,
				DialContext: (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
			},
		}
		if err := attack(ctx, targets[i], cfg.rate, cfg.warmup, &sample{}); err != nil {
			return fmt.Errorf("warm up %s: %w", targets[i].name, err)
		}
	}
	// Each repeat alternates the targets slice by slice (the order rotating
	// every slice), so a burst of other work on the machine lands on all of
	// them alike instead of on whichever ran during it.
	slices := max(1, int(cfg.duration/cfg.slice))
	results := map[string][]run{}
	for rep := 0; rep < cfg.repeats; rep++ {
		samples := make([]sample, len(targets))
		for sl := 0; sl < slices; sl++ {
			for k := range targets {
				i := (k + sl + rep) % len(targets)
				if err := attack(ctx, targets[i], cfg.rate, cfg.slice, &samples[i]); err != nil {
					return err
				}
			}
		}
		for i, t := range targets {
			r, err := summarize(&samples[i])
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			results[t.name] = append(results[t.name], r)
			fmt.Printf("  repeat %d %-8s  p50 %7s  p90 %7s  p99 %7s  max %8s  n %6d  errors %d%s\n", rep+1, t.name,
				us(r.p50), us(r.p90), us(r.p99), us(r.max), r.n, r.errs, cpuNote(r))
		}
	}
	report(targets, results)
	fmt.Printf("load average before %s, after %s (above %d the machine was busy with other work: rerun)\n", load0, loadAvg(), runtime.NumCPU())
	return nil
}

// loadAvg returns the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func procsString(p int) string {
	if p == 0 {
		return "all"
	}
	return strconv.Itoa(p)
}

func cpuNote(r run) string {
	if r.cpuPerReq == 0 {
		return ""
	}
	return fmt.Sprintf("  proxy CPU %.0f µs/req", float64(r.cpuPerReq)/1e3)
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/1e3) }

// sample is what one stretch of load on one target gave.
type sample struct {
	lat     []time.Duration
	n, errs int
	cpu     time.Duration
}

// attack sends rate req/s to the target for d with the target's own
// attacker (its keep-alive connections carry over between slices).
func attack(ctx context.Context, t target, rate int, d time.Duration, into *sample) error {
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: t.url})
	atk := vegeta.NewAttacker(vegeta.Client(t.client), vegeta.Workers(16))
	cpu0 := cpuOf(t.pids)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			atk.Stop()
		case <-done:
		}
	}()
	for res := range atk.Attack(tr, vegeta.Rate{Freq: rate, Per: time.Second}, d, t.name) {
		into.n++
		if res.Code != 200 || res.Error != "" {
			into.errs++
			continue
		}
		into.lat = append(into.lat, res.Latency)
	}
	close(done)
	into.cpu += cpuOf(t.pids) - cpu0
	return ctx.Err()
}

func summarize(s *sample) (run, error) {
	r := run{n: s.n, errs: s.errs}
	if len(s.lat) == 0 {
		return r, fmt.Errorf("no successful request of %d", s.n)
	}
	lat := s.lat
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[int(math.Ceil(p*float64(len(lat))))-1] }
	r.p50, r.p90, r.p99, r.max = q(0.50), q(0.90), q(0.99), lat[len(lat)-1]
	if s.n > 0 {
		r.cpuPerReq = s.cpu / time.Duration(s.n)
	}
	return r, nil
}

// report prints each proxy's added latency (proxy minus the direct run of
// the same repeat), the median over repeats, and the mesh/nginx ratios.
func report(targets []target, results map[string][]run) {
	type added struct{ p50, p90, p99 []time.Duration }
	deltas := map[string]*added{}
	direct := results["direct"]
	for _, t := range targets[1:] {
		a := &added{}
		for i, r := range results[t.name] {
			a.p50 = append(a.p50, r.p50-direct[i].p50)
			a.p90 = append(a.p90, r.p90-direct[i].p90)
			a.p99 = append(a.p99, r.p99-direct[i].p99)
		}
		deltas[t.name] = a
	}
	fmt.Println()
	fmt.Println("| target | p50 | p90 | p99 | added p50 | added p90 | added p99 | proxy CPU/req |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, t := range targets {
		rs := results[t.name]
		row := fmt.Sprintf("| %s | %s | %s | %s |", t.name, us(median(pick(rs, 0))), us(median(pick(rs, 1))), us(median(pick(rs, 2))))
		if a := deltas[t.name]; a != nil {
			row += fmt.Sprintf(" %s %v | %s %v | %s %v | %s |", us(median(a.p50)), usList(a.p50), us(median(a.p90)), usList(a.p90), us(median(a.p99)), usList(a.p99), us(median(pick(rs, 3))))
		} else {
			row += " – | – | – | – |"
		}
		fmt.Println(row)
	}
	fmt.Println("(medians over the repeats; added = the proxy's percentile minus the direct run's in the same repeat, per repeat in brackets)")
	m := deltas["mesh"]
	p99 := median(m.p99)
	verdict := "met"
	switch {
	case p99 < 0:
		verdict = "not measurable (negative: the direct run's tail was worse, i.e. noise)"
	case p99 >= 500*time.Microsecond:
		verdict = "NOT met"
	}
	fmt.Printf("\nmesh added p99 %s: target < 500µs %s\n", us(p99), verdict)
	if n := deltas["nginx"]; n != nil {
		ratio := func(a, b time.Duration) string {
			if b <= 0 || a < 0 {
				return "n/a (a negative added latency: noise)"
			}
			return fmt.Sprintf("%.2f×", float64(a)/float64(b))
		}
		fmt.Printf("mesh / nginx added latency: p50 %s, p90 %s (target ≤ 1.5×); p99 %s (nginx's added p99 is within this machine's noise: indicative only)\n",
			ratio(median(m.p50), median(n.p50)), ratio(median(m.p90), median(n.p90)), ratio(p99, median(n.p99)))
	}
}

func pick(rs []run, field int) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = [...]time.Duration{r.p50, r.p90, r.p99, r.cpuPerReq}[field]
	}
	return out
}

func usList(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = strconv.FormatInt(d.Microseconds(), 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startChild runs this binary in a role and reads the "ADDR host:port"
// line it prints.
func startChild(ctx context.Context, exe string, env []string, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		stopChild(cmd)
		return nil, "", fmt.Errorf("%v: no address printed (%q, %v)", args, line, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
	}
	return cmd, addr, nil
}

func stopChild(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

type nginx struct {
	cmd *exec.Cmd
	dir string
}

// startNginx runs nginx as a reverse proxy to upstream on a free loopback
// port, with keep-alive to the upstream (as the mesh has).
func startNginx(ctx context.Context, upstream string, workers int) (*nginx, string, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return nil, "", exec.ErrNotFound
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "flotilla-bench-nginx-")
	if err != nil {
		return nil, "", err
	}
	conf := fmt.Sprintf(`worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  upstream up { server %[3]s; keepalive 256; }
  server {
    listen 127.0.0.1:%[4]d;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, workers, dir, upstream, port)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-c", file, "-p", dir, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	ng := &nginx{cmd: cmd, dir: dir}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if i > 50 || ctx.Err() != nil {
			ng.stop()
			return nil, "", fmt.Errorf("nginx did not listen on %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ng, addr, nil
}

func (n *nginx) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGQUIT) // graceful
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(n.dir)
}

// pids returns nginx's master and its workers.
func (n *nginx) pids() []int {
	master := n.cmd.Process.Pid
	out := []int{master}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if f := statFields(b); len(f) > 1 && f[1] == strconv.Itoa(master) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// statFields returns /proc/PID/stat's fields after the command name,
// starting with the state (so f[1] is the ppid, f[11] utime, f[12] stime).
func statFields(b []byte) []string {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuOf sums user+system CPU of the processes (clock ticks of 10 ms).
func cpuOf(pids func() []int) time.Duration {
	if pids == nil {
		return 0
	}
	var ticks int64
	for _, pid := range pids() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		f := statFields(b)
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

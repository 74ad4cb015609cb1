// Command canary measures one canary analysis of 10,000 latency samples
// per side (the canary and its baseline), the Mann-Whitney U test
// included: the goal is under 5 ms. Side by side, scipy's
// mannwhitneyu (what Kayenta-style analyses are usually prototyped with)
// runs on the same samples in the real interpreter, and its U and p are
// checked against flotilla's.
//
// Three figures, each the median of -repeats runs:
//
//   - analysis: from raw samples, what one interval's judging costs when
//     the figures arrive as samples: a sort of each side, binning into
//     the mesh's latency buckets, quantiles, the Mann-Whitney U test on
//     the samples, and every judge (error rate, p50, p99, the baseline
//     comparison of latency and errors);
//   - mann-whitney: the rank test on the raw samples alone (sort and
//     mid-ranks with the tie correction);
//   - judges on histograms: what the loop runs per interval on the mesh's
//     own figures (bucket counts, no samples).
//
// Run it with:
//
//	go run ./bench/canary                 # 10,000 per side, 200 repeats
//	go run ./bench/canary -n 100000 -repeats 50
//
// The peer needs Debian's python3-scipy; without it the benchmark says so
// and reports flotilla alone.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

// The mesh's latency buckets (mesh/metrics.go).
var bounds = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

func main() {
	n := flag.Int("n", 10000, "latency samples per side")
	repeats := flag.Int("repeats", 200, "timed runs of each measurement")
	python := flag.String("python", "/usr/bin/python3", "the interpreter that runs the scipy peer")
	flag.Parse()

	rng := rand.New(rand.NewPCG(7, 11))
	// Latencies as a mesh measures them (microsecond resolution, so with
	// ties): log-normal, median 20 ms for the baseline, 22 ms for the
	// canary; errors 0.5% and 1%.
	draw := func(median time.Duration, errRate float64) ([]float64, int64) {
		xs := make([]float64, *n)
		var errs int64
		for i := range xs {
			xs[i] = math.Round(float64(median/time.Microsecond) * math.Exp(0.5*rng.NormFloat64()))
			if rng.Float64() < errRate {
				errs++
			}
		}
		return xs, errs
	}
	base, baseErrs := draw(20*time.Millisecond, 0.005)
	can, canErrs := draw(22*time.Millisecond, 0.01)

	p := canary.DefaultPolicy()
	p.MaxP50, p.MaxP99 = 100*time.Millisecond, 500*time.Millisecond
	p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.05}
	judges := canary.Judges(p, nil)
	ctx := context.Background()

	var lastRaw canary.RankTest
	var lastJudged []canary.Judgement
	analysis := func() {
		cs, csorted := statsOf(can, canErrs)
		bs, bsorted := statsOf(base, baseErrs)
		r, err := canary.MannWhitneyU(csorted, bsorted)
		if err != nil {
			fail(err)
		}
		lastRaw = r
		o := canary.Observation{Service: "payment-service", Version: "v2", Baseline: "v1", Window: time.Minute,
			Canary: cs, Base: bs, MinRequests: p.MinRequests, BaselineWeight: 90}
		lastJudged = lastJudged[:0]
		for _, j := range judges {
			lastJudged = append(lastJudged, j.Judge(ctx, o))
		}
	}
	rankOnly := func() {
		if _, err := canary.MannWhitneyU(can, base); err != nil {
			fail(err)
		}
	}
	cs, _ := statsOf(can, canErrs)
	bs, _ := statsOf(base, baseErrs)
	o := canary.Observation{Service: "payment-service", Version: "v2", Baseline: "v1", Window: time.Minute,
		Canary: cs, Base: bs, MinRequests: p.MinRequests, BaselineWeight: 90}
	binned := func() {
		for _, j := range judges {
			_ = j.Judge(ctx, o)
		}
	}

	fmt.Printf("canary analysis: %d latency samples per side, %d repeats, GOMAXPROCS %d, load average %s\n",
		*n, *repeats, runtime.GOMAXPROCS(0), loadavg())
	a := measure(*repeats, analysis)
	m := measure(*repeats, rankOnly)
	b := measure(*repeats, binned)
	fmt.Printf("  %-44s %s   goal < 5 ms: %s\n", "analysis from raw samples (all judges + U):", a, verdict(a.median, 5*time.Millisecond))
	fmt.Printf("  %-44s %s\n", "mann-whitney on raw samples:", m)
	fmt.Printf("  %-44s %s\n", "judges on the mesh's histograms:", b)
	fmt.Printf("  U %.1f, z %.3f, p %.4g\n", lastRaw.U, lastRaw.Z, lastRaw.P)
	for _, j := range lastJudged {
		fmt.Printf("    %-20s %-5s %s\n", j.Judge, j.Verdict, j.Reason)
	}

	peer, err := scipy(*python, can, base, *repeats)
	if err != nil {
		fmt.Printf("  peer: scipy not measured: %v\n", err)
		return
	}
	fmt.Printf("  %-44s median %8v  cpu/op %8v (in the interpreter, arrays loaded)\n", "peer: scipy "+peer.version+" mannwhitneyu:", peer.median.Round(time.Microsecond), peer.cpu.Round(time.Microsecond))
	fmt.Printf("  ratio scipy / flotilla (mann-whitney on raw samples): median %.1fx, cpu %.1fx\n",
		float64(peer.median)/float64(m.median), float64(peer.cpu)/float64(m.cpu))
	agree := peer.u == lastRaw.U && math.Abs(peer.p-lastRaw.P) <= 1e-9*math.Max(peer.p, 1e-300)+1e-15
	fmt.Printf("  scipy U %.1f p %.6g: %s\n", peer.u, peer.p, map[bool]string{true: "the same as flotilla's", false: "DIFFERS from flotilla's"}[agree])
}

// statsOf is what a metrics source reports for samples (microseconds),
// and the samples sorted (one sort serves the quantiles and the rank
// test).
func statsOf(xs []float64, errs int64) (canary.Stats, []float64) {
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	h := canary.Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}
	i := 0
	for _, x := range sorted {
		d := time.Duration(x) * time.Microsecond
		for i < len(bounds) && d > bounds[i] {
			i++
		}
		h.Counts[i]++
	}
	q := func(f float64) time.Duration {
		return time.Duration(sorted[int(f*float64(len(sorted)-1))]) * time.Microsecond
	}
	return canary.Stats{Requests: int64(len(xs)), Errors: errs, ErrorRate: float64(errs) / float64(len(xs)),
		P50: q(0.5), P90: q(0.9), P99: q(0.99), Window: time.Minute, Latency: h}, sorted
}

type figures struct {
	median, p90, max, cpu time.Duration
}

func (f figures) String() string {
	return fmt.Sprintf("median %8v  p90 %8v  max %8v  cpu/op %8v", f.median.Round(time.Microsecond), f.p90.Round(time.Microsecond), f.max.Round(time.Microsecond), f.cpu.Round(time.Microsecond))
}

func measure(repeats int, f func()) figures {
	for range 3 {
		f() // warm up
	}
	times := make([]time.Duration, repeats)
	c0 := cpuTime()
	for i := range times {
		t0 := time.Now()
		f()
		times[i] = time.Since(t0)
	}
	cpu := (cpuTime() - c0) / time.Duration(repeats)
	slices.Sort(times)
	return figures{median: times[len(times)/2], p90: times[len(times)*9/10], max: times[len(times)-1], cpu: cpu}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func verdict(got, goal time.Duration) string {
	if got < goal {
		return fmt.Sprintf("met (%.0fx under)", float64(goal)/float64(got))
	}
	return "MISSED"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

type peerResult struct {
	version string
	median  time.Duration
	cpu     time.Duration // median CPU time of a call
	u, p    float64
}

const peerScript = `
import sys, time
import scipy
from scipy.stats import mannwhitneyu
def load(path):
    with open(path) as f:
        return [float(l) for l in f]
x, y, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
import numpy as np
x, y = np.array(x), np.array(y)
r = mannwhitneyu(x, y, method="asymptotic")
ts, cs = [], []
for _ in range(n):
    t0, c0 = time.perf_counter(), time.process_time()
    mannwhitneyu(x, y, method="asymptotic")
    ts.append(time.perf_counter() - t0)
    cs.append(time.process_time() - c0)
ts.sort()
cs.sort()
print(scipy.__version__, ts[len(ts)//2], cs[len(cs)//2], repr(float(r.statistic)), repr(float(r.pvalue)))
`

// scipy runs scipy.stats.mannwhitneyu on the same samples.
func scipy(python string, x, y []float64, repeats int) (peerResult, error) {
	dir, err := os.MkdirTemp("", "canary-bench")
	if err != nil {
		return peerResult{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	write := func(name string, xs []float64) (string, error) {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			return "", err
		}
		w := bufio.NewWriter(f)
		for _, v := range xs {
			_, _ = w.WriteString(strconv.FormatFloat(v, 'g', -1, 64) + "\n")
		}
		if err := w.Flush(); err != nil {
			_ = f.Close()
			return "", err
		}
		return path, f.Close()
	}
	px, err := write("x", x)
	if err != nil {
		return peerResult{}, err
	}
	py, err := write("y", y)
	if err != nil {
		return peerResult{}, err
	}
	out, err := exec.Command(python, "-c", peerScript, px, py, strconv.Itoa(min(repeats, 50))).CombinedOutput()
	if err != nil {
		return peerResult{}, fmt.Errorf("%s: %w: %s (Debian: apt-get install python3-scipy)", python, err, strings.TrimSpace(string(out)))
	}
	f := strings.Fields(string(out))
	if len(f) != 5 {
		return peerResult{}, fmt.Errorf("unexpected peer output %q", out)
	}
	var r peerResult
	r.version = f[0]
	sec, err1 := strconv.ParseFloat(f[1], 64)
	cpu, err2 := strconv.ParseFloat(f[2], 64)
	u, err3 := strconv.ParseFloat(f[3], 64)
	p, err4 := strconv.ParseFloat(f[4], 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return peerResult{}, fmt.Errorf("unexpected peer output %q", out)
	}
	r.median, r.cpu, r.u, r.p = time.Duration(sec*1e9), time.Duration(cpu*1e9), u, p
	return r, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "canary bench:", err)
	os.Exit(1)
}

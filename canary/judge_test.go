package canary_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

var meshBounds = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// stats builds figures with every request in the bucket of bound b
// (index into meshBounds), errs of them failed.
func stats(n, errs int64, buckets map[int]int64) canary.Stats {
	h := canary.Histogram{Bounds: meshBounds, Counts: make([]int64, len(meshBounds)+1)}
	for b, c := range buckets {
		h.Counts[b] = c
	}
	st := canary.Stats{Requests: n, Errors: errs, Latency: h, Window: time.Minute}
	if n > 0 {
		st.ErrorRate = float64(errs) / float64(n)
	}
	return st
}

func TestJudges(t *testing.T) {
	cmp := canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.1}
	ok := stats(1000, 2, map[int]int64{4: 600, 5: 400})
	obs := func(c canary.Stats, cerr error, b canary.Stats, berr error) canary.Observation {
		return canary.Observation{Service: "payment-service", Version: "v2", Baseline: "v1", Window: time.Minute,
			Canary: c, CanaryErr: cerr, Base: b, BaseErr: berr, MinRequests: 50, BaselineWeight: 90}
	}
	p50 := func(st canary.Stats, d time.Duration) canary.Stats { st.P50 = d; return st }
	p99 := func(st canary.Stats, d time.Duration) canary.Stats { st.P99 = d; return st }
	for _, tc := range []struct {
		name    string
		judge   canary.Judge
		o       canary.Observation
		verdict canary.Verdict
		reason  string
		measure map[string]float64
	}{
		{"error rate under", canary.ErrorRateJudge{Max: 0.01}, obs(ok, nil, ok, nil), canary.Pass, "error rate 0.20% (2 of 1000) ≤ max 1.00%", map[string]float64{"error_rate": 0.002, "requests": 1000}},
		{"error rate over", canary.ErrorRateJudge{Max: 0.01}, obs(stats(1095, 329, nil), nil, ok, nil), canary.Fail, "error rate 30.05% (329 of 1095) > max 1.00%", map[string]float64{"errors": 329}},
		{"no data is not a failure", canary.ErrorRateJudge{Max: 0.01}, obs(canary.Stats{}, fmt.Errorf("stats: %w", canary.ErrNoData), ok, nil), canary.Inconclusive, "no data for the canary (v2)", nil},
		{"too little traffic is not a failure", canary.ErrorRateJudge{Max: 0.01}, obs(stats(10, 9, nil), nil, ok, nil), canary.Inconclusive, "10 request(s) to the canary (v2), fewer than min_requests 50", nil},
		{"source down is an error", canary.ErrorRateJudge{Max: 0.01}, obs(canary.Stats{}, errors.New("connection refused"), ok, nil), canary.Error, "the canary's metrics could not be read: connection refused", nil},
		{"p99 under", canary.LatencyJudge{Quantile: 99, Max: 200 * time.Millisecond}, obs(p99(ok, 120*time.Millisecond), nil, ok, nil), canary.Pass, "p99 120ms ≤ max 200ms over 1000 requests", map[string]float64{"p99_ms": 120, "max_ms": 200}},
		{"p99 over", canary.LatencyJudge{Quantile: 99, Max: 200 * time.Millisecond}, obs(p99(ok, 240*time.Millisecond), nil, ok, nil), canary.Fail, "p99 240ms > max 200ms", nil},
		{"p50 over", canary.LatencyJudge{Quantile: 50, Max: 20 * time.Millisecond}, obs(p50(ok, 30*time.Millisecond), nil, ok, nil), canary.Fail, "p50 30ms > max 20ms", map[string]float64{"p50_ms": 30}},
		{"baseline: same latency", canary.BaselineLatencyJudge{Compare: cmp}, obs(ok, nil, stats(2000, 4, map[int]int64{4: 1200, 5: 800}), nil), canary.Pass, "not slower than v1", nil},
		{"baseline: slower", canary.BaselineLatencyJudge{Compare: cmp}, obs(stats(1000, 0, map[int]int64{5: 300, 6: 700}), nil, ok, nil), canary.Fail, "slower than v1: mean 31.5ms vs 11.5ms (×2.74 ≥ ×1.10)", nil},
		{"baseline: slower but below the effect size", canary.BaselineLatencyJudge{Compare: canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.5}},
			obs(stats(2000, 0, map[int]int64{4: 1100, 5: 900}), nil, stats(2000, 0, map[int]int64{4: 1300, 5: 700}), nil), canary.Pass, "below the minimum effect ×1.50", nil},
		{"baseline: faster is fine", canary.BaselineLatencyJudge{Compare: cmp}, obs(ok, nil, stats(1000, 0, map[int]int64{5: 300, 6: 700}), nil), canary.Pass, "not slower", nil},
		{"baseline: too little baseline traffic", canary.BaselineLatencyJudge{Compare: cmp}, obs(ok, nil, stats(20, 0, map[int]int64{4: 20}), nil), canary.Inconclusive, "20 request(s) to the baseline (v1), fewer than min_requests 50", nil},
		{"baseline: no histogram", canary.BaselineLatencyJudge{Compare: cmp}, obs(canary.Stats{Requests: 100}, nil, canary.Stats{Requests: 100}, nil), canary.Inconclusive, "no latency histogram", nil},
		{"baseline: more errors", canary.BaselineErrorJudge{Compare: cmp}, obs(stats(1095, 329, nil), nil, stats(9000, 9, nil), nil), canary.Fail, "more errors than v1: 30.05% vs 0.10%", map[string]float64{"canary_error_rate": 329.0 / 1095, "baseline_error_rate": 0.001}},
		{"baseline: errors within noise", canary.BaselineErrorJudge{Compare: cmp}, obs(stats(100, 2, nil), nil, stats(1000, 10, nil), nil), canary.Pass, "error rate 2.00% vs v1's 1.00%", nil},
		{"baseline: no errors anywhere", canary.BaselineErrorJudge{Compare: cmp}, obs(stats(100, 0, nil), nil, stats(1000, 0, nil), nil), canary.Pass, "", map[string]float64{"p": 1}},
		{"baseline: none", canary.BaselineErrorJudge{Compare: cmp}, canary.Observation{Version: "v2", Canary: ok, MinRequests: 1}, canary.Inconclusive, "no baseline", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.judge.Judge(context.Background(), tc.o)
			if j.Verdict != tc.verdict || !strings.Contains(j.Reason, tc.reason) || j.Judge != tc.judge.Name() {
				t.Errorf("got %s %s: %q\nwant %s, a reason with %q", j.Judge, j.Verdict, j.Reason, tc.verdict, tc.reason)
			}
			for k, v := range tc.measure {
				if got, ok := j.Measurements[k]; !ok || !near(got, v, 1e-9) {
					t.Errorf("measurement %s = %v (present %v), want %v; all: %v", k, got, ok, v, j.Measurements)
				}
			}
		})
	}
}

type querier map[string]struct {
	v   float64
	err error
}

func (q querier) Query(_ context.Context, query string) (float64, error) {
	r, ok := q[query]
	if !ok {
		return 0, fmt.Errorf("unexpected query %q", query)
	}
	return r.v, r.err
}

func TestQueryJudge(t *testing.T) {
	q := querier{
		`rate(x{service="cart",version="v2",base="v1"}[30s])`: {v: 0.5},
		`bad(`:     {err: fmt.Errorf("parse error: %w", canary.ErrBadQuery)},
		`empty`:    {err: canary.ErrNoData},
		`down`:     {err: errors.New("dial tcp: connection refused")},
		`success`:  {v: 0.97},
		`high`:     {v: 2},
		`nan-free`: {v: 1},
	}
	o := canary.Observation{Service: "cart", Version: "v2", Baseline: "v1", Window: time.Minute}
	for _, tc := range []struct {
		name    string
		query   canary.Query
		verdict canary.Verdict
		reason  string
	}{
		{"placeholders and within max", canary.Query{Name: "q", Query: `rate(x{service="{{service}}",version="{{ version }}",base="{{baseline}}"}[{{range}}])`, Range: 30 * time.Second, Max: f(1)}, canary.Pass, "0.5 is within max 1"},
		{"malformed fails at once", canary.Query{Name: "q", Query: "bad(", Max: f(1)}, canary.Fail, `query "bad(" is malformed`},
		{"no data", canary.Query{Name: "q", Query: "empty", Max: f(1)}, canary.Inconclusive, "returned no data"},
		{"unreachable", canary.Query{Name: "q", Query: "down", Max: f(1)}, canary.Error, "connection refused"},
		{"below min", canary.Query{Name: "q", Query: "success", Min: f(0.99)}, canary.Fail, "0.97 is outside min 0.99"},
		{"above max", canary.Query{Name: "q", Query: "high", Min: f(0), Max: f(1)}, canary.Fail, "2 is outside min 0, max 1"},
		{"inside both", canary.Query{Name: "q", Query: "nan-free", Min: f(0), Max: f(1)}, canary.Pass, "within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := canary.QueryJudge{Query: tc.query, Querier: q}.Judge(context.Background(), o)
			if j.Verdict != tc.verdict || !strings.Contains(j.Reason, tc.reason) {
				t.Errorf("got %s: %q; want %s, a reason with %q", j.Verdict, j.Reason, tc.verdict, tc.reason)
			}
		})
	}
	if got := (canary.QueryJudge{Query: canary.Query{Query: "x[{{range}}]"}}).Expand(o); got != "x[1m]" {
		t.Errorf("range defaults to the window: %q", got)
	}
	o.Namespace = "shop"
	if got := (canary.QueryJudge{Query: canary.Query{Query: `x{ns="{{namespace}}"}[{{range}}]`, Range: 90 * time.Second}}).Expand(o); got != `x{ns="shop"}[90s]` {
		t.Errorf("namespace and range: %q", got)
	}
}

func TestJudgesFromPolicy(t *testing.T) {
	p := canary.DefaultPolicy()
	p.MaxP50, p.MaxP99 = 50*time.Millisecond, 200*time.Millisecond
	p.Compare.Baseline = true
	p.Queries = []canary.Query{{Name: "saturation", Query: "up", Max: f(1)}}
	var names []string
	for _, j := range canary.Judges(p, querier{}) {
		names = append(names, j.Name())
	}
	if got, want := strings.Join(names, ","), "error_rate,p50,p99,baseline_latency,baseline_error_rate,saturation"; got != want {
		t.Errorf("judges %s, want %s", got, want)
	}
}

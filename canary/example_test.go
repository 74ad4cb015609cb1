package canary_test

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

// The judges of a policy on one interval: the canary (v2) against the
// version it replaces (v1), over the same minute. The canary's own error
// rate is under the limit, yet it fails twice as often as v1 with 98%
// confidence, and its latency is no worse.
func ExampleJudges() {
	p := canary.DefaultPolicy()
	p.MaxErrorRate = 0.05
	p.MaxP99 = 200 * time.Millisecond
	p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.1}

	ms := func(d ...int64) canary.Histogram { // counts per mesh bucket
		h := canary.Histogram{Bounds: []time.Duration{10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}}
		h.Counts = append(d, 0)
		return h
	}
	o := canary.Observation{
		Service: "payment-service", Version: "v2", Baseline: "v1", Window: time.Minute,
		MinRequests: 100, BaselineWeight: 90,
		Canary: canary.Stats{Requests: 2000, Errors: 60, ErrorRate: 0.03, P99: 80 * time.Millisecond, Latency: ms(900, 800, 250, 50)},
		Base:   canary.Stats{Requests: 18000, Errors: 270, ErrorRate: 0.015, P99: 85 * time.Millisecond, Latency: ms(8000, 7300, 2200, 500)},
	}
	for _, j := range canary.Judges(p, nil) {
		v := j.Judge(context.Background(), o)
		fmt.Printf("%-19s %-4s %s\n", v.Judge, v.Verdict, v.Reason)
	}
	// Output:
	// error_rate          pass error rate 3.00% (60 of 2000) ≤ max 5.00%
	// p99                 pass p99 80ms ≤ max 200ms over 2000 requests
	// baseline_latency    pass not slower than v1: mean 15.813ms vs 15.986ms, Mann-Whitney p=0.681 (z=-0.41)
	// baseline_error_rate fail more errors than v1: 3.00% vs 1.50%, two-proportion p=5.86e-07 < 0.02
}

// The rank test on two small samples: scipy.stats.mannwhitneyu's
// documented example.
func ExampleMannWhitneyU() {
	males := []float64{19, 22, 16, 29, 24}
	females := []float64{20, 11, 17, 12}
	r, _ := canary.MannWhitneyU(males, females)
	fmt.Printf("U=%.0f p=%.4f greater at 0.95: %v\n", r.U, r.P, r.Greater(0.95))
	// Output: U=17 p=0.1113 greater at 0.95: false
}

package canary

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Verdict is what a judge says about one interval.
type Verdict string

// The verdicts. Inconclusive and Error are never failures: too little
// traffic, no data, or a source that could not be asked say nothing about
// the canary. Too many of them in a row hold the canary (inconclusive) or
// fail the analysis (errors, past the consecutive error limit).
const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Inconclusive Verdict = "inconclusive"
	Error        Verdict = "error" // the metrics source could not be asked
)

// Judgement is one judge's verdict on one interval, with the figures it
// looked at and why.
type Judgement struct {
	Judge        string             `json:"judge"`
	Verdict      Verdict            `json:"verdict"`
	Reason       string             `json:"reason"`
	Measurements map[string]float64 `json:"measurements,omitempty"`
}

// Observation is what the judges of one interval look at: the canary's
// and the baseline's figures over the same window.
type Observation struct {
	Service   string
	Version   string // the canary
	Namespace string // the environment's, for {{namespace}} in queries
	// Baseline is the version the canary is compared with (the one
	// serving most of the traffic before it), "" when there is none.
	Baseline string
	Window   time.Duration
	// Canary and Base are the two versions' figures; CanaryErr and
	// BaseErr what Metrics.Stats returned (ErrNoData, possibly wrapped,
	// when there was nothing).
	Canary    Stats
	CanaryErr error
	Base      Stats
	BaseErr   error
	// MinRequests is the least traffic a side needs to be judged.
	MinRequests int64
	// BaselineWeight is the baseline's share of traffic in the interval:
	// at 0 it served nothing to compare with.
	BaselineWeight int
}

// Judge gives a verdict on an interval.
type Judge interface {
	// Name names the judge in decisions ("error_rate", "p99").
	Name() string
	// Judge never returns a failure for missing data or too little
	// traffic: those are Inconclusive; a source that could not be asked
	// is Error.
	Judge(ctx context.Context, o Observation) Judgement
}

// Judges returns the judges a policy names, in a fixed order: the
// threshold judges, the baseline comparison, the custom queries (asked
// through q, which must not be nil when there are any).
func Judges(p Policy, q Querier) []Judge {
	var out []Judge
	if p.MaxErrorRate > 0 {
		out = append(out, ErrorRateJudge{Max: p.MaxErrorRate})
	}
	if p.MaxP50 > 0 {
		out = append(out, LatencyJudge{Quantile: 50, Max: p.MaxP50})
	}
	if p.MaxP99 > 0 {
		out = append(out, LatencyJudge{Quantile: 99, Max: p.MaxP99})
	}
	if p.Compare.Baseline {
		out = append(out, BaselineLatencyJudge{Compare: p.Compare}, BaselineErrorJudge{Compare: p.Compare})
	}
	for _, qq := range p.Queries {
		if qq.Range == 0 {
			qq.Range = p.Interval
		}
		out = append(out, QueryJudge{Query: qq, Querier: q})
	}
	return out
}

// usable returns a judgement when a side's figures cannot be judged: no
// data or too little traffic (inconclusive), a source error (error).
func usable(name, side, version string, st Stats, err error, minReq int64) (Judgement, bool) {
	j := Judgement{Judge: name, Verdict: Inconclusive, Measurements: map[string]float64{side + "_requests": float64(st.Requests)}}
	switch {
	case errors.Is(err, ErrNoData):
		j.Reason = fmt.Sprintf("no data for the %s (%s)", side, version)
	case err != nil:
		j.Verdict = Error
		j.Reason = fmt.Sprintf("the %s's metrics could not be read: %v", side, err)
	case st.Requests < minReq || st.Requests == 0:
		j.Reason = fmt.Sprintf("%d request(s) to the %s (%s), fewer than min_requests %d", st.Requests, side, version, minReq)
	default:
		return Judgement{}, false
	}
	return j, true
}

// ErrorRateJudge fails a canary whose error rate is above Max.
type ErrorRateJudge struct{ Max float64 }

// Name implements Judge.
func (ErrorRateJudge) Name() string { return "error_rate" }

// Judge implements Judge.
func (e ErrorRateJudge) Judge(_ context.Context, o Observation) Judgement {
	if j, bad := usable(e.Name(), "canary", o.Version, o.Canary, o.CanaryErr, o.MinRequests); bad {
		return j
	}
	j := Judgement{Judge: e.Name(), Verdict: Pass, Measurements: map[string]float64{
		"requests": float64(o.Canary.Requests), "errors": float64(o.Canary.Errors),
		"error_rate": o.Canary.ErrorRate, "max": e.Max,
	}}
	cmp := "≤"
	if o.Canary.ErrorRate > e.Max {
		j.Verdict, cmp = Fail, ">"
	}
	j.Reason = fmt.Sprintf("error rate %s (%d of %d) %s max %s", pct(o.Canary.ErrorRate), o.Canary.Errors, o.Canary.Requests, cmp, pct(e.Max))
	return j
}

// LatencyJudge fails a canary whose latency quantile (50 or 99) is above
// Max.
type LatencyJudge struct {
	Quantile int
	Max      time.Duration
}

// Name implements Judge.
func (l LatencyJudge) Name() string { return fmt.Sprintf("p%d", l.Quantile) }

// Judge implements Judge.
func (l LatencyJudge) Judge(_ context.Context, o Observation) Judgement {
	if j, bad := usable(l.Name(), "canary", o.Version, o.Canary, o.CanaryErr, o.MinRequests); bad {
		return j
	}
	v := o.Canary.P99
	switch l.Quantile {
	case 50:
		v = o.Canary.P50
	case 90:
		v = o.Canary.P90
	}
	j := Judgement{Judge: l.Name(), Verdict: Pass, Measurements: map[string]float64{
		"requests": float64(o.Canary.Requests), l.Name() + "_ms": ms(v), "max_ms": ms(l.Max),
	}}
	cmp := "≤"
	if v > l.Max {
		j.Verdict, cmp = Fail, ">"
	}
	j.Reason = fmt.Sprintf("%s %v %s max %v over %d requests", l.Name(), v.Round(time.Microsecond), cmp, l.Max, o.Canary.Requests)
	return j
}

// BaselineLatencyJudge compares the canary's latency with the
// baseline's over the same window: a Mann-Whitney U test on the two
// histograms. It fails when the canary is slower with the confidence and
// its mean latency is at least (1+MinEffect) times the baseline's.
type BaselineLatencyJudge struct{ Compare Compare }

// Name implements Judge.
func (BaselineLatencyJudge) Name() string { return "baseline_latency" }

// Judge implements Judge.
func (b BaselineLatencyJudge) Judge(_ context.Context, o Observation) Judgement {
	name := b.Name()
	if j, bad := baselineUsable(name, o); bad {
		return j
	}
	if o.Canary.Latency.Total() == 0 || o.Base.Latency.Total() == 0 {
		return Judgement{Judge: name, Verdict: Inconclusive, Reason: "the metrics source gives no latency histogram to compare"}
	}
	r, err := MannWhitney(o.Canary.Latency, o.Base.Latency)
	if err != nil {
		return Judgement{Judge: name, Verdict: Inconclusive, Reason: fmt.Sprintf("cannot compare latencies: %v", err)}
	}
	cm, bm := o.Canary.Latency.Mean(), o.Base.Latency.Mean()
	ratio := ratioOf(float64(cm), float64(bm))
	j := Judgement{Judge: name, Verdict: Pass, Measurements: map[string]float64{
		"canary_requests": float64(r.N1), "baseline_requests": float64(r.N2),
		"u": r.U, "z": r.Z, "p": r.P,
		"canary_mean_ms": ms(cm), "baseline_mean_ms": ms(bm), "mean_ratio": ratio,
		"confidence": b.Compare.Confidence, "min_effect": b.Compare.MinEffect,
	}}
	worse := r.Greater(b.Compare.Confidence)
	big := ratio >= 1+b.Compare.MinEffect
	switch {
	case worse && big:
		j.Verdict = Fail
		j.Reason = fmt.Sprintf("slower than %s: mean %v vs %v (×%.2f ≥ ×%.2f), Mann-Whitney p=%.3g < %.3g",
			o.Baseline, cm.Round(time.Microsecond), bm.Round(time.Microsecond), ratio, 1+b.Compare.MinEffect, r.P, 1-b.Compare.Confidence)
	case worse:
		j.Reason = fmt.Sprintf("slower than %s (p=%.3g) but only ×%.2f, below the minimum effect ×%.2f", o.Baseline, r.P, ratio, 1+b.Compare.MinEffect)
	default:
		j.Reason = fmt.Sprintf("not slower than %s: mean %v vs %v, Mann-Whitney p=%.3g (z=%.2f)", o.Baseline, cm.Round(time.Microsecond), bm.Round(time.Microsecond), r.P, r.Z)
	}
	return j
}

// BaselineErrorJudge compares the canary's error rate with the
// baseline's over the same window: a two-proportion z-test. It fails when
// the canary's rate is higher with the confidence and at least
// (1+MinEffect) times the baseline's.
type BaselineErrorJudge struct{ Compare Compare }

// Name implements Judge.
func (BaselineErrorJudge) Name() string { return "baseline_error_rate" }

// Judge implements Judge.
func (b BaselineErrorJudge) Judge(_ context.Context, o Observation) Judgement {
	name := b.Name()
	if j, bad := baselineUsable(name, o); bad {
		return j
	}
	r, err := TwoProportions(o.Canary.Errors, o.Canary.Requests, o.Base.Errors, o.Base.Requests)
	if err != nil {
		return Judgement{Judge: name, Verdict: Inconclusive, Reason: err.Error()}
	}
	ratio := ratioOf(r.P1, r.P2)
	j := Judgement{Judge: name, Verdict: Pass, Measurements: map[string]float64{
		"canary_requests": float64(o.Canary.Requests), "baseline_requests": float64(o.Base.Requests),
		"canary_error_rate": r.P1, "baseline_error_rate": r.P2, "z": r.Z, "p": r.P,
		"confidence": b.Compare.Confidence, "min_effect": b.Compare.MinEffect,
	}}
	if !math.IsInf(ratio, 1) {
		j.Measurements["rate_ratio"] = ratio
	}
	worse := r.Greater(b.Compare.Confidence)
	big := ratio >= 1+b.Compare.MinEffect
	switch {
	case worse && big:
		j.Verdict = Fail
		j.Reason = fmt.Sprintf("more errors than %s: %s vs %s, two-proportion p=%.3g < %.3g",
			o.Baseline, pct(r.P1), pct(r.P2), r.P, 1-b.Compare.Confidence)
	case worse:
		j.Reason = fmt.Sprintf("more errors than %s (p=%.3g) but only ×%.2f, below the minimum effect ×%.2f", o.Baseline, r.P, ratio, 1+b.Compare.MinEffect)
	default:
		j.Reason = fmt.Sprintf("error rate %s vs %s's %s, two-proportion p=%.3g", pct(r.P1), o.Baseline, pct(r.P2), r.P)
	}
	return j
}

func baselineUsable(name string, o Observation) (Judgement, bool) {
	if o.Baseline == "" {
		return Judgement{Judge: name, Verdict: Inconclusive, Reason: "no baseline: nothing served before this version"}, true
	}
	if o.BaselineWeight == 0 {
		return Judgement{Judge: name, Verdict: Inconclusive, Reason: fmt.Sprintf("the baseline %s has no traffic at this step", o.Baseline)}, true
	}
	if j, bad := usable(name, "canary", o.Version, o.Canary, o.CanaryErr, o.MinRequests); bad {
		return j, true
	}
	return usable(name, "baseline", o.Baseline, o.Base, o.BaseErr, o.MinRequests)
}

// ErrBadQuery is wrapped by a [Querier]'s error for a query that can
// never succeed (malformed): the judge fails at once, naming the query,
// instead of waiting for the consecutive error limit.
var ErrBadQuery = errors.New("bad query")

// Querier evaluates a custom judge's query (PromQL for the Prometheus
// provider) to one number, at the current time.
type Querier interface {
	// Query returns the query's value. It returns ErrNoData (wrapped)
	// when the result is empty or NaN, ErrBadQuery (wrapped) when the
	// query is malformed; other errors mean the source could not be
	// asked.
	Query(ctx context.Context, query string) (float64, error)
}

// QueryJudge judges a custom [Query].
type QueryJudge struct {
	Query   Query
	Querier Querier
}

// Name implements Judge.
func (q QueryJudge) Name() string { return q.Query.Name }

// Expand returns the query with its placeholders replaced for an
// observation.
func (q QueryJudge) Expand(o Observation) string {
	rng := q.Query.Range
	if rng == 0 {
		rng = o.Window
	}
	return placeholder.ReplaceAllStringFunc(q.Query.Query, func(m string) string {
		switch strings.TrimSpace(strings.Trim(m, "{}")) {
		case "service":
			return o.Service
		case "version":
			return o.Version
		case "baseline":
			return o.Baseline
		case "namespace":
			return o.Namespace
		case "range":
			return promRange(rng)
		}
		return m
	})
}

// Judge implements Judge.
func (q QueryJudge) Judge(ctx context.Context, o Observation) Judgement {
	j := Judgement{Judge: q.Name(), Verdict: Inconclusive}
	if q.Querier == nil {
		j.Verdict, j.Reason = Error, "no query source is configured"
		return j
	}
	query := q.Expand(o)
	v, err := q.Querier.Query(ctx, query)
	switch {
	case errors.Is(err, ErrBadQuery):
		j.Verdict, j.Reason = Fail, fmt.Sprintf("query %q is malformed: %v; fix the query", query, err)
		return j
	case errors.Is(err, ErrNoData) || (err == nil && math.IsNaN(v)):
		j.Reason = fmt.Sprintf("query %q returned no data", query)
		return j
	case err != nil:
		j.Verdict, j.Reason = Error, fmt.Sprintf("query %q: %v", query, err)
		return j
	}
	j.Verdict = Pass
	j.Measurements = map[string]float64{"value": v}
	var bounds []string
	if q.Query.Min != nil {
		j.Measurements["min"] = *q.Query.Min
		bounds = append(bounds, fmt.Sprintf("min %g", *q.Query.Min))
		if v < *q.Query.Min {
			j.Verdict = Fail
		}
	}
	if q.Query.Max != nil {
		j.Measurements["max"] = *q.Query.Max
		bounds = append(bounds, fmt.Sprintf("max %g", *q.Query.Max))
		if v > *q.Query.Max {
			j.Verdict = Fail
		}
	}
	word := "within"
	if j.Verdict == Fail {
		word = "outside"
	}
	j.Reason = fmt.Sprintf("%g is %s %s", v, word, strings.Join(bounds, ", "))
	return j
}

func ratioOf(a, b float64) float64 {
	switch {
	case b > 0:
		return a / b
	case a > 0:
		return math.Inf(1)
	default:
		return 1
	}
}

func pct(f float64) string { return fmt.Sprintf("%.2f%%", f*100) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

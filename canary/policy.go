package canary

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Strategy is how a new version gets its traffic.
type Strategy string

// The strategies.
const (
	// StrategyCanary moves the traffic in Steps, judging each for an
	// Interval (Flagger's and Argo Rollouts' canary).
	StrategyCanary Strategy = "canary"
	// StrategyBlueGreen judges the new version at 0% (its header lane
	// and synthetic load only) for Iterations intervals, then moves all
	// the traffic at once (Flagger's blue/green).
	StrategyBlueGreen Strategy = "bluegreen"
	// StrategyDirect moves all the traffic at once; only the bake
	// watches the new version.
	StrategyDirect Strategy = "direct"
)

// Policy is how one service's new versions are released and judged. The
// manifest's canary block (with the project's defaults) is turned into
// one; [DefaultPolicy] is what a service without one gets. Durations are
// plain time.Durations; a zero field that has a default in DefaultPolicy
// is not filled in by Validate: start from DefaultPolicy and override.
type Policy struct {
	Strategy Strategy
	// Steps are the canary's traffic percentages, increasing, each in
	// 1..100 (e.g. 5, 25, 50, 100). After the last one passes, the canary
	// gets 100% (promotion). Canary strategy only.
	Steps []int
	// Iterations is how many intervals a blue/green version is judged at
	// 0% before the switch (Flagger's iterations). Blue/green only.
	Iterations int
	// Interval is how long each step is held before it is judged, and
	// the window the metrics are read over.
	Interval time.Duration
	// Threshold is how many failed analyses (intervals with a failing
	// judge or a failing rollout webhook, counted over the whole run as
	// Flagger does) roll the canary back. At least 1.
	Threshold int
	// MinRequests is the least traffic an interval needs, on each side
	// compared, to be judged: with fewer every judge on it is
	// inconclusive, never failed.
	MinRequests int64
	// MaxErrorRate (a fraction: 0.01 is 1%), MaxP50 and MaxP99 are the
	// threshold judges on the canary's own figures; zero turns one off.
	MaxErrorRate float64
	MaxP50       time.Duration
	MaxP99       time.Duration
	// Queries are custom judges evaluated through a [Querier].
	Queries []Query
	// Compare judges the canary against the version it replaces.
	Compare Compare
	// LaneFirst judges the canary for one interval at 0%, on the traffic
	// of its header lane (the smoke checks, X-Canary requests, synthetic
	// load), before any weighted traffic reaches it. A failing lane
	// interval counts as a failed analysis and is repeated, as is one
	// whose metrics could not be read; an inconclusive one (no lane
	// traffic) moves on to the first step.
	LaneFirst bool
	// SyntheticLoad is the rate (requests per second) at which synthetic
	// requests are driven through the canary's header lane when an
	// interval has fewer than MinRequests ([LoadDriver]); 0 is off.
	SyntheticLoad float64
	// InconclusiveLimit is how many inconclusive intervals in a row are
	// tolerated; the next one holds the canary at its weight (judging
	// goes on, so failures still roll it back) until a manual promote or
	// abort. 0 holds on the first.
	InconclusiveLimit int
	// ConsecutiveErrorLimit is how many intervals in a row a metrics
	// source may fail to answer (an error other than ErrNoData, each
	// interval then an error, not a failure) before every further one in
	// the streak counts as a failed analysis (Argo Rollouts'
	// consecutiveErrorLimit: the metric errors when the count exceeds it).
	ConsecutiveErrorLimit int
	// Bake is how long the promoted version keeps being judged, with the
	// old version on standby, before the old one may go (0: no bake).
	// The release does not wait for it.
	Bake time.Duration
	// Webhooks are called at the points their Kind names.
	Webhooks []Webhook
}

// Compare configures the baseline comparison, as Kayenta's judge does
// it: a Mann-Whitney U test on latency, a two-proportion z-test on error
// rates, each failing only when the canary is worse with the Confidence
// and by at least MinEffect.
type Compare struct {
	// Baseline turns the comparison on (compare: baseline).
	Baseline bool
	// Confidence is the confidence level of the tests, in (0.5, 1)
	// (Kayenta's confLevel, 0.98 by default).
	Confidence float64
	// MinEffect is the least relative increase that fails: the canary's
	// mean latency at least (1+MinEffect) times the baseline's, its
	// error rate at least (1+MinEffect) times the baseline's (Kayenta's
	// allowedIncrease minus one; 0.1 by default). A significant but
	// smaller difference passes.
	MinEffect float64
}

// Query is a custom judge: a query evaluated over a range, whose value
// must stay within its limits. In the query, {{service}}, {{version}}
// (the canary's), {{baseline}} (the version it replaces), {{namespace}}
// (the environment's, Config.Namespace) and {{range}} (Range in
// Prometheus's notation, e.g. 1m) are replaced before it is sent.
type Query struct {
	Name  string
	Query string
	// Range is the window the query covers (0: the policy's Interval).
	Range time.Duration
	// Max and Min are the limits: the value fails above Max or below
	// Min. At least one is set.
	Max, Min *float64
}

// WebhookKind says when a webhook is called and what its failure means
// (Flagger's types).
type WebhookKind string

// The webhook kinds. A webhook succeeds when it answers 2xx within its
// timeout; anything else is its failure.
const (
	// HookConfirmRollout is asked before the canary is judged or gets
	// traffic; on failure the canary waits and asks again every interval.
	HookConfirmRollout WebhookKind = "confirm-rollout"
	// HookPreRollout is called before the first weighted step; a failure
	// counts as a failed analysis and it is called again next interval.
	HookPreRollout WebhookKind = "pre-rollout"
	// HookRollout is called every interval before the judges; a failure
	// counts as a failed analysis and the step does not advance.
	HookRollout WebhookKind = "rollout"
	// HookConfirmPromotion is asked after the last step passed; on
	// failure the canary waits at its last step (judges and rollout
	// hooks keep running) and asks again every interval.
	HookConfirmPromotion WebhookKind = "confirm-promotion"
	// HookPostRollout is called after a promotion or a rollback; a
	// failure is recorded, nothing else.
	HookPostRollout WebhookKind = "post-rollout"
	// HookRollback is asked every interval while the canary progresses
	// or waits; a success (2xx) forces a rollback.
	HookRollback WebhookKind = "rollback"
	// HookEvent is told of every decision; a failure is recorded.
	HookEvent WebhookKind = "event"
)

var webhookKinds = []WebhookKind{HookConfirmRollout, HookPreRollout, HookRollout, HookConfirmPromotion, HookPostRollout, HookRollback, HookEvent}

// Webhook is an HTTP endpoint told of the canary's progress: a POST of
// the canary's [WebhookPayload] as JSON.
type Webhook struct {
	Name string
	Kind WebhookKind
	URL  string
	// Timeout bounds each call (0: DefaultWebhookTimeout); a call that
	// times out has failed.
	Timeout time.Duration
	// Metadata is sent with the payload.
	Metadata map[string]string
}

// DefaultWebhookTimeout is Flagger's.
const DefaultWebhookTimeout = 10 * time.Second

// DefaultPolicy is what a service without a canary block gets, the
// manifest's built-in values: all the traffic at once, then a bake of a
// minute judged on the error rate every 30 s (nothing ships unwatched).
// The other fields hold the manifest's defaults for when a strategy or
// judge is turned on: threshold 1 (Flagger's), 20 requests, Kayenta's
// confidence 0.98 and minimum effect 10%, Argo Rollouts' consecutive
// error limit 4. Start from it when building a policy.
func DefaultPolicy() Policy {
	return Policy{
		Strategy:              StrategyDirect,
		Interval:              30 * time.Second,
		Threshold:             1,
		MinRequests:           20,
		MaxErrorRate:          0.01,
		Compare:               Compare{Confidence: 0.98, MinEffect: 0.1},
		LaneFirst:             true,
		InconclusiveLimit:     5,
		ConsecutiveErrorLimit: 4,
		Bake:                  time.Minute,
	}
}

// MinInterval is the shortest Interval accepted.
const MinInterval = time.Second

var placeholder = regexp.MustCompile(`\{\{\s*([^}]*?)\s*\}\}`)

// Validate reports every problem of the policy at once, each naming the
// field and what to do.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch p.Strategy {
	case StrategyCanary:
		if len(p.Steps) == 0 {
			bad("steps: a canary needs at least one step (e.g. 5, 25, 50, 100)")
		}
		for i, s := range p.Steps {
			switch {
			case s < 1 || s > 100:
				bad("steps[%d]: %d%% is outside 1..100", i, s)
			case i > 0 && s <= p.Steps[i-1]:
				bad("steps[%d]: %d%% does not increase on %d%%: steps must increase", i, s, p.Steps[i-1])
			}
		}
		if p.Iterations > 1 {
			bad("iterations: %d: only blue/green uses iterations; a canary is judged once per step", p.Iterations)
		}
	case StrategyBlueGreen:
		if len(p.Steps) > 0 {
			bad("steps: blue/green moves all the traffic at once; remove steps or use strategy canary")
		}
		if p.Iterations < 1 {
			bad("iterations: %d: blue/green needs at least 1 interval judged at 0%%", p.Iterations)
		}
	case StrategyDirect:
		if len(p.Steps) > 0 {
			bad("steps: strategy direct moves all the traffic at once; remove steps or use strategy canary")
		}
	default:
		bad("strategy %q: want canary, bluegreen or direct", p.Strategy)
	}
	if p.Interval < MinInterval {
		bad("interval: %v is below %v", p.Interval, MinInterval)
	}
	if p.Threshold < 1 {
		bad("threshold: %d: at least 1 failed analysis must roll back (1 rolls back on the first)", p.Threshold)
	}
	if p.MinRequests < 0 {
		bad("min_requests: %d is negative", p.MinRequests)
	}
	if p.SyntheticLoad < 0 {
		bad("synthetic_load: %v requests per second is negative (0 turns it off)", p.SyntheticLoad)
	}
	if p.MaxErrorRate < 0 || p.MaxErrorRate >= 1 {
		bad("max_error_rate: %v: want a fraction in [0, 1) (0.01 is 1%%; 0 turns it off)", p.MaxErrorRate)
	}
	if p.MaxP50 < 0 {
		bad("max_p50: %v is negative", p.MaxP50)
	}
	if p.MaxP99 < 0 {
		bad("max_p99: %v is negative", p.MaxP99)
	}
	if p.MaxP50 > 0 && p.MaxP99 > 0 && p.MaxP99 < p.MaxP50 {
		bad("max_p99: %v is below max_p50 %v", p.MaxP99, p.MaxP50)
	}
	names := map[string]bool{"error_rate": true, "p50": true, "p99": true, "baseline_latency": true, "baseline_error_rate": true}
	for i, q := range p.Queries {
		where := fmt.Sprintf("queries[%d]", i)
		if q.Name != "" {
			where += " (" + q.Name + ")"
		}
		switch {
		case q.Name == "":
			bad("%s: no name: name the judge", where)
		case names[q.Name]:
			bad("%s: the name is taken by another judge", where)
		}
		names[q.Name] = true
		if strings.TrimSpace(q.Query) == "" {
			bad("%s: no query", where)
		}
		for _, m := range placeholder.FindAllStringSubmatch(q.Query, -1) {
			switch m[1] {
			case "service", "version", "baseline", "namespace", "range":
			default:
				bad("%s: unknown placeholder %s: want {{service}}, {{version}}, {{baseline}}, {{namespace}} or {{range}}", where, m[0])
			}
		}
		if q.Range < 0 {
			bad("%s: range %v is negative", where, q.Range)
		}
		if q.Range > 0 && !strings.Contains(placeholder.ReplaceAllString(q.Query, "{{$1}}"), "{{range}}") {
			bad("%s: range %v is set but the query has no {{range}} to put it in", where, q.Range)
		}
		if q.Max == nil && q.Min == nil {
			bad("%s: no limit: set max, min or both", where)
		}
		if q.Max != nil && q.Min != nil && *q.Max < *q.Min {
			bad("%s: max %v is below min %v", where, *q.Max, *q.Min)
		}
	}
	if p.Compare.Baseline {
		if !(p.Compare.Confidence > 0.5 && p.Compare.Confidence < 1) {
			bad("compare: confidence %v: want a level in (0.5, 1), e.g. 0.98", p.Compare.Confidence)
		}
		if p.Compare.MinEffect < 0 {
			bad("compare: min_effect %v is negative (0.1 fails a canary 10%% worse than the baseline)", p.Compare.MinEffect)
		}
	}
	if p.InconclusiveLimit < 0 {
		bad("inconclusive_limit: %d is negative", p.InconclusiveLimit)
	}
	if p.ConsecutiveErrorLimit < 0 {
		bad("consecutive_error_limit: %d is negative", p.ConsecutiveErrorLimit)
	}
	if p.Bake < 0 {
		bad("bake: %v is negative", p.Bake)
	}
	if p.Strategy != StrategyDirect || p.Bake > 0 {
		if !p.hasJudge() {
			bad("no judge: set max_error_rate, max_p50, max_p99, a query, or compare: baseline (a canary judged by nothing would be promoted blind)")
		}
	}
	hooks := map[string]bool{}
	for i, w := range p.Webhooks {
		where := fmt.Sprintf("webhooks[%d]", i)
		if w.Name != "" {
			where += " (" + w.Name + ")"
		}
		if w.Name == "" {
			bad("%s: no name: name the webhook", where)
		} else if hooks[w.Name] {
			bad("%s: another webhook has that name", where)
		}
		hooks[w.Name] = true
		known := false
		for _, k := range webhookKinds {
			known = known || w.Kind == k
		}
		if !known {
			bad("%s: kind %q: want one of %s", where, w.Kind, kindList())
		}
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			bad("%s: url %q: want an http:// or https:// URL", where, w.URL)
		}
		if w.Timeout < 0 {
			bad("%s: timeout %v is negative", where, w.Timeout)
		}
		if w.Timeout > 0 && w.Timeout > p.Interval && p.Interval > 0 && (w.Kind == HookRollout || w.Kind == HookRollback) {
			bad("%s: timeout %v is longer than the interval %v it runs in", where, w.Timeout, p.Interval)
		}
	}
	return errors.Join(errs...)
}

func kindList() string {
	s := make([]string, len(webhookKinds))
	for i, k := range webhookKinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func (p Policy) hasJudge() bool {
	return p.MaxErrorRate > 0 || p.MaxP50 > 0 || p.MaxP99 > 0 || len(p.Queries) > 0 || p.Compare.Baseline
}

// Describe says what a release under the policy does, for progress
// ("canary 5/25/50/100% every 1m0s, threshold 2, bake 5m0s").
func (p Policy) Describe() string {
	var b strings.Builder
	switch p.Strategy {
	case StrategyCanary:
		steps := make([]string, len(p.Steps))
		for i, s := range p.Steps {
			steps[i] = fmt.Sprint(s)
		}
		fmt.Fprintf(&b, "canary %s%% every %v, threshold %d", strings.Join(steps, "/"), p.Interval, p.Threshold)
	case StrategyBlueGreen:
		fmt.Fprintf(&b, "blue/green after %d interval(s) of %v at 0%%, threshold %d", p.Iterations, p.Interval, p.Threshold)
	default:
		b.WriteString("100% at once")
	}
	if p.LaneFirst && p.Strategy == StrategyCanary {
		b.WriteString(", lane first")
	}
	if p.Bake > 0 {
		fmt.Fprintf(&b, ", bake %v", p.Bake)
	}
	return b.String()
}

// promRange writes d as a Prometheus duration (1m, 30s, 1500ms).
func promRange(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
}

package graph

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// Strategy is how a new version of a service takes over its traffic.
type Strategy string

const (
	// StrategyCanary moves the user traffic to the new version in Steps,
	// one per Interval, judging each interval; it rolls back when
	// Threshold intervals failed and promotes after the last step.
	StrategyCanary Strategy = "canary"
	// StrategyBlueGreen judges the new version for Iterations intervals on
	// the header lane's traffic only (smoke checks, synthetic load,
	// requests with x-canary: true), users staying on the old one, then
	// switches all the traffic at once.
	StrategyBlueGreen Strategy = "bluegreen"
	// StrategyDirect switches all the traffic once the smoke checks pass;
	// only the bake watches the new version.
	StrategyDirect Strategy = "direct"
)

// CompareBaseline is Policy.Compare's one value: judge the canary against
// the stable version over the same interval.
const CompareBaseline = "baseline"

// WebhookType is when a webhook is called and what its answer does, as
// Flagger defines them.
type WebhookType string

// The webhook types, Flagger's semantics. A call is an HTTP POST of the
// canary's state; 2xx is yes, anything else (a timeout included) is no.
const (
	// HookConfirmRollout runs before the new version starts; a no waits
	// (the release holds, retrying every interval).
	HookConfirmRollout WebhookType = "confirm-rollout"
	// HookPreRollout runs before any traffic reaches the new version; a no
	// counts as a failed analysis.
	HookPreRollout WebhookType = "pre-rollout"
	// HookRollout runs every interval before the judges; a no counts as a
	// failed analysis.
	HookRollout WebhookType = "rollout"
	// HookConfirmPromotion runs before the promotion; a no holds the
	// canary at its last step (still judged) until a yes.
	HookConfirmPromotion WebhookType = "confirm-promotion"
	// HookPostRollout runs after a promotion or a rollback; its answer is
	// only recorded.
	HookPostRollout WebhookType = "post-rollout"
	// HookRollback runs every interval while the canary is analysed or
	// waits; a yes (2xx) rolls it back.
	HookRollback WebhookType = "rollback"
	// HookEvent receives every decision; its answer is only recorded.
	HookEvent WebhookType = "event"
)

var webhookTypes = []WebhookType{HookConfirmRollout, HookPreRollout, HookRollout, HookConfirmPromotion, HookPostRollout, HookRollback, HookEvent}

// DefaultWebhookTimeout bounds a webhook call whose timeout is not given
// (Flagger's default).
const DefaultWebhookTimeout = Duration(10 * time.Second)

// Policy is how a new version of a service takes its traffic and how it is
// judged: the built-in defaults ([DefaultPolicy]), overridden field by field
// by the manifest's defaults.canary, then by the service's canary block.
//
// A Policy from a loaded manifest is complete and consistent: the strategy
// is set, durations and limits hold their values or defaults, every
// webhook has its type and timeout. Steps are empty unless the strategy is
// canary, Iterations 0 unless it is bluegreen, Compare empty under direct,
// LaneFirst true unless a canary turned it off, and the judges and
// synthetic load off when nothing is watched ([Policy.Watched]); the other
// fields keep their values whatever the strategy (a threshold under
// direct), which nothing reads.
type Policy struct {
	// Strategy is canary, bluegreen or direct. Unset in the manifest, it
	// is canary when there are steps, direct otherwise.
	Strategy Strategy `json:"strategy"`
	// Steps are the canary's traffic percentages, increasing, each from 1
	// to 100 (canary only). After the last passes the canary is promoted
	// to 100%.
	Steps []int `json:"steps,omitempty"`
	// Iterations is how many passing intervals bluegreen judges the new
	// version on the lane's traffic before the switch (bluegreen only).
	Iterations int `json:"iterations,omitempty"`
	// LaneFirst: the new version is judged for one interval at 0% on its
	// header lane's traffic (the smoke checks, x-canary: true requests,
	// synthetic load) before any weighted traffic reaches it. Only canary
	// can turn it off (then its first step starts at once).
	LaneFirst bool `json:"lane_first"`
	// Interval is how often the judges run, over the last Interval.
	Interval Duration `json:"interval,omitempty"`
	// Threshold is how many failed analyses (not necessarily in a row,
	// as Flagger counts) roll the new version back (canary, bluegreen).
	Threshold int `json:"threshold,omitempty"`
	// MinRequests is the least traffic an interval needs to be judged:
	// fewer is inconclusive, never a failure.
	MinRequests int `json:"min_requests"`
	// MaxErrorRate (a fraction: 0.01 is 1%), MaxP50 and MaxP99 are the
	// built-in judges: an interval fails when the new version's value is
	// above. Zero turns the judge off.
	MaxErrorRate float64  `json:"max_error_rate,omitempty"`
	MaxP50       Duration `json:"max_p50,omitempty"`
	MaxP99       Duration `json:"max_p99,omitempty"`
	// Queries are custom judges on a Prometheus source.
	Queries []Query `json:"queries,omitempty"`
	// Compare is "baseline" to also judge the canary against the stable
	// version over the same interval (a Mann-Whitney U test on latency
	// samples, a two-proportion test on error rates), or "" for none.
	// Confidence is the test's confidence level, in (0, 1); MinEffect the
	// least relative worsening that can fail it (0.1: 10% worse).
	Compare    string  `json:"compare,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
	MinEffect  float64 `json:"min_effect,omitempty"`
	// SyntheticLoad is the rate (requests per second) at which the
	// service's smoke checks are replayed through the header lane during
	// an interval that has fewer than MinRequests; 0 is off.
	SyntheticLoad float64 `json:"synthetic_load,omitempty"`
	// Bake is how long the promoted version stays judged, the old one on
	// standby, before the old one is released; a failed interval rolls it
	// back. 0 is no bake.
	Bake Duration `json:"bake"`
	// InconclusiveLimit is how many inconclusive intervals in a row are
	// tolerated: the next one holds the canary at its weight (still
	// judged, neither promoted nor rolled back) until `flotilla canary
	// promote` or `abort`; 0 holds on the first (canary, bluegreen).
	InconclusiveLimit int `json:"inconclusive_limit,omitempty"`
	// ConsecutiveErrorLimit is how many intervals in a row the metrics
	// source may fail (each one inconclusive) before the next failure is a
	// failed analysis, as Argo Rollouts' consecutiveErrorLimit.
	ConsecutiveErrorLimit int `json:"consecutive_error_limit"`
	// Webhooks are called at the points their types name.
	Webhooks []Webhook `json:"webhooks,omitempty"`
}

// Query is a custom judge: a PromQL query whose value (a scalar, or a
// vector of one sample) must stay within Min and Max.
type Query struct {
	Name string `json:"name"`
	// Query is PromQL with placeholders {{service}}, {{version}},
	// {{baseline}}, {{namespace}} and {{range}}; see Expand.
	Query string `json:"query"`
	// Range is the window {{range}} stands for; 0 is the policy's
	// Interval. Set only when the query holds {{range}}.
	Range Duration `json:"range,omitempty"`
	// Max and Min are the limits (nil: none); at least one is set. The
	// interval fails when the value is above Max or below Min.
	Max *float64 `json:"max,omitempty"`
	Min *float64 `json:"min,omitempty"`
}

// Webhook is an HTTP endpoint called during a canary, as Flagger's.
type Webhook struct {
	Name    string      `json:"name"`
	Type    WebhookType `json:"type"`
	URL     string      `json:"url"`
	Timeout Duration    `json:"timeout"`
	// Metadata is sent with the canary's state, as Flagger's.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// QueryVars are the values of a query's placeholders.
type QueryVars struct {
	Service   string // {{service}}
	Version   string // {{version}}: the version judged
	Baseline  string // {{baseline}}: the version it replaces
	Namespace string // {{namespace}}: the environment's (empty locally)
	Range     time.Duration
}

// Expand returns the query with its placeholders replaced: {{service}},
// {{version}}, {{baseline}} and {{namespace}} by their values, {{range}} by
// the query's Range, or v.Range (the policy's interval) when it has none,
// written as PromQL writes durations (1m, 1m30s). Spaces inside the braces are allowed ({{ service }}). The
// values are inserted as they are: names and versions hold no quotes.
func (q Query) Expand(v QueryVars) string {
	r := q.Range.D()
	if r == 0 {
		r = v.Range
	}
	out, _ := expandQuery(q.Query, map[string]string{
		"service": v.Service, "version": v.Version, "baseline": v.Baseline, "namespace": v.Namespace, "range": model.Duration(r).String(),
	})
	return out
}

var queryPlaceholders = "{{service}}, {{version}}, {{baseline}}, {{namespace}}, {{range}}"

// reservedJudges are the names the built-in judges go by in decisions: a
// query may not take one.
var reservedJudges = []string{"error_rate", "p50", "p99", "baseline_latency", "baseline_error_rate"}

// expandQuery replaces {{name}} by vars[name]; an unknown name or an
// unclosed {{ is an error (and left as written).
func expandQuery(q string, vars map[string]string) (string, error) {
	var b strings.Builder
	var errs []error
	for {
		i := strings.Index(q, "{{")
		if i < 0 {
			b.WriteString(q)
			break
		}
		b.WriteString(q[:i])
		j := strings.Index(q[i+2:], "}}")
		if j < 0 {
			errs = append(errs, fmt.Errorf(`"{{" at %q is not closed with "}}"`, snippet(q[i:])))
			b.WriteString(q[i:])
			break
		}
		name := strings.TrimSpace(q[i+2 : i+2+j])
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else {
			errs = append(errs, fmt.Errorf("unknown placeholder {{%s}} (known: %s)", name, queryPlaceholders))
			b.WriteString(q[i : i+4+j])
		}
		q = q[i+4+j:]
	}
	return b.String(), errors.Join(errs...)
}

func snippet(s string) string {
	const n = 24
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// promqlParser accepts what a Prometheus server with its experimental
// functions enabled accepts: the check is of syntax, not of a server's
// feature flags.
var promqlParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true, ExperimentalDurationExpr: true})

// checkPromQL parses an expanded query and checks that it gives one
// number (a scalar or an instant vector).
func checkPromQL(q string) error {
	expr, err := promqlParser.ParseExpr(q)
	if err != nil {
		var pe parser.ParseErrors
		if errors.As(err, &pe) && len(pe) > 0 {
			at := min(max(int(pe[0].PositionRange.Start), 0), len(q))
			where := "at the end"
			if at < len(q) {
				where = fmt.Sprintf("at %q", snippet(q[at:]))
			}
			return fmt.Errorf("is not valid PromQL: %w (%s, character %d of the query with its placeholders filled in); check the brackets, quotes and operators", pe[0].Err, where, at+1)
		}
		return fmt.Errorf("is not valid PromQL: %w", err)
	}
	switch t := expr.Type(); t {
	case parser.ValueTypeScalar, parser.ValueTypeVector:
		return nil
	case parser.ValueTypeMatrix:
		return errors.New("gives a range vector, not a number to compare; wrap the range selector in a function such as rate(...) or avg_over_time(...)")
	default:
		return fmt.Errorf("gives a %s, not a number to compare; write a query whose result is a number", t)
	}
}

// DefaultPolicy is what a service gets when neither its canary block nor
// the manifest's defaults say otherwise: a direct switch after the smoke
// checks, watched for a minute by the error-rate judge.
func DefaultPolicy() Policy {
	p, _ := (&policyScope{}).resolve()
	return p
}

// builtinPolicy holds the built-in value of every field; its Strategy is
// left to be inferred.
func builtinPolicy() Policy {
	return Policy{
		Iterations:            5,
		LaneFirst:             true,
		Interval:              Duration(30 * time.Second),
		Threshold:             1, // Flagger's default; Argo Rollouts' failureLimit 0 is the same
		MinRequests:           20,
		MaxErrorRate:          0.01,
		Confidence:            0.98, // Kayenta's confLevel
		MinEffect:             0.1,  // Kayenta's documented allowedIncrease 1.1
		Bake:                  Duration(time.Minute),
		InconclusiveLimit:     5,
		ConsecutiveErrorLimit: 4, // Argo Rollouts' default
	}
}

// policyFields are the fields of a canary block, in the order the
// reference lists them. set copies the field from a block's values; off
// says whether its value is one a strategy that does not use the field may
// hold (lane_first: true on bluegreen, compare: off on direct): written
// so, it is no problem. clear, where not nil, gives the field that value
// in a policy whose strategy does not use it; the other fields keep their
// values (a threshold, an interval), which nothing reads.
var policyFields = []struct {
	name  string
	set   func(dst, src *Policy)
	off   func(p *Policy) bool
	clear func(p *Policy)
}{
	{"strategy", func(d, s *Policy) { d.Strategy = s.Strategy }, nil, nil},
	{"steps", func(d, s *Policy) { d.Steps = slices.Clone(s.Steps) }, func(p *Policy) bool { return len(p.Steps) == 0 }, func(p *Policy) { p.Steps = nil }},
	{"iterations", func(d, s *Policy) { d.Iterations = s.Iterations }, never, func(p *Policy) { p.Iterations = 0 }},
	{"lane_first", func(d, s *Policy) { d.LaneFirst = s.LaneFirst }, func(p *Policy) bool { return p.LaneFirst }, func(p *Policy) { p.LaneFirst = true }},
	{"interval", func(d, s *Policy) { d.Interval = s.Interval }, never, nil},
	{"threshold", func(d, s *Policy) { d.Threshold = s.Threshold }, never, nil},
	{"min_requests", func(d, s *Policy) { d.MinRequests = s.MinRequests }, never, nil},
	{"max_error_rate", func(d, s *Policy) { d.MaxErrorRate = s.MaxErrorRate }, func(p *Policy) bool { return p.MaxErrorRate == 0 }, func(p *Policy) { p.MaxErrorRate = 0 }},
	{"max_p50", func(d, s *Policy) { d.MaxP50 = s.MaxP50 }, func(p *Policy) bool { return p.MaxP50 == 0 }, func(p *Policy) { p.MaxP50 = 0 }},
	{"max_p99", func(d, s *Policy) { d.MaxP99 = s.MaxP99 }, func(p *Policy) bool { return p.MaxP99 == 0 }, func(p *Policy) { p.MaxP99 = 0 }},
	{"queries", func(d, s *Policy) { d.Queries = cloneQueries(s.Queries) }, func(p *Policy) bool { return len(p.Queries) == 0 }, func(p *Policy) { p.Queries = nil }},
	{"compare", func(d, s *Policy) { d.Compare = s.Compare }, func(p *Policy) bool { return p.Compare == "" }, func(p *Policy) { p.Compare = "" }},
	{"confidence", func(d, s *Policy) { d.Confidence = s.Confidence }, never, nil},
	{"min_effect", func(d, s *Policy) { d.MinEffect = s.MinEffect }, never, nil},
	{"synthetic_load", func(d, s *Policy) { d.SyntheticLoad = s.SyntheticLoad }, func(p *Policy) bool { return p.SyntheticLoad == 0 }, func(p *Policy) { p.SyntheticLoad = 0 }},
	{"bake", func(d, s *Policy) { d.Bake = s.Bake }, nil, nil},
	{"inconclusive_limit", func(d, s *Policy) { d.InconclusiveLimit = s.InconclusiveLimit }, never, nil},
	{"consecutive_error_limit", func(d, s *Policy) { d.ConsecutiveErrorLimit = s.ConsecutiveErrorLimit }, never, nil},
	{"webhooks", func(d, s *Policy) { d.Webhooks = cloneHooks(s.Webhooks) }, nil, nil},
}

func never(*Policy) bool { return false }

func policyFieldNames() string {
	names := make([]string, len(policyFields))
	for i, f := range policyFields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

func cloneQueries(qs []Query) []Query {
	out := slices.Clone(qs)
	for i := range out {
		if out[i].Max != nil {
			v := *out[i].Max
			out[i].Max = &v
		}
		if out[i].Min != nil {
			v := *out[i].Min
			out[i].Min = &v
		}
	}
	return out
}

// clone returns a deep copy (services share no slices).
func (p Policy) clone() Policy {
	p.Steps = slices.Clone(p.Steps)
	p.Queries = cloneQueries(p.Queries)
	p.Webhooks = cloneHooks(p.Webhooks)
	return p
}

func cloneHooks(hs []Webhook) []Webhook {
	out := slices.Clone(hs)
	for i := range out {
		out[i].Metadata = maps.Clone(out[i].Metadata)
	}
	return out
}

// policyBlock is one canary block as written: the values of the fields it
// sets, and the line of each.
type policyBlock struct {
	path string // services.NAME.canary or defaults.canary
	line int    // the line of its key
	set  map[string]int
	p    Policy
	// hookLines are the lines of the webhooks' entries.
	hookLines []int
	bad       bool // some field did not decode: its problems are reported, not checked further
}

func (b *policyBlock) at(field string) (int, bool) {
	if b == nil {
		return 0, false
	}
	l, ok := b.set[field]
	return l, ok
}

// canaryBlock decodes a canary block (a service's or the defaults'),
// every field on its own: the fields that decode are kept even when others
// do not.
func (d *decoder) canaryBlock(kv pair) (*policyBlock, error) {
	b := &policyBlock{path: kv.fullPath, line: kv.keyNode.Line, set: map[string]int{}}
	fields, err := d.mapping(kv.val, kv.fullPath)
	if err != nil {
		b.bad = true
		return b, err
	}
	var errs []error
	for _, f := range fields {
		var err error
		switch f.key {
		case "strategy":
			var s string
			if s, err = d.str(f.val, f.fullPath); err == nil {
				switch Strategy(s) {
				case StrategyCanary, StrategyBlueGreen, StrategyDirect:
					b.p.Strategy = Strategy(s)
				default:
					err = d.errf(f.val.Line, f.fullPath, "unknown strategy %q (known: canary, bluegreen, direct)", s)
				}
			}
		case "steps":
			b.p.Steps, err = d.steps(f)
		case "iterations":
			b.p.Iterations, err = d.count(f.val, f.fullPath, 1, "the intervals bluegreen judges before the switch; 1 switches after the first passing one")
		case "lane_first":
			b.p.LaneFirst, err = d.boolean(f.val, f.fullPath)
		case "interval":
			b.p.Interval, err = d.span(f.val, f.fullPath, time.Second, false, "the judges read the metrics once per interval")
		case "threshold":
			b.p.Threshold, err = d.count(f.val, f.fullPath, 1, "the failed analyses that roll the version back; 1 rolls back at the first")
		case "min_requests":
			b.p.MinRequests, err = d.count(f.val, f.fullPath, 0, "")
		case "max_error_rate":
			b.p.MaxErrorRate, err = d.errorRate(f.val, f.fullPath)
		case "max_p50":
			b.p.MaxP50, err = d.span(f.val, f.fullPath, time.Millisecond, true, "a latency limit")
		case "max_p99":
			b.p.MaxP99, err = d.span(f.val, f.fullPath, time.Millisecond, true, "a latency limit")
		case "queries":
			b.p.Queries, err = d.queries(f)
		case "compare":
			var s string
			if s, err = d.str(f.val, f.fullPath); err == nil {
				switch s {
				case CompareBaseline:
					b.p.Compare = s
				case "off":
				default:
					err = d.errf(f.val.Line, f.fullPath, "unknown comparison %q: write baseline (judge against the stable version) or off", s)
				}
			}
		case "confidence":
			b.p.Confidence, err = d.float(f.val, f.fullPath, 0, 1)
			if err != nil || b.p.Confidence <= 0.5 || b.p.Confidence >= 1 {
				err = d.errf(f.val.Line, f.fullPath, "must be a confidence level above 0.5 and below 1, such as 0.95 or 0.98, got %s", valueText(f.val))
			}
		case "min_effect":
			b.p.MinEffect, err = d.float(f.val, f.fullPath, 0, 100)
			if err != nil {
				err = d.errf(f.val.Line, f.fullPath, "must be a relative worsening from 0 to 100 (0.1: 10%% worse than the baseline), got %s", valueText(f.val))
			}
		case "synthetic_load":
			b.p.SyntheticLoad, err = d.syntheticLoad(f)
		case "bake":
			b.p.Bake, err = d.span(f.val, f.fullPath, 0, false, "0s is no bake")
		case "inconclusive_limit":
			b.p.InconclusiveLimit, err = d.count(f.val, f.fullPath, 0, "")
		case "consecutive_error_limit":
			b.p.ConsecutiveErrorLimit, err = d.count(f.val, f.fullPath, 0, "")
		case "webhooks":
			b.p.Webhooks, b.hookLines, err = d.webhooks(f)
		default:
			if strings.HasPrefix(f.key, "max_") || (strings.HasPrefix(f.key, "min_") && f.key != "min_requests" && f.key != "min_effect") {
				err = d.errf(f.keyNode.Line, f.fullPath, "unknown judge %q (the built-in judges are max_error_rate, max_p50 and max_p99; judge another metric with a Prometheus query under queries:)", f.key)
			} else {
				err = d.unknown(f, kv.fullPath, policyFieldNames())
			}
		}
		if err != nil {
			errs = append(errs, err)
			b.bad = true
			continue
		}
		b.set[f.key] = f.keyNode.Line
	}
	return b, errors.Join(errs...)
}

// valueText is how a value is quoted in a message: text quoted, numbers
// as written.
func valueText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		return strconv.Quote(n.Value)
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return n.Value
	}
	return kindName(n)
}

func isOff(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == "off"
}

func (d *decoder) steps(f pair) ([]int, error) {
	const example = "e.g. steps: [5, 25, 50, 100]"
	if f.val.Kind != yaml.SequenceNode {
		return nil, d.errf(f.val.Line, f.fullPath, "must be a list of traffic percentages, %s; got %s", example, kindName(f.val))
	}
	if len(f.val.Content) == 0 {
		return nil, d.errf(f.val.Line, f.fullPath, "is empty: list the traffic percentages the canary goes through, %s (or write strategy: direct for none)", example)
	}
	var out []int
	var errs []error
	prev := 0
	for i, n := range f.val.Content {
		field := fmt.Sprintf("%s[%d]", f.fullPath, i)
		v, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			errs = append(errs, d.errf(n.Line, field, "must be a traffic percentage, a whole number from 1 to 100, got %s", valueText(n)))
			continue
		}
		switch {
		case v < 1 || v > 100:
			errs = append(errs, d.errf(n.Line, field, "must be a traffic percentage from 1 to 100, got %d", v))
		case v <= prev:
			errs = append(errs, d.errf(n.Line, field, "steps must increase, got %d after %d; list the percentages in increasing order, %s", v, prev, example))
		default:
			prev = v
			out = append(out, v)
		}
	}
	return out, errors.Join(errs...)
}

// count decodes a whole number of at least lo; why explains the lower
// bound when it is not 0.
func (d *decoder) count(n *yaml.Node, field string, lo int, why string) (int, error) {
	const hi = 1 << 30
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
		return 0, d.errf(n.Line, field, "must be a whole number, got %s", valueText(n))
	}
	if v < int64(lo) {
		if why != "" {
			return 0, d.errf(n.Line, field, "must be at least %d (%s), got %d", lo, why, v)
		}
		return 0, d.errf(n.Line, field, "must be at least %d, got %d", lo, v)
	}
	if v > hi {
		return 0, d.errf(n.Line, field, "must be at most %d, got %d", hi, v)
	}
	return int(v), nil
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, d.errf(n.Line, field, "must be true or false, got %s", kindName(n))
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", nil
}

// span decodes a duration of at least lo; with offOK, "off" is 0 (the
// judge turned off) and 0 itself is refused.
func (d *decoder) span(n *yaml.Node, field string, lo time.Duration, offOK bool, what string) (Duration, error) {
	if offOK && isOff(n) {
		return 0, nil
	}
	form := "a duration such as 30s or 2m"
	if offOK {
		form += ", or off"
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return 0, d.errf(n.Line, field, "must be %s, got %s", form, kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		return 0, d.errf(n.Line, field, "must be %s, got %q", form, n.Value)
	case v < 0:
		return 0, d.errf(n.Line, field, "is negative (%s); give %s", n.Value, form)
	case offOK && v == 0:
		return 0, d.errf(n.Line, field, "is 0, which no request could meet; give %s (write off to turn the judge off)", form)
	case v < lo:
		return 0, d.errf(n.Line, field, "must be at least %s (%s), got %s", lo, what, n.Value)
	}
	return Duration(v), nil
}

func (d *decoder) errorRate(n *yaml.Node, field string) (float64, error) {
	if isOff(n) {
		return 0, nil
	}
	v, err := d.float(n, field, 0, 1)
	if err != nil || v <= 0 || v >= 1 {
		return 0, d.errf(n.Line, field, "must be a fraction of the requests above 0 and below 1 (0.01 is 1%%), or off; got %s", valueText(n))
	}
	return v, nil
}

func (d *decoder) syntheticLoad(f pair) (float64, error) {
	const forms = "write {rate: 10} (requests per second) or off"
	if isOff(f.val) {
		return 0, nil
	}
	if f.val.Kind != yaml.MappingNode {
		return 0, d.errf(f.val.Line, f.fullPath, "must be a mapping or off, got %s; %s", kindName(f.val), forms)
	}
	fields, err := d.mapping(f.val, f.fullPath)
	if err != nil {
		return 0, err
	}
	rate := 0.0
	var errs []error
	for _, g := range fields {
		switch g.key {
		case "rate":
			v, err := d.float(g.val, g.fullPath, 0, 10000)
			if err != nil || v <= 0 {
				errs = append(errs, d.errf(g.val.Line, g.fullPath, "must be the requests per second, above 0 and at most 10000, got %s", valueText(g.val)))
				continue
			}
			rate = v
		default:
			errs = append(errs, d.unknown(g, f.fullPath, "rate"))
		}
	}
	if len(errs) == 0 && rate == 0 {
		errs = append(errs, d.errf(f.val.Line, f.fullPath, "needs a rate; %s", forms))
	}
	return rate, errors.Join(errs...)
}

// checkHandle validates a query's or a webhook's name.
func checkHandle(name string) error {
	if name == "" {
		return errors.New("is empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && (r == '-' || r == '_')
		if !ok {
			return fmt.Errorf("%q may hold only lowercase letters, digits, - and _ (starting with a letter or digit)", name)
		}
	}
	return nil
}

func (d *decoder) queries(f pair) ([]Query, error) {
	const example = "e.g. - {name: db-errors, query: 'sum(rate(db_errors_total{service=\"{{service}}\", version=\"{{version}}\"}[{{range}}]))', max: 5}"
	if f.val.Kind != yaml.SequenceNode {
		return nil, d.errf(f.val.Line, f.fullPath, "must be a list of queries, %s; got %s", example, kindName(f.val))
	}
	var out []Query
	var errs []error
	seen := map[string]int{}
	for i, item := range f.val.Content {
		field := fmt.Sprintf("%s[%d]", f.fullPath, i)
		fields, err := d.mapping(item, field)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var q Query
		var ferrs []error
		queryLine, rangeLine := item.Line, item.Line
		for _, g := range fields {
			var err error
			switch g.key {
			case "name":
				if q.Name, err = d.str(g.val, g.fullPath); err == nil {
					if e := checkHandle(q.Name); e != nil {
						err = d.errf(g.val.Line, g.fullPath, "%v", e)
					} else if slices.Contains(reservedJudges, q.Name) {
						err = d.errf(g.val.Line, g.fullPath, "%q is the name of a built-in judge (%s are taken); give the query another", q.Name, strings.Join(reservedJudges, ", "))
					} else if prev, dup := seen[q.Name]; dup {
						err = d.errf(g.val.Line, g.fullPath, "%q is used twice (first on line %d); give each query its own name", q.Name, prev)
					} else {
						seen[q.Name] = g.val.Line
					}
				}
			case "query":
				q.Query, err = d.str(g.val, g.fullPath)
				queryLine = g.val.Line
				if err == nil && strings.TrimSpace(q.Query) == "" {
					err = d.errf(g.val.Line, g.fullPath, "is empty; write the PromQL whose value is judged")
				}
			case "range":
				q.Range, err = d.span(g.val, g.fullPath, time.Second, false, "the window the query's {{range}} covers")
				rangeLine = g.val.Line
			case "max", "min":
				var v float64
				if v, err = d.float(g.val, g.fullPath, -1e300, 1e300); err != nil {
					err = d.errf(g.val.Line, g.fullPath, "must be a number, got %s", valueText(g.val))
				} else if g.key == "max" {
					q.Max = &v
				} else {
					q.Min = &v
				}
			default:
				err = d.unknown(g, field, "name, query, range, max, min")
			}
			if err != nil {
				ferrs = append(ferrs, err)
			}
		}
		if q.Name == "" && len(ferrs) == 0 {
			ferrs = append(ferrs, d.errf(item.Line, field, "needs a name (it names the judge in decisions and the history)"))
		}
		if q.Query == "" && len(ferrs) == 0 {
			ferrs = append(ferrs, d.errf(item.Line, field, "needs a query, the PromQL whose value is judged"))
		}
		if q.Max == nil && q.Min == nil && len(ferrs) == 0 {
			ferrs = append(ferrs, d.errf(item.Line, field, "needs max, min or both: the limits the query's value must stay within"))
		}
		if q.Range > 0 {
			// Expanded with a mark for {{range}}: without the mark, the
			// range has nowhere to go.
			e, err := expandQuery(q.Query, map[string]string{"service": "", "version": "", "baseline": "", "namespace": "", "range": "\x00"})
			if err == nil && !strings.Contains(e, "\x00") {
				ferrs = append(ferrs, d.errf(rangeLine, field+".range", "is set, but the query has no {{range}} to put it in; use {{range}} in the query (e.g. rate(x[{{range}}])) or remove range"))
			}
		}
		if q.Max != nil && q.Min != nil && *q.Min > *q.Max {
			ferrs = append(ferrs, d.errf(item.Line, field, "min %g is above max %g, so no value could pass; swap them", *q.Min, *q.Max))
		}
		if strings.TrimSpace(q.Query) != "" {
			expanded, err := expandQuery(q.Query, map[string]string{"service": "service", "version": "v1", "baseline": "v0", "namespace": "namespace", "range": "1m"})
			if err != nil {
				for _, e := range unjoin(err) {
					ferrs = append(ferrs, d.errf(queryLine, field+".query", "%v", e))
				}
			} else if err := checkPromQL(expanded); err != nil {
				ferrs = append(ferrs, d.errf(queryLine, field+".query", "%v", err))
			}
		}
		errs = append(errs, ferrs...)
		out = append(out, q)
	}
	return out, errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (d *decoder) webhooks(f pair) ([]Webhook, []int, error) {
	if f.val.Kind != yaml.SequenceNode {
		return nil, nil, d.errf(f.val.Line, f.fullPath, "must be a list of webhooks, e.g. - {name: gate, type: confirm-promotion, url: http://gate.example/approve}; got %s", kindName(f.val))
	}
	var out []Webhook
	var lines []int
	var errs []error
	seen := map[string]int{}
	for i, item := range f.val.Content {
		field := fmt.Sprintf("%s[%d]", f.fullPath, i)
		fields, err := d.mapping(item, field)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := Webhook{Type: HookRollout, Timeout: DefaultWebhookTimeout}
		var herrs []error
		for _, g := range fields {
			var err error
			switch g.key {
			case "name":
				if h.Name, err = d.str(g.val, g.fullPath); err == nil {
					if e := checkHandle(h.Name); e != nil {
						err = d.errf(g.val.Line, g.fullPath, "%v", e)
					} else if prev, dup := seen[h.Name]; dup {
						err = d.errf(g.val.Line, g.fullPath, "%q is used twice (first on line %d); give each webhook its own name", h.Name, prev)
					} else {
						seen[h.Name] = g.val.Line
					}
				}
			case "type":
				var s string
				if s, err = d.str(g.val, g.fullPath); err == nil {
					if !slices.Contains(webhookTypes, WebhookType(s)) {
						known := make([]string, len(webhookTypes))
						for i, t := range webhookTypes {
							known[i] = string(t)
						}
						err = d.errf(g.val.Line, g.fullPath, "unknown webhook type %q (known: %s)", s, strings.Join(known, ", "))
					} else {
						h.Type = WebhookType(s)
					}
				}
			case "url":
				if h.URL, err = d.str(g.val, g.fullPath); err == nil {
					if e := checkHookURL(h.URL); e != nil {
						err = d.errf(g.val.Line, g.fullPath, "%v", e)
					}
				}
			case "timeout":
				h.Timeout, err = d.span(g.val, g.fullPath, time.Millisecond, false, "how long a call may take")
			case "metadata":
				var kvs []pair
				if kvs, err = d.mapping(g.val, g.fullPath); err == nil && len(kvs) > 0 {
					h.Metadata = map[string]string{}
					for _, kv := range kvs {
						v, e := d.scalar(kv.val, kv.fullPath)
						if e != nil {
							herrs = append(herrs, e)
							continue
						}
						h.Metadata[kv.key] = v
					}
				}
			default:
				err = d.unknown(g, field, "name, type, url, timeout, metadata")
			}
			if err != nil {
				herrs = append(herrs, err)
			}
		}
		if h.Name == "" && len(herrs) == 0 {
			herrs = append(herrs, d.errf(item.Line, field, "needs a name (it names the call in decisions and the history)"))
		}
		if h.URL == "" && len(herrs) == 0 {
			herrs = append(herrs, d.errf(item.Line, field, "needs a url, the http:// or https:// address the canary's state is posted to"))
		}
		errs = append(errs, herrs...)
		out = append(out, h)
		lines = append(lines, item.Line)
	}
	return out, lines, errors.Join(errs...)
}

func checkHookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL (%w); write an http:// or https:// address", s, errors.Unwrap(err))
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return fmt.Errorf("%q is not an http:// or https:// address; a webhook is an HTTP POST", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host; write it as http://HOST[:PORT]/PATH", s)
	}
	return nil
}

// policyScope resolves one policy: the built-in defaults, then inherited
// (the manifest's defaults, for a service), then own.
type policyScope struct {
	d         *decoder
	own       *policyBlock // may be nil
	inherited *policyBlock // nil when resolving the defaults themselves
	defaults  bool         // own is the manifest's defaults
	// where problems no field of own explains are reported: the service.
	path string
	line int
}

func (s *policyScope) errf(line int, field, format string, args ...any) error {
	if s.d == nil {
		return fmt.Errorf(format, args...)
	}
	return s.d.errf(line, field, format, args...)
}

// resolve merges the blocks and checks the result. A problem is reported
// where the scope's own block causes it; what the defaults alone cause is
// reported once, when they are resolved. A field inherited from the
// defaults that this service's strategy does not use is dropped (it is a
// default for the others); one the service writes is a problem.
func (s *policyScope) resolve() (Policy, []error) {
	p := builtinPolicy()
	for _, b := range []*policyBlock{s.inherited, s.own} {
		if b == nil {
			continue
		}
		for _, f := range policyFields {
			if _, ok := b.set[f.name]; ok {
				f.set(&p, &b.p)
			}
		}
	}
	_, ownStrategy := s.own.at("strategy")
	_, inhStrategy := s.inherited.at("strategy")
	if !ownStrategy && !inhStrategy {
		p.Strategy = StrategyDirect
		if len(p.Steps) > 0 {
			p.Strategy = StrategyCanary
		}
	}
	var errs []error
	if (s.own != nil && s.own.bad) || (s.inherited != nil && s.inherited.bad) {
		// Their problems are reported; what they would resolve to is not
		// checked further (a refused field would make others look wrong).
		return p, nil
	}
	// The defaults are defaults for services of every strategy: only when
	// they name a strategy are their fields checked against it.
	checkUse := !s.defaults || ownStrategy
	// Which fields apply is decided on the policy as merged, before any
	// is cleared.
	merged := p.clone()
	for _, f := range policyFields {
		if f.off == nil {
			continue
		}
		why, fix := s.inapplicable(f.name, &merged)
		if why == "" {
			continue
		}
		// The defaults' confidence and min_effect are for the services
		// that compare, whether the defaults do or not.
		forComparers := s.defaults && (f.name == "confidence" || f.name == "min_effect")
		if line, ok := s.own.at(f.name); ok && checkUse && !forComparers && !f.off(&merged) {
			errs = append(errs, s.errf(line, s.own.path+"."+f.name, "%s; remove %s, or %s", why, f.name, fix))
		}
		if f.clear != nil {
			f.clear(&p)
		}
	}
	if p.Strategy == StrategyCanary && len(p.Steps) == 0 && !s.defaults {
		if line, ok := s.own.at("strategy"); ok {
			errs = append(errs, s.errf(line, s.own.path+".strategy", "canary needs steps, the traffic percentages it goes through, e.g. steps: [5, 25, 50, 100]"))
		} else {
			errs = append(errs, s.errf(s.line, s.path, "has strategy canary (from %s, line %d) but no steps; give it steps, e.g. steps: [5, 25, 50, 100], or strategy: direct", s.inherited.path+".strategy", s.inherited.set["strategy"]))
		}
	}
	// blame returns the first of fields that own sets, or else the
	// setting of own that has the policy watched at all: what the
	// defaults cause alone, their own check reports, unless they are not
	// watched and this service is.
	blame := func(fields ...string) (string, int, bool) {
		for _, f := range append(fields, "strategy", "steps", "bake") {
			if l, ok := s.own.at(f); ok {
				return f, l, true
			}
		}
		return "", 0, false
	}
	if p.SyntheticLoad > 0 && p.MinRequests == 0 {
		if f, l, ok := blame("synthetic_load", "min_requests"); ok {
			errs = append(errs, s.errf(l, s.own.path+"."+f, "synthetic_load never runs with min_requests 0: it drives requests only in intervals with fewer than min_requests; set min_requests (e.g. 20) or turn synthetic_load off"))
		}
	}
	if _, ok := s.own.at("webhooks"); ok && p.Strategy == StrategyDirect && p.Bake == 0 {
		for i, h := range p.Webhooks {
			if (h.Type == HookRollout || h.Type == HookRollback) && i < len(s.own.hookLines) {
				errs = append(errs, s.errf(s.own.hookLines[i], fmt.Sprintf("%s.webhooks[%d]", s.own.path, i), "a %s webhook is called every judged interval, and strategy direct with bake 0s judges none; give it another type (a missing type is rollout) or give bake a duration", h.Type))
			}
		}
	}
	var hookTime time.Duration
	for _, h := range p.Webhooks {
		if h.Type == HookRollout || h.Type == HookRollback {
			hookTime += h.Timeout.D()
		}
	}
	if hookTime > 0 && hookTime >= p.Interval.D() {
		if f, l, ok := blame("webhooks", "interval"); ok {
			errs = append(errs, s.errf(l, s.own.path+"."+f, "the timeouts of the webhooks called every interval (rollout, rollback) add up to %s, not less than the interval %s: a slow hook would delay every analysis; lower their timeouts or raise the interval", short(Duration(hookTime)), short(p.Interval)))
		}
	}
	if p.MaxP50 > 0 && p.MaxP99 > 0 && p.MaxP99 < p.MaxP50 {
		if f, l, ok := blame("max_p99", "max_p50"); ok {
			errs = append(errs, s.errf(l, s.own.path+"."+f, "max_p99 %s is below max_p50 %s, but the 99th percentile is never below the median; raise max_p99 or lower max_p50", short(p.MaxP99), short(p.MaxP50)))
		}
	}
	judged := p.MaxErrorRate > 0 || p.MaxP50 > 0 || p.MaxP99 > 0 || len(p.Queries) > 0 || p.Compare != ""
	if p.Watched() && !judged {
		judges := []string{"max_error_rate", "max_p50", "max_p99", "queries", "compare"}
		if f, l, ok := blame(judges...); ok {
			msg := "leaves no judge on, so nothing would watch the new version; keep max_error_rate, max_p50, max_p99, a query or compare: baseline"
			if !slices.Contains(judges, f) {
				msg = "has the new version judged, but every judge it inherits is off; turn one on here: max_error_rate, max_p50, max_p99, a query or compare: baseline"
			}
			errs = append(errs, s.errf(l, s.own.path+"."+f, "%s", msg))
		}
	}
	return p, errs
}

// Watched reports whether anything judges a version under the policy:
// every strategy but a direct switch without bake.
func (p Policy) Watched() bool { return p.Strategy != StrategyDirect || p.Bake > 0 }

// inapplicable says why field has no effect on p, and what would give it
// one ("" when it has).
func (s *policyScope) inapplicable(field string, p *Policy) (why, fix string) {
	strategy := s.strategyText(p)
	switch field {
	case "steps":
		if p.Strategy != StrategyCanary {
			return "takes effect only with strategy canary, and " + strategy, "write strategy: canary"
		}
	case "lane_first":
		// The other strategies always let the lane in first: saying so
		// is no problem.
		if p.Strategy != StrategyCanary && !p.LaneFirst {
			return "false takes effect only with strategy canary (the others always let the lane in first), and " + strategy, "write strategy: canary"
		}
	case "iterations":
		if p.Strategy != StrategyBlueGreen {
			return "takes effect only with strategy bluegreen, and " + strategy, "write strategy: bluegreen"
		}
	case "threshold", "compare", "inconclusive_limit":
		if p.Strategy == StrategyDirect {
			return "takes effect only with strategy canary or bluegreen (direct has no analysis before the switch; its bake rolls back at the first failed interval), and " + strategy, "use strategy canary or bluegreen"
		}
	case "confidence", "min_effect":
		if p.Strategy == StrategyDirect {
			return "takes effect only with compare: baseline, under strategy canary or bluegreen, and " + strategy, "use strategy canary or bluegreen with compare: baseline"
		}
		if p.Compare == "" {
			return "takes effect only with compare: baseline", "add compare: baseline"
		}
	case "interval", "min_requests", "max_error_rate", "max_p50", "max_p99", "queries", "synthetic_load", "consecutive_error_limit":
		if p.Strategy == StrategyDirect && p.Bake == 0 {
			return "takes effect only while a version is judged, and strategy direct with bake 0s judges nothing", "give bake a duration (e.g. bake: 1m)"
		}
	}
	return "", ""
}

func (s *policyScope) strategyText(p *Policy) string {
	if l, ok := s.own.at("strategy"); ok {
		return fmt.Sprintf("the strategy is %s (line %d)", p.Strategy, l)
	}
	if l, ok := s.inherited.at("strategy"); ok {
		return fmt.Sprintf("the strategy is %s (from %s.strategy, line %d)", p.Strategy, s.inherited.path, l)
	}
	if p.Strategy == StrategyCanary {
		return "the strategy is canary, since there are steps"
	}
	return "the strategy is direct, since there are no steps"
}

// Summary describes the policy in one line, as `flotilla graph show`
// prints it.
func (p Policy) Summary() string {
	if !p.Watched() {
		return "direct, unwatched (bake 0s)" + p.hooksSummary()
	}
	var judges []string
	if p.MaxErrorRate > 0 {
		judges = append(judges, fmt.Sprintf("errors ≤ %s%%", strconv.FormatFloat(p.MaxErrorRate*100, 'g', -1, 64)))
	}
	if p.MaxP50 > 0 {
		judges = append(judges, "p50 ≤ "+short(p.MaxP50))
	}
	if p.MaxP99 > 0 {
		judges = append(judges, "p99 ≤ "+short(p.MaxP99))
	}
	for _, q := range p.Queries {
		judges = append(judges, q.Name)
	}
	if p.Compare != "" {
		judges = append(judges, fmt.Sprintf("vs baseline (%s confidence, %s%% effect)", strconv.FormatFloat(p.Confidence, 'g', -1, 64), strconv.FormatFloat(p.MinEffect*100, 'g', -1, 64)))
	}
	on := fmt.Sprintf("on %s (at least %d requests", strings.Join(judges, ", "), p.MinRequests)
	if p.SyntheticLoad > 0 {
		on += fmt.Sprintf(", else synthetic load at %s/s", strconv.FormatFloat(p.SyntheticLoad, 'g', -1, 64))
	}
	on += ")"
	judged := "judged " + on
	bake := "no bake"
	if p.Bake > 0 {
		bake = "bake " + short(p.Bake)
	}
	var b strings.Builder
	switch p.Strategy {
	case StrategyCanary:
		steps := make([]string, len(p.Steps))
		for i, s := range p.Steps {
			steps[i] = strconv.Itoa(s)
		}
		fmt.Fprintf(&b, "canary %s%% every %s, rolled back after %d failed", strings.Join(steps, "/"), short(p.Interval), p.Threshold)
		if !p.LaneFirst {
			b.WriteString(", weighted from the start")
		}
		fmt.Fprintf(&b, "; %s; %s", judged, bake)
	case StrategyBlueGreen:
		fmt.Fprintf(&b, "bluegreen after %d interval(s) of %s on the lane, rolled back after %d failed; %s; %s", p.Iterations, short(p.Interval), p.Threshold, judged, bake)
	default:
		fmt.Fprintf(&b, "direct, then a %s bake judged every %s %s", short(p.Bake), short(p.Interval), on)
	}
	return b.String() + p.hooksSummary()
}

func (p Policy) hooksSummary() string {
	if len(p.Webhooks) == 0 {
		return ""
	}
	hooks := make([]string, len(p.Webhooks))
	for i, h := range p.Webhooks {
		hooks[i] = fmt.Sprintf("%s (%s)", h.Name, h.Type)
	}
	return "; webhooks " + strings.Join(hooks, ", ")
}

// short writes a duration as PromQL does: 1m, 1m30s, 200ms.
func short(d Duration) string { return model.Duration(d).String() }

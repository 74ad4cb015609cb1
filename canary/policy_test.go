package canary_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

func f(v float64) *float64 { return &v }

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *canary.Policy)
		want []string // substrings of the error; none: valid
	}{
		{"canary", func(*canary.Policy) {}, nil},
		{"default", func(p *canary.Policy) { *p = canary.DefaultPolicy() }, nil},
		{"negative synthetic load", func(p *canary.Policy) { p.SyntheticLoad = -1 }, []string{"synthetic_load: -1 requests per second is negative"}},
		{"scenario", func(p *canary.Policy) {
			p.Steps = []int{5, 25, 50, 100}
			p.Interval = 10 * time.Minute
			p.MaxP99 = 200 * time.Millisecond
			p.Compare.Baseline = true
		}, nil},
		{"steps that do not increase", func(p *canary.Policy) { p.Steps = []int{10, 50, 50} }, []string{"steps[2]: 50% does not increase on 50%"}},
		{"steps past 100", func(p *canary.Policy) { p.Steps = []int{50, 120} }, []string{"steps[1]: 120% is outside 1..100"}},
		{"step 0", func(p *canary.Policy) { p.Steps = []int{0, 50} }, []string{"steps[0]: 0% is outside"}},
		{"no steps", func(p *canary.Policy) { p.Steps = nil }, []string{"at least one step"}},
		{"threshold 0", func(p *canary.Policy) { p.Threshold = 0 }, []string{"threshold: 0"}},
		{"interval too short", func(p *canary.Policy) { p.Interval = time.Millisecond }, []string{"interval: 1ms is below 1s"}},
		{"unknown strategy", func(p *canary.Policy) { p.Strategy = "rainbow" }, []string{`strategy "rainbow": want canary, bluegreen or direct`}},
		{"bluegreen with steps", func(p *canary.Policy) { p.Strategy = canary.StrategyBlueGreen }, []string{"blue/green moves all the traffic at once"}},
		{"bluegreen", func(p *canary.Policy) { p.Strategy, p.Steps, p.Iterations = canary.StrategyBlueGreen, nil, 3 }, nil},
		{"iterations on a canary", func(p *canary.Policy) { p.Iterations = 3 }, []string{"only blue/green uses iterations"}},
		{"direct", func(p *canary.Policy) { p.Strategy, p.Steps = canary.StrategyDirect, nil }, nil},
		{"direct without judges or bake", func(p *canary.Policy) {
			p.Strategy, p.Steps, p.MaxErrorRate, p.Bake = canary.StrategyDirect, nil, 0, 0
		}, nil},
		{"no judge", func(p *canary.Policy) { p.MaxErrorRate = 0 }, []string{"no judge"}},
		{"error rate as a percentage", func(p *canary.Policy) { p.MaxErrorRate = 5 }, []string{"max_error_rate: 5: want a fraction"}},
		{"p99 below p50", func(p *canary.Policy) { p.MaxP50, p.MaxP99 = time.Second, time.Millisecond }, []string{"max_p99: 1ms is below max_p50 1s"}},
		{"bad confidence", func(p *canary.Policy) { p.Compare = canary.Compare{Baseline: true, Confidence: 98} }, []string{"compare: confidence 98"}},
		{"negative effect", func(p *canary.Policy) { p.Compare = canary.Compare{Baseline: true, Confidence: 0.95, MinEffect: -1} }, []string{"min_effect -1"}},
		{"negative limits", func(p *canary.Policy) { p.InconclusiveLimit, p.ConsecutiveErrorLimit, p.Bake = -1, -1, -time.Second }, []string{"inconclusive_limit: -1", "consecutive_error_limit: -1", "bake: -1s"}},
		{"namespace placeholder", func(p *canary.Policy) {
			p.Queries = []canary.Query{{Name: "q", Query: `up{namespace="{{namespace}}"}`, Max: f(1)}}
		}, nil},
		{"query", func(p *canary.Policy) {
			p.Queries = []canary.Query{{Name: "p95", Query: `histogram_quantile(0.95, rate(x{version="{{version}}"}[{{ range }}]))`, Range: time.Minute, Max: f(0.3)}}
		}, nil},
		{"bad queries", func(p *canary.Policy) {
			p.Queries = []canary.Query{
				{Query: "up", Max: f(1)},
				{Name: "error_rate", Query: "up", Max: f(1)},
				{Name: "a", Query: "x{{target}}", Min: f(2), Max: f(1)},
				{Name: "b", Query: " "},
				{Name: "c", Query: "up", Range: time.Minute, Max: f(1)},
			}
		}, []string{
			"queries[0]: no name", "queries[1] (error_rate): the name is taken", "queries[2] (a): unknown placeholder {{target}}",
			"queries[2] (a): max 1 is below min 2", "queries[3] (b): no query", "queries[3] (b): no limit",
			"queries[4] (c): range 1m0s is set but the query has no {{range}}",
		}},
		{"webhooks", func(p *canary.Policy) {
			p.Webhooks = []canary.Webhook{{Name: "gate", Kind: canary.HookConfirmPromotion, URL: "http://gate/approve"}}
		}, nil},
		{"bad webhooks", func(p *canary.Policy) {
			p.Webhooks = []canary.Webhook{
				{Name: "a", Kind: "pre-traffic", URL: "http://x"},
				{Name: "a", Kind: canary.HookRollout, URL: "ftp://x"},
				{Kind: canary.HookRollout, URL: "http://x", Timeout: 2 * time.Minute},
			}
		}, []string{
			`webhooks[0] (a): kind "pre-traffic": want one of confirm-rollout, pre-rollout`, "webhooks[1] (a): another webhook has that name",
			`webhooks[1] (a): url "ftp://x"`, "webhooks[2]: no name", "webhooks[2]: timeout 2m0s is longer than the interval 30s",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := canaryPolicy()
			tc.edit(&p)
			err := p.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid policy refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
		})
	}
}

// canaryPolicy is the default with the canary strategy turned on.
func canaryPolicy() canary.Policy {
	p := canary.DefaultPolicy()
	p.Strategy, p.Steps = canary.StrategyCanary, []int{10, 50, 100}
	return p
}

func TestPolicyDescribe(t *testing.T) {
	if got, want := canary.DefaultPolicy().Describe(), "100% at once, bake 1m0s"; got != want {
		t.Errorf("default Describe() = %q, want %q", got, want)
	}
	p := canaryPolicy()
	p.Steps = []int{5, 25, 50, 100}
	if got, want := p.Describe(), "canary 5/25/50/100% every 30s, threshold 1, lane first, bake 1m0s"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	p.Strategy, p.Steps, p.Bake = canary.StrategyDirect, nil, 0
	if got, want := p.Describe(), "100% at once"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

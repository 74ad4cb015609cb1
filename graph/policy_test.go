package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sec(n float64) Duration { return Duration(n * float64(time.Second)) }

func ptr(v float64) *float64 { return &v }

// policyOf parses a manifest whose services are a (and b, c when given)
// and returns the policies.
func policyOf(t *testing.T, body string) (*Manifest, error) {
	t.Helper()
	return ParseYAML("flotilla.yaml", "/repo", []byte(body))
}

// TestPolicyAccepted: every accepted form of a canary block, resolved over
// the built-in defaults.
func TestPolicyAccepted(t *testing.T) {
	def := DefaultPolicy()
	canary := func(steps ...int) Policy {
		p := def
		p.Strategy, p.Steps, p.Threshold, p.InconclusiveLimit = StrategyCanary, steps, 1, 5
		return p
	}
	tests := []struct {
		name, block string // the canary block of service a ("" for none)
		want        func() Policy
	}{
		{"no block", "", func() Policy { return def }},
		{"empty block", "canary:", func() Policy { return def }},
		{"steps make a canary", "canary: {steps: [5, 25, 50, 100]}", func() Policy { return canary(5, 25, 50, 100) }},
		{"one step below 100", "canary: {steps: [10]}", func() Policy { return canary(10) }},
		{"explicit canary", "canary: {strategy: canary, steps: [1, 2, 10, 80]}", func() Policy { return canary(1, 2, 10, 80) }},
		{"every canary field", `canary:
      strategy: canary
      steps: [5, 25, 50, 100]
      lane_first: false
      interval: 15s
      threshold: 3
      min_requests: 50
      max_error_rate: 0.02
      max_p50: 50ms
      max_p99: 200ms
      compare: baseline
      confidence: 0.95
      min_effect: 0.2
      synthetic_load: {rate: 12.5}
      bake: 5m
      inconclusive_limit: 8
      consecutive_error_limit: 0
      queries:
        - name: db-errors
          query: sum(rate(db_errors_total{service="{{service}}", version="{{ version }}"}[{{range}}]))
          max: 5
        - {name: cache_hits, query: 'avg(avg_over_time(cache_hit_ratio{namespace="{{namespace}}"}[{{range}}]))', range: 2m, min: 0.5, max: 1}
        - {name: vs_stable, query: 'sum(rate(x{version="{{version}}"}[1m])) / sum(rate(x{version="{{baseline}}"}[1m]))', max: 1.2}
      webhooks:
        - {name: gate, type: confirm-promotion, url: "https://gate.example/approve", timeout: 30s}
        - {name: load-test, url: "http://loadtester.test/", timeout: 5s, metadata: {type: cmd, cmd: "hey -z 1m http://payment-canary/", rate: 10}}
        - {name: notify, type: event, url: "http://hooks.example/flotilla"}`, func() Policy {
			return Policy{Strategy: StrategyCanary, Steps: []int{5, 25, 50, 100}, LaneFirst: false, Interval: sec(15), Threshold: 3, MinRequests: 50,
				MaxErrorRate: 0.02, MaxP50: Duration(50 * time.Millisecond), MaxP99: Duration(200 * time.Millisecond),
				Compare: CompareBaseline, Confidence: 0.95, MinEffect: 0.2, SyntheticLoad: 12.5, Bake: sec(300), InconclusiveLimit: 8, ConsecutiveErrorLimit: 0,
				Queries: []Query{
					{Name: "db-errors", Query: `sum(rate(db_errors_total{service="{{service}}", version="{{ version }}"}[{{range}}]))`, Max: ptr(5)},
					{Name: "cache_hits", Query: `avg(avg_over_time(cache_hit_ratio{namespace="{{namespace}}"}[{{range}}]))`, Range: sec(120), Min: ptr(0.5), Max: ptr(1)},
					{Name: "vs_stable", Query: `sum(rate(x{version="{{version}}"}[1m])) / sum(rate(x{version="{{baseline}}"}[1m]))`, Max: ptr(1.2)},
				},
				Webhooks: []Webhook{
					{Name: "gate", Type: HookConfirmPromotion, URL: "https://gate.example/approve", Timeout: sec(30)},
					{Name: "load-test", Type: HookRollout, URL: "http://loadtester.test/", Timeout: sec(5), Metadata: map[string]string{"type": "cmd", "cmd": "hey -z 1m http://payment-canary/", "rate": "10"}},
					{Name: "notify", Type: HookEvent, URL: "http://hooks.example/flotilla", Timeout: sec(10)},
				}}
		}},
		{"bluegreen", "canary: {strategy: bluegreen, iterations: 3, compare: baseline, synthetic_load: {rate: 5}}", func() Policy {
			p := def
			p.Strategy, p.Iterations, p.Threshold, p.InconclusiveLimit = StrategyBlueGreen, 3, 1, 5
			p.Compare, p.Confidence, p.MinEffect, p.SyntheticLoad = CompareBaseline, 0.98, 0.1, 5
			return p
		}},
		{"bluegreen default iterations", "canary: {strategy: bluegreen}", func() Policy {
			p := def
			p.Strategy, p.Iterations, p.Threshold, p.InconclusiveLimit = StrategyBlueGreen, 5, 1, 5
			return p
		}},
		{"direct with judges for the bake", "canary: {strategy: direct, bake: 10m, max_p99: 1s, max_error_rate: off, interval: 1m}", func() Policy {
			p := def
			p.Bake, p.MaxP99, p.MaxErrorRate, p.Interval = sec(600), sec(1), 0, sec(60)
			return p
		}},
		{"direct unwatched", "canary: {strategy: direct, bake: 0s, webhooks: [{name: done, type: post-rollout, url: 'http://x.test'}]}", func() Policy {
			// Nothing judges: the judges are off; the rest keeps its
			// values, which nothing reads.
			p := def
			p.Bake, p.MaxErrorRate = 0, 0
			p.Webhooks = []Webhook{{Name: "done", Type: HookPostRollout, URL: "http://x.test", Timeout: sec(10)}}
			return p
		}},
		{"every webhook type", `canary:
      webhooks:
        - {name: a, type: confirm-rollout, url: "http://h.test/a"}
        - {name: b, type: pre-rollout, url: "http://h.test/b"}
        - {name: c, type: rollout, url: "http://h.test/c", timeout: 1s}
        - {name: d, type: confirm-promotion, url: "http://h.test/d"}
        - {name: e, type: post-rollout, url: "http://h.test/e"}
        - {name: f, type: rollback, url: "http://h.test/f"}
        - {name: g, type: event, url: "https://h.test:8443/g?x=1"}`, func() Policy {
			p := def
			for i, k := range webhookTypes {
				p.Webhooks = append(p.Webhooks, Webhook{Name: string(rune('a' + i)), Type: k, URL: "http://h.test/" + string(rune('a'+i)), Timeout: sec(10)})
			}
			p.Webhooks[2].Timeout = sec(1)
			p.Webhooks[6].URL = "https://h.test:8443/g?x=1"
			return p
		}},
		{"a query with min only and scalar result", "canary: {queries: [{name: q, query: 'scalar(up) * 2', min: 1}]}", func() Policy {
			p := def
			p.Queries = []Query{{Name: "q", Query: "scalar(up) * 2", Min: ptr(1)}}
			return p
		}},
		{"compare off, judges off but a query", "canary: {compare: off, max_error_rate: off, queries: [{name: q, query: up, max: 1}]}", func() Policy {
			p := def
			p.MaxErrorRate = 0
			p.Queries = []Query{{Name: "q", Query: "up", Max: ptr(1)}}
			return p
		}},
		{"synthetic load off", "canary: {synthetic_load: off}", func() Policy { return def }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := policyOf(t, "services:\n  a:\n    path: a\n    "+tt.block+"\n")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want(), m.Service("a").Policy); d != "" {
				t.Errorf("policy (-want +got):\n%s", d)
			}
		})
	}
}

// TestPolicyRefused: every refusal, with its exact message.
func TestPolicyRefused(t *testing.T) {
	const svc = "services:\n  a:\n    path: a\n    canary:\n" // the block's fields start on line 5
	tests := []struct {
		name, body string
		want       string
	}{
		{"steps decrease", svc + "      steps: [50, 10]\n", "FILE:5: services.a.canary.steps[1]: steps must increase, got 10 after 50; list the percentages in increasing order, e.g. steps: [5, 25, 50, 100]"},
		{"steps repeat", svc + "      steps: [10, 10]\n", "FILE:5: services.a.canary.steps[1]: steps must increase, got 10 after 10; list the percentages in increasing order, e.g. steps: [5, 25, 50, 100]"},
		{"step past 100", svc + "      steps: [50, 150]\n", "FILE:5: services.a.canary.steps[1]: must be a traffic percentage from 1 to 100, got 150"},
		{"step 0", svc + "      steps: [0, 50]\n", "FILE:5: services.a.canary.steps[0]: must be a traffic percentage from 1 to 100, got 0"},
		{"step not a number", svc + "      steps: [5%, 50]\n", `FILE:5: services.a.canary.steps[0]: must be a traffic percentage, a whole number from 1 to 100, got "5%"`},
		{"steps empty", svc + "      steps: []\n", "FILE:5: services.a.canary.steps: is empty: list the traffic percentages the canary goes through, e.g. steps: [5, 25, 50, 100] (or write strategy: direct for none)"},
		{"steps not a list", svc + "      steps: 50\n", "FILE:5: services.a.canary.steps: must be a list of traffic percentages, e.g. steps: [5, 25, 50, 100]; got a number (50)"},
		{"canary without steps", svc + "      strategy: canary\n", "FILE:5: services.a.canary.strategy: canary needs steps, the traffic percentages it goes through, e.g. steps: [5, 25, 50, 100]"},
		{"unknown strategy", svc + "      strategy: rolling\n", `FILE:5: services.a.canary.strategy: unknown strategy "rolling" (known: canary, bluegreen, direct)`},
		{"threshold 0", svc + "      threshold: 0\n", "FILE:5: services.a.canary.threshold: must be at least 1 (the failed analyses that roll the version back; 1 rolls back at the first), got 0"},
		{"threshold text", svc + "      threshold: two\n", `FILE:5: services.a.canary.threshold: must be a whole number, got "two"`},
		{"unknown judge", svc + "      max_p95: 100ms\n", `FILE:5: services.a.canary.max_p95: unknown judge "max_p95" (the built-in judges are max_error_rate, max_p50 and max_p99; judge another metric with a Prometheus query under queries:)`},
		{"unknown min judge", svc + "      min_success_rate: 0.99\n", `FILE:5: services.a.canary.min_success_rate: unknown judge "min_success_rate" (the built-in judges are max_error_rate, max_p50 and max_p99; judge another metric with a Prometheus query under queries:)`},
		{"unknown field", svc + "      stepweight: 10\n", `FILE:5: services.a.canary.stepweight: unknown field "stepweight" (known: ` + policyFieldNames() + `)`},
		{"negative interval", svc + "      interval: -5s\n", "FILE:5: services.a.canary.interval: is negative (-5s); give a duration such as 30s or 2m"},
		{"short interval", svc + "      interval: 500ms\n", "FILE:5: services.a.canary.interval: must be at least 1s (the judges read the metrics once per interval), got 500ms"},
		{"interval a number", svc + "      interval: 30\n", "FILE:5: services.a.canary.interval: must be a duration such as 30s or 2m, got a number (30)"},
		{"negative bake", svc + "      bake: -1m\n", "FILE:5: services.a.canary.bake: is negative (-1m); give a duration such as 30s or 2m"},
		{"negative p99", svc + "      max_p99: -200ms\n", "FILE:5: services.a.canary.max_p99: is negative (-200ms); give a duration such as 30s or 2m, or off"},
		{"p50 of 0", svc + "      max_p50: 0s\n", "FILE:5: services.a.canary.max_p50: is 0, which no request could meet; give a duration such as 30s or 2m, or off (write off to turn the judge off)"},
		{"error rate as percent", svc + "      max_error_rate: 1\n", "FILE:5: services.a.canary.max_error_rate: must be a fraction of the requests above 0 and below 1 (0.01 is 1%), or off; got 1"},
		{"error rate 0", svc + "      max_error_rate: 0\n", "FILE:5: services.a.canary.max_error_rate: must be a fraction of the requests above 0 and below 1 (0.01 is 1%), or off; got 0"},
		{"confidence 1", svc + "      compare: baseline\n      steps: [10]\n      confidence: 1\n", "FILE:7: services.a.canary.confidence: must be a confidence level above 0.5 and below 1, such as 0.95 or 0.98, got 1"},
		{"confidence 0", svc + "      compare: baseline\n      steps: [10]\n      confidence: 0\n", "FILE:7: services.a.canary.confidence: must be a confidence level above 0.5 and below 1, such as 0.95 or 0.98, got 0"},
		{"confidence as percent", svc + "      compare: baseline\n      steps: [10]\n      confidence: 95\n", "FILE:7: services.a.canary.confidence: must be a confidence level above 0.5 and below 1, such as 0.95 or 0.98, got 95"},
		{"negative effect", svc + "      min_effect: -0.1\n", "FILE:5: services.a.canary.min_effect: must be a relative worsening from 0 to 100 (0.1: 10% worse than the baseline), got -0.1"},
		{"unknown comparison", svc + "      compare: production\n", `FILE:5: services.a.canary.compare: unknown comparison "production": write baseline (judge against the stable version) or off`},
		{"lane_first text", svc + "      lane_first: \"yes\"\n", `FILE:5: services.a.canary.lane_first: must be true or false, got the text "yes"`},
		{"synthetic load bare", svc + "      synthetic_load: true\n", "FILE:5: services.a.canary.synthetic_load: must be a mapping or off, got a boolean (true); write {rate: 10} (requests per second) or off"},
		{"synthetic load no rate", svc + "      synthetic_load: {}\n", "FILE:5: services.a.canary.synthetic_load: needs a rate; write {rate: 10} (requests per second) or off"},
		{"synthetic load rate 0", svc + "      synthetic_load: {rate: 0}\n", "FILE:5: services.a.canary.synthetic_load.rate: must be the requests per second, above 0 and at most 10000, got 0"},
		{"synthetic load unknown", svc + "      synthetic_load: {rate: 1, paths: [/]}\n", `FILE:5: services.a.canary.synthetic_load.paths: unknown field "paths" (known: rate)`},
		{"confidence one half", svc + "      compare: baseline\n      steps: [10]\n      confidence: 0.5\n", "FILE:7: services.a.canary.confidence: must be a confidence level above 0.5 and below 1, such as 0.95 or 0.98, got 0.5"},
		{"negative inconclusive limit", svc + "      inconclusive_limit: -1\n", "FILE:5: services.a.canary.inconclusive_limit: must be at least 0, got -1"},
		{"negative error limit", svc + "      consecutive_error_limit: -1\n", "FILE:5: services.a.canary.consecutive_error_limit: must be at least 0, got -1"},
		{"iterations 0", svc + "      strategy: bluegreen\n      iterations: 0\n", "FILE:6: services.a.canary.iterations: must be at least 1 (the intervals bluegreen judges before the switch; 1 switches after the first passing one), got 0"},
		{"block not a mapping", "services:\n  a:\n    path: a\n    canary: [10, 50]\n", "FILE:4: services.a.canary: it must be a mapping, got a list"},

		// Malformed queries.
		{"unbalanced query", svc + "      queries:\n        - {name: q, query: 'sum(rate(x[{{range}}])', max: 1}\n",
			"FILE:6: services.a.canary.queries[0].query: is not valid PromQL: unclosed left parenthesis (at the end, character 16 of the query with its placeholders filled in); check the brackets, quotes and operators"},
		{"unclosed quote in query", svc + "      queries:\n        - {name: q, query: 'x{a=\"b}', max: 1}\n",
			`FILE:6: services.a.canary.queries[0].query: is not valid PromQL: unterminated quoted string (at "\"b}", character 5 of the query with its placeholders filled in); check the brackets, quotes and operators`},
		{"bad operator", svc + "      queries:\n        - {name: q, query: 'up +* up', max: 1}\n",
			`FILE:6: services.a.canary.queries[0].query: is not valid PromQL: unexpected <op:*> (at "* up", character 5 of the query with its placeholders filled in); check the brackets, quotes and operators`},
		{"range vector query", svc + "      queries:\n        - {name: q, query: 'up[{{range}}]', max: 1}\n",
			"FILE:6: services.a.canary.queries[0].query: gives a range vector, not a number to compare; wrap the range selector in a function such as rate(...) or avg_over_time(...)"},
		{"string query", svc + "      queries:\n        - {name: q, query: '\"ok\"', max: 1}\n",
			"FILE:6: services.a.canary.queries[0].query: gives a string, not a number to compare; write a query whose result is a number"},
		{"unknown placeholder", svc + "      queries:\n        - {name: q, query: 'up{job=\"{{ job }}\"}', max: 1}\n",
			"FILE:6: services.a.canary.queries[0].query: unknown placeholder {{job}} (known: {{service}}, {{version}}, {{baseline}}, {{namespace}}, {{range}})"},
		{"unclosed placeholder", svc + "      queries:\n        - {name: q, query: 'up{job=\"{{service\"}', max: 1}\n",
			`FILE:6: services.a.canary.queries[0].query: "{{" at "{{service\"}" is not closed with "}}"`},
		{"query without limits", svc + "      queries:\n        - {name: q, query: up}\n", "FILE:6: services.a.canary.queries[0]: needs max, min or both: the limits the query's value must stay within"},
		{"query min above max", svc + "      queries:\n        - {name: q, query: up, min: 2, max: 1}\n", "FILE:6: services.a.canary.queries[0]: min 2 is above max 1, so no value could pass; swap them"},
		{"query without name", svc + "      queries:\n        - {query: up, max: 1}\n", "FILE:6: services.a.canary.queries[0]: needs a name (it names the judge in decisions and the history)"},
		{"query without query", svc + "      queries:\n        - {name: q, max: 1}\n", "FILE:6: services.a.canary.queries[0]: needs a query, the PromQL whose value is judged"},
		{"empty query", svc + "      queries:\n        - {name: q, query: ' ', max: 1}\n", "FILE:6: services.a.canary.queries[0].query: is empty; write the PromQL whose value is judged"},
		{"query names twice", svc + "      queries:\n        - {name: q, query: up, max: 1}\n        - {name: q, query: up, max: 2}\n",
			`FILE:7: services.a.canary.queries[1].name: "q" is used twice (first on line 6); give each query its own name`},
		{"query bad name", svc + "      queries:\n        - {name: DB Errors, query: up, max: 1}\n",
			`FILE:6: services.a.canary.queries[0].name: "DB Errors" may hold only lowercase letters, digits, - and _ (starting with a letter or digit)`},
		{"query unknown field", svc + "      queries:\n        - {name: q, query: up, max: 1, threshold: 2}\n",
			`FILE:6: services.a.canary.queries[0].threshold: unknown field "threshold" (known: name, query, range, max, min)`},
		{"query max text", svc + "      queries:\n        - {name: q, query: up, max: lots}\n", `FILE:6: services.a.canary.queries[0].max: must be a number, got "lots"`},
		{"query short range", svc + "      queries:\n        - {name: q, query: up, max: 1, range: 10ms}\n",
			"FILE:6: services.a.canary.queries[0].range: must be at least 1s (the window the query's {{range}} covers), got 10ms"},

		// Webhooks.
		{"unknown webhook type", svc + "      webhooks:\n        - {name: h, type: confirm-traffic, url: 'http://h.test'}\n",
			`FILE:6: services.a.canary.webhooks[0].type: unknown webhook type "confirm-traffic" (known: confirm-rollout, pre-rollout, rollout, confirm-promotion, post-rollout, rollback, event)`},
		{"webhook ftp", svc + "      webhooks:\n        - {name: h, url: 'ftp://h.test/x'}\n",
			`FILE:6: services.a.canary.webhooks[0].url: "ftp://h.test/x" is not an http:// or https:// address; a webhook is an HTTP POST`},
		{"webhook no scheme", svc + "      webhooks:\n        - {name: h, url: 'h.test/x'}\n",
			`FILE:6: services.a.canary.webhooks[0].url: "h.test/x" is not an http:// or https:// address; a webhook is an HTTP POST`},
		{"webhook no host", svc + "      webhooks:\n        - {name: h, url: 'http:///x'}\n",
			`FILE:6: services.a.canary.webhooks[0].url: "http:///x" has no host; write it as http://HOST[:PORT]/PATH`},
		{"webhook bad url", svc + "      webhooks:\n        - {name: h, url: 'http://h.test/%zz'}\n",
			`FILE:6: services.a.canary.webhooks[0].url: "http://h.test/%zz" is not a URL (invalid URL escape "%zz"); write an http:// or https:// address`},
		{"webhook no url", svc + "      webhooks:\n        - {name: h}\n", "FILE:6: services.a.canary.webhooks[0]: needs a url, the http:// or https:// address the canary's state is posted to"},
		{"webhook no name", svc + "      webhooks:\n        - {url: 'http://h.test'}\n", "FILE:6: services.a.canary.webhooks[0]: needs a name (it names the call in decisions and the history)"},
		{"webhook negative timeout", svc + "      webhooks:\n        - {name: h, url: 'http://h.test', timeout: -1s}\n",
			"FILE:6: services.a.canary.webhooks[0].timeout: is negative (-1s); give a duration such as 30s or 2m"},
		{"webhook names twice", svc + "      webhooks:\n        - {name: h, type: event, url: 'http://h.test'}\n        - {name: h, type: event, url: 'http://h.test'}\n",
			`FILE:7: services.a.canary.webhooks[1].name: "h" is used twice (first on line 6); give each webhook its own name`},
		{"webhook unknown field", svc + "      webhooks:\n        - {name: h, kind: event, url: 'http://h.test'}\n",
			`FILE:6: services.a.canary.webhooks[0].kind: unknown field "kind" (known: name, type, url, timeout, metadata)`},
		{"rollout hooks outlast the interval", svc + "      interval: 10s\n      webhooks:\n        - {name: h, url: 'http://h.test', timeout: 6s}\n        - {name: i, url: 'http://h.test', timeout: 4s}\n",
			"FILE:6: services.a.canary.webhooks: the timeouts of the webhooks called every interval (rollout, rollback) add up to 10s, not less than the interval 10s: a slow hook would delay every analysis; lower their timeouts or raise the interval"},
		{"rollback hook outlasts the interval", svc + "      steps: [10]\n      interval: 5s\n      webhooks:\n        - {name: h, type: rollback, url: 'http://h.test'}\n",
			"FILE:7: services.a.canary.webhooks: the timeouts of the webhooks called every interval (rollout, rollback) add up to 10s, not less than the interval 5s: a slow hook would delay every analysis; lower their timeouts or raise the interval"},
		{"webhook metadata not text", svc + "      webhooks:\n        - {name: h, type: event, url: 'http://h.test', metadata: {cmd: [a]}}\n",
			"FILE:6: services.a.canary.webhooks[0].metadata.cmd: must be a single value, got a list"},
		{"webhook upper-case scheme", svc + "      webhooks:\n        - {name: h, type: event, url: 'HTTP://h.test'}\n",
			`FILE:6: services.a.canary.webhooks[0].url: "HTTP://h.test" is not an http:// or https:// address; a webhook is an HTTP POST`},
		{"query named as a built-in judge", svc + "      queries:\n        - {name: p99, query: up, max: 1}\n",
			`FILE:6: services.a.canary.queries[0].name: "p99" is the name of a built-in judge (error_rate, p50, p99, baseline_latency, baseline_error_rate are taken); give the query another`},
		{"query range with nowhere to go", svc + "      queries:\n        - name: q\n          query: up\n          range: 5m\n          max: 1\n",
			"FILE:8: services.a.canary.queries[0].range: is set, but the query has no {{range}} to put it in; use {{range}} in the query (e.g. rate(x[{{range}}])) or remove range"},
		{"p99 below p50", svc + "      max_p50: 300ms\n      max_p99: 200ms\n",
			"FILE:6: services.a.canary.max_p99: max_p99 200ms is below max_p50 300ms, but the 99th percentile is never below the median; raise max_p99 or lower max_p50"},

		// Settings that would not take effect.
		{"direct with steps", svc + "      strategy: direct\n      steps: [10, 50]\n",
			"FILE:6: services.a.canary.steps: takes effect only with strategy canary, and the strategy is direct (line 5); remove steps, or write strategy: canary"},
		{"bluegreen with steps", svc + "      strategy: bluegreen\n      steps: [10, 50]\n",
			"FILE:6: services.a.canary.steps: takes effect only with strategy canary, and the strategy is bluegreen (line 5); remove steps, or write strategy: canary"},
		{"lane_first without steps", svc + "      lane_first: false\n",
			"FILE:5: services.a.canary.lane_first: false takes effect only with strategy canary (the others always let the lane in first), and the strategy is direct, since there are no steps; remove lane_first, or write strategy: canary"},
		{"iterations on a canary", svc + "      steps: [10]\n      iterations: 3\n",
			"FILE:6: services.a.canary.iterations: takes effect only with strategy bluegreen, and the strategy is canary, since there are steps; remove iterations, or write strategy: bluegreen"},
		{"threshold on direct", svc + "      threshold: 2\n",
			"FILE:5: services.a.canary.threshold: takes effect only with strategy canary or bluegreen (direct has no analysis before the switch; its bake rolls back at the first failed interval), and the strategy is direct, since there are no steps; remove threshold, or use strategy canary or bluegreen"},
		{"confidence without compare", svc + "      steps: [10]\n      confidence: 0.9\n",
			"FILE:6: services.a.canary.confidence: takes effect only with compare: baseline; remove confidence, or add compare: baseline"},
		{"judge with nothing judged", svc + "      strategy: direct\n      bake: 0s\n      max_p99: 1s\n",
			"FILE:7: services.a.canary.max_p99: takes effect only while a version is judged, and strategy direct with bake 0s judges nothing; remove max_p99, or give bake a duration (e.g. bake: 1m)"},
		{"rollout hook with nothing judged", svc + "      strategy: direct\n      bake: 0s\n      webhooks:\n        - {name: h, url: 'http://h.test'}\n",
			"FILE:8: services.a.canary.webhooks[0]: a rollout webhook is called every judged interval, and strategy direct with bake 0s judges none; give it another type (a missing type is rollout) or give bake a duration"},
		{"rollback hook with nothing judged", svc + "      strategy: direct\n      bake: 0s\n      webhooks:\n        - {name: h, type: rollback, url: 'http://h.test'}\n",
			"FILE:8: services.a.canary.webhooks[0]: a rollback webhook is called every judged interval, and strategy direct with bake 0s judges none; give it another type (a missing type is rollout) or give bake a duration"},
		{"synthetic load never runs", svc + "      min_requests: 0\n      synthetic_load: {rate: 5}\n",
			"FILE:6: services.a.canary.synthetic_load: synthetic_load never runs with min_requests 0: it drives requests only in intervals with fewer than min_requests; set min_requests (e.g. 20) or turn synthetic_load off"},
		{"no judge left", svc + "      steps: [10]\n      max_error_rate: off\n",
			"FILE:6: services.a.canary.max_error_rate: leaves no judge on, so nothing would watch the new version; keep max_error_rate, max_p50, max_p99, a query or compare: baseline"},

		// The defaults block.
		{"defaults unknown field", "defaults:\n  deploy: {}\nservices: {}\n", `FILE:2: defaults.deploy: unknown field "deploy" (known: canary)`},
		{"defaults not a mapping", "defaults: [canary]\nservices: {}\n", "FILE:1: defaults: it must be a mapping, got a list"},
		{"defaults bad step", "defaults:\n  canary: {steps: [10, 5]}\nservices: {}\n",
			"FILE:2: defaults.canary.steps[1]: steps must increase, got 5 after 10; list the percentages in increasing order, e.g. steps: [5, 25, 50, 100]"},
		{"defaults direct with steps", "defaults:\n  canary:\n    strategy: direct\n    steps: [10]\nservices: {}\n",
			"FILE:4: defaults.canary.steps: takes effect only with strategy canary, and the strategy is direct (line 3); remove steps, or write strategy: canary"},
		{"defaults canary, a service without steps", "defaults:\n  canary: {strategy: canary}\nservices:\n  a: {path: a, canary: {steps: [10]}}\n  b: {path: b}\n",
			"FILE:5: services.b: has strategy canary (from defaults.canary.strategy, line 2) but no steps; give it steps, e.g. steps: [5, 25, 50, 100], or strategy: direct"},
		{"defaults synthetic load, service min_requests 0", "defaults:\n  canary: {synthetic_load: {rate: 5}}\nservices:\n  a: {path: a, canary: {min_requests: 0}}\n",
			"FILE:4: services.a.canary.min_requests: synthetic_load never runs with min_requests 0: it drives requests only in intervals with fewer than min_requests; set min_requests (e.g. 20) or turn synthetic_load off"},
		{"bad defaults are reported once", "defaults:\n  canary: {strategy: canary, steps: [50, 10]}\nservices:\n  a: {path: a}\n  b: {path: b}\n",
			"FILE:2: defaults.canary.steps[1]: steps must increase, got 10 after 50; list the percentages in increasing order, e.g. steps: [5, 25, 50, 100]"},
		{"unwatched defaults, a watched service", "defaults:\n  canary: {strategy: direct, bake: 0s, max_error_rate: off}\nservices:\n  a:\n    path: a\n    canary: {strategy: canary, steps: [10]}\n",
			"FILE:6: services.a.canary.strategy: has the new version judged, but every judge it inherits is off; turn one on here: max_error_rate, max_p50, max_p99, a query or compare: baseline"},
		{"defaults judged alone", "defaults:\n  canary: {max_error_rate: off}\nservices:\n  a: {path: a}\n  b: {path: b}\n",
			"FILE:2: defaults.canary.max_error_rate: leaves no judge on, so nothing would watch the new version; keep max_error_rate, max_p50, max_p99, a query or compare: baseline"},

		// Every problem at once, in the order of the lines, the policies'
		// among the others.
		{"many at once", "services:\n  a:\n    path: a\n    canary: {strategy: direct, steps: [10]}\n  b:\n    path: b\n    canary:\n      steps: [50, 10]\n      threshold: 0\n      max_p95: 1s\n      interval: -1s\n    helth: /ready\n",
			"FILE:4: services.a.canary.steps: takes effect only with strategy canary, and the strategy is direct (line 4); remove steps, or write strategy: canary\n" +
				"FILE:8: services.b.canary.steps[1]: steps must increase, got 10 after 50; list the percentages in increasing order, e.g. steps: [5, 25, 50, 100]\n" +
				"FILE:9: services.b.canary.threshold: must be at least 1 (the failed analyses that roll the version back; 1 rolls back at the first), got 0\n" +
				`FILE:10: services.b.canary.max_p95: unknown judge "max_p95" (the built-in judges are max_error_rate, max_p50 and max_p99; judge another metric with a Prometheus query under queries:)` + "\n" +
				"FILE:11: services.b.canary.interval: is negative (-1s); give a duration such as 30s or 2m\n" +
				`FILE:12: services.b.helth: unknown field "helth" (known: ` + serviceFields + `)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policyOf(t, tt.body)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.ReplaceAll(err.Error(), "flotilla.yaml", "FILE")
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
		})
	}
}

// TestPolicyDefaults: a service's canary block overrides the manifest's
// defaults field by field; lists are replaced whole; a default its
// strategy does not use is dropped, not refused.
func TestPolicyDefaults(t *testing.T) {
	m, err := policyOf(t, `
services:
  plain: {path: plain}
  stepped:
    path: stepped
    canary: {steps: [20, 100], max_p99: off, threshold: 3}
  switched:
    path: switched
    canary: {strategy: direct, bake: 5m}
  blue:
    path: blue
    canary:
      strategy: bluegreen
      compare: baseline
      webhooks: [{name: gate, type: confirm-promotion, url: "http://gate.test"}]
  unwatched:
    path: unwatched
    canary: {strategy: direct, bake: 0s}
defaults:
  canary:
    steps: [5, 50]
    lane_first: false
    interval: 20s
    threshold: 2
    max_p99: 200ms
    confidence: 0.9
    min_requests: 40
    webhooks: [{name: notify, type: event, url: "http://hooks.test"}]
`)
	if err != nil {
		t.Fatal(err)
	}
	notify := []Webhook{{Name: "notify", Type: HookEvent, URL: "http://hooks.test", Timeout: sec(10)}}
	// What every service inherits and keeps whatever its strategy.
	common := func(p Policy) Policy {
		p.Interval, p.MinRequests, p.Bake, p.ConsecutiveErrorLimit = sec(20), 40, sec(60), 4
		p.Threshold, p.InconclusiveLimit, p.Confidence, p.MinEffect = 2, 5, 0.9, 0.1
		if p.Webhooks == nil {
			p.Webhooks = notify
		}
		return p
	}
	p99 := Duration(200 * time.Millisecond)
	want := map[string]Policy{
		// The defaults have steps: a service that says nothing is a canary.
		"plain":   common(Policy{Strategy: StrategyCanary, Steps: []int{5, 50}, LaneFirst: false, MaxErrorRate: 0.01, MaxP99: p99}),
		"stepped": common(Policy{Strategy: StrategyCanary, Steps: []int{20, 100}, LaneFirst: false, MaxErrorRate: 0.01}),
		// Steps and lane_first do not apply to direct: not inherited.
		"switched": func() Policy {
			p := common(Policy{Strategy: StrategyDirect, LaneFirst: true, MaxErrorRate: 0.01, MaxP99: p99})
			p.Bake = sec(300)
			return p
		}(),
		"blue": func() Policy {
			p := common(Policy{Strategy: StrategyBlueGreen, Iterations: 5, LaneFirst: true, MaxErrorRate: 0.01, MaxP99: p99, Compare: CompareBaseline})
			p.Webhooks = []Webhook{{Name: "gate", Type: HookConfirmPromotion, URL: "http://gate.test", Timeout: sec(10)}}
			return p
		}(),
		// Nothing judges: no judge is on.
		"unwatched": func() Policy {
			p := common(Policy{Strategy: StrategyDirect, LaneFirst: true})
			p.Bake = 0
			return p
		}(),
	}
	want["stepped"] = func() Policy { p := want["stepped"]; p.Threshold = 3; return p }()
	for name, w := range want {
		if d := cmp.Diff(w, m.Service(name).Policy); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}
	if d := cmp.Diff(want["plain"], m.Defaults); d != "" {
		t.Errorf("Defaults (-want +got):\n%s", d)
	}
	// Services share no slices: one's policy edited leaves the others'.
	m.Service("plain").Policy.Steps[0] = 99
	m.Service("plain").Policy.Webhooks[0].Name = "x"
	if m.Defaults.Steps[0] != 5 || m.Service("switched").Policy.Webhooks[0].Name != "notify" {
		t.Error("policies share their lists")
	}
}

// TestPolicyAffectsSettings: an edit of the defaults changes the settings
// of every service whose policy it changes, and only those.
func TestPolicyAffectsSettings(t *testing.T) {
	const services = "services:\n  a: {path: a}\n  b: {path: b, canary: {max_p99: 1s}}\n"
	old, err := policyOf(t, "defaults:\n  canary: {max_p99: 2s}\n"+services)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := policyOf(t, "defaults:\n  canary: {max_p99: 3s}\n"+services)
	if err != nil {
		t.Fatal(err)
	}
	if old.Service("a").SameSettings(cur.Service("a")) {
		t.Error("a inherits max_p99 from the defaults: its settings changed")
	}
	if !old.Service("b").SameSettings(cur.Service("b")) {
		t.Error("b sets its own max_p99: its settings did not change")
	}
}

func TestQueryExpand(t *testing.T) {
	q := Query{Query: `sum(rate(http_requests_total{service="{{service}}", version="{{ version }}", namespace="{{namespace}}", code=~"5.."}[{{range}}]))`, Range: sec(90)}
	got := q.Expand(QueryVars{Service: "payment-service", Version: "b9a3-27", Namespace: "shop"})
	want := `sum(rate(http_requests_total{service="payment-service", version="b9a3-27", namespace="shop", code=~"5.."}[1m30s]))`
	if got != want {
		t.Errorf("Expand = %s\nwant     %s", got, want)
	}
	q.Range = 0
	if got := q.Expand(QueryVars{Range: 2 * time.Minute}); !strings.Contains(got, "[2m]") {
		t.Errorf("Expand of a query without range = %s, want the interval's [2m]", got)
	}
	q.Query = `up{version="{{baseline}}"}`
	if got := q.Expand(QueryVars{Baseline: "v7"}); got != `up{version="v7"}` {
		t.Errorf("Expand = %s, want the baseline's version", got)
	}
	if err := checkPromQL(q.Expand(QueryVars{Service: "a", Version: "v"})); err != nil {
		t.Errorf("the expanded query does not parse: %v", err)
	}
}

// TestPolicyJSON: a policy survives JSON (the history stores it), its
// durations written as Go writes them.
func TestPolicyJSON(t *testing.T) {
	m, err := policyOf(t, "services:\n  a:\n    path: a\n    canary: {steps: [5, 50], max_p99: 250ms, queries: [{name: q, query: up, max: 1}], webhooks: [{name: h, type: event, url: 'http://h.test'}]}\n")
	if err != nil {
		t.Fatal(err)
	}
	p := m.Service("a").Policy
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"max_p99":"250ms"`) {
		t.Errorf("JSON = %s, want durations as text", data)
	}
	var back Policy
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func TestPolicySummary(t *testing.T) {
	for _, tt := range []struct{ block, want string }{
		{"", "direct, then a 1m bake judged every 30s on errors ≤ 1% (at least 20 requests)"},
		{"canary: {strategy: direct, bake: 0s}", "direct, unwatched (bake 0s)"},
		{"canary: {steps: [5, 25, 100], interval: 15s, threshold: 2, max_p99: 200ms, compare: baseline, synthetic_load: {rate: 5}, queries: [{name: db, query: up, max: 1}], webhooks: [{name: gate, type: confirm-promotion, url: 'http://g.test'}]}",
			"canary 5/25/100% every 15s, rolled back after 2 failed; judged on errors ≤ 1%, p99 ≤ 200ms, db, vs baseline (0.98 confidence, 10% effect) (at least 20 requests, else synthetic load at 5/s); bake 1m; webhooks gate (confirm-promotion)"},
		{"canary: {strategy: bluegreen, iterations: 2, max_p50: 20ms, max_error_rate: off, lane_first: true}", "bluegreen after 2 interval(s) of 30s on the lane, rolled back after 1 failed; judged on p50 ≤ 20ms (at least 20 requests); bake 1m"},
		{"canary: {strategy: bluegreen, lane_first: false}", ""},
	} {
		m, err := policyOf(t, "services:\n  a:\n    path: a\n    "+tt.block+"\n")
		if tt.want == "" {
			// lane_first is canary's alone, even written true.
			if err == nil || !strings.Contains(err.Error(), "lane_first: false takes effect only with strategy canary") {
				t.Errorf("%s: error = %v", tt.block, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Service("a").Policy.Summary(); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.block, got, tt.want)
		}
	}
}

// TestPolicyListsReplaced: a service's empty list clears the defaults'.
func TestPolicyListsReplaced(t *testing.T) {
	m, err := policyOf(t, `defaults:
  canary:
    queries: [{name: q, query: up, max: 1}]
    webhooks: [{name: h, type: event, url: "http://h.test"}]
services:
  a: {path: a}
  b: {path: b, canary: {queries: [], webhooks: []}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if a := m.Service("a").Policy; len(a.Queries) != 1 || len(a.Webhooks) != 1 {
		t.Errorf("a inherits the lists: %+v", a)
	}
	if b := m.Service("b").Policy; len(b.Queries) != 0 || len(b.Webhooks) != 0 {
		t.Errorf("b cleared the lists: %+v", b)
	}
}

// TestPolicyScenarioJSON: a format without policies gets the defaults.
func TestPolicyScenarioJSON(t *testing.T) {
	m, _, err := ParseScenarioJSON("g.json", "/r", []byte(`{"services": {"a": {}, "b": {"dependencies": ["a"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Services {
		if d := cmp.Diff(DefaultPolicy(), s.Policy); d != "" {
			t.Errorf("%s (-want +got):\n%s", s.Name, d)
		}
	}
	if d := cmp.Diff(DefaultPolicy(), m.Defaults); d != "" {
		t.Errorf("Defaults (-want +got):\n%s", d)
	}
}

// policyInvariants is what a resolved policy always holds, whatever the
// manifest it came from: what the analysis relies on.
func policyInvariants(p Policy) error {
	switch p.Strategy {
	case StrategyCanary:
		if len(p.Steps) == 0 {
			return errors.New("a canary without steps")
		}
		for i, s := range p.Steps {
			if s < 1 || s > 100 || i > 0 && s <= p.Steps[i-1] {
				return fmt.Errorf("steps %v", p.Steps)
			}
		}
	case StrategyBlueGreen, StrategyDirect:
		if len(p.Steps) > 0 {
			return errors.New("steps without a canary")
		}
	default:
		return fmt.Errorf("strategy %q", p.Strategy)
	}
	if (p.Strategy == StrategyBlueGreen) != (p.Iterations >= 1) {
		return fmt.Errorf("iterations %d under %s", p.Iterations, p.Strategy)
	}
	if p.Strategy != StrategyCanary && !p.LaneFirst {
		return errors.New("lane_first off without a canary")
	}
	if p.Interval.D() < time.Second || p.Threshold < 1 || p.MinRequests < 0 || p.Bake < 0 || p.InconclusiveLimit < 0 || p.ConsecutiveErrorLimit < 0 {
		return errors.New("a limit out of range")
	}
	if p.MaxErrorRate < 0 || p.MaxErrorRate >= 1 || p.MaxP50 < 0 || p.MaxP99 < 0 || (p.MaxP50 > 0 && p.MaxP99 > 0 && p.MaxP99 < p.MaxP50) {
		return errors.New("a judge out of range")
	}
	judged := p.MaxErrorRate > 0 || p.MaxP50 > 0 || p.MaxP99 > 0 || len(p.Queries) > 0 || p.Compare != ""
	if p.Watched() && !judged {
		return errors.New("watched by no judge")
	}
	if p.Compare != "" && (p.Strategy == StrategyDirect || p.Compare != CompareBaseline) {
		return fmt.Errorf("compare %q under %s", p.Compare, p.Strategy)
	}
	if !(p.Confidence > 0.5 && p.Confidence < 1) || p.MinEffect < 0 {
		return errors.New("confidence or min_effect out of range")
	}
	if p.SyntheticLoad < 0 || (p.SyntheticLoad > 0 && p.MinRequests == 0) {
		return errors.New("synthetic load that never runs")
	}
	for _, q := range p.Queries {
		if q.Name == "" || slices.Contains(reservedJudges, q.Name) || strings.TrimSpace(q.Query) == "" || (q.Max == nil && q.Min == nil) {
			return fmt.Errorf("query %+v", q)
		}
		if e, _ := expandQuery(q.Query, map[string]string{"service": "", "version": "", "baseline": "", "namespace": "", "range": "\x00"}); q.Range > 0 && !strings.Contains(e, "\x00") {
			return fmt.Errorf("query %s has a range and no {{range}}", q.Name)
		}
		if err := checkPromQL(q.Expand(QueryVars{Service: "s", Version: "v", Baseline: "b", Namespace: "n", Range: p.Interval.D()})); err != nil {
			return fmt.Errorf("query %s: %w", q.Name, err)
		}
	}
	var every time.Duration
	for _, h := range p.Webhooks {
		if h.Name == "" || !slices.Contains(webhookTypes, h.Type) || h.Timeout <= 0 || checkHookURL(h.URL) != nil {
			return fmt.Errorf("webhook %+v", h)
		}
		if h.Type == HookRollout || h.Type == HookRollback {
			every += h.Timeout.D()
		}
	}
	if every > 0 && every >= p.Interval.D() {
		return errors.New("webhooks outlast the interval")
	}
	return nil
}

// TestPolicyInvariantsOfTheShop: the shop's policies hold them.
func TestPolicyInvariantsOfTheShop(t *testing.T) {
	m, _, err := Load("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Services {
		if err := policyInvariants(s.Policy); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	if p := m.Service("payment-service").Policy; p.Strategy != StrategyCanary || p.Steps[0] != 5 {
		t.Errorf("payment-service: %s, want a canary from 5%%", p.Summary())
	}
}

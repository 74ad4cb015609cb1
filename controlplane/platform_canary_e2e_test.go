package controlplane_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
)

// editService returns the manifest src with service's mapping changed by
// edit.
func editService(t *testing.T, src []byte, service string, edit func(get func(m *yaml.Node, key string) *yaml.Node, svc *yaml.Node)) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
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
	services := get(doc.Content[0], "services")
	found := false
	for i := 0; i+1 < len(services.Content); i += 2 {
		if services.Content[i].Value == service {
			edit(get, services.Content[i+1])
			found = true
		}
	}
	if !found {
		t.Fatalf("no service %s in the manifest", service)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withUserCanary gives user-service a quick canary policy (policy, a YAML
// mapping), its FAULTS (none when ""), and no smoke checks: the canary
// alone judges the new version.
func withUserCanary(t *testing.T, src []byte, policy, faults string) []byte {
	t.Helper()
	return editService(t, src, "user-service", func(get func(*yaml.Node, string) *yaml.Node, svc *yaml.Node) {
		var p yaml.Node
		if err := yaml.Unmarshal([]byte(policy), &p); err != nil {
			t.Fatal(err)
		}
		*get(svc, "canary") = *p.Content[0]
		for j := 0; j+1 < len(svc.Content); j += 2 {
			if svc.Content[j].Value == "smoke" {
				svc.Content = append(svc.Content[:j], svc.Content[j+2:]...)
				break
			}
		}
		env := get(get(svc, "deploy"), "env")
		env.Content = nil
		if faults != "" {
			v := get(env, "FAULTS")
			v.Kind, v.Tag, v.Value = yaml.ScalarNode, "!!str", faults
		}
	})
}

// steady sends requests to url at about rate per second until stop, and
// counts them and the failed ones.
func steady(c *http.Client, url string, rate int, stop <-chan struct{}, total, failed *atomic.Int64) {
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			total.Add(1)
			if err != nil {
				failed.Add(1)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode >= 500 {
				failed.Add(1)
			}
		}()
	}
}

// The first canary test, on the platform: a version of a leaf
// service (user-service) failing 30% of its requests (http.error_rate=0.3
// in its deploy env) goes out under steady traffic and is rolled back by
// its canary on its own; the old version keeps serving, and the release's
// outcome and the history say why, with the figures. A version answering
// in 150 ms fails no request and is rolled back by the p99 judge. Then a healthy
// version goes through every step, bakes, and is promoted; the old one is
// drained and stopped once the bake passed.
func TestPlatformCanaryRollsBackABadVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user-service")
	}
	const policy = `{steps: [20, 50, 100], interval: 2s, threshold: 2, min_requests: 5, max_error_rate: 0.05, lane_first: false, bake: 0s}`
	manifest, src := shopManifest(t, func(src []byte) []byte { return withUserCanary(t, src, policy, "") })
	cfg := platformConfig(manifest, t.TempDir())
	cfg.Services, cfg.Demo = []string{"user-service"}, false
	info, stop := runPlatform(t, cfg)
	stable := info.Services[0].Version
	addr := info.Services[0].Mesh
	ctx := context.Background()
	api := apiClient(t, info)

	// Steady traffic on a route of the service (not a probe).
	var total, failedReqs atomic.Int64
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		// As product-service, which may call user-service.
		steady(serviceClient(t, info.Data, "product-service"), "http://"+addr+"/.well-known/jwks.json", 40, stopLoad, &total, &failedReqs)
		close(loadDone)
	}()
	defer func() {
		select {
		case <-stopLoad:
		default:
			close(stopLoad)
		}
		<-loadDone
	}()

	// The bad version.
	if err := os.WriteFile(manifest, withUserCanary(t, src, policy, "http.error_rate=0.3"), 0o644); err != nil {
		t.Fatal(err)
	}
	var analysis []string
	var evMu sync.Mutex
	sent0, failed0 := total.Load(), failedReqs.Load()
	rep, err := api.Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Who: "e2e"}, func(e deploy.Event) {
		if e.Step == deploy.StepAnalysis {
			evMu.Lock()
			analysis = append(analysis, e.Msg)
			evMu.Unlock()
		}
	})
	sent, failedDuring := total.Load()-sent0, failedReqs.Load()-failed0
	if !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Fatalf("deploying a version failing 30%% of its requests = %v; want the release failed by its canary", err)
	}
	oc := rep.Outcomes[0]
	figures := regexp.MustCompile(`error rate \d+(\.\d+)?% \(\d+ of \d+\) > max 5(\.0+)?%`)
	if oc.Result != deploy.Failed || oc.Version == stable || !strings.Contains(oc.Reason, "rolled back") || !figures.MatchString(oc.Reason) {
		t.Errorf("outcome %+v; want the new version failed, rolled back by the canary with the figures", oc)
	}
	t.Logf("rolled back: %s", oc.Reason)
	evMu.Lock()
	t.Logf("analysis:\n  %s", strings.Join(analysis, "\n  "))
	if len(analysis) < 2 || !strings.Contains(analysis[len(analysis)-1], "rollback") {
		t.Errorf("the deploy's progress did not show the canary's decisions ending in its rollback: %q", analysis)
	}
	evMu.Unlock()
	st, err := api.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := userStatus(st); s.Stable != stable || len(s.Canary) > 0 || s.Weights[stable] != 100 || len(s.Instances) != 1 {
		t.Errorf("status after the rollback: %+v; want %s alone with all the traffic", s, stable)
	}
	hist, err := api.History(ctx, "user-service", 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := hist[0]; h.Version != oc.Version || h.Result != deploy.Failed || !figures.MatchString(h.Reason) {
		t.Errorf("the history's last record %+v; want the failed canary with its figures", h)
	}
	cs, err := api.Canaries(ctx, "user-service")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Phase != canary.PhaseRolledBack || cs[0].Version != oc.Version || cs[0].FailedChecks < 2 {
		t.Fatalf("canary status %+v; want %s rolled back after 2 failed analyses", cs, oc.Version)
	}
	// What the clients saw is bounded by the canary's weight times its
	// failure rate (30%), over the requests sent while it served: at the
	// most the highest weight it reached, with four standard deviations
	// of slack for the draws.
	var maxWeight int
	var firstServed, rolledBack time.Time
	for _, d := range cs[0].Decisions {
		maxWeight = max(maxWeight, d.Weight)
		if d.Action == canary.ActionAdvance && firstServed.IsZero() {
			firstServed = d.Time
		}
		if d.Action == canary.ActionRollback {
			rolledBack = d.Time
		}
	}
	p := float64(maxWeight) / 100 * 0.3
	bound := p*float64(sent) + 4*math.Sqrt(p*(1-p)*float64(sent)) + 1
	t.Logf("during the canary: %d of %d requests failed (bound %.0f: %d%% × 30%%); time to recovery (first weighted step to the old weights back) %v",
		failedDuring, sent, bound, maxWeight, rolledBack.Sub(firstServed).Round(time.Millisecond))
	if float64(failedDuring) > bound {
		t.Errorf("%d of %d requests failed during the canary, more than its weight (%d%%) times its failure rate allows (%.0f)", failedDuring, sent, maxWeight, bound)
	}
	// The stable version still serves: requests after the rollback all pass.
	before, beforeFailed := total.Load(), failedReqs.Load()
	waitUntil(t, "requests served after the rollback", func() bool { return total.Load() >= before+40 })
	if n := failedReqs.Load() - beforeFailed; n > 0 {
		t.Errorf("%d requests failed after the rollback; want the stable version serving them all", n)
	}

	// A slow version (150 ms on every request) fails no request, and is
	// rolled back by the latency judge.
	slow := `{steps: [20, 50, 100], interval: 2s, threshold: 2, min_requests: 5, max_error_rate: 0.05, max_p99: 100ms, lane_first: false, bake: 0s}`
	if err := os.WriteFile(manifest, withUserCanary(t, src, slow, "http.latency=150ms"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = api.Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Who: "e2e"}, nil)
	if !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Fatalf("deploying a version answering in 150 ms under a 100 ms p99 = %v; want it rolled back", err)
	}
	if oc := rep.Outcomes[0]; !strings.Contains(oc.Reason, "rolled back") || !regexp.MustCompile(`p99: p99 \S+ > max 100ms`).MatchString(oc.Reason) || strings.Contains(oc.Reason, "error_rate:") {
		t.Errorf("slow version's outcome %+v; want it rolled back by the p99 judge alone, with the figure", oc)
	}
	t.Logf("slow version rolled back: %s", rep.Outcomes[0].Reason)
	if s := userStatus(mustStatus(t, api)); s.Stable != stable || len(s.Instances) != 1 {
		t.Errorf("status after the slow version's rollback: %+v; want %s alone", s, stable)
	}

	// A healthy version: every step, then a bake, then promoted.
	healthy := `{steps: [20, 50, 100], interval: 1s, threshold: 2, min_requests: 5, max_error_rate: 0.05, lane_first: false, bake: 2s}`
	if err := os.WriteFile(manifest, withUserCanary(t, src, healthy, "http.latency=1ms"), 0o644); err != nil {
		t.Fatal(err)
	}
	evMu.Lock()
	analysis = nil
	evMu.Unlock()
	rep, err = api.Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Who: "e2e"}, func(e deploy.Event) {
		if e.Step == deploy.StepAnalysis {
			evMu.Lock()
			analysis = append(analysis, e.Msg)
			evMu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("deploying a healthy version: %v", err)
	}
	next := rep.Outcomes[0].Version
	evMu.Lock()
	t.Logf("analysis:\n  %s", strings.Join(analysis, "\n  "))
	steps := 0
	for _, a := range analysis {
		if strings.Contains(a, " advance: ") || strings.Contains(a, " promote: ") {
			steps++
		}
	}
	evMu.Unlock()
	if steps < 3 {
		t.Errorf("the healthy canary advanced or promoted %d times, want through all 3 steps: %q", steps, analysis)
	}
	waitUntil(t, "the bake passed and the old version stopped", func() bool {
		st, err := api.Status(ctx)
		if err != nil {
			return false
		}
		s := userStatus(st)
		return len(s.Instances) == 1 && s.Instances[0].Version == next
	})
	cs, err = api.Canaries(ctx, "user-service")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Phase != canary.PhaseSucceeded || cs[0].Version != next {
		t.Errorf("canary status %+v; want %s succeeded", cs, next)
	}
	close(stopLoad)
	<-loadDone
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := processesUnder(t, cfg.Data); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
}

func mustStatus(t *testing.T, api *controlplane.Client) *controlplane.StatusResponse {
	t.Helper()
	st, err := api.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func userStatus(st *controlplane.StatusResponse) deploy.ServiceStatus {
	for _, s := range st.Services {
		if s.Service == "user-service" {
			return s
		}
	}
	return deploy.ServiceStatus{}
}

// waitUntil polls cond (bounded: 2 minutes) and fails the test when it
// never holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2 minutes", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

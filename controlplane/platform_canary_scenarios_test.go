package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/canary/prometheus"
	"github.com/flotilla-ci/flotilla/canary/prometheus/prometheustest"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/internal/supervise"
	"github.com/flotilla-ci/flotilla/internal/testenv"
)

// release is one service's new version in a manifest edit: its canary
// policy (a YAML mapping) and its deploy env (which makes the version).
type release struct {
	service, policy string
	env             map[string]string
}

// withReleases returns the manifest src with each service's canary policy
// and env replaced, and its smoke checks removed (a version failing on
// purpose would fail them before its canary judged it).
func withReleases(t *testing.T, src []byte, rs ...release) []byte {
	t.Helper()
	for _, r := range rs {
		src = editService(t, src, r.service, func(get func(*yaml.Node, string) *yaml.Node, svc *yaml.Node) {
			var p yaml.Node
			if err := yaml.Unmarshal([]byte(r.policy), &p); err != nil {
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
			keys := make([]string, 0, len(r.env))
			for k := range r.env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := get(env, k)
				v.Kind, v.Tag, v.Value = yaml.ScalarNode, "!!str", r.env[k]
			}
		})
	}
	return src
}

// loads sends steady traffic to routes of the services, each switched on
// and off by the test, counting what was sent and what failed.
type loads struct {
	c     *http.Client // calls into the mesh with an identity
	mu    sync.Mutex
	stops map[string]chan struct{}
	wg    sync.WaitGroup
	total atomic.Int64
	fail  atomic.Int64
}

func (l *loads) on(url string, rate int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stops == nil {
		l.stops = map[string]chan struct{}{}
	}
	if l.stops[url] != nil {
		return
	}
	stop := make(chan struct{})
	l.stops[url] = stop
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		steady(l.c, url, rate, stop, &l.total, &l.fail)
	}()
}

func (l *loads) off(url string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.stops[url]; s != nil {
		close(s)
		delete(l.stops, url)
	}
}

func (l *loads) stopAll() {
	l.mu.Lock()
	for u, s := range l.stops {
		close(s)
		delete(l.stops, u)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// tee is the Prometheus provider as the analysis's metrics, with the
// data plane's own figures read for the same version and window beside
// every read, so both providers' verdicts can be compared on the same
// intervals.
type tee struct {
	prom    *prometheus.Provider
	builtin canary.Metrics
	mu      sync.Mutex
	reads   []teeRead
}

type teeRead struct {
	service, version    string
	window              time.Duration
	prom, builtin       canary.Stats
	promErr, builtinErr error
}

func (m *tee) Stats(ctx context.Context, service, version string, window time.Duration) (canary.Stats, error) {
	r := teeRead{service: service, version: version, window: window}
	var wg sync.WaitGroup
	wg.Go(func() {
		r.builtin, r.builtinErr = m.builtin.Stats(ctx, service, version, window)
	})
	r.prom, r.promErr = m.prom.Stats(ctx, service, version, window)
	wg.Wait()
	m.mu.Lock()
	m.reads = append(m.reads, r)
	m.mu.Unlock()
	return r.prom, r.promErr
}

func (m *tee) since(n int) []teeRead {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]teeRead(nil), m.reads[n:]...)
}

func (m *tee) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reads)
}

// freeAddr is a free local address for a listener fixed across restarts.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// canaryOf is a service's canary as the API shows it (zero if none).
func canaryOf(ctx context.Context, api *controlplane.Client, service string) canary.State {
	cs, err := api.Canaries(ctx, service)
	if err != nil || len(cs) != 1 {
		return canary.State{}
	}
	return cs[0]
}

// deployAsync starts a release of services and returns its outcome on a
// channel.
type deployResult struct {
	rep *deploy.Report
	err error
}

func deployAsync(api *controlplane.Client, req deploy.Request) <-chan deployResult {
	done := make(chan deployResult, 1)
	go func() {
		rep, err := api.Deploy(context.Background(), req, nil)
		done <- deployResult{rep, err}
	}()
	return done
}

func outcomeOf(rep *deploy.Report, service string) deploy.Outcome {
	if rep != nil {
		for _, oc := range rep.Outcomes {
			if oc.Service == service {
				return oc
			}
		}
	}
	return deploy.Outcome{}
}

func serviceStatus(t *testing.T, api *controlplane.Client, service string) deploy.ServiceStatus {
	t.Helper()
	for _, s := range mustStatus(t, api).Services {
		if s.Service == service {
			return s
		}
	}
	t.Fatalf("no %s in the status", service)
	return deploy.ServiceStatus{}
}

// onlyVersion reports whether a service runs one version with all the
// traffic, and which.
func onlyVersion(s deploy.ServiceStatus) (string, bool) {
	if len(s.Instances) != 1 {
		return "", false
	}
	v := s.Instances[0].Version
	for w, n := range s.Weights {
		if (w == v && n != 100) || (w != v && n != 0) {
			return "", false
		}
	}
	return v, s.Weights[v] == 100
}

// The platform scenarios beyond the first bad version
// (TestPlatformCanaryRollsBackABadVersion), on one platform of two
// services of the first wave (user-service and analytics-service) with
// steady traffic from the test, each scenario a release of its own:
// no traffic at all (held, never promoted or rolled back on "no data"),
// then synthetic load (judged and promoted); a slow version caught by the
// baseline comparison alone; webhooks (a refused confirm-promotion holds
// the canary at its last step, a hanging one too; a hanging rollout hook
// fails its checks); a wave of two where one canary fails (the other
// promotes, or with rollback-release both roll back); then the control
// plane killed mid-canary and started again (the canary resumed and
// finished, never left split, the history saying so), and, on that
// second control plane, the Prometheus provider (a real Prometheus
// scraping the control plane's /metrics) reaching the built-in one's
// verdicts on the same intervals.
func TestPlatformCanaryScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user-service and analytics-service")
	}
	ctx := context.Background()
	manifest, src := shopManifest(t, nil)
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.Services, cfg.Demo = []string{"user-service", "analytics-service"}, false
	// The API on a fixed address: the Prometheus scrapes it across the
	// restart.
	cfg.APIAddr = freeAddr(t)
	t.Cleanup(func() { killLeftovers(t, data) })
	var prom *prometheustest.Server
	if os.Getenv(testenv.Prometheus) != "" || os.Getenv("CI") == "true" {
		prom = prometheustest.Start(t, "http://"+cfg.APIAddr+"/metrics")
	}

	rev := 0
	next := func(service, policy string, extra ...string) release {
		rev++
		env := map[string]string{"REV": strconv.Itoa(rev)}
		for i := 0; i+1 < len(extra); i += 2 {
			env[extra[i]] = extra[i+1]
		}
		return release{service: service, policy: policy, env: env}
	}
	write := func(rs ...release) {
		t.Helper()
		if err := os.WriteFile(manifest, withReleases(t, src, rs...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const quick = `{steps: [50, 100], interval: 1s, threshold: 2, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s, inconclusive_limit: 10}`
	write(next("user-service", quick), next("analytics-service", quick))
	p1, info, cancel1, done1 := startPlatform(t, cfg)
	defer cancel1()
	api := apiClient(t, info)
	var userAddr, analyticsAddr string
	for _, s := range info.Services {
		switch s.Name {
		case "user-service":
			userAddr = s.Mesh
		case "analytics-service":
			analyticsAddr = s.Mesh
		}
	}
	userURL := "http://" + userAddr + "/.well-known/jwks.json"
	analyticsURL := "http://" + analyticsAddr + "/stats/orders"
	// Synthetic traffic as the smoke checks' identity, which may call
	// every service.
	load := loads{c: systemClient(t, info.Data, identity.Smoke)}
	defer load.stopAll()
	user := []string{"user-service"}

	t.Run("no traffic: held, then synthetic load: promoted", func(t *testing.T) {
		stable := serviceStatus(t, api, "user-service").Stable
		const held = `{steps: [50, 100], interval: 1s, threshold: 1, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s, inconclusive_limit: 2}`
		write(next("user-service", held))
		done := deployAsync(api, deploy.Request{Services: user, Who: "e2e"})
		var st canary.State
		waitUntil(t, "the canary without traffic held", func() bool {
			st = canaryOf(ctx, api, "user-service")
			return st.Phase == canary.PhaseHeld && st.Version != stable
		})
		// Neither promoted nor rolled back: still at its first step,
		// with no failed check, every interval inconclusive on no data.
		s := serviceStatus(t, api, "user-service")
		if st.FailedChecks != 0 || st.Weight != 50 || s.Weights[st.Version] != 50 || s.Weights[stable] != 50 {
			t.Errorf("held canary %s at %d%% with %d failed checks, weights %v; want it held at 50%% beside %s, no failed check", st.Version, st.Weight, st.FailedChecks, s.Weights, stable)
		}
		for _, d := range st.Decisions {
			if d.Verdict != "" && d.Verdict != canary.Inconclusive {
				t.Errorf("decision %+v without traffic; want every interval inconclusive", d)
			}
		}
		if _, err := api.AbortCanary(ctx, "user-service", controlplane.CanaryOverride{Who: "e2e", Reason: "no traffic"}); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if oc := outcomeOf(r.rep, "user-service"); !errors.Is(r.err, deploy.ErrReleaseFailed) || !strings.Contains(oc.Reason, "aborted by hand") {
			t.Fatalf("the held canary aborted: %v, %+v; want the release failed by the abort", r.err, oc)
		}

		// With synthetic load, the same lack of traffic is made up for
		// through the canary's lane: judged, and promoted.
		write(next("user-service", `{steps: [50, 100], interval: 1s, threshold: 1, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s, inconclusive_limit: 2, synthetic_load: {rate: 50}}`))
		rep, err := api.Deploy(ctx, deploy.Request{Services: user, Who: "e2e"}, nil)
		if err != nil {
			t.Fatalf("a canary without traffic but with synthetic load: %v", err)
		}
		st = canaryOf(ctx, api, "user-service")
		// With no other traffic, every request judged was synthetic (an
		// interval that still holds enough of the last one's needs no
		// more).
		passes, topped := 0, 0
		for _, d := range st.Decisions {
			if d.Verdict == canary.Pass && len(d.Judgements) > 0 && d.Judgements[0].Measurements["requests"] >= 5 {
				passes++
			}
			if strings.Contains(d.Reason, "synthetic request(s)") {
				topped++
			}
		}
		if st.Phase != canary.PhaseSucceeded || st.Version != rep.Outcomes[0].Version || passes < 2 || topped < 1 {
			t.Errorf("canary with synthetic load: %s, %d passing interval(s), %d topped up with synthetic requests; want promoted after passing both steps on them\n%s", st.Phase, passes, topped, decisionLines(st))
		}
	})

	load.on(userURL, 40)

	t.Run("a slow version caught by the baseline comparison alone", func(t *testing.T) {
		stable := serviceStatus(t, api, "user-service").Stable
		write(next("user-service", `{steps: [50, 100], interval: 2s, threshold: 2, min_requests: 5, max_error_rate: off, compare: baseline, lane_first: false, bake: 0s}`, "FAULTS", "http.latency=150ms"))
		rep, err := api.Deploy(ctx, deploy.Request{Services: user, Who: "e2e"}, nil)
		oc := outcomeOf(rep, "user-service")
		if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(oc.Reason, "rolled back") {
			t.Fatalf("a version 150 ms slower than its baseline, no threshold judge: %v; want it rolled back", err)
		}
		if !strings.Contains(oc.Reason, "baseline_latency: ") || strings.Contains(oc.Reason, "error_rate:") || strings.Contains(oc.Reason, "p99:") {
			t.Errorf("outcome %q; want it rolled back by the baseline latency comparison alone", oc.Reason)
		}
		t.Logf("slow version, baseline comparison: %s", oc.Reason)
		if v, ok := onlyVersion(serviceStatus(t, api, "user-service")); !ok || v != stable {
			t.Errorf("after the rollback %s runs; want %s alone with all the traffic", v, stable)
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		var gate atomic.Value // "refuse", "hang" or "allow"
		gate.Store("refuse")
		var calls atomic.Int64
		unblock := make(chan struct{})
		hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			mode := gate.Load().(string)
			if r.URL.Path == "/hang" {
				mode = "hang"
			}
			switch mode {
			case "refuse":
				http.Error(w, "not before the change window", http.StatusForbidden)
			case "hang":
				select {
				case <-r.Context().Done():
				case <-unblock:
				}
			default:
				w.WriteHeader(http.StatusOK)
			}
		}))
		defer hooks.Close()
		defer close(unblock)
		stable := serviceStatus(t, api, "user-service").Stable
		write(next("user-service", fmt.Sprintf(`{steps: [30, 60], interval: 1s, threshold: 2, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s,
  webhooks: [{name: change-window, type: confirm-promotion, url: "%s/gate", timeout: 300ms}]}`, hooks.URL)))
		done := deployAsync(api, deploy.Request{Services: user, Who: "e2e"})
		var st canary.State
		waitUntil(t, "the canary waiting for its promotion to be confirmed", func() bool {
			st = canaryOf(ctx, api, "user-service")
			return st.Phase == canary.PhaseWaitingPromotion && st.Version != stable
		})
		// Held at its last step: 60%, while the judges go on.
		heldAt := func(what string) {
			t.Helper()
			s := serviceStatus(t, api, "user-service")
			if st.Weight != 60 || s.Weights[st.Version] != 60 || s.Weights[stable] != 40 {
				t.Errorf("%s: canary at %d%%, weights %v; want it held at its last step, 60%% beside %s", what, st.Weight, s.Weights, stable)
			}
		}
		heldAt("confirm-promotion refused")
		if !strings.Contains(st.Reason, "answered 403: not before the change window") {
			t.Errorf("waiting canary's reason %q; want the webhook's refusal", st.Reason)
		}
		// A confirm-promotion that hangs is a no too: it times out, and
		// the canary goes on waiting at its last step.
		gate.Store("hang")
		waitUntil(t, "a hanging confirm-promotion timed out", func() bool {
			st = canaryOf(ctx, api, "user-service")
			return strings.Contains(st.Reason, "timed out after 300ms")
		})
		if st.Phase != canary.PhaseWaitingPromotion {
			t.Errorf("after a hanging confirm-promotion: %s; want still waiting", st.Phase)
		}
		heldAt("confirm-promotion hanging")
		gate.Store("allow")
		r := <-done
		if r.err != nil {
			t.Fatalf("the canary whose promotion was confirmed: %v", r.err)
		}
		if v, ok := onlyVersion(serviceStatus(t, api, "user-service")); !ok || v != st.Version {
			t.Errorf("after the confirmed promotion %s runs; want %s alone", v, st.Version)
		}

		// A rollout webhook that hangs fails its interval's check: at the
		// threshold, rolled back.
		stable = st.Version
		write(next("user-service", fmt.Sprintf(`{steps: [30, 60], interval: 1s, threshold: 2, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s,
  webhooks: [{name: load-test, type: rollout, url: "%s/hang", timeout: 300ms}]}`, hooks.URL)))
		rep, err := api.Deploy(ctx, deploy.Request{Services: user, Who: "e2e"}, nil)
		oc := outcomeOf(rep, "user-service")
		if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(oc.Reason, "rolled back") || !strings.Contains(oc.Reason, "webhook load-test (rollout) timed out after 300ms") {
			t.Errorf("a hanging rollout webhook: %v, %q; want the canary rolled back on its timeouts", err, oc.Reason)
		}
		if v, ok := onlyVersion(serviceStatus(t, api, "user-service")); !ok || v != stable {
			t.Errorf("after the rollback %s runs; want %s alone", v, stable)
		}
	})

	t.Run("a wave of two, one canary failing", func(t *testing.T) {
		load.on(analyticsURL, 40)
		defer load.off(analyticsURL)
		both := []string{"user-service", "analytics-service"}
		const bad = `{steps: [50, 100], interval: 1s, threshold: 2, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s}`
		userStable := serviceStatus(t, api, "user-service").Stable

		// Default: the failing canary is rolled back, the other promoted.
		write(next("user-service", bad, "FAULTS", "http.error_rate=0.5"), next("analytics-service", quick))
		rep, err := api.Deploy(ctx, deploy.Request{Services: both, Who: "e2e"}, nil)
		u, a := outcomeOf(rep, "user-service"), outcomeOf(rep, "analytics-service")
		if !errors.Is(err, deploy.ErrReleaseFailed) || u.Result != deploy.Failed || a.Result != deploy.Succeeded {
			t.Fatalf("wave with one bad canary: %v; user-service %s, analytics-service %s; want the bad one failed, the other promoted", err, u.Result, a.Result)
		}
		if u.Wave != a.Wave {
			t.Errorf("user-service in wave %d, analytics-service in %d; want one wave", u.Wave, a.Wave)
		}
		if v, _ := onlyVersion(serviceStatus(t, api, "user-service")); v != userStable {
			t.Errorf("user-service runs %s; want %s back", v, userStable)
		}
		if v, _ := onlyVersion(serviceStatus(t, api, "analytics-service")); v != a.Version {
			t.Errorf("analytics-service runs %s; want its promoted %s", v, a.Version)
		}
		analyticsStable := a.Version

		// rollback-release: the promoted one is rolled back with it.
		write(next("user-service", bad, "FAULTS", "http.error_rate=0.5"), next("analytics-service", quick))
		rep, err = api.Deploy(ctx, deploy.Request{Services: both, Who: "e2e", OnFailure: deploy.RollbackRelease}, nil)
		u, a = outcomeOf(rep, "user-service"), outcomeOf(rep, "analytics-service")
		if !errors.Is(err, deploy.ErrReleaseFailed) || u.Result != deploy.Failed || a.Result != deploy.RolledBack {
			t.Fatalf("rollback-release with one bad canary: %v; user-service %s, analytics-service %s (%s); want both rolled back", err, u.Result, a.Result, a.Reason)
		}
		t.Logf("rollback-release: analytics-service %s: %s", a.Result, a.Reason)
		for svc, want := range map[string]string{"user-service": userStable, "analytics-service": analyticsStable} {
			if v, ok := onlyVersion(serviceStatus(t, api, svc)); !ok || v != want {
				t.Errorf("%s runs %s after the release's rollback; want %s alone", svc, v, want)
			}
		}
	})

	// The control plane killed mid-canary (Detach: nothing it started
	// stops, as after a kill -9) and started again.
	var m *tee
	var stop2 func() error
	defer func() {
		if stop2 != nil {
			if err := stop2(); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	}()
	restarted := t.Run("the control plane killed mid-canary", func(t *testing.T) {
		stable := serviceStatus(t, api, "user-service").Stable
		write(next("user-service", `{steps: [50, 100], interval: 2s, threshold: 2, min_requests: 5, max_error_rate: 0.1, lane_first: false, bake: 0s, inconclusive_limit: 10}`))
		done := deployAsync(api, deploy.Request{Services: user, Who: "e2e"})
		var st canary.State
		waitUntil(t, "the canary at its first step", func() bool {
			st = canaryOf(ctx, api, "user-service")
			return st.Phase == canary.PhaseProgressing && st.Weight == 50 && st.Version != stable
		})
		if err := p1.Detach(); err != nil {
			t.Fatal(err)
		}
		cancel1()
		if err := <-done1; err != nil {
			t.Fatalf("Run after Detach: %v", err)
		}
		<-done // the API went away under it

		// The next control plane, reading the figures from Prometheus
		// when there is one (the data plane's beside, for comparison).
		cfg2 := cfg
		if prom != nil {
			pp, err := prometheus.New(prometheus.Config{URL: prom.URL})
			if err != nil {
				t.Fatal(err)
			}
			dp, err := dataplane.NewClient(dataplane.ClientConfig{Socket: dataplane.SocketIn(filepath.Join(data, "dataplane"))})
			if err != nil {
				t.Fatal(err)
			}
			m = &tee{prom: pp, builtin: dp}
			cfg2.Metrics = controlplane.MetricsProvider{Name: "prometheus at " + prom.URL, Metrics: m, Querier: pp.Instant()}
		}
		_, info2, cancel2, done2 := startPlatform(t, cfg2)
		stop2 = func() error {
			cancel2()
			return <-done2
		}
		api = apiClient(t, info2)
		waitUntil(t, "the resumed canary finished", func() bool {
			st = canaryOf(ctx, api, "user-service")
			return st.Phase.Final()
		})
		resumed := false
		for _, d := range st.Decisions {
			resumed = resumed || d.Action == canary.ActionResume
		}
		if st.Phase != canary.PhaseSucceeded || !resumed {
			t.Errorf("after the restart the canary is %s (resumed: %v); want it resumed and promoted\n%s", st.Phase, resumed, decisionLines(st))
		}
		// Never left split: one version serves, and the history says how.
		waitUntil(t, "one version with all the traffic", func() bool {
			v, ok := onlyVersion(serviceStatus(t, api, "user-service"))
			return ok && v == st.Version
		})
		hist, err := api.History(ctx, "user-service", 5)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, h := range hist {
			found = found || (h.Version == st.Version && strings.Contains(h.Reason, "resumed after a control-plane restart, then promoted"))
		}
		if !found {
			t.Errorf("user-service's history does not say the canary was resumed and promoted: %+v", hist)
		}
	})

	t.Run("the Prometheus provider reaches the built-in one's verdicts", func(t *testing.T) {
		if !restarted {
			t.Skip("the control plane with the Prometheus provider did not come up")
		}
		if prom == nil {
			t.Skipf("%s not set: no Prometheus to compare with", testenv.Prometheus)
		}
		// A bad version and a healthy one, judged on Prometheus's figures.
		const policy = `{steps: [50, 100], interval: 2s, threshold: 2, min_requests: 5, max_error_rate: 0.1, max_p99: 100ms, lane_first: false, bake: 0s, inconclusive_limit: 10}`
		from := m.count()
		write(next("user-service", policy, "FAULTS", "http.error_rate=0.3"))
		rep, err := api.Deploy(ctx, deploy.Request{Services: user, Who: "e2e"}, nil)
		if oc := outcomeOf(rep, "user-service"); !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(oc.Reason, "error_rate: ") {
			t.Errorf("a version failing 30%% judged on Prometheus's figures: %v; want it rolled back by the error rate", err)
		}
		bad := outcomeOf(rep, "user-service").Version
		write(next("user-service", policy, "FAULTS", "http.latency=150ms"))
		rep, err = api.Deploy(ctx, deploy.Request{Services: user, Who: "e2e"}, nil)
		if oc := outcomeOf(rep, "user-service"); !errors.Is(err, deploy.ErrReleaseFailed) || !regexp.MustCompile(`p99: p99 \S+ > max 100ms`).MatchString(oc.Reason) {
			t.Errorf("a version answering in 150 ms judged on Prometheus's figures: %v; want it rolled back by the p99", err)
		}
		slow := outcomeOf(rep, "user-service").Version
		write(next("user-service", policy))
		rep, err = api.Deploy(ctx, deploy.Request{Services: user, Who: "e2e"}, nil)
		if err != nil {
			t.Errorf("a healthy version judged on Prometheus's figures: %v", err)
		}
		st := canaryOf(ctx, api, "user-service")
		if st.Version != outcomeOf(rep, "user-service").Version || st.Phase != canary.PhaseSucceeded ||
			len(st.Decisions) == 0 || !strings.Contains(st.Decisions[0].Reason, "metrics from prometheus at ") {
			t.Errorf("the healthy canary %s %s, first decision %v; want it promoted, naming the Prometheus provider", st.Version, st.Phase, st.Decisions)
		}
		// Interval by interval, where both providers had enough to
		// judge, the threshold judges agree, but for Prometheus's own
		// blind spot: increase() cannot count the first samples of a
		// series born inside the window (the canary's first 5xx, here
		// with a window of two scrapes), so an interval where the
		// errors begin may pass on its figures; at most one in ten.
		judges := []canary.Judge{canary.ErrorRateJudge{Max: 0.1}, canary.LatencyJudge{Quantile: 99, Max: 100 * time.Millisecond}}
		compared, differ := 0, 0
		canaries := map[string]bool{bad: true, slow: true, outcomeOf(rep, "user-service").Version: true}
		for _, r := range m.since(from) {
			if !canaries[r.version] { // the baseline's figures: no threshold judge reads them
				continue
			}
			if r.promErr != nil || r.builtinErr != nil || r.prom.Requests < 5 || r.builtin.Requests < 5 {
				continue
			}
			for _, j := range judges {
				o := canary.Observation{Service: r.service, Version: r.version, Window: r.window, MinRequests: 5}
				o.Canary = r.prom
				jp := j.Judge(ctx, o)
				o.Canary = r.builtin
				jb := j.Judge(ctx, o)
				compared++
				if jp.Verdict != jb.Verdict {
					differ++
					t.Logf("%s@%s over %v: Prometheus %s (%s), built-in %s (%s)", r.service, r.version, r.window, jp.Verdict, jp.Reason, jb.Verdict, jb.Reason)
				}
			}
		}
		t.Logf("%d verdicts compared on the same reads (bad %s, slow %s, then a healthy version), %d differ", compared, bad, slow, differ)
		if compared < 6 || differ*10 > compared {
			t.Errorf("%d of %d verdicts differ between Prometheus and the built-in provider; want at least 9 in 10 alike, over at least 6", differ, compared)
		}
	})
}

// decisionLines is a canary's decisions, one a line, for a failure
// message.
func decisionLines(st canary.State) string {
	var b strings.Builder
	for _, d := range st.Decisions {
		b.WriteString("  " + controlplane.DecisionLine(d) + "\n")
	}
	return b.String()
}

// killLeftovers kills what a failed run left running under data: the
// bus, the data plane and the services.
func killLeftovers(t *testing.T, data string) {
	for _, name := range []string{"bus", "dataplane"} {
		dir := controlplane.ProcessDir(data)
		if name == "dataplane" {
			dir = filepath.Join(data, "dataplane")
		}
		if st, err := supervise.ReadState(dir, name); err == nil {
			if ok, _ := st.Running(); ok {
				_ = syscall.Kill(-st.PID, syscall.SIGKILL)
			}
		}
	}
	for _, pr := range processesUnder(t, data) {
		if pid, err := strconv.Atoi(strings.Fields(pr)[0]); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

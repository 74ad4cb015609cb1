package canary_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

type env struct {
	t       *testing.T
	p       canary.Policy
	clock   *fakeClock
	metrics *scripted
	router  *mesh.Mesh
	rec     *recorder
	a       *canary.Analysis
}

func testPolicy() canary.Policy {
	p := canary.DefaultPolicy()
	p.Strategy = canary.StrategyCanary
	p.Steps = []int{10, 50, 100}
	p.Interval = 10 * time.Second
	p.Threshold = 2
	p.MinRequests = 20
	p.MaxErrorRate = 0.01
	p.LaneFirst = false
	p.InconclusiveLimit = 2
	p.ConsecutiveErrorLimit = 2
	p.Bake = 0
	return p
}

func newEnv(t *testing.T, p canary.Policy, cfgs ...func(*canary.Config)) *env {
	t.Helper()
	e := &env{t: t, p: p, clock: newFakeClock(), metrics: newScripted(), router: newRouter(t), rec: newRecorder()}
	cfg := canary.Config{
		Metrics:   e.metrics,
		Policy:    func(string) (canary.Policy, error) { return e.p, nil },
		Observer:  e.rec.observe,
		BakeEnded: e.rec.bakeEnded,
		Clock:     e.clock,
		Logger:    quiet(),
	}
	for _, f := range cfgs {
		f(&cfg)
	}
	a, err := canary.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	e.a = a
	if err := e.router.SetWeights(context.Background(), "svc", map[string]int{"v1": 100}); err != nil {
		t.Fatal(err)
	}
	return e
}

var (
	good = canary.Stats{Requests: 200, Errors: 0, P99: 20 * time.Millisecond}
	bad  = canary.Stats{Requests: 300, Errors: 90, ErrorRate: 0.3, P99: 20 * time.Millisecond}
)

// shift starts the canary of v2 through the deploy.Shifter adapter.
func (e *env) shift(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- shifter{e.a}.Shift(ctx, deployReq(e.router))
	}()
	return done
}

// tick lets one interval pass once the analysis waits for it.
func (e *env) tick() {
	e.t.Helper()
	e.clock.blockUntil(e.t, 1)
	e.clock.Advance(e.p.Interval)
}

func (e *env) ticks(n int) {
	e.t.Helper()
	for range n {
		e.tick()
	}
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Shift did not return within 60s")
		return nil
	}
}

func (e *env) phase() canary.Phase {
	st, _ := e.a.Status("svc")
	return st.Phase
}

// waitPhase waits (a bounded poll) for the canary to reach a phase.
func (e *env) waitPhase(want canary.Phase) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.phase() != want {
		if time.Now().After(deadline) {
			e.t.Fatalf("phase %s, want %s", e.phase(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHealthyCanaryGoesThroughEveryStepAndBakes(t *testing.T) {
	p := testPolicy()
	p.LaneFirst = true
	p.Bake = 30 * time.Second
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	done := e.shift(context.Background())
	e.ticks(4) // the lane, then 10, 50 and 100%
	if err := wait(t, done); err != nil {
		t.Fatalf("healthy canary: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights after promotion (-want +got):\n%s", diff)
	}
	// Where each decision was taken: the lane at 0%, step 1 set to 10%,
	// the passes judged at 10 and 50%, the promotion judged at 100%.
	if diff := cmp.Diff([]int{0, 10, 10, 50, 100}, e.rec.weights()); diff != "" {
		t.Errorf("weights of the advances and promotion (-want +got):\n%s", diff)
	}
	if e.phase() != canary.PhaseBaking {
		t.Fatalf("phase %s after promotion, want baking", e.phase())
	}
	e.ticks(3)
	select {
	case err := <-e.rec.bakes:
		if err != nil {
			t.Fatalf("bake: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the bake did not end")
	}
	st, _ := e.a.Status("svc")
	if st.Phase != canary.PhaseSucceeded {
		t.Errorf("phase %s after the bake, want succeeded", st.Phase)
	}
	// The lane's pass, step 1 set, the passes at 10 and 50%, the pass at
	// 100% that promotes, three intervals of bake and its end.
	want := []string{"start", "advance", "advance", "advance", "advance", "promote", "bake", "bake", "bake", "baked"}
	if diff := cmp.Diff(want, e.rec.actions()); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
	judged := 0
	for _, d := range e.rec.decisions {
		if d.Verdict == "" {
			continue
		}
		judged++
		if d.Verdict != canary.Pass || len(d.Judgements) != 1 || d.Judgements[0].Measurements["requests"] != 200 {
			t.Errorf("decision %+v: want a pass with its figures", d)
		}
	}
	if judged != 7 {
		t.Errorf("%d judged decisions, want 7 (lane, 3 steps, 3 bake intervals)", judged)
	}
}

func TestBadCanaryRolledBackAtThreshold(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", bad, nil)
	done := e.shift(context.Background())
	e.ticks(2)
	err := wait(t, done)
	if !errors.Is(err, canary.ErrRolledBack) || errors.Is(err, canary.ErrAborted) {
		t.Fatalf("err %v, want ErrRolledBack", err)
	}
	for _, s := range []string{"svc@v2 rolled back at 10%", "2 failed analysis(es) of threshold 2", "error_rate: error rate 30.00% (90 of 300) > max 1.00%"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	var rb *canary.RollbackError
	if !errors.As(err, &rb) || len(rb.Failed) != 1 || rb.Failed[0].Judge != "error_rate" || rb.Failed[0].Measurements["errors"] != 90 {
		t.Errorf("rollback error %+v: want the failing judgement with its figures", rb)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights after rollback (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"start", "advance", "stay", "rollback"}, e.rec.actions()); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
	if st, _ := e.a.Status("svc"); st.Phase != canary.PhaseRolledBack || st.FailedChecks != 2 {
		t.Errorf("state %s with %d failed checks", st.Phase, st.FailedChecks)
	}
}

func TestNoDataHoldsTheCanaryUntilPromoteOrAbort(t *testing.T) {
	for _, promote := range []bool{true, false} {
		t.Run(map[bool]string{true: "promote", false: "abort"}[promote], func(t *testing.T) {
			e := newEnv(t, testPolicy())
			e.metrics.set("v1", good, nil)
			done := e.shift(context.Background())
			e.ticks(3) // inconclusive twice (the limit), held on the third
			e.waitPhase(canary.PhaseHeld)
			e.ticks(2) // held: judged, neither promoted nor rolled back
			e.clock.blockUntil(t, 1)
			select {
			case err := <-done:
				t.Fatalf("a canary without data ended: %v", err)
			default:
			}
			if diff := cmp.Diff(map[string]int{"v1": 90, "v2": 10}, weightsOf(t, e.router)); diff != "" {
				t.Errorf("held weights (-want +got):\n%s", diff)
			}
			st, _ := e.a.Status("svc")
			if st.FailedChecks != 0 || !strings.Contains(st.Reason, "no data for the canary (v2)") {
				t.Errorf("held state: %d failed checks, reason %q", st.FailedChecks, st.Reason)
			}
			if promote {
				if err := e.a.Promote("svc", "alice"); err != nil {
					t.Fatal(err)
				}
				if err := wait(t, done); err != nil {
					t.Fatalf("promoted by hand: %v", err)
				}
				if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.router)); diff != "" {
					t.Errorf("weights (-want +got):\n%s", diff)
				}
				if st, _ := e.a.Status("svc"); !strings.Contains(st.Reason, "promoted by hand: alice") {
					t.Errorf("reason %q", st.Reason)
				}
			} else {
				if err := e.a.Abort("svc", "bob"); err != nil {
					t.Fatal(err)
				}
				err := wait(t, done)
				if !errors.Is(err, canary.ErrAborted) || !strings.Contains(err.Error(), "aborted by hand: bob") {
					t.Fatalf("aborted: %v", err)
				}
				if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
					t.Errorf("weights (-want +got):\n%s", diff)
				}
			}
			if err := e.a.Abort("svc", ""); !errors.Is(err, canary.ErrNotRunning) {
				t.Errorf("abort after the end: %v, want ErrNotRunning", err)
			}
		})
	}
}

func TestFailuresStillRollBackAHeldCanary(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	done := e.shift(context.Background())
	e.ticks(3)
	e.waitPhase(canary.PhaseHeld)
	e.metrics.set("v2", bad, nil)
	e.ticks(2)
	if err := wait(t, done); !errors.Is(err, canary.ErrRolledBack) {
		t.Fatalf("err %v, want a rollback", err)
	}
}

func TestMetricsErrorsFailPastTheConsecutiveLimit(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", canary.Stats{}, errors.New("dial tcp 127.0.0.1:9090: connection refused"))
	done := e.shift(context.Background())
	e.ticks(2)
	e.clock.blockUntil(t, 1)
	if st, _ := e.a.Status("svc"); st.Phase != canary.PhaseProgressing || st.Errors != 2 || st.FailedChecks != 0 {
		t.Fatalf("after 2 errors: %s, %d errors, %d failed", st.Phase, st.Errors, st.FailedChecks)
	}
	e.tick() // past the limit: a failed analysis (1 of threshold 2)
	e.clock.blockUntil(t, 1)
	if st, _ := e.a.Status("svc"); st.Errors != 3 || st.FailedChecks != 1 {
		t.Fatalf("after 3 errors: %d errors, %d failed", st.Errors, st.FailedChecks)
	}
	e.tick()
	err := wait(t, done)
	if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "could not be read 4 interval(s) in a row (limit 2): 2 failed analysis(es) of threshold 2") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err %v", err)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}

func TestBaselineComparisonAloneCatchesASlowCanary(t *testing.T) {
	p := testPolicy()
	p.MaxErrorRate = 0
	p.Threshold = 1
	p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.1}
	e := newEnv(t, p)
	e.metrics.set("v1", stats(2000, 2, map[int]int64{4: 1500, 5: 500}), nil)
	e.metrics.set("v2", stats(200, 0, map[int]int64{7: 150, 8: 50}), nil) // +150 ms
	done := e.shift(context.Background())
	e.tick()
	err := wait(t, done)
	if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "baseline_latency: slower than v1") {
		t.Fatalf("err %v, want a rollback by baseline_latency", err)
	}
}

func TestCompareOnlyPolicyPromotesAtTheFullStep(t *testing.T) {
	p := testPolicy()
	p.MaxErrorRate = 0
	p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.1}
	e := newEnv(t, p)
	e.metrics.set("v1", stats(2000, 2, map[int]int64{4: 1500, 5: 500}), nil)
	e.metrics.set("v2", stats(200, 0, map[int]int64{4: 150, 5: 50}), nil)
	done := e.shift(context.Background())
	e.ticks(3)
	if err := wait(t, done); err != nil {
		t.Fatalf("a canary like its baseline: %v", err)
	}
	last := e.rec.decisions[len(e.rec.decisions)-1]
	if last.Action != canary.ActionPromote || len(last.Judgements) != 0 {
		t.Errorf("at 100%% the baseline has no traffic; decision %+v", last)
	}
}

func TestBakeFailureRollsBackThroughTheCallback(t *testing.T) {
	p := testPolicy()
	p.Bake = time.Minute
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	if err := wait(t, func() <-chan error { d := e.shift(context.Background()); e.ticks(3); return d }()); err != nil {
		t.Fatal(err)
	}
	e.metrics.set("v2", bad, nil)
	e.ticks(2)
	var err error
	select {
	case err = <-e.rec.bakes:
	case <-time.After(30 * time.Second):
		t.Fatal("the bake did not end")
	}
	var rb *canary.RollbackError
	if !errors.As(err, &rb) || rb.Phase != canary.PhaseBaking || !strings.Contains(err.Error(), "rolled back during the bake") {
		t.Fatalf("bake error %v", err)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights after the bake's rollback (-want +got):\n%s", diff)
	}
}

func TestAbortDuringTheBake(t *testing.T) {
	p := testPolicy()
	p.Bake = time.Hour
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	if err := wait(t, func() <-chan error { d := e.shift(context.Background()); e.ticks(3); return d }()); err != nil {
		t.Fatal(err)
	}
	if err := e.a.Abort("svc", "pager"); err != nil {
		t.Fatal(err)
	}
	if err := <-e.rec.bakes; !errors.Is(err, canary.ErrAborted) {
		t.Fatalf("bake end %v, want ErrAborted", err)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}

func TestStrategies(t *testing.T) {
	t.Run("bluegreen judges at 0% then switches", func(t *testing.T) {
		p := testPolicy()
		p.Strategy, p.Steps, p.Iterations = canary.StrategyBlueGreen, nil, 2
		e := newEnv(t, p)
		e.metrics.set("v1", good, nil)
		e.metrics.set("v2", good, nil)
		done := e.shift(context.Background())
		e.tick()
		e.clock.blockUntil(t, 1)
		if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
			t.Errorf("weights while judged (-want +got):\n%s", diff)
		}
		e.tick()
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.router)); diff != "" {
			t.Errorf("weights (-want +got):\n%s", diff)
		}
	})
	t.Run("direct", func(t *testing.T) {
		p := testPolicy()
		p.Strategy, p.Steps = canary.StrategyDirect, nil
		e := newEnv(t, p)
		if err := wait(t, e.shift(context.Background())); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.router)); diff != "" {
			t.Errorf("weights (-want +got):\n%s", diff)
		}
	})
	t.Run("first deploy", func(t *testing.T) {
		e := newEnv(t, testPolicy())
		if err := e.router.SetWeights(context.Background(), "svc", map[string]int{"v2": 100}); err != nil {
			t.Fatal(err)
		}
		if err := wait(t, e.shift(context.Background())); err != nil {
			t.Fatal(err)
		}
		if st, _ := e.a.Status("svc"); !strings.Contains(st.Reason, "first deploy") {
			t.Errorf("reason %q", st.Reason)
		}
	})
}

func TestRefusedPolicyMovesNoWeight(t *testing.T) {
	for name, edit := range map[string]func(*canary.Policy){
		"query without a source":       func(p *canary.Policy) { p.Queries = []canary.Query{{Name: "q", Query: "up", Max: f(1)}} },
		"synthetic load without drive": func(p *canary.Policy) { p.SyntheticLoad = 10 },
		"threshold 0":                  func(p *canary.Policy) { p.Threshold = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			p := testPolicy()
			edit(&p)
			e := newEnv(t, p)
			err := wait(t, e.shift(context.Background()))
			if err == nil || !strings.Contains(err.Error(), "canary policy of svc") {
				t.Fatalf("err %v", err)
			}
			if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
				t.Errorf("weights (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(e.a.Describe("svc", "v2"), "refused: ") {
				t.Errorf("Describe %q", e.a.Describe("svc", "v2"))
			}
		})
	}
}

// hookServer answers each webhook by its path.
type hookServer struct {
	*httptest.Server
	mu       sync.Mutex
	got      map[string][]canary.WebhookPayload
	confirm  atomic.Bool // what /confirm answers
	rollback atomic.Bool // what /rollback answers
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{got: map[string][]canary.WebhookPayload{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p canary.WebhookPayload
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("payload %s: %v", b, err)
		}
		h.mu.Lock()
		h.got[r.URL.Path] = append(h.got[r.URL.Path], p)
		h.mu.Unlock()
		switch r.URL.Path {
		case "/hang":
			<-r.Context().Done()
		case "/confirm":
			if !h.confirm.Load() {
				http.Error(w, "halted by the release manager", http.StatusForbidden)
			}
		case "/rollback":
			if !h.rollback.Load() {
				w.WriteHeader(http.StatusNotFound)
			}
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) calls(path string) []canary.WebhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]canary.WebhookPayload(nil), h.got[path]...)
}

func TestConfirmPromotionHoldsAtTheLastStep(t *testing.T) {
	h := newHookServer(t)
	p := testPolicy()
	p.Webhooks = []canary.Webhook{
		{Name: "approve", Kind: canary.HookConfirmPromotion, URL: h.URL + "/confirm", Metadata: map[string]string{"ticket": "REL-7"}},
		{Name: "audit", Kind: canary.HookEvent, URL: h.URL + "/event"},
		{Name: "notify", Kind: canary.HookPostRollout, URL: h.URL + "/post"},
	}
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	done := e.shift(context.Background())
	e.ticks(3)
	e.waitPhase(canary.PhaseWaitingPromotion)
	e.ticks(2) // still judged, still waiting
	e.clock.blockUntil(t, 1)
	if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights at the last step (-want +got):\n%s", diff)
	}
	if st, _ := e.a.Status("svc"); st.Phase != canary.PhaseWaitingPromotion || !strings.Contains(st.Reason, "answered 403: halted by the release manager") {
		t.Errorf("state %s: %q", st.Phase, st.Reason)
	}
	h.confirm.Store(true)
	e.tick()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	asked := h.calls("/confirm")
	if len(asked) != 4 || asked[0].Kind != canary.HookConfirmPromotion || asked[0].Metadata["ticket"] != "REL-7" || asked[0].Canary.Service != "svc" || asked[0].Canary.Version != "v2" {
		t.Errorf("confirm-promotion calls %+v", asked)
	}
	if n := len(h.calls("/event")); n != len(e.rec.decisions) {
		t.Errorf("%d event calls for %d decisions", n, len(e.rec.decisions))
	}
	if post := h.calls("/post"); len(post) != 1 || post[0].Canary.Phase != canary.PhaseSucceeded {
		t.Errorf("post-rollout calls %+v", post)
	}
}

func TestRolloutWebhookThatHangsCountsAsAFailedCheck(t *testing.T) {
	h := newHookServer(t)
	p := testPolicy()
	p.Webhooks = []canary.Webhook{
		{Name: "load-test", Kind: canary.HookRollout, URL: h.URL + "/hang", Timeout: 50 * time.Millisecond},
		{Name: "pager", Kind: canary.HookPostRollout, URL: h.URL + "/fail"},
	}
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	done := e.shift(context.Background())
	e.ticks(2)
	err := wait(t, done)
	if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "webhook load-test (rollout) timed out after 50ms") {
		t.Fatalf("err %v", err)
	}
	if diff := cmp.Diff([]string{"start", "advance", "stay", "rollback", "notify"}, e.rec.actions()); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
	st, _ := e.a.Status("svc")
	last := st.Decisions[len(st.Decisions)-1]
	if st.Phase != canary.PhaseRolledBack || !strings.Contains(st.Reason, "timed out") || !strings.Contains(last.Reason, "post-rollout: webhook pager (post-rollout) answered 500") {
		t.Errorf("a failed post-rollout hook: %s %q, last decision %q", st.Phase, st.Reason, last.Reason)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}

func TestRollbackWebhookForcesARollback(t *testing.T) {
	h := newHookServer(t)
	p := testPolicy()
	p.Webhooks = []canary.Webhook{{Name: "big-red-button", Kind: canary.HookRollback, URL: h.URL + "/rollback"}}
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	done := e.shift(context.Background())
	e.tick() // 404: carry on
	e.clock.blockUntil(t, 1)
	h.rollback.Store(true)
	e.tick()
	err := wait(t, done)
	if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "webhook big-red-button asked for a rollback") || !strings.Contains(err.Error(), "at 50%") {
		t.Fatalf("err %v", err)
	}
}

func TestConfirmRolloutWaitsAndPreRolloutFailuresCount(t *testing.T) {
	h := newHookServer(t)
	p := testPolicy()
	p.Webhooks = []canary.Webhook{
		{Name: "gate", Kind: canary.HookConfirmRollout, URL: h.URL + "/confirm"},
		{Name: "migrate", Kind: canary.HookPreRollout, URL: h.URL + "/fail"},
	}
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	done := e.shift(context.Background())
	e.ticks(3)
	e.clock.blockUntil(t, 1)
	if st, _ := e.a.Status("svc"); st.Phase != canary.PhaseWaiting || st.FailedChecks != 0 {
		t.Fatalf("state %s, %d failed checks: want waiting without failures", st.Phase, st.FailedChecks)
	}
	h.confirm.Store(true)
	e.tick() // confirmed; pre-rollout fails (1), waits
	err := func() error { e.tick(); return wait(t, done) }()
	if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "webhook migrate (pre-rollout) answered 500") {
		t.Fatalf("err %v", err)
	}
	if n := len(h.calls("/fail")); n != 2 {
		t.Errorf("pre-rollout called %d times, want 2", n)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("no weight moved before pre-rollout passed (-want +got):\n%s", diff)
	}
}

func TestStateSurvivesARestart(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := e.shift(ctx)
	e.tick() // 10% passes: 50%
	e.clock.blockUntil(t, 1)
	cancel() // the control plane stops
	if err := wait(t, done); !errors.Is(err, canary.ErrInterrupted) {
		t.Fatalf("err %v, want ErrInterrupted", err)
	}
	e.clock.Advance(e.p.Interval) // fire the stopped analysis's timer
	if diff := cmp.Diff(map[string]int{"v1": 50, "v2": 50}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("an interrupted canary keeps its weights (-want +got):\n%s", diff)
	}
	e.rec.mu.Lock()
	saved, err := json.Marshal(e.rec.last)
	e.rec.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var st canary.State
	if err := json.Unmarshal(saved, &st); err != nil {
		t.Fatal(err)
	}
	if st.Step != 2 || st.Weight != 50 || st.Phase != canary.PhaseProgressing || st.Before["v1"] != 100 || len(st.Decisions) != 3 {
		t.Fatalf("saved state %s", saved)
	}

	t.Run("resume", func(t *testing.T) {
		rec := newRecorder()
		a, err := canary.New(canary.Config{Metrics: e.metrics, Policy: func(string) (canary.Policy, error) { return e.p, nil }, Observer: rec.observe, Clock: e.clock, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = a.Close() }()
		done := make(chan error, 1)
		go func() {
			done <- a.Resume(context.Background(), canary.ShiftRequest{Service: "svc", Version: "v2", Old: []string{"v1"}, Router: e.router}, st)
		}()
		e.ticks(2) // 50% passes: 100%; 100% passes: promoted
		if err := wait(t, done); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"resume", "advance", "promote"}, rec.actions()); diff != "" {
			t.Errorf("decisions after the restart (-want +got):\n%s", diff)
		}
		got, _ := a.Status("svc")
		if len(got.Decisions) != 6 || got.Phase != canary.PhaseSucceeded {
			t.Errorf("resumed state keeps the history: %d decisions, %s", len(got.Decisions), got.Phase)
		}
	})
	t.Run("restore", func(t *testing.T) {
		if err := e.router.SetWeights(context.Background(), "svc", map[string]int{"v1": 50, "v2": 50}); err != nil {
			t.Fatal(err)
		}
		a, err := canary.New(canary.Config{Metrics: e.metrics, Clock: e.clock, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = a.Close() }()
		if err := a.Restore(context.Background(), e.router, st, "control plane restarted mid-canary"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.router)); diff != "" {
			t.Errorf("restored weights (-want +got):\n%s", diff)
		}
		got, _ := a.Status("svc")
		if got.Phase != canary.PhaseRolledBack || got.Reason != "control plane restarted mid-canary" {
			t.Errorf("restored state %s %q", got.Phase, got.Reason)
		}
	})
}

func TestOneCanaryPerService(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	done := e.shift(context.Background())
	e.clock.blockUntil(t, 1)
	err := e.a.Shift(context.Background(), canary.ShiftRequest{Service: "svc", Version: "v3", Old: []string{"v1"}, Router: e.router})
	if err == nil || !strings.Contains(err.Error(), "v2 is already in progress") {
		t.Errorf("second canary: %v", err)
	}
	if err := e.a.Abort("svc", ""); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); !errors.Is(err, canary.ErrAborted) {
		t.Fatal(err)
	}
	if err := e.a.Promote("nope", ""); !errors.Is(err, canary.ErrNotRunning) {
		t.Errorf("promote of an unknown service: %v", err)
	}
}

func TestANewReleaseCutsTheBakeShort(t *testing.T) {
	p := testPolicy()
	p.Bake = time.Hour
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	if err := wait(t, func() <-chan error { d := e.shift(context.Background()); e.ticks(3); return d }()); err != nil {
		t.Fatal(err)
	}
	e.clock.blockUntil(t, 1) // the bake waits
	done := make(chan error, 1)
	go func() {
		done <- e.a.Shift(context.Background(), canary.ShiftRequest{Service: "svc", Version: "v3", Old: []string{"v2"}, Router: e.router})
	}()
	select {
	case err := <-e.rec.bakes:
		if err != nil {
			t.Fatalf("the cut bake ended with %v, want nil (v2 succeeded)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the bake was not cut short")
	}
	// v3 is not a subset of the router: its first step fails, and the
	// rollback puts v2 back.
	if err := wait(t, done); !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "set weights") {
		t.Fatalf("v3: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.router)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}

func TestABakeSurvivesARestart(t *testing.T) {
	p := testPolicy()
	p.Bake = 30 * time.Second
	e := newEnv(t, p)
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	if err := wait(t, func() <-chan error { d := e.shift(context.Background()); e.ticks(3); return d }()); err != nil {
		t.Fatal(err)
	}
	e.tick() // one interval of the bake
	e.clock.blockUntil(t, 1)
	if err := e.a.Close(); err != nil { // the control plane stops
		t.Fatal(err)
	}
	st, _ := e.a.Status("svc")
	if st.Phase != canary.PhaseBaking || st.BakeUntil.IsZero() {
		t.Fatalf("state after Close: %s until %v, want baking", st.Phase, st.BakeUntil)
	}
	if err := e.a.Promote("svc", ""); !errors.Is(err, canary.ErrNotRunning) {
		t.Errorf("promote of a stopped bake: %v, want ErrNotRunning", err)
	}
	e.clock.mu.Lock() // drop the stopped bake's timer
	e.clock.waiters = nil
	e.clock.mu.Unlock()

	rec := newRecorder()
	a, err := canary.New(canary.Config{Metrics: e.metrics, Policy: func(string) (canary.Policy, error) { return p, nil },
		Observer: rec.observe, BakeEnded: rec.bakeEnded, Clock: e.clock, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	if err := a.Resume(context.Background(), canary.ShiftRequest{Service: "svc", Version: "v2", Old: []string{"v1"}, Router: e.router}, st); err != nil {
		t.Fatalf("resume a bake: %v", err)
	}
	e.ticks(2) // the 20 s left
	select {
	case err := <-rec.bakes:
		if err != nil {
			t.Fatalf("resumed bake: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the resumed bake did not end")
	}
	if diff := cmp.Diff([]string{"resume", "bake", "bake", "baked"}, rec.actions()); diff != "" {
		t.Errorf("decisions after the restart (-want +got):\n%s", diff)
	}
}

func TestAFailingEventWebhookIsRecorded(t *testing.T) {
	h := newHookServer(t)
	p := testPolicy()
	p.Strategy, p.Steps = canary.StrategyDirect, nil
	p.Webhooks = []canary.Webhook{{Name: "chat", Kind: canary.HookEvent, URL: h.URL + "/fail"}}
	e := newEnv(t, p)
	if err := wait(t, e.shift(context.Background())); err != nil {
		t.Fatal(err)
	}
	st, _ := e.a.Status("svc")
	for _, d := range st.Decisions {
		if len(d.Hooks) != 1 || d.Hooks[0].OK || d.Hooks[0].Status != 500 || !strings.Contains(d.Hooks[0].Reason, "webhook chat (event) answered 500") {
			t.Errorf("decision %s: hooks %+v, want the failed event call", d.Action, d.Hooks)
		}
	}
	if len(st.Decisions) != 2 || len(h.calls("/fail")) != 2 {
		t.Errorf("%d decisions, %d event calls: want 2 each (start, promote)", len(st.Decisions), len(h.calls("/fail")))
	}
}

func TestStatusLines(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", good, nil)
	done := e.shift(context.Background())
	e.tick()
	e.clock.blockUntil(t, 1)
	st, _ := e.a.Status("svc")
	want := "svc@v2 progressing at 50% (step 2 of 3), 0 of 2 failed analyses, next judged 12:00:20; baseline v1: passed; step 2: 50% to v2"
	if got := st.Summary(); got != want {
		t.Errorf("Summary()\n got %q\nwant %q", got, want)
	}
	if got, want := st.Decisions[2].String(), "12:00:10 progressing 10% pass advance: passed; step 2: 50% to v2"; got != want {
		t.Errorf("Decision.String()\n got %q\nwant %q", got, want)
	}
	e.metrics.set("v2", bad, nil)
	e.ticks(2)
	if err := wait(t, done); err == nil {
		t.Fatal("bad canary promoted")
	}
	st, _ = e.a.Status("svc")
	if got, want := st.Summary(), "svc@v2 rolled-back, 2 of 2 failed analyses; baseline v1: 2 failed analysis(es) of threshold 2: error_rate: error rate 30.00% (90 of 300) > max 1.00%"; got != want {
		t.Errorf("Summary()\n got %q\nwant %q", got, want)
	}
}

// The real clock, once: one interval of a second at 0%, then the switch.
func TestRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a real interval")
	}
	p := testPolicy()
	p.Strategy, p.Steps, p.Iterations, p.Interval = canary.StrategyBlueGreen, nil, 1, canary.MinInterval
	metrics := newScripted()
	metrics.set("v1", good, nil)
	metrics.set("v2", good, nil)
	a, err := canary.New(canary.Config{Metrics: metrics, Policy: func(string) (canary.Policy, error) { return p, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	m := newRouter(t)
	if err := m.SetWeights(context.Background(), "svc", map[string]int{"v1": 100}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Shift(ctx, canary.ShiftRequest{Service: "svc", Version: "v2", Old: []string{"v1"}, Router: m}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, m)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}

// windowed is a Metrics whose canary served its requests (the smoke
// checks, through the lane) before the shift began: only a window
// reaching back past the first interval sees them.
type windowed struct {
	*scripted
	lane     canary.Stats
	interval time.Duration
	mu       sync.Mutex
	windows  []time.Duration
}

func (w *windowed) Stats(ctx context.Context, svc, version string, window time.Duration) (canary.Stats, error) {
	w.mu.Lock()
	w.windows = append(w.windows, window)
	w.mu.Unlock()
	if version == "v2" && window > w.interval {
		return w.lane, nil
	}
	return w.scripted.Stats(ctx, svc, version, window)
}

// The first interval on the header lane counts the smoke checks made
// just before the shift (at 0%, all the canary served came through its
// lane), so a smoke check's failure is judged there and not reported as
// "no data"; later intervals read one interval. A lane that carried too
// little is no check (as Flagger judges nothing without traffic routed
// to the canary): the weighted steps judge it.
func TestTheLaneCountsTheSmokeChecks(t *testing.T) {
	p := testPolicy()
	p.LaneFirst = true
	p.MinRequests = 2
	m := &windowed{scripted: newScripted(), interval: p.Interval,
		lane: canary.Stats{Requests: 4, Errors: 4, ErrorRate: 1, P99: 5 * time.Millisecond}}
	e := newEnv(t, p, func(c *canary.Config) { c.Metrics = m })
	m.set("v2", bad, nil) // and it goes on failing on the lane
	done := e.shift(context.Background())
	e.ticks(2) // the lane judged twice: two failures
	err := wait(t, done)
	var rb *canary.RollbackError
	if !errors.As(err, &rb) || rb.Phase != canary.PhaseLane || !strings.Contains(rb.Reason, "(90 of 300)") {
		t.Fatalf("a canary failing on the lane = %v; want it rolled back on the lane with the figures", err)
	}
	e.rec.mu.Lock()
	first := e.rec.decisions[1]
	e.rec.mu.Unlock()
	if first.Verdict != canary.Fail || !strings.Contains(first.Reason, "(4 of 4)") {
		t.Errorf("the first lane interval: %+v; want the smoke checks' failures judged", first)
	}
	m.mu.Lock()
	if len(m.windows) < 2 || m.windows[0] != 2*p.Interval || m.windows[len(m.windows)-1] != p.Interval {
		t.Errorf("windows read %v; want the first lane interval over %v, the next over %v", m.windows, 2*p.Interval, p.Interval)
	}
	m.mu.Unlock()

	// No lane traffic at all: no check, on to the first step.
	e = newEnv(t, p)
	e.metrics.set("v1", good, nil)
	done = e.shift(context.Background())
	e.tick()
	e.waitPhase(canary.PhaseProgressing)
	e.rec.mu.Lock()
	lane := e.rec.decisions[1]
	e.rec.mu.Unlock()
	if lane.Verdict != canary.Inconclusive || lane.Action != canary.ActionAdvance || lane.FailedChecks != 0 ||
		!strings.Contains(lane.Reason, "too little lane traffic to judge, the weighted steps will") {
		t.Errorf("the lane without traffic: %+v; want an advance that is no check, saying why", lane)
	}
	e.metrics.set("v2", good, nil)
	e.ticks(3)
	if err := wait(t, done); err != nil {
		t.Fatalf("after the lane: %v", err)
	}
}

// A release of a version whose canary already runs (resumed after a
// restart, then released again by the restarted control plane) waits for
// that canary and gets its outcome, instead of being refused or starting
// a second one; a release of another version is still refused.
func TestASecondReleaseOfTheSameVersionJoinsItsCanary(t *testing.T) {
	e := newEnv(t, testPolicy())
	e.metrics.set("v1", good, nil)
	e.metrics.set("v2", bad, nil)
	first := e.shift(context.Background())
	e.tick() // one failed analysis of two
	e.waitPhase(canary.PhaseProgressing)
	second := e.shift(context.Background())
	other := shifter{e.a}.Shift(context.Background(), deploy.ShiftRequest{Service: "svc", Version: "v3", Old: []string{"v1"}, Router: deployReq(e.router).Router})
	if other == nil || !strings.Contains(other.Error(), "already in progress") {
		t.Errorf("a release of another version during the canary = %v; want it refused", other)
	}
	// The second release must have joined before the interval that ends
	// the canary: one arriving after it would start a canary of its own.
	deadline := time.Now().Add(30 * time.Second)
	for canary.Joined(e.a, "svc") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second release of v2 did not join the canary in progress")
		}
		time.Sleep(time.Millisecond)
	}
	e.tick()
	for i, done := range []<-chan error{first, second} {
		var rb *canary.RollbackError
		if err := wait(t, done); !errors.As(err, &rb) || rb.Version != "v2" {
			t.Errorf("release %d = %v; want the canary's rollback", i+1, err)
		}
	}
	starts := 0
	for _, a := range e.rec.actions() {
		if a == string(canary.ActionStart) {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("%d canaries started, want the one", starts)
	}
}

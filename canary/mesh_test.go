package canary_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/flotilla-ci/flotilla/mesh"
)

// meshEnv is a real mesh in front of two real HTTP upstreams: v1
// healthy, v2 whatever the test makes it. The mesh's metrics run on the
// fake clock, so each interval's traffic lands in its window.
type meshEnv struct {
	*env
	m          *mesh.Mesh
	url        string
	clientErrs atomic.Int64
	sent       atomic.Int64
}

func newMeshEnv(t *testing.T, p canary.Policy, v2 http.HandlerFunc, cfgs ...func(*canary.Config)) *meshEnv {
	t.Helper()
	clock := newFakeClock()
	m, err := mesh.New(mesh.Config{Logger: quiet(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	up1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v1") }))
	t.Cleanup(up1.Close)
	up2 := httptest.NewServer(v2)
	t.Cleanup(up2.Close)
	ctx := context.Background()
	addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []mesh.Subset{
		{Name: "v1", Endpoints: []string{strings.TrimPrefix(up1.URL, "http://")}},
		{Name: "v2", Canary: true, Endpoints: []string{strings.TrimPrefix(up2.URL, "http://")}},
	} {
		if err := m.SetSubset(ctx, "svc", s); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, p: p, clock: clock, router: m, rec: newRecorder()}
	cfg := canary.Config{
		Metrics:   m,
		Policy:    func(string) (canary.Policy, error) { return e.p, nil },
		Observer:  e.rec.observe,
		BakeEnded: e.rec.bakeEnded,
		Clock:     clock,
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
	if err := m.SetWeights(ctx, "svc", map[string]int{"v1": 100}); err != nil {
		t.Fatal(err)
	}
	return &meshEnv{env: e, m: m, url: "http://" + addr}
}

// get sends one request through the mesh, as a caller would.
func (e *meshEnv) get(hdr ...string) {
	req, _ := http.NewRequest("GET", e.url+"/pay", nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	e.sent.Add(1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.clientErrs.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		e.clientErrs.Add(1)
	}
}

// run drives the canary: every interval, once the analysis waits, half
// an interval passes, n user requests go through the mesh, and the rest
// of the interval passes. It returns Shift's error.
func (e *meshEnv) run(n, maxIntervals int) error {
	e.t.Helper()
	done := e.shift(context.Background())
	for range maxIntervals {
		select {
		case err := <-done:
			return err
		default:
		}
		if !e.waitOrDone(done) {
			break
		}
		e.clock.Advance(e.p.Interval / 2)
		for range n {
			e.get()
		}
		e.clock.Advance(e.p.Interval - e.p.Interval/2)
	}
	return wait(e.t, done)
}

// waitOrDone waits until the analysis waits on its clock (true) or Shift
// has returned (false, the result left in done).
func (e *meshEnv) waitOrDone(done <-chan error) bool {
	deadline := time.Now().Add(30 * time.Second)
	for e.clock.pending() < 1 {
		if len(done) > 0 {
			return false
		}
		if time.Now().After(deadline) {
			e.t.Fatal("the analysis neither waited nor returned within 30s")
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

func meshPolicy() canary.Policy {
	p := canary.DefaultPolicy()
	p.Strategy = canary.StrategyCanary
	p.Steps = []int{10, 50, 100}
	p.Interval = 10 * time.Second
	p.Threshold = 2
	p.MinRequests = 10
	p.MaxErrorRate = 0.05
	p.Bake = 0
	return p
}

func TestMeshVersionFailing30PercentIsRolledBack(t *testing.T) {
	var calls, fails atomic.Int64
	e := newMeshEnv(t, meshPolicy(), func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%10 < 3 {
			fails.Add(1)
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "v2")
	})
	err := e.run(200, 10)
	if !errors.Is(err, canary.ErrRolledBack) {
		t.Fatalf("err %v, want a rollback", err)
	}
	if !strings.Contains(err.Error(), "rolled back at 10%") || !strings.Contains(err.Error(), "error_rate: error rate 3") {
		t.Errorf("error %q: want the error-rate judge at 10%%", err)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100}, weightsOf(t, e.m)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
	// The lane interval had no traffic (inconclusive), then two failed
	// intervals at 10%: what clients saw is bounded by the canary's
	// share of the traffic times its failure rate over those intervals.
	served := calls.Load()
	if served == 0 || served > 2*200*10/100+2 {
		t.Errorf("the canary served %d requests in two intervals at 10%% of 200", served)
	}
	if e.clientErrs.Load() != fails.Load() || fails.Load() > served*3/10+1 {
		t.Errorf("clients saw %d failures, the canary returned %d of its %d requests: want the same, at most its 30%%", e.clientErrs.Load(), fails.Load(), served)
	}
	st, _ := e.a.Status("svc")
	if diff := cmp.Diff([]string{"start", "advance", "advance", "stay", "rollback"}, e.rec.actions()); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
	if st.Decisions[1].Verdict != canary.Inconclusive || !strings.Contains(st.Decisions[1].Reason, "header lane at 0%") {
		t.Errorf("lane decision %+v", st.Decisions[1])
	}
	// And after the rollback nothing reaches v2 any more.
	before, errs := calls.Load(), e.clientErrs.Load()
	for range 50 {
		e.get()
	}
	if calls.Load() != before || e.clientErrs.Load() != errs {
		t.Errorf("after the rollback v2 served %d more, clients saw %d more failures", calls.Load()-before, e.clientErrs.Load()-errs)
	}
}

func TestMeshSlowVersionIsRolledBack(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(60 * time.Millisecond)
		_, _ = io.WriteString(w, "v2")
	}
	t.Run("by the p99 judge", func(t *testing.T) {
		p := meshPolicy()
		p.MaxP99 = 50 * time.Millisecond
		err := newMeshEnv(t, p, slow).run(100, 10)
		if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "p99: p99 ") || strings.Contains(err.Error(), "error_rate:") {
			t.Fatalf("err %v, want a rollback by p99 alone", err)
		}
	})
	t.Run("by the baseline comparison alone", func(t *testing.T) {
		p := meshPolicy()
		p.MaxErrorRate = 0
		p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.2}
		err := newMeshEnv(t, p, slow).run(100, 10)
		if !errors.Is(err, canary.ErrRolledBack) || !strings.Contains(err.Error(), "baseline_latency: slower than v1") {
			t.Fatalf("err %v, want a rollback by baseline_latency", err)
		}
	})
}

func TestMeshHealthyVersionIsPromoted(t *testing.T) {
	p := meshPolicy()
	p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.2}
	e := newMeshEnv(t, p, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v2") })
	if err := e.run(200, 10); err != nil {
		t.Fatalf("healthy version: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"v2": 100}, weightsOf(t, e.m)); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
	if e.clientErrs.Load() != 0 {
		t.Errorf("clients saw %d failures", e.clientErrs.Load())
	}
}

// laneLoad is the synthetic load: requests through the canary's header
// lane of the mesh.
type laneLoad struct {
	e        *meshEnv
	versions sync.Map // the versions driven
}

func (l *laneLoad) Drive(ctx context.Context, req canary.LoadRequest) error {
	if req.Service != "svc" || req.Rate != 100 {
		return fmt.Errorf("load request %+v", req)
	}
	l.versions.Store(req.Version, true)
	for range req.Requests {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.e.get("X-Flotilla-Version", req.Version)
	}
	return nil
}

func TestMeshNoTrafficIsHeldOrJudgedOnSyntheticLoad(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "v2") }
	t.Run("held", func(t *testing.T) {
		p := meshPolicy()
		p.InconclusiveLimit = 1
		e := newMeshEnv(t, p, ok)
		done := e.shift(context.Background())
		e.ticks(4) // lane, then 10%: two inconclusive, held
		e.waitPhase(canary.PhaseHeld)
		e.clock.blockUntil(t, 1)
		if len(done) > 0 {
			t.Fatalf("a canary without traffic ended: %v", <-done)
		}
		if diff := cmp.Diff(map[string]int{"v1": 90, "v2": 10}, weightsOf(t, e.m)); diff != "" {
			t.Errorf("weights (-want +got):\n%s", diff)
		}
		if err := e.a.Abort("svc", "test over"); err != nil {
			t.Fatal(err)
		}
		if err := wait(t, done); !errors.Is(err, canary.ErrAborted) {
			t.Fatal(err)
		}
	})
	t.Run("synthetic load", func(t *testing.T) {
		p := meshPolicy()
		p.InconclusiveLimit = 1
		p.SyntheticLoad = 100
		p.Compare = canary.Compare{Baseline: true, Confidence: 0.98, MinEffect: 0.2}
		load := &laneLoad{}
		e := newMeshEnv(t, p, ok, func(c *canary.Config) { c.Load = load })
		load.e = e
		done := e.shift(context.Background())
		e.ticks(4) // lane, 10, 50, 100%
		if err := wait(t, done); err != nil {
			t.Fatalf("judged on synthetic load: %v", err)
		}
		st, _ := e.a.Status("svc")
		if !strings.Contains(st.Decisions[1].Reason, "header lane at 0%") || st.Decisions[1].Verdict != canary.Pass {
			t.Errorf("lane decision %+v", st.Decisions[1])
		}
		// Both sides, each short of min_requests, got synthetic requests:
		// the canary in the lane and at every step, the baseline while it
		// had weight (lane, 10% and 50%).
		if e.sent.Load() < 7*p.MinRequests {
			t.Errorf("%d synthetic requests, want at least 7 × min_requests %d", e.sent.Load(), p.MinRequests)
		}
		for _, v := range []string{"v1", "v2"} {
			if _, ok := load.versions.Load(v); !ok {
				t.Errorf("no synthetic load to %s", v)
			}
		}
		for _, d := range st.Decisions {
			for _, j := range d.Judgements {
				if j.Verdict != canary.Pass {
					t.Errorf("decision at %d%%: %s %s: %s", d.Weight, j.Judge, j.Verdict, j.Reason)
				}
			}
		}
	})
}

func TestMeshWaveOfTwoCanariesInParallel(t *testing.T) {
	// Two services of one wave share an analysis: one bad, one good.
	clock := newFakeClock()
	m, err := mesh.New(mesh.Config{Logger: quiet(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(ok.Close)
	boom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	t.Cleanup(boom.Close)
	ctx := context.Background()
	urls := map[string]string{}
	for svc, v2 := range map[string]*httptest.Server{"good": ok, "bad": boom} {
		addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: svc})
		if err != nil {
			t.Fatal(err)
		}
		urls[svc] = "http://" + addr
		_ = m.SetSubset(ctx, svc, mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(ok.URL, "http://")}})
		_ = m.SetSubset(ctx, svc, mesh.Subset{Name: "v2", Canary: true, Endpoints: []string{strings.TrimPrefix(v2.URL, "http://")}})
		_ = m.SetWeights(ctx, svc, map[string]int{"v1": 100})
	}
	p := meshPolicy()
	p.LaneFirst = false
	a, err := canary.New(canary.Config{Metrics: m, Policy: func(string) (canary.Policy, error) { return p, nil }, Clock: clock, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	results := map[string]chan error{}
	for svc := range urls {
		ch := make(chan error, 1)
		results[svc] = ch
		go func() {
			ch <- a.Shift(ctx, canary.ShiftRequest{Service: svc, Version: "v2", Old: []string{"v1"}, Router: m})
		}()
	}
	finished := map[string]error{}
	// settle waits until each analysis either waits for its next interval
	// or has returned.
	settle := func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			for svc, ch := range results {
				select {
				case err := <-ch:
					finished[svc] = err
				default:
				}
			}
			if len(finished)+clock.pending() >= 2 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d analyses waiting and %d finished, want 2 in all", clock.pending(), len(finished))
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := 0; i < 10; i++ {
		settle()
		if len(finished) == 2 {
			break
		}
		clock.Advance(p.Interval / 2)
		for svc, u := range urls {
			if _, done := finished[svc]; done {
				continue
			}
			for range 100 {
				if resp, err := http.Get(u + "/x"); err == nil {
					_ = resp.Body.Close()
				}
			}
		}
		clock.Advance(p.Interval - p.Interval/2)
	}
	if !errors.Is(finished["bad"], canary.ErrRolledBack) || finished["good"] != nil {
		t.Fatalf("results %v: want bad rolled back, good promoted", finished)
	}
	states := a.States()
	if len(states) != 2 || states[0].Service != "bad" || states[0].Phase != canary.PhaseRolledBack || states[1].Phase != canary.PhaseSucceeded {
		t.Errorf("states %+v", states)
	}
}

package canary_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/mesh"
)

// fakeClock moves only when told. The analysis waits on After; tests
// wait until it does (blockUntil) and then move time past its timer.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Advance moves the time on and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// blockUntil waits (a bounded poll) until n timers are pending.
func (c *fakeClock) blockUntil(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.pending() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the analysis did not wait on %d timer(s) within 30s (%d pending)", n, c.pending())
		}
		time.Sleep(time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scripted is a Metrics whose figures the test sets per version.
type scripted struct {
	mu    sync.Mutex
	stats map[string]canary.Stats
	errs  map[string]error
	reads int
}

func newScripted() *scripted {
	return &scripted{stats: map[string]canary.Stats{}, errs: map[string]error{}}
}

func (s *scripted) set(version string, st canary.Stats, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats[version], s.errs[version] = st, err
}

func (s *scripted) Stats(_ context.Context, _, version string, window time.Duration) (canary.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	st, ok := s.stats[version]
	if err := s.errs[version]; err != nil {
		return canary.Stats{}, err
	}
	if !ok || st.Requests == 0 {
		return canary.Stats{Window: window}, canary.ErrNoData
	}
	return st, nil
}

// recorder keeps every decision the observer is told of.
type recorder struct {
	mu        sync.Mutex
	decisions []canary.Decision
	last      canary.State
	bakes     chan error
}

func newRecorder() *recorder { return &recorder{bakes: make(chan error, 4)} }

func (r *recorder) observe(_ context.Context, st canary.State, d canary.Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.decisions = append(r.decisions, d)
	r.last = st
}

func (r *recorder) bakeEnded(_ context.Context, _ canary.State, err error) { r.bakes <- err }

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.decisions {
		out = append(out, string(d.Action))
	}
	return out
}

func (r *recorder) weights() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, d := range r.decisions {
		if d.Action == canary.ActionAdvance || d.Action == canary.ActionPromote {
			out = append(out, d.Weight)
		}
	}
	return out
}

// newRouter returns a real mesh with service "svc" at v1 (100%) and v2
// (the canary, 0%) behind it; the upstream is never called.
func newRouter(t *testing.T) *mesh.Mesh {
	t.Helper()
	m, err := mesh.New(mesh.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	ctx := context.Background()
	if _, err := m.AddService(ctx, mesh.ServiceConfig{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "svc", mesh.Subset{Name: "v1", Endpoints: []string{"127.0.0.1:9"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "svc", mesh.Subset{Name: "v2", Canary: true, Endpoints: []string{"127.0.0.1:9"}}); err != nil {
		t.Fatal(err)
	}
	return m
}

func weightsOf(t *testing.T, r canary.Router) map[string]int {
	t.Helper()
	w, err := r.Weights(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range w {
		if v == 0 {
			delete(w, k)
		}
	}
	return w
}

// shifter is the adapter the wiring puts between the orchestrator and
// the analysis: deploy imports canary, so it lives on deploy's side.
type shifter struct{ a *canary.Analysis }

var _ deploy.Shifter = shifter{}

func (s shifter) Describe(service, version string) string { return s.a.Describe(service, version) }

func (s shifter) Shift(ctx context.Context, req deploy.ShiftRequest) error {
	return s.a.Shift(ctx, canary.ShiftRequest{Service: req.Service, Version: req.Version, Old: req.Old, Router: req.Router})
}

// deployReq is what the orchestrator passes for svc's v2 replacing v1,
// with the local target's router over the mesh.
func deployReq(m *mesh.Mesh) deploy.ShiftRequest {
	return deploy.ShiftRequest{Service: "svc", Version: "v2", Old: []string{"v1"}, Router: &local.MeshRouter{Mesh: m}}
}

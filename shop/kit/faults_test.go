package kit_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

// faultApp starts a kit app with faults and one route of its own, GET /items.
func faultApp(t *testing.T, faults kit.Faults, draw func() float64) *kit.App {
	t.Helper()
	cfg := kittest.SQLiteEnv(t).Config(t, "faulty-service")
	cfg.Faults = faults
	cfg.FaultDraw = draw
	app, err := kit.Start(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	app.Mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) {
		kit.WriteJSON(w, http.StatusOK, map[string]string{"items": "none"})
	})
	app.Serve()
	return app
}

// seeded is a deterministic draw safe for concurrent use, counting its
// calls.
type seeded struct {
	mu sync.Mutex
	r  *rand.Rand
	n  int
}

func newSeeded(seed uint64) *seeded { return &seeded{r: rand.New(rand.NewPCG(seed, 15))} }

func (s *seeded) draw() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.r.Float64()
}

func (s *seeded) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// http.error_rate fails the requests whose draw falls below the rate with
// a 500, on every route but the probes, which draw nothing.
func TestFaultHTTPErrorRate(t *testing.T) {
	const rate, n, seed = 0.3, 400, 42
	src := newSeeded(seed)
	app := faultApp(t, kit.Faults{HTTPErrorRate: rate}, src.draw)

	for _, probe := range []string{"/health", "/ready"} {
		for range 50 {
			if r := kittest.Call(t, "GET", app.URL()+probe, "", nil); r.Status != http.StatusOK {
				t.Fatalf("%s = %d %s: a probe must never fail on purpose", probe, r.Status, r.Body)
			}
		}
	}
	if c := src.calls(); c != 0 {
		t.Fatalf("the probes drew %d times, want 0", c)
	}

	twin := rand.New(rand.NewPCG(seed, 15)) // the same draws, to know which requests must fail
	failed := 0
	for i := range n {
		r := kittest.Call(t, "GET", app.URL()+"/items", "", nil)
		wantFail := twin.Float64() < rate
		switch {
		case wantFail && (r.Status != http.StatusInternalServerError || r.ErrorCode() != "injected_fault"):
			t.Fatalf("request %d: %d %s, want 500 injected_fault", i, r.Status, r.Body)
		case !wantFail && r.Status != http.StatusOK:
			t.Fatalf("request %d: %d %s, want 200", i, r.Status, r.Body)
		}
		if r.Status == http.StatusInternalServerError {
			failed++
		}
	}
	// The seeded draws are uniform: the failures stay within 4.5 standard
	// deviations of rate × n (bounds that hold for any sound source).
	sd := math.Sqrt(n * rate * (1 - rate))
	if lo, hi := n*rate-4.5*sd, n*rate+4.5*sd; float64(failed) < lo || float64(failed) > hi {
		t.Errorf("%d of %d requests failed, want within [%.0f, %.0f]", failed, n, lo, hi)
	}
	// The fault stands in front of every route, unknown ones included.
	want := http.StatusNotFound
	if twin.Float64() < rate {
		want = http.StatusInternalServerError
	}
	if r := kittest.Call(t, "GET", app.URL()+"/nowhere", "", nil); r.Status != want {
		t.Errorf("/nowhere = %d, want %d", r.Status, want)
	}
	if c := src.calls(); c != n+1 {
		t.Errorf("%d draws for %d requests to routes that are not probes", c, n+1)
	}
}

// The default draw (math/rand/v2) applies the rate too: at 1 every request
// but the probes fails.
func TestFaultHTTPErrorRateAll(t *testing.T) {
	app := faultApp(t, kit.Faults{HTTPErrorRate: 1}, nil)
	for range 20 {
		if r := kittest.Call(t, "GET", app.URL()+"/items", "", nil); r.Status != http.StatusInternalServerError {
			t.Fatalf("/items = %d, want 500 at http.error_rate=1", r.Status)
		}
	}
	for _, probe := range []string{"/health", "/ready"} {
		if r := kittest.Call(t, "GET", app.URL()+probe, "", nil); r.Status != http.StatusOK {
			t.Errorf("%s = %d, want 200", probe, r.Status)
		}
	}
}

// http.latency delays every route but the probes.
func TestFaultHTTPLatency(t *testing.T) {
	t.Run("added to routes", func(t *testing.T) {
		const d = 100 * time.Millisecond
		app := faultApp(t, kit.Faults{HTTPLatency: d}, nil)
		for range 3 {
			start := time.Now()
			if r := kittest.Call(t, "GET", app.URL()+"/items", "", nil); r.Status != http.StatusOK {
				t.Fatalf("/items = %d %s", r.Status, r.Body)
			}
			if took := time.Since(start); took < d {
				t.Errorf("/items answered in %v, before http.latency=%v", took, d)
			}
		}
	})
	t.Run("probes untouched", func(t *testing.T) {
		// An hour: a probe that waited would never answer within the test.
		app := faultApp(t, kit.Faults{HTTPLatency: time.Hour}, nil)
		for _, probe := range []string{"/health", "/ready"} {
			if r := kittest.Call(t, "GET", app.URL()+probe, "", nil); r.Status != http.StatusOK {
				t.Errorf("%s = %d, want 200", probe, r.Status)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", app.URL()+"/items", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatalf("/items answered %d under http.latency=1h", resp.StatusCode)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("/items: %v, want the client's deadline", err)
		}
	})
}

package mesh

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// waitFor spins (yielding) until cond holds; the test's own deadline
// bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestRemoveSubsetDrainsUnderLoad(t *testing.T) {
	m := newTestMesh(t, Config{})
	gate := make(chan struct{})
	var held atomic.Int64
	old := newUpstream(t, "old", func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-gate // in flight until the test lets go
		_, _ = io.WriteString(w, "old")
	})
	next := newUpstream(t, "new", nil)
	url := addService(t, m, ServiceConfig{Name: "payment-service"},
		Subset{Name: "v1", Endpoints: []string{old.addr()}},
		Subset{Name: "v2", Endpoints: []string{next.addr()}},
	)
	ctx := context.Background()
	if err := m.SetWeights(ctx, "payment-service", map[string]int{"v1": 50, "v2": 50}); err != nil {
		t.Fatal(err)
	}

	// The load: 6 workers sending requests until told to stop.
	const workers = 6
	var stop atomic.Bool
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r, err := doErr("POST", url+"/charge", nil, `{"amount":1}`)
				if err == nil && r.status == 200 {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				mu.Lock()
				failures = append(failures, strings.TrimSpace(r.body)+" "+errString(err))
				mu.Unlock()
			}
		}()
	}
	// Every worker ends up holding a request in v1.
	waitFor(t, "requests in flight on v1", func() bool { return held.Load() == workers })

	removed := make(chan error, 1)
	go func() { removed <- m.RemoveSubset(ctx, "payment-service", "v1") }()
	waitFor(t, "v1 out of the table", func() bool {
		subs, _ := m.Subsets("payment-service")
		return len(subs) == 1
	})
	select {
	case err := <-removed:
		t.Fatalf("RemoveSubset returned (%v) while %d requests were in flight", err, held.Load())
	default:
	}
	close(gate)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	// The load keeps running on v2 alone.
	base := next.hits.Load()
	waitFor(t, "load on v2", func() bool { return next.hits.Load() > base+200 })
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the drain: %v", failed.Load(), ok.Load()+failed.Load(), failures)
	}
	if got := old.hits.Load(); got != workers {
		t.Errorf("v1 got %d requests, want the %d held ones and none after its removal", got, workers)
	}
	if w, _ := m.Weights(ctx, "payment-service"); !cmp.Equal(w, map[string]int{"v2": 50}) {
		t.Errorf("weights after removal: %v", w)
	}
}

func TestRemoveSubsetWaitsForContext(t *testing.T) {
	m := newTestMesh(t, Config{})
	gate := make(chan struct{})
	defer close(gate)
	var held atomic.Int64
	slow := newUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-gate
	})
	url := addService(t, m, ServiceConfig{Name: "shipping-service"}, Subset{Name: "v1", Endpoints: []string{slow.addr()}})
	go func() { _, _ = doErr("GET", url, nil, "") }()
	waitFor(t, "request in flight", func() bool { return held.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := m.RemoveSubset(ctx, "shipping-service", "v1")
	if err == nil || !strings.Contains(err.Error(), "1 requests still in flight") {
		t.Errorf("RemoveSubset with a done context: %v, want the in-flight count", err)
	}
}

func TestRemoveSubsetRefusesToDropAllTraffic(t *testing.T) {
	m := newTestMesh(t, Config{})
	a, b := newUpstream(t, "a", nil), newUpstream(t, "b", nil)
	addService(t, m, ServiceConfig{Name: "user-service"},
		Subset{Name: "v1", Endpoints: []string{a.addr()}},
		Subset{Name: "v2", Endpoints: []string{b.addr()}})
	err := m.RemoveSubset(context.Background(), "user-service", "v1")
	if err == nil || !strings.Contains(err.Error(), "shift the weights first") {
		t.Errorf("removing the only weighted subset: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// hangup is an upstream that reads the request and closes the connection
// without answering: the request reached it.
func hangup(t *testing.T) *upstream {
	u := newUpstream(t, "hangup", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = c.Close()
	})
	return u
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		body      string
		bad       func(t *testing.T) (addr string, hits func() int64)
		wantOK    bool
		wantBadAt int64 // requests the bad endpoint saw per request sent to it
	}{
		{"GET after connection refused", "GET", "", refused, true, 0},
		{"POST after connection refused (never sent)", "POST", `{"a":1}`, refused, true, 0},
		{"GET after the upstream hung up", "GET", "", hungUp, true, 1},
		{"GET after a 503", "GET", "", unavailable, true, 1},
		{"POST that reached the upstream and it hung up", "POST", `{"a":1}`, hungUp, false, 1},
		{"POST that got a 503", "POST", `{"a":1}`, unavailable, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMesh(t, Config{Outlier: OutlierConfig{Consecutive: -1}})
			good := newUpstream(t, "good", nil)
			badAddr, badHits := tc.bad(t)
			url := addService(t, m, ServiceConfig{Name: "inventory-service"},
				Subset{Name: "v1", Endpoints: []string{badAddr, good.addr()}})
			okCount, failCount := 0, 0
			const n = 10
			for range n {
				r := do(t, tc.method, url+"/stock", nil, tc.body)
				if r.status == 200 {
					okCount++
				} else {
					failCount++
				}
			}
			retries := m.metrics.retries("inventory-service").n.Load()
			if tc.wantOK {
				if failCount != 0 {
					t.Errorf("%d of %d failed, want all retried to success", failCount, n)
				}
				if retries == 0 {
					t.Error("no retry counted")
				}
			} else {
				if failCount == 0 {
					t.Errorf("every request succeeded: the POST was retried after reaching the upstream")
				}
				if retries != 0 {
					t.Errorf("%d retries counted, want none", retries)
				}
				if got := badHits(); got != int64(failCount) {
					t.Errorf("bad endpoint saw %d requests for %d failures: each must reach it exactly once", got, failCount)
				}
			}
			if tc.wantBadAt == 0 && badHits() != 0 {
				t.Errorf("refused endpoint counted %d hits", badHits())
			}
		})
	}
}

func refused(t *testing.T) (string, func() int64) { return deadAddr(t), func() int64 { return 0 } }

func hungUp(t *testing.T) (string, func() int64) {
	u := hangup(t)
	return u.addr(), u.hits.Load
}

func unavailable(t *testing.T) (string, func() int64) {
	u := newUpstream(t, "503", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	return u.addr(), u.hits.Load
}

func TestRetryBudgetBoundsRetries(t *testing.T) {
	clock := newClock()
	m := newTestMesh(t, Config{Now: clock.Now, Retry: RetryConfig{Attempts: 3, BudgetRatio: 0.1, MinPerSecond: 0.0001}, Outlier: OutlierConfig{Consecutive: -1}})
	a := newUpstream(t, "down-a", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	b := newUpstream(t, "down-b", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	url := addService(t, m, ServiceConfig{Name: "search-service"}, Subset{Name: "v1", Endpoints: []string{a.addr(), b.addr()}})
	const n = 200
	for range n {
		if r := do(t, "GET", url, nil, ""); r.status != 503 {
			t.Fatalf("status %d, want the upstream's 503", r.status)
		}
	}
	attempts := a.hits.Load() + b.hits.Load()
	// Without the budget: 4 attempts each (800). With it: ~10% more.
	if attempts > n+n/10+2 {
		t.Errorf("%d attempts for %d requests: retries amplified the outage past the 10%% budget", attempts, n)
	}
	if attempts <= n {
		t.Errorf("%d attempts for %d requests: the budget allowed no retry at all", attempts, n)
	}
}

func TestRouteTimeout(t *testing.T) {
	m := newTestMesh(t, Config{})
	gate := make(chan struct{})
	defer close(gate)
	up := newUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	zero := 0
	url := addService(t, m, ServiceConfig{Name: "analytics-service", Routes: []Route{{PathPrefix: "/slow", Timeout: 50 * time.Millisecond, Retries: &zero}}},
		Subset{Name: "v1", Endpoints: []string{up.addr()}})
	if r := do(t, "GET", url+"/slow", nil, ""); r.status != http.StatusGatewayTimeout {
		t.Errorf("/slow: status %d, want 504", r.status)
	}
	if r := do(t, "GET", url+"/slowly", nil, ""); r.status != 200 {
		t.Errorf("/slowly (not under /slow): status %d, want 200", r.status)
	}
}

func TestOutlierEjectionEjectsAndRestores(t *testing.T) {
	clock := newClock()
	m := newTestMesh(t, Config{Now: clock.Now, Outlier: OutlierConfig{Consecutive: 3, BaseEjection: 30 * time.Second}})
	bad := newUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	good := newUpstream(t, "good", nil)
	url := addService(t, m, ServiceConfig{Name: "notification-service"},
		Subset{Name: "v1", Endpoints: []string{bad.addr(), good.addr()}})

	for bad.hits.Load() < 3 {
		do(t, "GET", url, nil, "")
	}
	// Ejected: the next requests all go to the good endpoint.
	for i := range 20 {
		if r := do(t, "GET", url, nil, ""); r.status != 200 {
			t.Fatalf("request %d after ejection: status %d", i, r.status)
		}
	}
	if got := bad.hits.Load(); got != 3 {
		t.Errorf("ejected endpoint got %d requests, want 3", got)
	}
	if got := m.metrics.ejections("notification-service", "v1", bad.addr()).n.Load(); got != 1 {
		t.Errorf("ejections counted %d, want 1", got)
	}
	wantStatus := []ServiceStatus{{Name: "notification-service", Addr: strings.TrimPrefix(url, "http://"), Subsets: []SubsetStatus{{
		Name: "v1", Weight: 100, Endpoints: []EndpointStatus{
			{Addr: bad.addr(), EjectedUntil: clock.Now().Add(30 * time.Second)},
			{Addr: good.addr()},
		},
	}}}}
	// The ejection started at the clock's time, which has not moved.
	if diff := cmp.Diff(wantStatus, m.Status()); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
	// Restored after the ejection time.
	clock.Add(31 * time.Second)
	for range 4 {
		do(t, "GET", url, nil, "")
	}
	if got := bad.hits.Load(); got <= 3 {
		t.Errorf("endpoint not restored after its ejection: %d hits", got)
	}
}

func TestOutlierEjectionNeverEjectsTheLast(t *testing.T) {
	clock := newClock()
	m := newTestMesh(t, Config{Now: clock.Now, Outlier: OutlierConfig{Consecutive: 2}})
	bad := newUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	url := addService(t, m, ServiceConfig{Name: "cart-service"}, Subset{Name: "v1", Endpoints: []string{bad.addr()}})
	for range 10 {
		if r := do(t, "GET", url, nil, ""); r.status != 500 {
			t.Fatalf("status %d, want the upstream's 500 (the only endpoint keeps serving)", r.status)
		}
	}
	if got := bad.hits.Load(); got != 10 {
		t.Errorf("only endpoint got %d of 10 requests", got)
	}
}

func TestAddAndRemoveEndpoints(t *testing.T) {
	m := newTestMesh(t, Config{})
	a, b := newUpstream(t, "a", nil), newUpstream(t, "b", nil)
	url := addService(t, m, ServiceConfig{Name: "product-service"})
	ctx := context.Background()
	for _, addr := range []string{a.addr(), b.addr(), b.addr()} { // the repeat is a no-op
		if err := m.AddEndpoint(ctx, "product-service", "v1", addr); err != nil {
			t.Fatal(err)
		}
	}
	subs, _ := m.Subsets("product-service")
	if diff := cmp.Diff([]Subset{{Name: "v1", Endpoints: []string{a.addr(), b.addr()}}}, subs); diff != "" {
		t.Errorf("after adds (-want +got):\n%s", diff)
	}
	for range 10 {
		do(t, "GET", url, nil, "")
	}
	if a.hits.Load() != 5 || b.hits.Load() != 5 {
		t.Errorf("round robin: a %d, b %d", a.hits.Load(), b.hits.Load())
	}
	if err := m.RemoveEndpoint(ctx, "product-service", "v1", a.addr()); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if r := do(t, "GET", url, nil, ""); r.body != "b" {
			t.Fatalf("served by %q after a's removal", r.body)
		}
	}
	if err := m.RemoveEndpoint(ctx, "product-service", "v1", a.addr()); err == nil {
		t.Error("removing a missing endpoint succeeded")
	}
	if err := m.AddEndpoint(ctx, "product-service", "v1", "nohost"); err == nil {
		t.Error("AddEndpoint accepted an address without a port")
	}
}

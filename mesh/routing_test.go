package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/google/go-cmp/cmp"
)

// serveCount sends n GETs straight into the service's handler (the mesh's
// own listener is left out to keep the suite fast; the upstreams are real
// servers) and counts the answers by the subset that served them.
func serveCount(t *testing.T, h http.Handler, n int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for i := w; i < n; i += 4 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/orders", nil))
				key := rec.Header().Get(UpstreamVersionHeader)
				if rec.Code != 200 {
					key = "status"
				}
				local[key]++
			}
			mu.Lock()
			for k, v := range local {
				got[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return got
}

// sendCount sends n GETs from 8 workers and counts the answers by the
// subset that served them.
func sendCount(t *testing.T, url string, n int, hdr map[string]string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				r, err := doErr("GET", url, hdr, "")
				if err != nil {
					errs <- err
					return
				}
				key := r.version
				if r.status != 200 {
					key = "status"
				}
				mu.Lock()
				got[key]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return got
}

func TestWeightsAreHonoured(t *testing.T) {
	m := newTestMesh(t, Config{})
	s1, s2 := newUpstream(t, "stable-1", nil), newUpstream(t, "stable-2", nil)
	c1 := newUpstream(t, "canary-1", nil)
	addService(t, m, ServiceConfig{Name: "order-service"},
		Subset{Name: "v1", Endpoints: []string{s1.addr(), s2.addr()}},
		Subset{Name: "v2", Canary: true, Endpoints: []string{c1.addr()}},
	)
	h, err := m.Handler("order-service")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		weights map[string]int
		n       int
	}{
		{map[string]int{"v1": 95, "v2": 5}, 10000}, // the scenario's VirtualService
		{map[string]int{"v1": 70, "v2": 30}, 500},
		{map[string]int{"v1": 1, "v2": 2}, 600},
		{map[string]int{"v1": 0, "v2": 100}, 500},
		{map[string]int{"v1": 100}, 500},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			if err := m.SetWeights(ctx, "order-service", tc.weights); err != nil {
				t.Fatal(err)
			}
			got := serveCount(t, h, tc.n)
			total := 0
			for _, w := range tc.weights {
				total += w
			}
			for _, name := range []string{"v1", "v2"} {
				want := float64(tc.weights[name]) / float64(total)
				share := float64(got[name]) / float64(tc.n)
				if share < want-0.03 || share > want+0.03 {
					t.Errorf("%s got %.2f%% of %d requests, want %.2f%% ±3%% (counts %v)", name, share*100, tc.n, want*100, got)
				}
			}
			if got["status"] != 0 {
				t.Errorf("%d requests failed", got["status"])
			}
		})
	}
	// Both stable endpoints served.
	if s1.hits.Load() == 0 || s2.hits.Load() == 0 {
		t.Errorf("round robin within the subset: hits %d and %d", s1.hits.Load(), s2.hits.Load())
	}
	w, err := m.Weights(ctx, "order-service")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"v1": 100, "v2": 0}, w); diff != "" {
		t.Errorf("Weights (-want +got):\n%s", diff)
	}
}

func TestSmoothScheduleIsExactPerPeriod(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int
	}{
		{[]int{95, 5}, []int{19, 1}},
		{[]int{50, 50}, []int{1, 1}},
		{[]int{0, 100}, []int{0, 1}},
		{[]int{3, 0, 7}, []int{3, 0, 7}},
		{[]int{0, 0}, []int{0, 0}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			got := make([]int, len(tc.weights))
			for _, i := range buildSchedule(tc.weights) {
				got[i]++
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("counts per period (-want +got):\n%s", diff)
			}
		})
	}
	// Spread evenly: with 95/5 the canary is never picked twice within 10.
	s := buildSchedule([]int{90, 10})
	last := -100
	for i, v := range s {
		if v == 1 {
			if i-last < 9 {
				t.Fatalf("canary picked at %d and %d: not smooth: %v", last, i, s)
			}
			last = i
		}
	}
}

func TestLanesAndPinsWinOverWeights(t *testing.T) {
	m := newTestMesh(t, Config{})
	st, ca := newUpstream(t, "stable", nil), newUpstream(t, "canary", nil)
	url := addService(t, m, ServiceConfig{Name: "order-service"},
		Subset{Name: "v1", Endpoints: []string{st.addr()}},
		Subset{Name: "v2", Canary: true, Endpoints: []string{ca.addr()}},
	)
	ctx := context.Background()
	for _, weights := range []map[string]int{{"v1": 100, "v2": 0}, {"v1": 0, "v2": 100}, {"v1": 50, "v2": 50}} {
		if err := m.SetWeights(ctx, "order-service", weights); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			hdr  map[string]string
			want string
		}{
			{"canary lane", map[string]string{"x-canary": "true"}, "v2"},
			{"canary lane any case", map[string]string{"X-Canary": "TRUE"}, "v2"},
			{"pin stable", map[string]string{"x-flotilla-version": "v1"}, "v1"},
			{"pin canary", map[string]string{"x-flotilla-version": "v2"}, "v2"},
			{"pin wins over lane", map[string]string{"x-flotilla-version": "v1", "x-canary": "true"}, "v1"},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprint(weights)+"/"+tc.name, func(t *testing.T) {
				got := sendCount(t, url, 40, tc.hdr)
				if diff := cmp.Diff(map[string]int{tc.want: 40}, got); diff != "" {
					t.Errorf("served by (-want +got):\n%s", diff)
				}
			})
		}
	}
	if r := do(t, "GET", url, map[string]string{"x-flotilla-version": "v9"}, ""); r.status != 503 {
		t.Errorf("pin to an unknown version: status %d, want 503", r.status)
	}
	// Without a canary subset the lane falls back to the weights.
	if err := m.SetSubset(ctx, "order-service", Subset{Name: "v2", Endpoints: []string{ca.addr()}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetWeights(ctx, "order-service", map[string]int{"v1": 100}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", url, map[string]string{"x-canary": "true"}, ""); r.version != "v1" {
		t.Errorf("lane without a canary subset went to %q, want v1", r.version)
	}
}

func TestControlErrors(t *testing.T) {
	m := newTestMesh(t, Config{})
	up := newUpstream(t, "u", nil)
	cartURL := addService(t, m, ServiceConfig{Name: "cart-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
	ctx := context.Background()
	if err := m.SetWeights(ctx, "nope", map[string]int{"v1": 1}); !errors.Is(err, canary.ErrUnknownService) {
		t.Errorf("unknown service: %v, want ErrUnknownService", err)
	}
	if _, err := m.Weights(ctx, "nope"); !errors.Is(err, canary.ErrUnknownService) {
		t.Errorf("Weights of unknown service: %v", err)
	}
	tests := []struct {
		name    string
		weights map[string]int
		want    error
	}{
		{"unknown subset", map[string]int{"v9": 100}, ErrUnknownSubset},
		{"negative", map[string]int{"v1": -1}, nil},
		{"all zero", map[string]int{"v1": 0}, nil},
		{"too large", map[string]int{"v1": 20000}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := m.SetWeights(ctx, "cart-service", tc.weights)
			if err == nil {
				t.Fatal("SetWeights accepted it")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := m.AddService(ctx, ServiceConfig{Name: "cart-service"}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate service: %v", err)
	}
	bad := []Subset{
		{Name: "", Endpoints: []string{up.addr()}},
		{Name: "v2", Endpoints: []string{"no-port"}},
		{Name: "v2", Endpoints: []string{up.addr(), up.addr()}},
		{Name: `v"2`, Endpoints: []string{up.addr()}},
		{Name: "v2", Endpoints: []string{strings.TrimPrefix(cartURL, "http://")}}, // a loop
	}
	for _, s := range bad {
		if err := m.SetSubset(ctx, "cart-service", s); err == nil {
			t.Errorf("SetSubset(%+v) accepted it", s)
		}
	}
	if err := m.RemoveSubset(ctx, "cart-service", "v9"); !errors.Is(err, ErrUnknownSubset) {
		t.Errorf("remove unknown subset: %v", err)
	}
	if _, err := New(Config{Authz: AuthzConfig{Mode: "strict"}}); err == nil {
		t.Error("New accepted an unknown authz mode")
	}
	if _, err := m.AddService(ctx, ServiceConfig{Name: "x", Routes: []Route{{PathPrefix: "orders"}}}); err == nil {
		t.Error("AddService accepted a route without a leading /")
	}
}

func TestEmptyServiceIs503(t *testing.T) {
	m := newTestMesh(t, Config{})
	url := addService(t, m, ServiceConfig{Name: "search-service"})
	if r := do(t, "GET", url+"/x", nil, ""); r.status != 503 {
		t.Errorf("status %d, want 503", r.status)
	}
}

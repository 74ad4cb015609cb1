package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/canary/prometheus"
	"github.com/flotilla-ci/flotilla/canary/prometheus/prometheustest"
	"github.com/flotilla-ci/flotilla/mesh"
)

// The mesh's latency buckets (upper bounds, seconds), as it exposes them.
var meshBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// bucketWidth is the width of the mesh bucket d falls in.
func bucketWidth(d time.Duration) time.Duration {
	lo := 0.0
	for _, hi := range meshBuckets {
		if d.Seconds() <= hi {
			return time.Duration((hi - lo) * 1e9)
		}
		lo = hi
	}
	return time.Duration(lo * 1e9)
}

// poll calls cond until it returns true, failing the test after limit.
func poll(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, limit, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The provider's figures agree with the mesh's own for the same version
// and window, from a real Prometheus scraping a real mesh's /metrics while
// requests flow through it to a healthy version and one failing 30% of its
// requests: the Prometheus provider reaches the same verdicts as the
// built-in one. The control plane's /metrics is this same handler
// (controlplane serves the mesh's MetricsHandler there), so this is what a
// Prometheus pointed at the control plane scrapes.
func TestStatsAgreeWithTheMesh(t *testing.T) {
	ctx := context.Background()
	const svc = "product-service"
	m, err := mesh.New(mesh.Config{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Outlier: mesh.OutlierConfig{Consecutive: -1}, // the failing version keeps its share
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(ctx) }()
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer stable.Close()
	var n atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		time.Sleep(time.Duration(5+5*(i%4)) * time.Millisecond) // slower too: 5 to 20 ms
		if i%10 < 3 {
			http.Error(w, "broken on purpose", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer bad.Close()
	addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: svc})
	if err != nil {
		t.Fatal(err)
	}
	host := func(s *httptest.Server) []string { return []string{strings.TrimPrefix(s.URL, "http://")} }
	if err := m.SetSubset(ctx, svc, mesh.Subset{Name: "v1", Endpoints: host(stable)}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, svc, mesh.Subset{Name: "v2", Canary: true, Endpoints: host(bad)}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetWeights(ctx, svc, map[string]int{"v1": 50, "v2": 50}); err != nil {
		t.Fatal(err)
	}
	metrics := httptest.NewServer(m.MetricsHandler())
	defer metrics.Close()

	prom := prometheustest.Start(t, metrics.URL+"/metrics")
	p, err := prometheus.New(prometheus.Config{URL: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "Prometheus scrapes the mesh", func() (bool, string) {
		v, err := p.Query(ctx, `max(up)`, time.Time{})
		return err == nil && v == 1, fmt.Sprint(v, err)
	})

	// Traffic spread over many scrapes (Prometheus sees a counter only
	// from its first scrape on): 40 rounds of 20 requests, one round every
	// 250 ms.
	const rounds = 40
	start := time.Now()
	var mu sync.Mutex
	served := map[string]int64{}
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	for range rounds {
		<-tick.C
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 5 {
					resp, err := client.Get("http://" + addr + "/items")
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					mu.Lock()
					served[resp.Header.Get("X-Flotilla-Upstream-Version")]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	tick.Stop()
	traffic := time.Since(start)
	if served["v1"] == 0 || served["v2"] == 0 || served["v1"]+served["v2"] != rounds*20 {
		t.Fatalf("served by version: %v", served)
	}
	// Wait until Prometheus holds the final counts.
	for _, v := range []string{"v1", "v2"} {
		q := fmt.Sprintf(`sum(flotilla_mesh_requests_total{destination=%q,version=%q})`, svc, v)
		poll(t, time.Minute, "Prometheus scrapes the last requests of "+v, func() (bool, string) {
			got, err := p.Query(ctx, q, time.Time{})
			return err == nil && int64(got) == served[v], fmt.Sprintf("%v %v, want %d", got, err, served[v])
		})
	}

	// One window covering all the traffic, in the mesh's 5 s slots, with
	// room for the seconds the queries below may take on a busy machine.
	window := (time.Since(start) + 15*time.Second).Truncate(5 * time.Second)
	const maxErrorRate = 0.01
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			want, err := m.Stats(ctx, svc, v, window)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Stats(ctx, svc, v, window)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mesh %+v\nprometheus %+v", want, got)
			if want.Requests != served[v] {
				t.Fatalf("the mesh counted %d requests of %s, the clients %d", want.Requests, v, served[v])
			}
			// What scrape timing allows: a series' requests before its
			// first scrape are not seen, and increase() extrapolates past
			// the first and last samples in the window, by up to about a
			// scrape interval each; so counts agree within two and a half
			// intervals' worth of this version's traffic.
			near := func(what string, got, want int64) {
				perScrape := float64(want) / traffic.Seconds() * prometheustest.ScrapeInterval.Seconds()
				if d := math.Abs(float64(got - want)); d > 2.5*perScrape+3 {
					t.Errorf("%s: prometheus %d, mesh %d (%.0f a scrape interval)", what, got, want, perScrape)
				}
			}
			near("requests", got.Requests, want.Requests)
			near("errors", got.Errors, want.Errors)
			if d := math.Abs(got.ErrorRate - want.ErrorRate); d > 0.05 {
				t.Errorf("error rate: prometheus %.3f, mesh %.3f", got.ErrorRate, want.ErrorRate)
			}
			if (got.ErrorRate > maxErrorRate) != (want.ErrorRate > maxErrorRate) {
				t.Errorf("verdicts differ at max_error_rate %v: prometheus %.3f, mesh %.3f", maxErrorRate, got.ErrorRate, want.ErrorRate)
			}
			if failing := want.ErrorRate > maxErrorRate; failing != (v == "v2") {
				t.Errorf("mesh error rate of %s: %.3f", v, want.ErrorRate)
			}
			for _, q := range []struct {
				name      string
				got, want time.Duration
			}{{"p50", got.P50, want.P50}, {"p90", got.P90, want.P90}, {"p99", got.P99, want.P99}} {
				if d := (q.got - q.want).Abs(); d > bucketWidth(q.want) {
					t.Errorf("%s: prometheus %v, mesh %v: more than a bucket apart", q.name, q.got, q.want)
				}
			}
			if got.Window != window {
				t.Errorf("window %v, want %v", got.Window, window)
			}

			// The histogram, for a rank test: the mesh's buckets, its
			// requests, and its median where histogram_quantile put it.
			bounds, counts, err := p.Buckets(ctx, svc, v, window)
			if err != nil {
				t.Fatal(err)
			}
			if len(bounds) != len(meshBuckets) || len(counts) != len(bounds)+1 {
				t.Fatalf("%d bounds, %d counts, want the mesh's %d buckets and +Inf", len(bounds), len(counts), len(meshBuckets))
			}
			var total, cum int64
			for i, b := range meshBuckets {
				if bounds[i] != time.Duration(b*1e9) {
					t.Errorf("bound %d = %v, want %vs", i, bounds[i], b)
				}
			}
			for _, c := range counts {
				total += c
			}
			near("histogram total", total, want.Requests)
			for i, c := range counts[:len(bounds)] {
				cum += c
				if 2*cum >= total {
					if got.P50 > bounds[i] || (i > 0 && got.P50 < bounds[i-1]) {
						t.Errorf("p50 %v outside the bucket holding the median, up to %v", got.P50, bounds[i])
					}
					break
				}
			}
		})
	}
	// A version nothing reached: no data, for both.
	if _, err := m.Stats(ctx, svc, "v3", window); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("mesh, unknown version: %v", err)
	}
	if _, err := p.Stats(ctx, svc, "v3", window); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("prometheus, unknown version: %v, want ErrNoData", err)
	}
}

// istioExposition serves Istio's standard metrics as sidecars expose
// them, growing at every scrape: reviews v2 in namespace shop answers 10
// requests a scrape, 3 of them 503, half under 10 ms and all under 100 ms;
// v1 answers 10, all fast. Series the built-in queries must leave out: what
// the callers' sidecars report (reporter="source"), and reviews v2 in
// another namespace, failing every request.
func istioExposition() http.Handler {
	var scrapes atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := scrapes.Add(1)
		dst := func(ns, version string) string {
			return fmt.Sprintf(`reporter="destination",destination_service_name="reviews",destination_workload="reviews-%s",destination_workload_namespace=%q,destination_version=%q`, version, ns, version)
		}
		src := `reporter="source",source_workload="productpage-v1",destination_service_name="reviews",destination_workload_namespace="shop",destination_version="v2"`
		var b strings.Builder
		b.WriteString("# TYPE istio_requests_total counter\n")
		fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"200\"} %d\n", dst("shop", "v2"), 7*k)
		fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"503\"} %d\n", dst("shop", "v2"), 3*k)
		fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"200\"} %d\n", dst("shop", "v1"), 10*k)
		fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"500\"} %d\n", dst("other", "v2"), 9*k)
		fmt.Fprintf(&b, "istio_requests_total{%s,response_code=\"503\"} %d\n", src, 50*k)
		b.WriteString("# TYPE istio_request_duration_milliseconds histogram\n")
		hist := func(labels string, le10, le100 int64) {
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=\"10\"} %d\n", labels, le10)
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=\"100\"} %d\n", labels, le100)
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_bucket{%s,le=\"+Inf\"} %d\n", labels, le100)
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_sum{%s} %d\n", labels, 30*le100)
			fmt.Fprintf(&b, "istio_request_duration_milliseconds_count{%s} %d\n", labels, le100)
		}
		hist(dst("shop", "v2")+`,response_code="200"`, 5*k, 7*k)
		hist(dst("shop", "v2")+`,response_code="503"`, 0, 3*k)
		hist(dst("shop", "v1")+`,response_code="200"`, 10*k, 10*k)
		hist(src, 0, 50*k) // slow, as the caller sees it: not the destination's figure
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, b.String())
	})
}

// The istio flavor reads istio_requests_total and
// istio_request_duration_milliseconds_bucket as the destination reports
// them, in the namespace asked for; Query answers custom judges.
func TestIstioFlavorAndQuery(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(istioExposition())
	defer srv.Close()
	prom := prometheustest.Start(t, srv.URL+"/stats/prometheus")
	p, err := prometheus.New(prometheus.Config{URL: prom.URL, Flavor: prometheus.FlavorIstio, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	const window = 30 * time.Second
	var st canary.Stats
	poll(t, time.Minute, "two scrapes of the istio exposition", func() (bool, string) {
		st, err = p.Stats(ctx, "reviews", "v2", window)
		return err == nil, fmt.Sprint(err)
	})
	// Every series grows in step, so the ratios are exact.
	if math.Abs(st.ErrorRate-0.3) > 1e-9 || st.Requests <= 0 || math.Abs(float64(st.Errors)-0.3*float64(st.Requests)) > 1 {
		t.Errorf("reviews v2 in shop: %+v, want an error rate of 0.3", st)
	}
	// The histogram for the baseline comparison's rank test comes along,
	// one count per bucket and the +Inf one.
	if h := st.Latency; len(h.Bounds) == 0 || len(h.Counts) != len(h.Bounds)+1 {
		t.Errorf("reviews v2: latency histogram %+v, want bounds and one more count", h)
	}
	if !errors.Is(prometheus.ErrBadQuery, canary.ErrBadQuery) {
		t.Error("prometheus.ErrBadQuery does not wrap canary.ErrBadQuery: a refused query would count as a source error")
	}
	// histogram_quantile: half the requests at most 10 ms, the rest spread
	// over (10 ms, 100 ms].
	for _, q := range []struct {
		name      string
		got, want time.Duration
	}{{"p50", st.P50, 10 * time.Millisecond}, {"p90", st.P90, 82 * time.Millisecond}, {"p99", st.P99, 98200 * time.Microsecond}} {
		if d := (q.got - q.want).Abs(); d > time.Microsecond {
			t.Errorf("%s = %v, want %v", q.name, q.got, q.want)
		}
	}
	bounds, counts, err := p.Buckets(ctx, "reviews", "v2", window)
	if err != nil || len(bounds) != 2 || bounds[0] != 10*time.Millisecond || bounds[1] != 100*time.Millisecond ||
		len(counts) != 3 || counts[0] <= 0 || counts[0]-counts[1] > 1 || counts[1]-counts[0] > 1 || counts[2] != 0 {
		t.Errorf("reviews v2 buckets: %v %v %v, want half at most 10ms, half at most 100ms", bounds, counts, err)
	}
	if _, _, err := p.Buckets(ctx, "reviews", "v3", window); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("reviews v3 buckets: %v, want ErrNoData", err)
	}
	if st, err := p.Stats(ctx, "reviews", "v1", window); err != nil || st.ErrorRate != 0 || st.P50 != 5*time.Millisecond {
		t.Errorf("reviews v1: %+v %v, want no errors and a p50 of 5ms", st, err)
	}
	if _, err := p.Stats(ctx, "reviews", "v3", window); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("reviews v3: %v, want ErrNoData", err)
	}
	if _, err := p.Stats(ctx, "ratings", "v2", window); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("ratings v2: %v, want ErrNoData", err)
	}
	// Without a namespace, reviews v2 of namespace other counts too: 12 of
	// 19 requests failed.
	all, err := prometheus.New(prometheus.Config{URL: prom.URL, Flavor: prometheus.FlavorIstio})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := all.Stats(ctx, "reviews", "v2", window); err != nil || math.Abs(st.ErrorRate-12.0/19) > 1e-9 {
		t.Errorf("reviews v2, every namespace: %+v %v, want an error rate of 12/19", st, err)
	}

	if v, err := p.Instant().Query(ctx, `count(istio_requests_total{reporter="source"})`); err != nil || v != 1 {
		t.Errorf("Instant().Query = %v, %v, want 1", v, err)
	}

	t.Run("Query", func(t *testing.T) {
		for _, tc := range []struct {
			query   string
			want    float64
			wantErr error  // errors.Is
			errText string // and its message contains
		}{
			{query: `1 + 1`, want: 2},
			{query: `count(istio_requests_total{reporter="destination"})`, want: 4},
			{query: `sum(rate(istio_requests_total{reporter="destination",destination_version="v2",response_code=~"5.."}[30s])) / sum(rate(istio_requests_total{reporter="destination",destination_version="v2"}[30s]))`},
			{query: `istio_requests_total{destination_version="v1"}`, want: -1}, // one series
			{query: `no_such_metric`, wantErr: canary.ErrNoData, errText: "empty result"},
			{query: `0 / 0`, wantErr: canary.ErrNoData, errText: "NaN"},
			{query: `sum(rate(istio_requests_total[1m]`, wantErr: prometheus.ErrBadQuery, errText: "parse error"},
			{query: `istio_requests_total`, errText: "series"},
			{query: `istio_requests_total[1m]`, errText: "range vector"},
			{query: `"text"`, errText: `"string"`}, // the client refuses a string result itself
		} {
			got, err := p.Query(ctx, tc.query, time.Time{})
			switch {
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Errorf("Query(%s) = %v, %v; want an error (%v) saying %q", tc.query, got, err, tc.wantErr, tc.errText)
				}
				if tc.wantErr == nil && (errors.Is(err, canary.ErrNoData) || errors.Is(err, prometheus.ErrBadQuery)) {
					t.Errorf("Query(%s): %v is not no-data nor a refused query", tc.query, err)
				}
				if !strings.Contains(err.Error(), tc.query) {
					t.Errorf("Query(%s): %v does not name the query", tc.query, err)
				}
			case err != nil:
				t.Errorf("Query(%s): %v", tc.query, err)
			case tc.want > 0 && got != tc.want:
				t.Errorf("Query(%s) = %v, want %v", tc.query, got, tc.want)
			case tc.want == 0 && math.Abs(got-12.0/19) > 1e-9:
				t.Errorf("Query(%s) = %v, want 12/19", tc.query, got)
			}
		}
	})
}

// An unreachable Prometheus is an error: not "no data", not a bad query.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	_ = ln.Close()
	p, err := prometheus.New(prometheus.Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = p.Stats(ctx, "product-service", "v2", time.Minute)
	if err == nil || errors.Is(err, canary.ErrNoData) || errors.Is(err, prometheus.ErrBadQuery) || !strings.Contains(err.Error(), url) {
		t.Errorf("Stats: %v, want an error naming %s", err, url)
	}
	_, err = p.Query(ctx, "up", time.Time{})
	if err == nil || errors.Is(err, canary.ErrNoData) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Query: %v, want connection refused", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  prometheus.Config
		want []string
	}{
		{prometheus.Config{URL: "localhost:9090"}, []string{`prometheus url "localhost:9090": want http://host:port`}},
		{prometheus.Config{URL: "http://p:9090", Flavor: "linkerd"}, []string{`unknown Prometheus flavor "linkerd": want mesh or istio`}},
		{prometheus.Config{URL: "http://p:9090", Namespace: "shop"}, []string{`namespace "shop": only the istio flavor`}},
		{prometheus.Config{URL: "", Timeout: -time.Second}, []string{"prometheus url", "timeout -1s"}},
	} {
		_, err := prometheus.New(tc.cfg)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("New(%+v) = %v, want it to say %q", tc.cfg, err, w)
			}
		}
	}
	p, err := prometheus.New(prometheus.Config{URL: "http://p:9090"})
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if _, err := p.Stats(context.Background(), "s", "v", 0); err == nil || !strings.Contains(err.Error(), "window 0s must be positive") {
		t.Errorf("window 0: %v", err)
	}
}

// The built-in queries, as a user would type them into Prometheus.
func TestQueries(t *testing.T) {
	mp, _ := prometheus.New(prometheus.Config{URL: "http://p:9090"})
	ip, _ := prometheus.New(prometheus.Config{URL: "http://p:9090", Flavor: prometheus.FlavorIstio, Namespace: "shop"})
	for _, tc := range []struct {
		got, want string
	}{
		{mp.Queries("order-service", "3f2a", 90*time.Second).Requests,
			`sum(increase(flotilla_mesh_requests_total{destination="order-service",version="3f2a"}[1m30s]))`},
		{mp.Queries("order-service", "3f2a", 90*time.Second).Errors,
			`sum(increase(flotilla_mesh_requests_total{destination="order-service",version="3f2a",status_class="5xx"}[1m30s]))`},
		{mp.Queries("order-service", "3f2a", 1500*time.Microsecond).P99,
			`histogram_quantile(0.99, sum by (le) (rate(flotilla_mesh_request_duration_seconds_bucket{destination="order-service",version="3f2a"}[2ms])))`},
		{mp.Queries("order-service", "3f2a", time.Minute).Buckets,
			`sum by (le) (increase(flotilla_mesh_request_duration_seconds_bucket{destination="order-service",version="3f2a"}[1m]))`},
		{ip.Queries("reviews", "v2", time.Minute).Errors,
			`sum(increase(istio_requests_total{reporter="destination",destination_service_name="reviews",destination_version="v2",destination_workload_namespace="shop",response_code=~"5.."}[1m]))`},
		{ip.Queries(`we"ird`, "v2", time.Minute).P50,
			`histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_name="we\"ird",destination_version="v2",destination_workload_namespace="shop"}[1m])))`},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
}

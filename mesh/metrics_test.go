package mesh

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var shopPolicy = NewPolicy(map[string][]string{
	"order-service":   {"payment-service", "inventory-service"},
	"payment-service": nil,
})

func TestAuthorizationFromTheGraph(t *testing.T) {
	type call struct {
		caller string // "" sends no header
		status int
	}
	tests := []struct {
		mode    AuthzMode
		unknown UnknownCallers
		calls   []call
		denied  map[string]float64 // source → denied count
	}{
		{AuthzEnforce, UnknownAllow, []call{
			{"order-service", 200}, {"payment-service", 403}, {GatewayCaller, 200}, {"", 200}, {"mystery-service", 200},
		}, map[string]float64{"payment-service": 1}},
		{AuthzEnforce, UnknownDeny, []call{
			{"order-service", 200}, {"payment-service", 403}, {"", 403}, {"mystery-service", 403},
		}, map[string]float64{"payment-service": 1, UnknownCaller: 2}},
		{AuthzWarn, UnknownDeny, []call{
			{"order-service", 200}, {"payment-service", 200}, {"payment-service", 200}, {"", 200},
		}, map[string]float64{"payment-service": 2, UnknownCaller: 1}},
		{AuthzOff, UnknownDeny, []call{
			{"payment-service", 200}, {"", 200},
		}, map[string]float64{}},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode)+"/"+string(tc.unknown), func(t *testing.T) {
			m := newTestMesh(t, Config{Authz: AuthzConfig{Mode: tc.mode, Unknown: tc.unknown, Policy: shopPolicy}})
			up := newUpstream(t, "inventory", nil)
			url := addService(t, m, ServiceConfig{Name: "inventory-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
			for _, c := range tc.calls {
				hdr := map[string]string{}
				if c.caller != "" {
					hdr["x-flotilla-caller"] = c.caller
				}
				r := do(t, "GET", url+"/stock/1", hdr, "")
				if r.status != c.status {
					t.Errorf("caller %q: status %d, want %d (%s)", c.caller, r.status, c.status, r.body)
				}
				if r.status == 403 && !strings.Contains(r.body, "depends_on") {
					t.Errorf("403 body %q does not say what to do", r.body)
				}
			}
			fams := scrape(t, m)
			got := map[string]float64{}
			for _, mt := range fams["flotilla_mesh_authz_denied_total"].GetMetric() {
				l := labelMap(mt)
				if l["destination"] != "inventory-service" || l["mode"] != string(tc.mode) {
					t.Errorf("denied labels %v", l)
				}
				got[l["source"]] += mt.GetCounter().GetValue()
			}
			if diff := cmp.Diff(tc.denied, got); diff != "" {
				t.Errorf("denied counts by source (-want +got):\n%s", diff)
			}
			if got := up.hits.Load(); got != int64(countStatus(tc.calls, 200, func(c call) int { return c.status })) {
				t.Errorf("upstream got %d calls; refused ones must not reach it", got)
			}
		})
	}
}

func countStatus[T any](xs []T, want int, f func(T) int) int {
	n := 0
	for _, x := range xs {
		if f(x) == want {
			n++
		}
	}
	return n
}

func TestPolicyFromTheShopManifest(t *testing.T) {
	file := filepath.Join("..", graph.FileName)
	if _, err := os.Stat(file); err != nil {
		t.Skip("no manifest at the repository root")
	}
	man, _, err := graph.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p := PolicyFromManifest(man)
	for _, s := range man.Services {
		if !p.Known(s.Name) {
			t.Errorf("%s is not a known caller", s.Name)
		}
		for _, d := range s.DependsOn {
			if !p.Allows(s.Name, d) {
				t.Errorf("%s → %s is declared but not allowed", s.Name, d)
			}
		}
		if p.Allows(s.Name, s.Name+"-nope") {
			t.Errorf("%s may call an undeclared service", s.Name)
		}
	}
}

func scrape(t *testing.T, m *Mesh) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, rec.Body.String())
	}
	return fams
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestMetricsCountWhatWasSent(t *testing.T) {
	m := newTestMesh(t, Config{Authz: AuthzConfig{Mode: AuthzWarn, Policy: shopPolicy}})
	up := newUpstream(t, "payment", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(500)
		case "/missing":
			w.WriteHeader(404)
		}
	})
	url := addService(t, m, ServiceConfig{Name: "payment-service"},
		Subset{Name: "v1", Endpoints: []string{up.addr()}},
		Subset{Name: "v2", Canary: true, Endpoints: []string{up.addr()}})
	send := func(n int, path string, hdr map[string]string) {
		for range n {
			do(t, "GET", url+path, hdr, "")
		}
	}
	order := map[string]string{"x-flotilla-caller": "order-service"}
	send(7, "/ok", order)
	send(3, "/fail", map[string]string{"x-flotilla-caller": "order-service", "x-canary": "true"})
	send(2, "/missing", nil)
	send(4, "/ok", map[string]string{"x-flotilla-caller": GatewayCaller, "x-flotilla-version": "v2"})

	fams := scrape(t, m)
	type key struct{ dst, version, src, class string }
	got := map[key]float64{}
	for _, mt := range fams["flotilla_mesh_requests_total"].GetMetric() {
		l := labelMap(mt)
		got[key{l["destination"], l["version"], l["source"], l["status_class"]}] = mt.GetCounter().GetValue()
	}
	want := map[key]float64{
		{"payment-service", "v1", "order-service", "2xx"}: 7,
		{"payment-service", "v2", "order-service", "5xx"}: 3,
		{"payment-service", "v1", UnknownCaller, "4xx"}:   2,
		{"payment-service", "v2", GatewayCaller, "2xx"}:   4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests_total (-want +got):\n%s", diff)
	}
	hf := fams["flotilla_mesh_request_duration_seconds"]
	if hf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("duration type %v", hf.GetType())
	}
	for _, mt := range hf.GetMetric() {
		l := labelMap(mt)
		h := mt.GetHistogram()
		k := key{l["destination"], l["version"], l["source"], l["status_class"]}
		if float64(h.GetSampleCount()) != want[k] {
			t.Errorf("%v: histogram count %d, want %v", k, h.GetSampleCount(), want[k])
		}
		var prev uint64
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() < prev {
				t.Errorf("%v: buckets not cumulative", k)
			}
			prev = b.GetCumulativeCount()
		}
		if h.GetSampleSum() <= 0 {
			t.Errorf("%v: sum %v", k, h.GetSampleSum())
		}
	}
	gauges := map[string]float64{}
	for _, name := range []string{"flotilla_mesh_subset_weight", "flotilla_mesh_inflight_requests", "flotilla_mesh_endpoints"} {
		for _, mt := range fams[name].GetMetric() {
			l := labelMap(mt)
			gauges[name+"/"+l["version"]+"/"+l["state"]] = mt.GetGauge().GetValue()
		}
	}
	wantGauges := map[string]float64{
		"flotilla_mesh_subset_weight/v1/": 100, "flotilla_mesh_subset_weight/v2/": 0,
		"flotilla_mesh_inflight_requests/v1/": 0, "flotilla_mesh_inflight_requests/v2/": 0,
		"flotilla_mesh_endpoints/v1/serving": 1, "flotilla_mesh_endpoints/v1/ejected": 0,
		"flotilla_mesh_endpoints/v2/serving": 1, "flotilla_mesh_endpoints/v2/ejected": 0,
	}
	if diff := cmp.Diff(wantGauges, gauges); diff != "" {
		t.Errorf("state gauges (-want +got):\n%s", diff)
	}
	// An undeclared edge in warn mode is counted: payment-service is not
	// called by anything here, so send one from payment to itself.
	send(1, "/ok", map[string]string{"x-flotilla-caller": "payment-service"})
	fams = scrape(t, m)
	if n := len(fams["flotilla_mesh_authz_denied_total"].GetMetric()); n != 1 {
		t.Errorf("authz_denied series %d, want 1", n)
	}
}

func TestStatsImplementsCanaryMetrics(t *testing.T) {
	clock := newClock()
	m := newTestMesh(t, Config{Now: clock.Now})
	up := newUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(503)
		}
	})
	url := addService(t, m, ServiceConfig{Name: "order-service"},
		Subset{Name: "v1", Endpoints: []string{up.addr()}},
		Subset{Name: "v2", Canary: true, Endpoints: []string{up.addr()}})
	for range 30 {
		do(t, "GET", url+"/ok", nil, "")
	}
	for i := range 10 {
		path := "/ok"
		if i < 2 {
			path = "/fail"
		}
		do(t, "POST", url+path, map[string]string{"x-canary": "true"}, "{}")
	}
	ctx := context.Background()
	var metrics canary.Metrics = m
	st, err := metrics.Stats(ctx, "order-service", "v2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 10 || st.Errors != 2 || st.ErrorRate != 0.2 {
		t.Errorf("v2 stats %+v, want 10 requests, 2 errors, rate 0.2", st)
	}
	if st.P50 <= 0 || st.P50 > st.P90 || st.P90 > st.P99 || st.Window != time.Minute {
		t.Errorf("v2 quantiles/window %+v", st)
	}
	if st.Latency.Total() != st.Requests || len(st.Latency.Bounds) != nBuckets || st.Latency.Bounds[0] != 500*time.Microsecond {
		t.Errorf("v2 latency histogram %+v: want the %d requests in the mesh's %d buckets", st.Latency, st.Requests, nBuckets)
	}
	st, err = metrics.Stats(ctx, "order-service", "v1", time.Minute)
	if err != nil || st.Requests != 30 || st.Errors != 0 {
		t.Errorf("v1 stats %+v, %v", st, err)
	}
	if _, err := metrics.Stats(ctx, "order-service", "v9", time.Minute); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("unknown version: %v, want ErrNoData", err)
	}
	clock.Add(2 * time.Minute)
	if _, err := metrics.Stats(ctx, "order-service", "v2", time.Minute); !errors.Is(err, canary.ErrNoData) {
		t.Errorf("window with no traffic: %v, want ErrNoData", err)
	}
	st, err = metrics.Stats(ctx, "order-service", "v2", 5*time.Minute)
	if err != nil || st.Requests != 10 {
		t.Errorf("a window reaching back to the traffic: %+v, %v", st, err)
	}
	if _, err := metrics.Stats(ctx, "order-service", "v2", 0); err == nil || errors.Is(err, canary.ErrNoData) {
		t.Errorf("zero window: %v, want a plain error", err)
	}
}

func TestQuantile(t *testing.T) {
	b := func(pairs ...int) []uint64 {
		out := make([]uint64, nBuckets+1)
		for i := 0; i+1 < len(pairs); i += 2 {
			out[pairs[i]] = uint64(pairs[i+1])
		}
		return out
	}
	tests := []struct {
		name    string
		q       float64
		buckets []uint64
		want    time.Duration
	}{
		{"empty", 0.5, b(), 0},
		{"middle of the first bucket", 0.5, b(0, 10), 250 * time.Microsecond},
		{"second bucket interpolated", 0.5, b(0, 5, 1, 10), 625 * time.Microsecond},
		{"all in +Inf", 0.99, b(nBuckets, 3), 10 * time.Second},
		{"p99 at the top of a bucket", 0.99, b(2, 100), 2485 * time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := quantile(tc.q, tc.buckets)
			if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestSourceLabelsWithoutPolicy(t *testing.T) {
	m := newTestMesh(t, Config{})
	up := newUpstream(t, "u", nil)
	h := func() http.Handler {
		addService(t, m, ServiceConfig{Name: "search-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
		h, err := m.Handler("search-service")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}()
	send := func(caller string) {
		req := httptest.NewRequest("GET", "/q", nil)
		if caller != "" {
			req.Header.Set(CallerHeader, caller)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	send("")
	send("cart-service")
	for i := range maxSources + 5 {
		send("caller-" + strings.Repeat("x", i))
	}
	got := map[string]float64{}
	for _, mt := range scrape(t, m)["flotilla_mesh_requests_total"].GetMetric() {
		got[labelMap(mt)["source"]] += mt.GetCounter().GetValue()
	}
	if got[UnknownCaller] != 1 || got["cart-service"] != 1 {
		t.Errorf("unknown %v, cart-service %v", got[UnknownCaller], got["cart-service"])
	}
	if got["other"] == 0 || len(got) > maxSources+1 {
		t.Errorf("%d source labels (other: %v): cardinality not capped at %d", len(got), got["other"], maxSources)
	}
}

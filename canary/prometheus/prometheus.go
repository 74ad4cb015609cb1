// Package prometheus is a [canary.Metrics] over Prometheus's HTTP API: the
// figures a canary analysis judges, read with PromQL instant queries over
// range vectors, for when the requests are measured by a Prometheus rather
// than by the built-in mesh in flotilla's own process (a team's Prometheus
// scraping the control plane's /metrics, or Istio's sidecars on
// Kubernetes).
//
// Its built-in queries come in two flavors: [FlavorMesh] reads the built-in
// mesh's exposition (flotilla_mesh_requests_total and
// flotilla_mesh_request_duration_seconds, by destination and version), and
// [FlavorIstio] reads Istio's standard metrics (istio_requests_total and
// istio_request_duration_milliseconds, reporter="destination", by
// destination_service_name and destination_version), as Flagger's built-in
// request-success-rate and request-duration checks do. Errors are 5xx
// responses; latency quantiles are histogram_quantile over the histogram's
// buckets, so they agree with the mesh's own estimate.
//
// [Provider.Buckets] returns the latency histogram itself, for a rank test
// of two versions. [Provider.Query] runs a custom query for a judge that
// needs one number.
// "No data" ([canary.ErrNoData]: an empty result, or NaN) is inconclusive;
// any other error means Prometheus could not be asked (unreachable,
// timed out) or refused the query ([ErrBadQuery]), which an analysis counts
// as an error, never as a verdict.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/flotilla-ci/flotilla/canary"
)

// Flavor names the metric names and labels the built-in queries read.
type Flavor string

const (
	// FlavorMesh reads flotilla's built-in mesh:
	// flotilla_mesh_requests_total{destination, version, status_class} and
	// flotilla_mesh_request_duration_seconds_bucket (seconds).
	FlavorMesh Flavor = "mesh"
	// FlavorIstio reads Istio's standard metrics as the destination's
	// sidecar reports them: istio_requests_total{reporter="destination",
	// destination_service_name, destination_version, response_code} and
	// istio_request_duration_milliseconds_bucket (milliseconds).
	FlavorIstio Flavor = "istio"
)

// Flavors lists the known flavors.
var Flavors = []Flavor{FlavorMesh, FlavorIstio}

// ParseFlavor returns the flavor named s, or an error listing the known
// ones.
func ParseFlavor(s string) (Flavor, error) {
	for _, f := range Flavors {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown Prometheus flavor %q: want mesh or istio", s)
}

// ErrBadQuery is returned (wrapped, with Prometheus's own message) when
// Prometheus refuses a query: it does not parse, or cannot be evaluated.
// Asking again will not help; the query must be fixed.
var ErrBadQuery = fmt.Errorf("query refused by Prometheus: %w", canary.ErrBadQuery)

// Config configures a Provider.
type Config struct {
	// URL is Prometheus's base URL, e.g. http://127.0.0.1:9090 (a path
	// prefix is kept, for a Prometheus behind a proxy).
	URL string
	// Flavor picks the built-in queries; default FlavorMesh.
	Flavor Flavor
	// Namespace, with FlavorIstio, matches only the workloads of this
	// Kubernetes namespace (destination_workload_namespace); empty matches
	// every namespace. FlavorMesh refuses it.
	Namespace string
	// Timeout bounds each query; default 10s.
	Timeout time.Duration
	// Client sends the requests; default a client with its own transport.
	Client *http.Client
	// Now is the clock: queries are evaluated at Now(); default time.Now.
	Now func() time.Time
}

// Provider implements [canary.Metrics] over one Prometheus. It is safe for
// concurrent use.
type Provider struct {
	cfg Config
	api v1.API
}

var _ canary.Metrics = (*Provider)(nil)

// New returns a Provider for cfg, or an error naming the bad field. It
// does not contact Prometheus.
func New(cfg Config) (*Provider, error) {
	var errs []error
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("prometheus url %q: want http://host:port", cfg.URL))
	}
	if cfg.Flavor == "" {
		cfg.Flavor = FlavorMesh
	}
	if _, err := ParseFlavor(string(cfg.Flavor)); err != nil {
		errs = append(errs, err)
	}
	if cfg.Namespace != "" && cfg.Flavor == FlavorMesh {
		errs = append(errs, fmt.Errorf("prometheus namespace %q: only the istio flavor has namespaces", cfg.Namespace))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("prometheus timeout %v: want a positive duration", cfg.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	c, err := api.NewClient(api.Config{Address: strings.TrimRight(cfg.URL, "/"), Client: client})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", cfg.URL, err)
	}
	return &Provider{cfg: cfg, api: v1.NewAPI(c)}, nil
}

// Queries are the PromQL a [Provider.Stats] runs for one version and
// window, all evaluated at the same instant.
type Queries struct {
	Requests      string // requests completed in the window
	Errors        string // of them, 5xx responses
	P50, P90, P99 string // latency quantiles, in the histogram's unit
	// Buckets is the latency histogram: one sample per bucket, labelled
	// le, counting the requests at most le (cumulative, as Prometheus's).
	Buckets string
	// Unit is the histogram's unit: a quantile q is q*Unit.
	Unit time.Duration
}

// Queries returns the built-in queries for a version of a service over
// window (rounded up to a millisecond, PromQL's resolution).
func (p *Provider) Queries(service, version string, window time.Duration) Queries {
	rng := "[" + model.Duration(roundWindow(window)).String() + "]"
	var sel, counter, bucket, errSel string
	var unit time.Duration
	switch p.cfg.Flavor {
	case FlavorIstio:
		sel = `reporter="destination",destination_service_name=` + strconv.Quote(service) + `,destination_version=` + strconv.Quote(version)
		if p.cfg.Namespace != "" {
			sel += `,destination_workload_namespace=` + strconv.Quote(p.cfg.Namespace)
		}
		counter, bucket, errSel, unit = "istio_requests_total", "istio_request_duration_milliseconds_bucket", `response_code=~"5.."`, time.Millisecond
	default:
		sel = `destination=` + strconv.Quote(service) + `,version=` + strconv.Quote(version)
		counter, bucket, errSel, unit = "flotilla_mesh_requests_total", "flotilla_mesh_request_duration_seconds_bucket", `status_class="5xx"`, time.Second
	}
	quantile := func(q string) string {
		return "histogram_quantile(" + q + ", sum by (le) (rate(" + bucket + "{" + sel + "}" + rng + ")))"
	}
	return Queries{
		Requests: "sum(increase(" + counter + "{" + sel + "}" + rng + "))",
		Errors:   "sum(increase(" + counter + "{" + sel + "," + errSel + "}" + rng + "))",
		P50:      quantile("0.5"),
		P90:      quantile("0.9"),
		P99:      quantile("0.99"),
		Buckets:  "sum by (le) (increase(" + bucket + "{" + sel + "}" + rng + "))",
		Unit:     unit,
	}
}

func roundWindow(w time.Duration) time.Duration {
	return (w + time.Millisecond - 1).Truncate(time.Millisecond)
}

// Stats implements [canary.Metrics]: the requests a version of a service
// served over the window ending now, from the built-in queries. Counts
// are Prometheus's increase(), which extrapolates between scrapes, rounded
// to whole requests; ErrorRate is the ratio of the unrounded figures. It
// returns canary.ErrNoData (wrapped) when no request was counted in the
// window, an error wrapping ErrBadQuery when Prometheus refuses a query,
// and another error when Prometheus cannot be asked, or has counts but no
// latency histogram for the version.
func (p *Provider) Stats(ctx context.Context, service, version string, window time.Duration) (canary.Stats, error) {
	if window <= 0 {
		return canary.Stats{}, fmt.Errorf("stats %s@%s: window %v must be positive", service, version, window)
	}
	window = roundWindow(window)
	qs := p.Queries(service, version, window)
	at := p.cfg.Now()
	exprs := []string{qs.Requests, qs.Errors, qs.P50, qs.P90, qs.P99}
	vals := make([]float64, len(exprs))
	errs := make([]error, len(exprs))
	var wg sync.WaitGroup
	for i, e := range exprs {
		wg.Go(func() { vals[i], errs[i] = p.Query(ctx, e, at) })
	}
	wg.Wait()
	where := fmt.Sprintf("stats %s@%s over %v", service, version, window)
	st := canary.Stats{Window: window}
	// Prometheus's own errors first: "no data" from one query says nothing
	// when another could not be asked. One says it for all (an unreachable
	// server fails every query alike).
	for _, err := range errs {
		if err != nil && !errors.Is(err, canary.ErrNoData) {
			return st, fmt.Errorf("%s: %w", where, err)
		}
	}
	requests, errCount := vals[0], vals[1]
	if errs[0] != nil || requests < 0.5 {
		return st, fmt.Errorf("%s: no request counted: %w", where, canary.ErrNoData)
	}
	if errs[1] != nil {
		errCount = 0 // no 5xx series: none failed
	}
	for i, q := range []*time.Duration{&st.P50, &st.P90, &st.P99} {
		if errs[2+i] != nil {
			return st, fmt.Errorf("%s: %.0f requests but no latency histogram (%s): is it scraped?", where, requests, exprs[2+i])
		}
		*q = time.Duration(vals[2+i] * float64(qs.Unit))
	}
	st.Requests = int64(math.Round(requests))
	st.Errors = min(int64(math.Round(errCount)), st.Requests)
	st.ErrorRate = min(max(errCount/requests, 0), 1)
	// The histogram itself, for the baseline comparison's rank test.
	bounds, counts, err := p.Buckets(ctx, service, version, window)
	if err != nil && !errors.Is(err, canary.ErrNoData) {
		return st, err
	}
	st.Latency = canary.Histogram{Bounds: bounds, Counts: counts}
	return st, nil
}

// Buckets returns the latency histogram of a version of a service over
// the window ending now, for a rank test between two versions: the
// buckets' upper bounds, increasing, and how many requests fell in each
// (not cumulative; counts has one more entry, the requests over the last
// bound), the shape of canary.Histogram. Counts are increase()'s, rounded.
// It returns canary.ErrNoData (wrapped) when the window holds no request,
// and the errors of Query.
func (p *Provider) Buckets(ctx context.Context, service, version string, window time.Duration) (bounds []time.Duration, counts []int64, err error) {
	if window <= 0 {
		return nil, nil, fmt.Errorf("latency of %s@%s: window %v must be positive", service, version, window)
	}
	qs := p.Queries(service, version, window)
	where := fmt.Sprintf("latency of %s@%s over %v", service, version, roundWindow(window))
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	val, _, _, err := p.api.Query(ctx, qs.Buckets, p.cfg.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, p.queryError(qs.Buckets, err))
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, nil, fmt.Errorf("%s: query `%s`: a %s, want a vector by le", where, qs.Buckets, val.Type())
	}
	type bucket struct{ le, cum float64 }
	bs := make([]bucket, 0, len(vec))
	for _, s := range vec {
		le, err := strconv.ParseFloat(string(s.Metric["le"]), 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: a bucket with le=%q: want a number", where, s.Metric["le"])
		}
		bs = append(bs, bucket{le, float64(s.Value)})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 {
		return nil, nil, fmt.Errorf("%s: no histogram: %w", where, canary.ErrNoData)
	}
	if !math.IsInf(bs[len(bs)-1].le, 1) {
		return nil, nil, fmt.Errorf("%s: the histogram has no +Inf bucket", where)
	}
	bounds = make([]time.Duration, len(bs)-1)
	counts = make([]int64, len(bs))
	var prev, total int64
	for i, b := range bs {
		if i < len(bounds) {
			bounds[i] = time.Duration(b.le * float64(qs.Unit))
		}
		// Series extrapolated apart may dent the cumulative counts: a
		// bucket never counts below zero.
		cum := max(int64(math.Round(b.cum)), prev)
		counts[i], prev = cum-prev, cum
		total += counts[i]
	}
	if total == 0 {
		return nil, nil, fmt.Errorf("%s: no request counted: %w", where, canary.ErrNoData)
	}
	return bounds, counts, nil
}

// Query evaluates promql at the instant at (zero means now) and returns its
// one number: a scalar, or a vector of exactly one sample. An empty vector
// or a NaN (0/0, nothing in the window) is canary.ErrNoData (wrapped); a
// vector of several series, a range vector or a string is an error that
// says what to change; a query Prometheus refuses wraps ErrBadQuery; an
// unreachable or failing Prometheus is another error.
func (p *Provider) Query(ctx context.Context, promql string, at time.Time) (float64, error) {
	if at.IsZero() {
		at = p.cfg.Now()
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	val, _, _, err := p.api.Query(ctx, promql, at)
	if err != nil {
		return 0, p.queryError(promql, err)
	}
	v, err := single(val)
	if err != nil {
		return 0, fmt.Errorf("prometheus %s: query `%s`: %w", p.cfg.URL, promql, err)
	}
	return v, nil
}

// Instant returns p as a query source that evaluates each query at the
// current instant: Query(ctx, promql), the shape an analysis's custom
// query judges call.
func (p *Provider) Instant() InstantQuerier { return InstantQuerier{p} }

// InstantQuerier evaluates queries at the current instant (see
// [Provider.Instant]).
type InstantQuerier struct{ p *Provider }

// Query is [Provider.Query] at the current instant.
func (q InstantQuerier) Query(ctx context.Context, promql string) (float64, error) {
	return q.p.Query(ctx, promql, time.Time{})
}

// single returns the one number of a query's result.
func single(val model.Value) (float64, error) {
	var v float64
	switch r := val.(type) {
	case *model.Scalar:
		v = float64(r.Value)
	case model.Vector:
		switch len(r) {
		case 0:
			return 0, fmt.Errorf("empty result: %w", canary.ErrNoData)
		case 1:
			v = float64(r[0].Value)
		default:
			series := make([]string, 0, len(r))
			for _, s := range r {
				series = append(series, s.Metric.String())
			}
			sort.Strings(series)
			more := ""
			if len(series) > 3 {
				series, more = series[:3], ", ..."
			}
			return 0, fmt.Errorf("%d series (%s%s), want one number: aggregate them, e.g. with sum() or max()", len(r), strings.Join(series, ", "), more)
		}
	case model.Matrix:
		return 0, errors.New("a range vector, want one number: apply a function to it, e.g. rate() or max_over_time()")
	case nil:
		return 0, fmt.Errorf("no result: %w", canary.ErrNoData)
	default:
		return 0, fmt.Errorf("a %s, want one number", val.Type())
	}
	if math.IsNaN(v) {
		return 0, fmt.Errorf("NaN (nothing to divide in the window): %w", canary.ErrNoData)
	}
	return v, nil
}

// queryError says what went wrong with a query: refused (ErrBadQuery), or
// Prometheus could not be asked.
func (p *Provider) queryError(promql string, err error) error {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) && (apiErr.Type == v1.ErrBadData || apiErr.Type == v1.ErrExec) {
		return fmt.Errorf("prometheus %s: query `%s`: %w: %s", p.cfg.URL, promql, ErrBadQuery, apiErr.Msg)
	}
	return fmt.Errorf("prometheus %s: query `%s`: %w", p.cfg.URL, promql, err)
}

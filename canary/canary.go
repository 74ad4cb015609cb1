package canary

import (
	"context"
	"errors"
	"time"
)

// ErrNoData is returned by [Metrics.Stats] when there is nothing to judge
// (no request reached the version in the window, or the version is
// unknown). An analysis treats it as inconclusive, never as a failure.
var ErrNoData = errors.New("no data for this version in the window")

// ErrUnknownService is returned by a [Router] for a service it does not
// route.
var ErrUnknownService = errors.New("unknown service")

// Router moves traffic between the subsets (versions) of a service.
type Router interface {
	// SetWeights sets the share of traffic each subset receives, keyed by
	// subset name. Weights are non-negative and at least one is positive;
	// a subset left out receives none. The change is atomic: a request
	// sees either the old or the new weights. It returns
	// ErrUnknownService (wrapped) for a service the router does not know
	// and an error naming the subset for a subset it does not know.
	SetWeights(ctx context.Context, service string, weights map[string]int) error
	// Weights returns the current weights of every subset of the service,
	// keyed by subset name, or ErrUnknownService (wrapped).
	Weights(ctx context.Context, service string) (map[string]int, error)
}

// Metrics reports how one version of a service behaved.
type Metrics interface {
	// Stats summarises the requests a version of a service served over the
	// last window. It returns ErrNoData (possibly wrapped) when there were
	// none; other errors mean the source could not be asked.
	Stats(ctx context.Context, service, version string, window time.Duration) (Stats, error)
}

// Stats summarises the requests one version served over a window.
type Stats struct {
	// Requests is how many requests completed in the window.
	Requests int64
	// Errors is how many of them failed: a 5xx status, or no response.
	Errors int64
	// ErrorRate is Errors/Requests (0 when Requests is 0).
	ErrorRate float64
	// P50, P90 and P99 are latency quantiles, estimated from histogram
	// buckets as Prometheus's histogram_quantile does.
	P50, P90, P99 time.Duration
	// Window is the span the figures actually cover (a source may round
	// the requested window to its resolution).
	Window time.Duration
	// Latency is the histogram the quantiles come from, so that two
	// versions can be compared by a rank test ([MannWhitney]). A source
	// without bucket counts leaves it empty, and the baseline comparison
	// of latency is then inconclusive.
	Latency Histogram
}

// Histogram is a latency distribution as bucket counts (not cumulative,
// unlike Prometheus's "le" series).
type Histogram struct {
	// Bounds are the buckets' upper bounds, strictly increasing.
	Bounds []time.Duration `json:"bounds,omitempty"`
	// Counts has one more entry than Bounds: Counts[i] requests took more
	// than Bounds[i-1] and at most Bounds[i]; the last one counts those
	// over the last bound (Prometheus's +Inf bucket).
	Counts []int64 `json:"counts,omitempty"`
}

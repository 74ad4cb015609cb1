package prometheus_test

import (
	"fmt"
	"time"

	"github.com/flotilla-ci/flotilla/canary/prometheus"
)

// The queries a canary analysis runs for one version over its interval,
// here on Kubernetes with Istio; p.Stats(ctx, "reviews", "v2", time.Minute)
// runs them at one instant and p.Query(ctx, promql, time.Time{}) runs a
// custom judge's.
func Example() {
	p, err := prometheus.New(prometheus.Config{
		URL:       "http://prometheus.istio-system:9090",
		Flavor:    prometheus.FlavorIstio,
		Namespace: "shop",
	})
	if err != nil {
		panic(err)
	}
	q := p.Queries("reviews", "v2", time.Minute)
	fmt.Println(q.Requests)
	fmt.Println(q.Errors)
	fmt.Println(q.P99, "×", q.Unit)
	// Output:
	// sum(increase(istio_requests_total{reporter="destination",destination_service_name="reviews",destination_version="v2",destination_workload_namespace="shop"}[1m]))
	// sum(increase(istio_requests_total{reporter="destination",destination_service_name="reviews",destination_version="v2",destination_workload_namespace="shop",response_code=~"5.."}[1m]))
	// histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_service_name="reviews",destination_version="v2",destination_workload_namespace="shop"}[1m]))) × 1ms
}

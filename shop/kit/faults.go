package kit

import (
	"net/http"
	"time"
)

// httpFaults applies the http.error_rate and http.latency faults to every
// route but the health and readiness probes, so a version made bad on
// purpose still starts, passes its readiness check and takes traffic: what
// its canary analysis must then catch. The latency comes first (a failed
// request is slow too, as a real overloaded version's are); a client that
// goes away during it gets nothing more. draw returns a number in [0, 1).
func httpFaults(f Faults, draw func() float64, next http.Handler) http.Handler {
	if f.HTTPErrorRate <= 0 && f.HTTPLatency <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" || r.URL.Path == "/ready" {
			next.ServeHTTP(w, r)
			return
		}
		if f.HTTPLatency > 0 {
			t := time.NewTimer(f.HTTPLatency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				WriteError(w, r, r.Context().Err())
				return
			}
		}
		if f.HTTPErrorRate > 0 && draw() < f.HTTPErrorRate {
			WriteError(w, r, Errorf(http.StatusInternalServerError, "injected_fault",
				"http.error_rate=%g: this request failed on purpose (FAULTS)", f.HTTPErrorRate))
			return
		}
		next.ServeHTTP(w, r)
	})
}

package canary_test

import (
	"math"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

// FuzzMannWhitney checks the binned test against the raw one on the
// same samples (each at its bucket's index) for any bucket counts, and
// that p stays a probability.
func FuzzMannWhitney(f *testing.F) {
	f.Add([]byte{1, 2, 1, 0}, []byte{0, 1, 2, 1})
	f.Add([]byte{5}, []byte{5})
	f.Add([]byte{0, 0, 200}, []byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		n := max(len(a), len(b))
		if n == 0 || n > 64 {
			return
		}
		bounds := make([]time.Duration, n-1)
		for i := range bounds {
			bounds[i] = time.Duration(i + 1)
		}
		hx := canary.Histogram{Bounds: bounds, Counts: make([]int64, n)}
		hy := canary.Histogram{Bounds: bounds, Counts: make([]int64, n)}
		var x, y []float64
		for i := range n {
			if i < len(a) {
				hx.Counts[i] = int64(a[i])
				for range a[i] {
					x = append(x, float64(i))
				}
			}
			if i < len(b) {
				hy.Counts[i] = int64(b[i])
				for range b[i] {
					y = append(y, float64(i))
				}
			}
		}
		binned, err := canary.MannWhitney(hx, hy)
		raw, rerr := canary.MannWhitneyU(x, y)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("binned error %v, raw error %v", err, rerr)
		}
		if err != nil {
			return
		}
		if math.IsNaN(binned.P) || binned.P < 0 || binned.P > 1 || math.IsNaN(binned.Z) {
			t.Fatalf("p %v z %v", binned.P, binned.Z)
		}
		if math.Abs(binned.U-raw.U) > 1e-6 || math.Abs(binned.P-raw.P) > 1e-9 {
			t.Fatalf("binned %+v, raw %+v", binned, raw)
		}
	})
}

package canary_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// The example of scipy.stats.mannwhitneyu's documentation (Mann and
// Whitney's 1947 data): U = 17 for the males, and with
// method="asymptotic" a two-sided p of 0.11134688653314041 (scipy 1.10.1
// prints the same).
func TestMannWhitneyScipyExample(t *testing.T) {
	males := []float64{19, 22, 16, 29, 24}
	females := []float64{20, 11, 17, 12}
	r, err := canary.MannWhitneyU(males, females)
	if err != nil {
		t.Fatal(err)
	}
	if r.U != 17 || r.N1 != 5 || r.N2 != 4 || !near(r.P, 0.11134688653314041, 1e-12) || r.Z <= 0 {
		t.Errorf("males vs females %+v, want U 17, p 0.11134688653314041, z > 0", r)
	}
	r, err = canary.MannWhitneyU(females, males)
	if err != nil {
		t.Fatal(err)
	}
	if r.U != 3 || !near(r.P, 0.11134688653314041, 1e-12) || r.Z >= 0 {
		t.Errorf("females vs males %+v, want U 3, the same p, z < 0", r)
	}
	if r.Greater(0.8) {
		t.Error("the smaller sample called greater")
	}
}

// Ties, worked by hand: x = 1 2 2 3, y = 2 3 3 4 5. Mid-ranks: 1→1,
// 2→3, 3→6, 4→8, 5→9; R1 = 13, U = 3; tie groups of 3 and 3 give
// Σ(t³-t) = 48; var = 20/12·(10 - 48/72) = 15.5556; z = -(7-0.5)/3.94405
// = -1.64805; p = 0.0993422 (scipy 1.10.1: U 3.0, p 0.09934224785346528).
func TestMannWhitneyTiesByHand(t *testing.T) {
	x := []float64{1, 2, 2, 3}
	y := []float64{2, 3, 3, 4, 5}
	r, err := canary.MannWhitneyU(x, y)
	if err != nil {
		t.Fatal(err)
	}
	if r.U != 3 || !near(r.Z, -1.6480507967206073, 1e-12) || !near(r.P, 0.09934224785346527, 1e-12) {
		t.Errorf("raw %+v, want U 3, z -1.64805, p 0.0993422", r)
	}
	// The same samples as a histogram: one bucket per value.
	bounds := []time.Duration{1, 2, 3, 4, 5}
	hx := canary.Histogram{Bounds: bounds, Counts: []int64{1, 2, 1, 0, 0, 0}}
	hy := canary.Histogram{Bounds: bounds, Counts: []int64{0, 1, 2, 1, 1, 0}}
	b, err := canary.MannWhitney(hx, hy)
	if err != nil {
		t.Fatal(err)
	}
	if b != r {
		t.Errorf("binned %+v, raw %+v: the same samples must give the same test", b, r)
	}
}

// Histograms in the mesh's 14 buckets (+Inf), checked against scipy
// 1.10.1: mannwhitneyu(x, y, method="asymptotic") on the samples
// expanded to their bucket index gives U 6645.0, p 2.0505154231397515e-05.
func TestMannWhitneyBinnedAgainstScipy(t *testing.T) {
	c := canary.Histogram{Bounds: meshBounds, Counts: []int64{0, 0, 0, 0, 5, 30, 40, 20, 5, 0, 0, 0, 0, 0, 0}}
	b := canary.Histogram{Bounds: meshBounds, Counts: []int64{0, 0, 0, 2, 10, 50, 30, 8, 0, 0, 0, 0, 0, 0, 0}}
	r, err := canary.MannWhitney(c, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.U != 6645 || !near(r.P, 2.0505154231397515e-05, 1e-15) || !r.Greater(0.98) {
		t.Errorf("got %+v, want U 6645, p 2.0505154231397515e-05, canary greater", r)
	}
}

// Binned samples are ranked as ties within their bucket: the histogram
// test equals the raw test on the samples rounded up to their bucket's
// bound, for large random samples too.
func TestMannWhitneyBinnedEqualsRawOnBucketBounds(t *testing.T) {
	bounds := []time.Duration{5, 10, 25, 50, 100, 250}
	rng := rand.New(rand.NewPCG(1, 2))
	draw := func(n int, scale float64) ([]float64, canary.Histogram) {
		h := canary.Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}
		raw := make([]float64, n)
		for i := range raw {
			v := rng.ExpFloat64() * scale
			b := len(bounds)
			for k, ub := range bounds {
				if v <= float64(ub) {
					b = k
					break
				}
			}
			h.Counts[b]++
			raw[i] = float64(b) // the bucket index orders like its bound
		}
		return raw, h
	}
	rx, hx := draw(3000, 30)
	ry, hy := draw(2000, 25)
	a, err := canary.MannWhitney(hx, hy)
	if err != nil {
		t.Fatal(err)
	}
	b, err := canary.MannWhitneyU(rx, ry)
	if err != nil {
		t.Fatal(err)
	}
	if !near(a.U, b.U, 1e-6) || !near(a.Z, b.Z, 1e-9) || !near(a.P, b.P, 1e-12) {
		t.Errorf("binned %+v, raw %+v", a, b)
	}
	if !a.Greater(0.98) {
		t.Errorf("a scale of 30 vs 25 over 3000/2000 samples not found greater: %+v", a)
	}
}

func TestMannWhitneyEdges(t *testing.T) {
	bounds := []time.Duration{1, 2}
	same := canary.Histogram{Bounds: bounds, Counts: []int64{0, 7, 0}}
	r, err := canary.MannWhitney(same, same)
	if err != nil || r.P != 1 || r.Z != 0 {
		t.Errorf("all tied: %+v, %v; want p 1", r, err)
	}
	if _, err := canary.MannWhitney(same, canary.Histogram{Bounds: []time.Duration{1, 3}, Counts: []int64{1, 1, 1}}); !errors.Is(err, canary.ErrBuckets) {
		t.Errorf("different bounds: %v, want ErrBuckets", err)
	}
	if _, err := canary.MannWhitney(same, canary.Histogram{Bounds: bounds, Counts: []int64{0, 0, 0}}); err == nil {
		t.Error("an empty histogram was tested")
	}
	if _, err := canary.MannWhitney(canary.Histogram{Bounds: bounds, Counts: []int64{1}}, same); err == nil {
		t.Error("a malformed histogram was tested")
	}
	if _, err := canary.MannWhitneyU(nil, []float64{1}); err == nil {
		t.Error("an empty sample was tested")
	}
	if _, err := canary.MannWhitneyU([]float64{math.NaN()}, []float64{1}); err == nil {
		t.Error("NaN was ranked")
	}
}

func TestTwoProportions(t *testing.T) {
	for _, tc := range []struct {
		name           string
		e1, n1, e2, n2 int64
		z, p           float64
	}{
		// statsmodels' proportions_ztest documentation: count [5, 12],
		// nobs [83, 99]: p 0.159.
		{"statsmodels example", 5, 83, 12, 99, -1.4078304151258787, 0.15918129181156992},
		// By hand: 0.15 vs 0.10 of 200 each; pooled 0.125; se 0.0330719;
		// z 1.51186; p 0.130570.
		{"by hand", 30, 200, 20, 200, 1.5118578920369083, 0.13057001811573635},
		{"no errors at all", 0, 100, 0, 50, 0, 1},
		{"all errors", 10, 10, 5, 5, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := canary.TwoProportions(tc.e1, tc.n1, tc.e2, tc.n2)
			if err != nil {
				t.Fatal(err)
			}
			if !near(r.Z, tc.z, 1e-9) || !near(r.P, tc.p, 1e-9) {
				t.Errorf("got z %v p %v, want z %v p %v", r.Z, r.P, tc.z, tc.p)
			}
		})
	}
	if _, err := canary.TwoProportions(1, 0, 1, 10); err == nil {
		t.Error("no requests: no error")
	}
	if _, err := canary.TwoProportions(11, 10, 1, 10); err == nil {
		t.Error("more errors than requests: no error")
	}
}

func TestHistogramMean(t *testing.T) {
	h := canary.Histogram{Bounds: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, Counts: []int64{1, 2, 1}}
	// 5 ms, 15 ms twice, and 20 ms for the one over the last bound.
	if got, want := h.Mean(), (5+15+15+20)*time.Millisecond/4; got != want {
		t.Errorf("mean %v, want %v", got, want)
	}
	if (canary.Histogram{}).Mean() != 0 {
		t.Error("empty histogram has a mean")
	}
}

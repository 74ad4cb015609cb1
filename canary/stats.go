package canary

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// RankTest is the result of a Mann-Whitney U (Wilcoxon rank-sum) test of a
// sample X (the canary) against a sample Y (the baseline).
type RankTest struct {
	N1, N2 int64 // sizes of X and Y
	// U is X's statistic: R1 - N1(N1+1)/2, where R1 is the sum of X's
	// ranks in the pooled sample (ties take their mid-rank). U above
	// N1·N2/2 means X tends to be larger than Y.
	U float64
	// Z is the standardised U, with the tie correction and a continuity
	// correction of 0.5 towards the mean; positive when X tends larger.
	Z float64
	// P is the two-sided p-value from the normal approximation, as
	// scipy.stats.mannwhitneyu(x, y, method="asymptotic") computes it.
	P float64
}

// Greater reports whether X is larger than Y at the confidence (0.98:
// the two-sided test rejects "same distribution" at the 2% level, and X
// is the larger), which is how Kayenta's classifier calls a metric High.
func (r RankTest) Greater(confidence float64) bool {
	return r.Z > 0 && r.P < 1-confidence
}

// ErrBuckets is returned by [MannWhitney] for histograms whose buckets
// differ: binned samples can only be ranked against the same bounds.
var ErrBuckets = errors.New("histograms have different buckets")

// MannWhitney runs the Mann-Whitney U test on two latency histograms with
// the same buckets, treating every request in a bucket as tied with the
// others of that bucket (the mid-rank of the bucket, and the tie
// correction of the variance). It returns ErrBuckets for histograms whose
// bounds differ and an error for malformed or empty ones.
func MannWhitney(x, y Histogram) (RankTest, error) {
	if !slices.Equal(x.Bounds, y.Bounds) {
		return RankTest{}, ErrBuckets
	}
	if err := x.check(); err != nil {
		return RankTest{}, fmt.Errorf("canary histogram: %w", err)
	}
	if err := y.check(); err != nil {
		return RankTest{}, fmt.Errorf("baseline histogram: %w", err)
	}
	n1, n2 := x.Total(), y.Total()
	if n1 == 0 || n2 == 0 {
		return RankTest{N1: n1, N2: n2}, errors.New("mann-whitney: a histogram is empty")
	}
	var r1, below, ties float64
	for i := range x.Counts {
		a, b := float64(x.Counts[i]), float64(y.Counts[i])
		t := a + b
		if t == 0 {
			continue
		}
		mid := below + (t+1)/2
		r1 += a * mid
		ties += t*t*t - t
		below += t
	}
	return rankResult(n1, n2, r1, ties), nil
}

// MannWhitneyU runs the same test on raw samples (ties between equal
// values get their mid-rank). It sorts copies of x and y, O(n log n),
// unless they are sorted already (then O(n)); it never changes them.
func MannWhitneyU(x, y []float64) (RankTest, error) {
	if len(x) == 0 || len(y) == 0 {
		return RankTest{N1: int64(len(x)), N2: int64(len(y))}, errors.New("mann-whitney: a sample is empty")
	}
	xs, ys := sorted(x), sorted(y)
	for _, v := range xs {
		if math.IsNaN(v) {
			return RankTest{}, errors.New("mann-whitney: NaN in the canary's sample")
		}
	}
	for _, v := range ys {
		if math.IsNaN(v) {
			return RankTest{}, errors.New("mann-whitney: NaN in the baseline's sample")
		}
	}
	var r1, below, ties float64
	i, j := 0, 0
	for i < len(xs) || j < len(ys) {
		// The smallest value left, and how many of each side equal it.
		var v float64
		switch {
		case i == len(xs):
			v = ys[j]
		case j == len(ys):
			v = xs[i]
		default:
			v = min(xs[i], ys[j])
		}
		a, b := 0, 0
		for i < len(xs) && xs[i] == v {
			i++
			a++
		}
		for j < len(ys) && ys[j] == v {
			j++
			b++
		}
		t := float64(a + b)
		r1 += float64(a) * (below + (t+1)/2)
		ties += t*t*t - t
		below += t
	}
	return rankResult(int64(len(x)), int64(len(y)), r1, ties), nil
}

// sorted returns xs if it is sorted (NaN first, as slices.Sort puts it),
// else a sorted copy.
func sorted(xs []float64) []float64 {
	if slices.IsSorted(xs) {
		return xs
	}
	c := slices.Clone(xs)
	slices.Sort(c)
	return c
}

// rankResult turns X's rank sum into U, z and p; ties is Σ(t³ - t) over
// the groups of tied values.
func rankResult(n1, n2 int64, r1, ties float64) RankTest {
	f1, f2 := float64(n1), float64(n2)
	n := f1 + f2
	u := r1 - f1*(f1+1)/2
	mu := f1 * f2 / 2
	variance := f1 * f2 / 12 * ((n + 1) - ties/(n*(n-1)))
	res := RankTest{N1: n1, N2: n2, U: u, P: 1}
	if variance <= 0 {
		// Every value tied: nothing tells the samples apart.
		return res
	}
	d := math.Abs(u-mu) - 0.5
	if d < 0 {
		d = 0
	}
	z := d / math.Sqrt(variance)
	if u < mu {
		z = -z
	}
	res.Z = z
	res.P = math.Min(1, 2*normalSF(math.Abs(z)))
	return res
}

// ProportionTest is the result of a two-proportion z-test: are X's
// errors (the canary's) a larger share of its requests than Y's?
type ProportionTest struct {
	P1, P2 float64 // the two proportions
	// Z is (P1 - P2) over the pooled standard error; positive when X's
	// proportion is the larger.
	Z float64
	// P is the two-sided p-value (statsmodels' proportions_ztest with
	// the pooled variance).
	P float64
}

// Greater reports whether X's proportion is larger than Y's at the
// confidence, as [RankTest.Greater].
func (r ProportionTest) Greater(confidence float64) bool {
	return r.Z > 0 && r.P < 1-confidence
}

// TwoProportions compares e1 errors in n1 requests with e2 in n2. Both n
// must be positive and each e between 0 and its n.
func TwoProportions(e1, n1, e2, n2 int64) (ProportionTest, error) {
	if n1 <= 0 || n2 <= 0 {
		return ProportionTest{}, fmt.Errorf("two-proportion test: %d and %d requests: both must be positive", n1, n2)
	}
	if e1 < 0 || e1 > n1 || e2 < 0 || e2 > n2 {
		return ProportionTest{}, fmt.Errorf("two-proportion test: %d/%d and %d/%d errors: each must be between 0 and its requests", e1, n1, e2, n2)
	}
	f1, f2 := float64(n1), float64(n2)
	res := ProportionTest{P1: float64(e1) / f1, P2: float64(e2) / f2, P: 1}
	pool := float64(e1+e2) / (f1 + f2)
	se := math.Sqrt(pool * (1 - pool) * (1/f1 + 1/f2))
	if se == 0 {
		return res, nil // all failed or none did: no difference to see
	}
	res.Z = (res.P1 - res.P2) / se
	res.P = math.Min(1, 2*normalSF(math.Abs(res.Z)))
	return res, nil
}

// normalSF is the standard normal's survival function, 1 - Φ(z).
func normalSF(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// Total is the number of requests the histogram counts.
func (h Histogram) Total() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Mean estimates the mean latency, each request at the middle of its
// bucket (the first bucket starts at 0; those over the last bound count
// as the last bound). Zero for an empty histogram.
func (h Histogram) Mean() time.Duration {
	n := h.Total()
	if n == 0 || len(h.Counts) != len(h.Bounds)+1 || len(h.Bounds) == 0 {
		return 0
	}
	var sum float64
	for i, c := range h.Counts {
		var mid float64
		switch {
		case i == len(h.Bounds):
			mid = float64(h.Bounds[i-1])
		case i == 0:
			mid = float64(h.Bounds[0]) / 2
		default:
			mid = float64(h.Bounds[i-1]+h.Bounds[i]) / 2
		}
		sum += mid * float64(c)
	}
	return time.Duration(sum / float64(n))
}

func (h Histogram) check() error {
	if len(h.Counts) != len(h.Bounds)+1 {
		return fmt.Errorf("%d counts for %d bounds: want one more count than bounds (the +Inf bucket)", len(h.Counts), len(h.Bounds))
	}
	for i, b := range h.Bounds {
		if i > 0 && b <= h.Bounds[i-1] {
			return fmt.Errorf("bound %d (%v) is not above bound %d (%v)", i, b, i-1, h.Bounds[i-1])
		}
	}
	for i, c := range h.Counts {
		if c < 0 {
			return fmt.Errorf("count %d is negative (%d)", i, c)
		}
	}
	return nil
}

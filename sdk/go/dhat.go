package flk

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"sync"
)

// minSlopeDx is the smallest |dx| between two scales that still yields a
// slope; closer pairs (repeated scales) are skipped (CONTRACT section 3.2).
const minSlopeDx = 1e-9

// RecomputeDHat recomputes the fractal dimension estimate from the scales
// and voxel counts: the upper median of the pairwise slopes of the points
// (log2(scale), log2(N_j)), rounded by Round9 (CONTRACT section 3.2).
//
// The median of pairwise slopes (a Theil-Sen estimate) is used by the agents
// because one bad scale cannot drag it, unlike a least-squares fit.
// Errors carry the contract's exact messages.
func RecomputeDHat(scales []int64, nj map[string]int64) (float64, error) {
	if len(scales) < 2 {
		return 0, errors.New("need at least 2 scales for regression")
	}
	xs := make([]float64, len(scales))
	ys := make([]float64, len(scales))
	for i, s := range scales {
		key := strconv.FormatInt(s, 10)
		n, ok := nj[key]
		if !ok {
			return 0, fmt.Errorf("missing N_j entry for scale %s", key)
		}
		if n <= 0 {
			return 0, fmt.Errorf("N_j must be positive for scale %s", key)
		}
		xs[i] = Log2(float64(s))
		ys[i] = Log2(float64(n))
	}
	var slopes []float64
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			dx := xs[j] - xs[i]
			if math.Abs(dx) < minSlopeDx {
				continue
			}
			slopes = append(slopes, (ys[j]-ys[i])/dx)
		}
	}
	if len(slopes) == 0 {
		return 0, errors.New("no valid slopes computed")
	}
	sort.Float64s(slopes)
	return Round9(slopes[len(slopes)/2]), nil
}

// log2Precision is the working precision of Log2, far beyond float64's 53
// bits so that rounding the result once gives the correctly rounded value.
const log2Precision = 192

var (
	ln2Once  sync.Once
	ln2Value *big.Float
)

// Log2 returns the correctly rounded base-2 logarithm of a positive, finite x.
//
// math.Log2 is not used because it is off by one ulp for about 1.5% of
// integers (log2(3) among them), while the other implementations call the C
// library's log2, which is correctly rounded in practice. One ulp in a point
// can move a slope across a 9-decimal rounding boundary and change a
// recomputed D_hat, so the SDK computes the logarithm in extended precision.
// Zero, negative, NaN and infinite inputs fall back to math.Log2.
func Log2(x float64) float64 {
	if !(x > 0) || math.IsInf(x, 0) {
		return math.Log2(x)
	}
	frac, exp := math.Frexp(x) // x = frac * 2^exp, frac in [0.5, 1)
	if frac == 0.5 {
		return float64(exp - 1)
	}
	// Use m = frac*2 in (1, 2), so log2(x) = (exp-1) + ln(m)/ln(2).
	m := new(big.Float).SetPrec(log2Precision).SetFloat64(frac * 2)
	ln2Once.Do(func() {
		ln2Value = lnNear1(new(big.Float).SetPrec(log2Precision).SetInt64(2))
	})
	q := new(big.Float).SetPrec(log2Precision).Quo(lnNear1(m), ln2Value)
	q.Add(q, new(big.Float).SetPrec(log2Precision).SetInt64(int64(exp-1)))
	v, _ := q.Float64()
	return v
}

// lnNear1 returns ln(m) for m in [1, 2] by the series
// ln(m) = 2 * sum z^(2k+1)/(2k+1) with z = (m-1)/(m+1) <= 1/3, which gains
// more than three bits per term.
func lnNear1(m *big.Float) *big.Float {
	prec := uint(log2Precision)
	one := new(big.Float).SetPrec(prec).SetInt64(1)
	num := new(big.Float).SetPrec(prec).Sub(m, one)
	den := new(big.Float).SetPrec(prec).Add(m, one)
	z := new(big.Float).SetPrec(prec).Quo(num, den)
	z2 := new(big.Float).SetPrec(prec).Mul(z, z)
	sum := new(big.Float).SetPrec(prec)
	power := new(big.Float).SetPrec(prec).Set(z) // z^(2k+1)
	term := new(big.Float).SetPrec(prec)
	for k := int64(0); k < 200; k++ {
		term.Quo(power, new(big.Float).SetPrec(prec).SetInt64(2*k+1))
		if term.Sign() == 0 || term.MantExp(nil)-sum.MantExp(nil) < -int(prec)-8 && sum.Sign() != 0 {
			break
		}
		sum.Add(sum, term)
		power.Mul(power, z2)
	}
	return sum.Mul(sum, new(big.Float).SetPrec(prec).SetInt64(2))
}

package flk

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestRecomputeDHatContractVectors(t *testing.T) {
	got, err := RecomputeDHat([]int64{2, 4, 8, 16, 32}, map[string]int64{"2": 3, "4": 5, "8": 9, "16": 17, "32": 31})
	if err != nil || got != 0.866733469 {
		t.Errorf("D_hat = %v, %v; want 0.866733469", got, err)
	}
	got, err = RecomputeDHat([]int64{2, 4, 8, 16}, map[string]int64{"2": 4, "4": 8, "8": 17, "16": 20})
	if err != nil || got != 1.0 {
		t.Errorf("D_hat = %v, %v; want 1.0", got, err)
	}
}

func TestRecomputeDHatErrors(t *testing.T) {
	cases := []struct {
		scales []int64
		nj     map[string]int64
		want   string
	}{
		{[]int64{2}, map[string]int64{"2": 1}, "need at least 2 scales for regression"},
		{[]int64{2, 4}, map[string]int64{"2": 1}, "missing N_j entry for scale 4"},
		{[]int64{2, 4}, map[string]int64{"2": 0, "4": 1}, "N_j must be positive for scale 2"},
		{[]int64{4, 4}, map[string]int64{"4": 3}, "no valid slopes computed"},
	}
	for _, c := range cases {
		if _, err := RecomputeDHat(c.scales, c.nj); err == nil || err.Error() != c.want {
			t.Errorf("%v %v: error %v, want %q", c.scales, c.nj, err, c.want)
		}
	}
}

func TestComputeBudgetContractVectors(t *testing.T) {
	p := DefaultParams()
	cases := []struct{ d, coh, r, want float64 }{
		{0.528320834, 0.066666667, 0.318421053, 0.317807017},
		{1.41, 0.73, 0.87, 0.285},
		{3.0, 1.0, 0.1, 0.97},
		{9.0, 1.0, 0.0, 1.0}, // clamped
	}
	for _, c := range cases {
		if got := ComputeBudget(c.d, c.coh, c.r, p); got != c.want {
			t.Errorf("budget(%v, %v, %v) = %v, want %v", c.d, c.coh, c.r, got, c.want)
		}
	}
}

func TestLog2IsCorrectlyRounded(t *testing.T) {
	// math.Log2(3) is one ulp high; the C library (and so the server) gives
	// 1.584962500721156.
	if got := Log2(3); got != 1.584962500721156 {
		t.Errorf("Log2(3) = %v", got)
	}
	for _, x := range []float64{1, 2, 1024, 0.5, 1 << 62} {
		if got := Log2(x); got != math.Log2(x) {
			t.Errorf("Log2(%v) = %v", x, got)
		}
	}
}

// validPCS returns golden case 1, which verifies as plainly accepted.
func validPCS(t *testing.T) *PCS {
	t.Helper()
	return loadGolden(t, "pcs_tiny_case_1.json")
}

func outcomeJSON(t *testing.T, o Outcome) string {
	t.Helper()
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

func TestVerifySteps(t *testing.T) {
	params := DefaultParams()
	cases := []struct {
		name   string
		edit   func(p *PCS)
		want   string
		status int
	}{
		{"accepted", func(p *PCS) {},
			`{"accepted":true,"escalated":false,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017}`, 200},
		{"no pcs_id", func(p *PCS) { p.PcsID = "" },
			`{"accepted":false,"escalated":true,"reason":"validation failed: pcs_id is required"}`, 202},
		{"schema", func(p *PCS) { p.Schema = "other" },
			`{"accepted":false,"escalated":true,"reason":"validation failed: invalid schema: expected fractal-lba-kakeya, got other"}`, 202},
		{"version", func(p *PCS) { p.Version = "" },
			`{"accepted":false,"escalated":true,"reason":"validation failed: version is required"}`, 202},
		{"shard", func(p *PCS) { p.ShardID = "" },
			`{"accepted":false,"escalated":true,"reason":"validation failed: shard_id is required"}`, 202},
		{"epoch", func(p *PCS) { p.Epoch = -1 },
			`{"accepted":false,"escalated":true,"reason":"validation failed: epoch must be non-negative"}`, 202},
		{"scales", func(p *PCS) { p.Scales = nil },
			`{"accepted":false,"escalated":true,"reason":"validation failed: scales cannot be empty"}`, 202},
		{"merkle", func(p *PCS) { p.MerkleRoot = "" },
			`{"accepted":false,"escalated":true,"reason":"validation failed: merkle_root is required"}`, 202},
		{"pcs_id mismatch", func(p *PCS) { p.PcsID = "x" },
			`{"accepted":false,"escalated":true,"reason":"validation failed: pcs_id mismatch: expected c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf, got x"}`, 202},
		{"one scale", func(p *PCS) { p.Scales = []int64{2} },
			`{"accepted":false,"escalated":true,"reason":"D_hat recomputation failed: need at least 2 scales for regression"}`, 202},
		{"D_hat tolerance", func(p *PCS) { p.DHat = 1.0 },
			`{"accepted":false,"escalated":true,"recomputed_D_hat":0.528320834,"reason":"D_hat out of tolerance: claimed=1.0000, recomputed=0.5283, diff=0.4717 > tol=0.1500"}`, 202},
		{"coh_star", func(p *PCS) { p.CohStar = 1.2 },
			`{"accepted":false,"escalated":true,"recomputed_D_hat":0.528320834,"reason":"coh_star out of bounds: 1.2000 not in [0, 1.0500]"}`, 202},
		{"regime", func(p *PCS) { p.Regime = RegimeSticky },
			`{"accepted":true,"escalated":true,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017,"reason":"regime mismatch: claimed=sticky, expected=mixed"}`, 202},
		{"budget", func(p *PCS) { p.Budget = 0.5 },
			`{"accepted":true,"escalated":true,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017,"reason":"budget deviation: claimed=0.5000, recomputed=0.3178"}`, 202},
		{"degraded", func(p *PCS) { p.FT.Degraded = true },
			`{"accepted":true,"escalated":true,"recomputed_D_hat":0.528320834,"recomputed_budget":0.317807017,"reason":"agent reported degraded mode"}`, 202},
		{"absent r is 0.0", func(p *PCS) { p.R = nil },
			`{"accepted":true,"escalated":true,"recomputed_D_hat":0.528320834,"recomputed_budget":0.413333333,"reason":"budget deviation: claimed=0.3178, recomputed=0.4133"}`, 202},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := validPCS(t)
			c.edit(p)
			o := Verify(p, params)
			if got := outcomeJSON(t, o); got != c.want {
				t.Errorf("outcome\n got %s\nwant %s", got, c.want)
			}
			if o.HTTPStatus() != c.status {
				t.Errorf("status %d, want %d", o.HTTPStatus(), c.status)
			}
		})
	}
}

func TestVerifyUsesTenantParams(t *testing.T) {
	p := validPCS(t)
	p.DHat = 0.6
	if o := Verify(p, DefaultParams()); !o.Accepted || o.Escalated {
		t.Fatalf("default params: %+v", o)
	}
	strict := DefaultParams()
	strict.TolD = 0.05
	if o := Verify(p, strict); !strings.HasPrefix(o.Reason, "D_hat out of tolerance") || !strings.HasSuffix(o.Reason, "tol=0.0500") {
		t.Fatalf("strict params: %+v", o)
	}
}

func TestExpectedRegime(t *testing.T) {
	cases := []struct {
		d, coh float64
		want   string
	}{
		{1.5, 0.70, RegimeSticky}, {1.51, 0.9, RegimeMixed}, {2.6, 0.9, RegimeNonSticky},
		{1.0, 0.69, RegimeMixed}, {3.0, 0.1, RegimeNonSticky},
	}
	for _, c := range cases {
		if got := ExpectedRegime(c.d, c.coh); got != c.want {
			t.Errorf("ExpectedRegime(%v, %v) = %s, want %s", c.d, c.coh, got, c.want)
		}
	}
}

package flk

import (
	"fmt"
	"math"
	"net/http"
	"time"
)

// Params are a tenant's verification parameters (CONTRACT section 3). They
// are per tenant because deployments calibrate tolerances to their agents.
type Params struct {
	// TolD is the largest accepted |D_hat - recomputed D_hat|.
	TolD float64 `json:"tol_D"`
	// TolCoh widens the accepted coh_star range to [0, 1+TolCoh].
	TolCoh float64 `json:"tol_coh"`
	// Alpha weighs (1 - r) in the budget.
	Alpha float64 `json:"alpha"`
	// Beta weighs max(0, D_hat - D0) in the budget.
	Beta float64 `json:"beta"`
	// Gamma weighs coh_star in the budget.
	Gamma float64 `json:"gamma"`
	// Base is the budget's constant term.
	Base float64 `json:"base"`
	// D0 is the dimension above which the budget grows.
	D0 float64 `json:"D0"`
	// BudgetTol is the largest accepted |budget - recomputed budget|.
	BudgetTol float64 `json:"budget_tol"`
	// DedupTTL is how long the first decision for a pcs_id wins on the
	// server; verification itself does not use it.
	DedupTTL time.Duration `json:"-"`
}

// DefaultParams returns the contract's default tenant parameters.
func DefaultParams() Params {
	return Params{
		TolD:      0.15,
		TolCoh:    0.05,
		Alpha:     0.30,
		Beta:      0.50,
		Gamma:     0.20,
		Base:      0.10,
		D0:        2.2,
		BudgetTol: 0.01,
		DedupTTL:  14 * 24 * time.Hour,
	}
}

// Outcome is a verification decision, shaped like the gateway's JSON body.
// Recomputed values are pointers because the contract distinguishes "not
// computed" (absent) from any number.
type Outcome struct {
	// Accepted is false only for structural or D_hat failures.
	Accepted bool `json:"accepted"`
	// Escalated asks a human or a slower check to look at the record.
	Escalated bool `json:"escalated"`
	// RecomputedDHat is present once D_hat was recomputed (steps 3 to 8).
	RecomputedDHat *float64 `json:"recomputed_D_hat,omitempty"`
	// RecomputedBudget is present once the regime was checked (steps 5 to 8).
	RecomputedBudget *float64 `json:"recomputed_budget,omitempty"`
	// Reason explains every outcome except a plain acceptance.
	Reason string `json:"reason,omitempty"`
}

// HTTPStatus is the gateway's status for this outcome: 200 when accepted
// and not escalated, 202 otherwise.
func (o Outcome) HTTPStatus() int {
	if o.Accepted && !o.Escalated {
		return http.StatusOK
	}
	return http.StatusAccepted
}

// ExpectedRegime classifies claimed values (CONTRACT section 3.5).
func ExpectedRegime(dHat, cohStar float64) string {
	switch {
	case cohStar >= 0.70 && dHat <= 1.5:
		return RegimeSticky
	case dHat >= 2.6:
		return RegimeNonSticky
	default:
		return RegimeMixed
	}
}

// ComputeBudget returns clamp01(base + alpha*(1-r) + beta*max(0, D_hat-D0) +
// gamma*coh_star), rounded by Round9 (CONTRACT section 3.6).
//
// Each product is converted to float64 explicitly: the Go spec lets the
// compiler fuse x*y+z into one FMA on some CPUs (arm64), which rounds once
// instead of twice and could change the 9th decimal compared with the other
// implementations. An explicit conversion forbids the fusion.
func ComputeBudget(dHat, cohStar, r float64, p Params) float64 {
	b := p.Base
	b += float64(p.Alpha * (1 - r))
	b += float64(p.Beta * math.Max(0, dHat-p.D0))
	b += float64(p.Gamma * cohStar)
	return Round9(math.Min(1, math.Max(0, b)))
}

// Verify decides a PCS as the gateway does (CONTRACT section 3): pure and
// deterministic, the first failing step decides. Signatures are not checked
// here; that depends on the tenant's keys (see VerifyHMAC, VerifyEd25519).
func Verify(p *PCS, params Params) Outcome {
	if msg := validate(p); msg != "" {
		return Outcome{Escalated: true, Reason: "validation failed: " + msg}
	}
	recomputed, err := RecomputeDHat(p.Scales, p.NJ)
	if err != nil {
		return Outcome{Escalated: true, Reason: "D_hat recomputation failed: " + err.Error()}
	}
	out := Outcome{RecomputedDHat: &recomputed}
	if diff := math.Abs(p.DHat - recomputed); diff > params.TolD {
		out.Escalated = true
		out.Reason = fmt.Sprintf("D_hat out of tolerance: claimed=%.4f, recomputed=%.4f, diff=%.4f > tol=%.4f",
			p.DHat, recomputed, diff, params.TolD)
		return out
	}
	if upper := 1 + params.TolCoh; p.CohStar < 0 || p.CohStar > upper {
		out.Escalated = true
		out.Reason = fmt.Sprintf("coh_star out of bounds: %.4f not in [0, %.4f]", p.CohStar, upper)
		return out
	}
	out.Accepted = true
	budget := ComputeBudget(p.DHat, p.CohStar, p.RValue(), params)
	out.RecomputedBudget = &budget
	if expected := ExpectedRegime(p.DHat, p.CohStar); p.Regime != expected {
		out.Escalated = true
		out.Reason = fmt.Sprintf("regime mismatch: claimed=%s, expected=%s", p.Regime, expected)
		return out
	}
	if math.Abs(p.Budget-budget) > params.BudgetTol {
		out.Escalated = true
		out.Reason = fmt.Sprintf("budget deviation: claimed=%.4f, recomputed=%.4f", p.Budget, budget)
		return out
	}
	if p.FT != nil && p.FT.Degraded {
		out.Escalated = true
		out.Reason = "agent reported degraded mode"
	}
	return out
}

// validate runs the structural checks of step 1 in the contract's order and
// returns the first failure's message, or "".
func validate(p *PCS) string {
	switch {
	case p.PcsID == "":
		return "pcs_id is required"
	case p.Schema != Schema:
		return fmt.Sprintf("invalid schema: expected %s, got %s", Schema, p.Schema)
	case p.Version == "":
		return "version is required"
	case p.ShardID == "":
		return "shard_id is required"
	case p.Epoch < 0:
		return "epoch must be non-negative"
	case len(p.Scales) == 0:
		return "scales cannot be empty"
	case p.MerkleRoot == "":
		return "merkle_root is required"
	}
	if expected := PcsID(p.MerkleRoot, p.Epoch, p.ShardID); p.PcsID != expected {
		return fmt.Sprintf("pcs_id mismatch: expected %s, got %s", expected, p.PcsID)
	}
	return ""
}

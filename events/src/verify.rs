//! The verification function (CONTRACT section 3): pure, deterministic, first failing step decides.
//!
//! Where the contract is silent we follow the original verifier and record it in
//! `docs/decisions/0002-verification-outcome.md`: `recomputed_D_hat` appears from step 3 on,
//! `recomputed_budget` from step 5 on (computed from the *claimed* `D_hat`, `coh_star` and `r`),
//! and `reason` only when the outcome is not plainly accepted.

use serde::{Deserialize, Serialize};

use crate::canonical::derive_pcs_id;
use crate::decimal::{printf_fixed, round9};
use crate::outcome::OutcomeClass;
use crate::pcs::Pcs;

/// The only schema this verifier knows.
pub const SCHEMA: &str = "fractal-lba-kakeya";

/// Per-tenant verification parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyParams {
    /// Allowed |claimed - recomputed| for `D_hat`.
    #[serde(rename = "tol_D")]
    pub tol_d: f64,
    /// Allowed excess of `coh_star` over 1.
    pub tol_coh: f64,
    /// Budget weight of `1 - r`.
    pub alpha: f64,
    /// Budget weight of `max(0, D_hat - D0)`.
    pub beta: f64,
    /// Budget weight of `coh_star`.
    pub gamma: f64,
    /// Budget base.
    pub base: f64,
    /// Dimension threshold of the budget.
    #[serde(rename = "D0")]
    pub d0: f64,
    /// Allowed |claimed - recomputed| for the budget.
    pub budget_tol: f64,
}

impl Default for VerifyParams {
    fn default() -> Self {
        VerifyParams {
            tol_d: 0.15,
            tol_coh: 0.05,
            alpha: 0.30,
            beta: 0.50,
            gamma: 0.20,
            base: 0.10,
            d0: 2.2,
            budget_tol: 0.01,
        }
    }
}

impl VerifyParams {
    /// Rejects parameters that would make verification meaningless (negative or non-finite).
    pub fn validate(&self) -> Result<(), String> {
        let named = [
            ("tol_D", self.tol_d),
            ("tol_coh", self.tol_coh),
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("gamma", self.gamma),
            ("base", self.base),
            ("D0", self.d0),
            ("budget_tol", self.budget_tol),
        ];
        for (name, value) in named {
            if !value.is_finite() {
                return Err(format!("{name} must be a finite number"));
            }
        }
        for (name, value) in [
            ("tol_D", self.tol_d),
            ("tol_coh", self.tol_coh),
            ("budget_tol", self.budget_tol),
        ] {
            if value < 0.0 {
                return Err(format!("{name} must not be negative"));
            }
        }
        Ok(())
    }

    /// Budget from claimed values: clamp01(base + alpha(1-r) + beta max(0, D-D0) + gamma coh), round9.
    pub fn budget(&self, d_hat: f64, coh_star: f64, r: f64) -> f64 {
        let raw = self.base
            + self.alpha * (1.0 - r)
            + self.beta * (d_hat - self.d0).max(0.0)
            + self.gamma * coh_star;
        round9(raw.clamp(0.0, 1.0))
    }
}

/// The verification outcome; [`Outcome::to_json`] is the contract's response body.
///
/// The serde derive is for the binary envelope (every field always present); the JSON body leaves
/// absent values out, so it is written by `to_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The record is accepted.
    pub accepted: bool,
    /// A human should look at it.
    pub escalated: bool,
    /// `D_hat` recomputed from `scales` and `N_j` (from step 3 on).
    pub recomputed_d_hat_opt: Option<f64>,
    /// Budget recomputed from the claimed values (from step 5 on).
    pub recomputed_budget_opt: Option<f64>,
    /// Why the outcome is not plainly accepted.
    pub reason_opt: Option<String>,
}

impl Outcome {
    /// The contract's JSON body: absent values are left out.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("accepted".into(), self.accepted.into());
        body.insert("escalated".into(), self.escalated.into());
        if let Some(value) = self.recomputed_d_hat_opt {
            body.insert("recomputed_D_hat".into(), value.into());
        }
        if let Some(value) = self.recomputed_budget_opt {
            body.insert("recomputed_budget".into(), value.into());
        }
        if let Some(reason) = &self.reason_opt {
            body.insert("reason".into(), reason.clone().into());
        }
        serde_json::Value::Object(body)
    }

    /// The class of this outcome: accepted, escalated or rejected.
    pub fn class(&self) -> OutcomeClass {
        OutcomeClass::of_verification(self.accepted, self.escalated)
    }

    fn escalate(accepted: bool, reason: String) -> Self {
        Outcome {
            accepted,
            escalated: true,
            recomputed_d_hat_opt: None,
            recomputed_budget_opt: None,
            reason_opt: Some(reason),
        }
    }

    fn with_recomputed(mut self, d_hat_opt: Option<f64>, budget_opt: Option<f64>) -> Self {
        self.recomputed_d_hat_opt = d_hat_opt;
        self.recomputed_budget_opt = budget_opt;
        self
    }
}

/// Verifies a decoded PCS against the tenant's parameters.
pub fn verify(pcs: &Pcs, params: &VerifyParams) -> Outcome {
    if let Err(message) = validate_structure(pcs) {
        return Outcome::escalate(false, format!("validation failed: {message}"));
    }
    let recomputed_d_hat = match recompute_d_hat(&pcs.scales, |scale| {
        pcs.n_j.get(&scale.to_string()).copied()
    }) {
        Ok(value) => value,
        Err(message) => {
            return Outcome::escalate(false, format!("D_hat recomputation failed: {message}"));
        }
    };
    let fixed4 = |value: f64| printf_fixed(value, 4);
    let diff = (pcs.d_hat - recomputed_d_hat).abs();
    if diff > params.tol_d {
        let reason = format!(
            "D_hat out of tolerance: claimed={}, recomputed={}, diff={} > tol={}",
            fixed4(pcs.d_hat),
            fixed4(recomputed_d_hat),
            fixed4(diff),
            fixed4(params.tol_d)
        );
        return Outcome::escalate(false, reason).with_recomputed(Some(recomputed_d_hat), None);
    }
    let coh_max = 1.0 + params.tol_coh;
    if pcs.coh_star < 0.0 || pcs.coh_star > coh_max {
        let reason = format!(
            "coh_star out of bounds: {} not in [0, {}]",
            fixed4(pcs.coh_star),
            fixed4(coh_max)
        );
        return Outcome::escalate(false, reason).with_recomputed(Some(recomputed_d_hat), None);
    }
    let recomputed_budget = params.budget(pcs.d_hat, pcs.coh_star, pcs.r());
    let recomputed =
        |outcome: Outcome| outcome.with_recomputed(Some(recomputed_d_hat), Some(recomputed_budget));
    let expected_regime = classify_regime(pcs.d_hat, pcs.coh_star);
    if pcs.regime != expected_regime {
        let reason = format!(
            "regime mismatch: claimed={}, expected={expected_regime}",
            pcs.regime
        );
        return recomputed(Outcome::escalate(true, reason));
    }
    if (pcs.budget - recomputed_budget).abs() > params.budget_tol {
        let reason = format!(
            "budget deviation: claimed={}, recomputed={}",
            fixed4(pcs.budget),
            fixed4(recomputed_budget)
        );
        return recomputed(Outcome::escalate(true, reason));
    }
    if pcs.degraded() {
        return recomputed(Outcome::escalate(
            true,
            "agent reported degraded mode".to_owned(),
        ));
    }
    recomputed(Outcome {
        accepted: true,
        escalated: false,
        recomputed_d_hat_opt: None,
        recomputed_budget_opt: None,
        reason_opt: None,
    })
}

/// Step 1, in the contract's order.
fn validate_structure(pcs: &Pcs) -> Result<(), String> {
    if pcs.pcs_id.is_empty() {
        return Err("pcs_id is required".to_owned());
    }
    if pcs.schema != SCHEMA {
        return Err(format!(
            "invalid schema: expected {SCHEMA}, got {}",
            pcs.schema
        ));
    }
    if pcs.version.is_empty() {
        return Err("version is required".to_owned());
    }
    if pcs.shard_id.is_empty() {
        return Err("shard_id is required".to_owned());
    }
    if pcs.epoch < 0 {
        return Err("epoch must be non-negative".to_owned());
    }
    if pcs.scales.is_empty() {
        return Err("scales cannot be empty".to_owned());
    }
    if pcs.merkle_root.is_empty() {
        return Err("merkle_root is required".to_owned());
    }
    let expected = derive_pcs_id(&pcs.merkle_root, pcs.epoch, &pcs.shard_id);
    if pcs.pcs_id != expected {
        return Err(format!(
            "pcs_id mismatch: expected {expected}, got {}",
            pcs.pcs_id
        ));
    }
    Ok(())
}

/// Step 2: Theil-Sen slope of (log2 scale, log2 N_j), upper median, rounded to 9 decimals.
pub fn recompute_d_hat(
    scales: &[u64],
    count_of: impl Fn(u64) -> Option<i64>,
) -> Result<f64, String> {
    if scales.len() < 2 {
        return Err("need at least 2 scales for regression".to_owned());
    }
    let mut points = Vec::with_capacity(scales.len());
    for &scale in scales {
        let count =
            count_of(scale).ok_or_else(|| format!("missing N_j entry for scale {scale}"))?;
        if count <= 0 {
            return Err(format!("N_j must be positive for scale {scale}"));
        }
        points.push(((scale as f64).log2(), (count as f64).log2()));
    }
    let mut slopes = Vec::with_capacity(points.len() * (points.len() - 1) / 2);
    for (index, &(x_i, y_i)) in points.iter().enumerate() {
        for &(x_j, y_j) in &points[index + 1..] {
            let dx = x_j - x_i;
            if dx.abs() < 1e-9 {
                continue;
            }
            slopes.push((y_j - y_i) / dx);
        }
    }
    if slopes.is_empty() {
        return Err("no valid slopes computed".to_owned());
    }
    slopes.sort_by(f64::total_cmp);
    Ok(round9(slopes[slopes.len() / 2]))
}

/// Step 5: the regime the claimed values imply.
pub fn classify_regime(d_hat: f64, coh_star: f64) -> &'static str {
    if coh_star >= 0.70 && d_hat <= 1.5 {
        "sticky"
    } else if d_hat >= 2.6 {
        "non_sticky"
    } else {
        "mixed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(scales: &[u64], values: &[i64]) -> impl Fn(u64) -> Option<i64> {
        let table: Vec<(u64, i64)> = scales.iter().copied().zip(values.iter().copied()).collect();
        move |scale| table.iter().find(|(s, _)| *s == scale).map(|(_, n)| *n)
    }

    #[test]
    fn d_hat_contract_vectors() {
        let scales = [2, 4, 8, 16, 32];
        assert_eq!(
            recompute_d_hat(&scales, counts(&scales, &[3, 5, 9, 17, 31])),
            Ok(0.866733469)
        );
        let scales = [2, 4, 8, 16];
        assert_eq!(
            recompute_d_hat(&scales, counts(&scales, &[4, 8, 17, 20])),
            Ok(1.0)
        );
    }

    #[test]
    fn d_hat_failures() {
        assert_eq!(
            recompute_d_hat(&[2], |_| Some(1)),
            Err("need at least 2 scales for regression".to_owned())
        );
        assert_eq!(
            recompute_d_hat(&[2, 4], |scale| (scale == 2).then_some(1)),
            Err("missing N_j entry for scale 4".to_owned())
        );
        assert_eq!(
            recompute_d_hat(&[2, 4], |_| Some(0)),
            Err("N_j must be positive for scale 2".to_owned())
        );
        assert_eq!(
            recompute_d_hat(&[4, 4], |_| Some(3)),
            Err("no valid slopes computed".to_owned())
        );
    }

    #[test]
    fn budget_contract_vectors() {
        let params = VerifyParams::default();
        assert_eq!(
            params.budget(0.528320834, 0.066666667, 0.318421053),
            0.317807017
        );
        assert_eq!(params.budget(1.41, 0.73, 0.87), 0.285);
        assert_eq!(params.budget(3.0, 1.0, 0.1), 0.97);
    }

    #[test]
    fn regimes() {
        assert_eq!(classify_regime(1.5, 0.70), "sticky");
        assert_eq!(classify_regime(1.5000001, 0.9), "mixed");
        assert_eq!(classify_regime(2.6, 0.9), "non_sticky");
        assert_eq!(classify_regime(2.5999, 0.1), "mixed");
    }
}

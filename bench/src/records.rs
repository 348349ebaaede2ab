//! Signed PCS records built from generated point clouds, as an agent would build them.
//!
//! A simplified Rust port of the agent side (`sdk/python/src/flk_sdk/signals.py`): the occupied
//! voxel counts `N_j` and `D_hat` (the verifier's own Theil-Sen function) are computed exactly like
//! the agent computes them; `coh_star` uses a fixed set of directions instead of the agent's seeded
//! NumPy ones and `r` is the distinct-voxel fraction at the finest scale instead of a zlib ratio.
//! Neither matters to the verifier, which bounds `coh_star` and recomputes the budget from the
//! claimed values; what matters is that every claimed value is consistent, so the outcome is decided
//! by the shape alone:
//!
//! - `line` and `plane`: a noisy segment and a tilted square patch (`D_hat` near 1 and 2): regime
//!   `mixed`, accepted (200);
//! - `cluster`: most points in a tiny ball, a few along a ray: high coherence and low `D_hat`, regime
//!   `sticky`, accepted (200);
//! - `cloud`: uniform points in the unit cube, counted at coarse scales (`D_hat` near 2.8): regime
//!   `non_sticky`, accepted (200);
//! - `sparse`: too few points for a coherence estimate, so the agent falls back and reports degraded
//!   mode: accepted but escalated (202).
//!
//! Every record is unique (a fresh point cloud gives a fresh Merkle root and `pcs_id`) unless the
//! submission plan repeats it on purpose (a duplicate, answered from the dedup table).

use std::collections::HashSet;
use std::sync::Arc;

use events::decimal::round9;
use events::verify::{classify_regime, recompute_d_hat};
use events::{SignedFields, VerifyParams, derive_pcs_id, sign_hmac};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Box-counting scales of most records.
const SCALES: [u64; 5] = [2, 4, 8, 16, 32];

/// Coarse scales for uniform clouds: finer ones would saturate at the point count.
const COARSE_SCALES: [u64; 3] = [2, 4, 8];

/// Projection bins of the coherence estimate (as the agent).
const COHERENCE_BINS: usize = 20;

/// Directions tried by the coherence estimate.
const COHERENCE_DIRECTIONS: usize = 24;

/// Fewest points for which the agent computes coherence; below it reports degraded mode.
const MIN_POINTS_FOR_COHERENCE: usize = 48;

/// Chunk size of the agent's data Merkle tree (CONTRACT section 5).
const MERKLE_CHUNK: usize = 64;

/// The kinds of point cloud the generator draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A noisy segment (`D_hat` near 1).
    Line,
    /// A noisy square patch (`D_hat` near 2).
    Plane,
    /// A tight cluster with a few points along a ray (`sticky`).
    Cluster,
    /// Uniform points in the unit cube.
    Cloud,
    /// A handful of points: the agent reports degraded mode (202).
    Sparse,
}

impl Shape {
    /// How many points a record of this shape samples.
    fn point_count(self, rng: &mut StdRng) -> usize {
        match self {
            Shape::Sparse => rng.random_range(16..MIN_POINTS_FOR_COHERENCE),
            // Enough to fill most of the 512 voxels at scale 8, as a dense uniform cloud does.
            Shape::Cloud => rng.random_range(768..1024),
            _ => rng.random_range(192..512),
        }
    }

    /// The box-counting scales the agent uses for this shape.
    fn scales(self) -> &'static [u64] {
        match self {
            Shape::Cloud => &COARSE_SCALES,
            _ => &SCALES,
        }
    }
}

/// A signing tenant: its name, HMAC secret and verification parameters.
#[derive(Debug, Clone)]
pub struct SigningTenant {
    /// Tenant name (`X-Tenant-Id`, Kafka header `flk-tenant`).
    pub name: String,
    /// HMAC secret the tenant's records are signed with; `None` when signing is off.
    pub hmac_secret_opt: Option<Vec<u8>>,
    /// The tenant's parameters (the budget depends on them).
    pub params: VerifyParams,
}

/// One record ready to send.
#[derive(Debug, Clone)]
pub struct Record {
    /// Index of the tenant in the plan's tenant list.
    pub tenant: usize,
    /// The record's `pcs_id`.
    pub pcs_id: String,
    /// Shape the record was drawn from.
    pub shape: Shape,
    /// Compact JSON body.
    pub body: Arc<[u8]>,
}

/// A point in the unit cube.
type Point = [f64; 3];

/// Draws the points of one record.
fn sample(shape: Shape, rng: &mut StdRng) -> Vec<Point> {
    let count = shape.point_count(rng);
    let mut unit = || rng.random::<f64>();
    let noise = 0.002;
    let clamp = |value: f64| value.clamp(0.0, 0.999_999);
    match shape {
        Shape::Line => {
            let start = [unit() * 0.3, unit() * 0.3, unit() * 0.3];
            let end = [0.7 + unit() * 0.3, 0.7 + unit() * 0.3, 0.7 + unit() * 0.3];
            (0..count)
                .map(|_| {
                    let t = unit();
                    std::array::from_fn(|axis| {
                        clamp(start[axis] + t * (end[axis] - start[axis]) + noise * unit())
                    })
                })
                .collect()
        }
        Shape::Plane => {
            // Spanned by two orthogonal in-cube edges, tilted by a random height gradient.
            let tilt = unit() * 0.3;
            let base = unit() * 0.5;
            (0..count)
                .map(|_| {
                    let (u, v) = (unit(), unit());
                    [
                        u * 0.999,
                        v * 0.999,
                        clamp(base + tilt * u + noise * unit()),
                    ]
                })
                .collect()
        }
        Shape::Cluster => {
            let center = [0.2 + unit() * 0.3, 0.2 + unit() * 0.3, 0.2 + unit() * 0.3];
            let ray = [unit() * 0.4, unit() * 0.4, unit() * 0.4];
            (0..count)
                .map(|index| {
                    // One point in seven lies on the ray; the rest within 0.005 of the center.
                    let t = if index % 7 == 0 { unit() } else { 0.0 };
                    std::array::from_fn(|axis| {
                        clamp(center[axis] + t * ray[axis] + 0.005 * (unit() - 0.5))
                    })
                })
                .collect()
        }
        Shape::Cloud | Shape::Sparse => (0..count)
            .map(|_| [unit() * 0.999, unit() * 0.999, unit() * 0.999])
            .collect(),
    }
}

/// Distinct integer voxels `floor(point * scale)` per scale (the agent's `compute_n_j`).
fn occupied_voxels(points: &[Point], scale: u64) -> i64 {
    let voxels: HashSet<[i64; 3]> = points
        .iter()
        .map(|point| point.map(|coordinate| (coordinate * scale as f64).floor() as i64))
        .collect();
    voxels.len() as i64
}

/// Unit directions spread over the sphere (a Fibonacci spiral): fixed, so every run agrees.
fn directions() -> Vec<Point> {
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    (0..COHERENCE_DIRECTIONS)
        .map(|index| {
            let z = 1.0 - 2.0 * (index as f64 + 0.5) / COHERENCE_DIRECTIONS as f64;
            let radius = (1.0 - z * z).sqrt();
            let angle = golden * index as f64;
            [radius * angle.cos(), radius * angle.sin(), z]
        })
        .collect()
}

/// Best fraction of points in one projection bin over the directions, and that direction.
fn coherence(points: &[Point], directions: &[Point]) -> (f64, Point) {
    let mut best = (0.0, [1.0, 0.0, 0.0]);
    for direction in directions {
        let projected: Vec<f64> = points
            .iter()
            .map(|p| p[0] * direction[0] + p[1] * direction[1] + p[2] * direction[2])
            .collect();
        let low = projected.iter().copied().fold(f64::INFINITY, f64::min);
        let high = projected.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let fraction = if (high - low).abs() < 1e-9 {
            1.0
        } else {
            let mut bins = [0usize; COHERENCE_BINS];
            for value in &projected {
                let bin = ((value - low) / (high - low) * COHERENCE_BINS as f64) as usize;
                bins[bin.min(COHERENCE_BINS - 1)] += 1;
            }
            bins.iter().copied().max().unwrap_or(0) as f64 / points.len() as f64
        };
        if fraction > best.0 {
            best = (fraction, *direction);
        }
    }
    (round9(best.0), best.1)
}

/// The agent's Merkle root: hex-text leaves over 64-byte chunks, parents hash the concatenated hex.
fn merkle_root(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex = |bytes: &[u8]| -> String {
        let mut out = String::with_capacity(64);
        for byte in Sha256::digest(bytes) {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    };
    let mut level: Vec<String> = data.chunks(MERKLE_CHUNK).map(hex).collect();
    if level.is_empty() {
        return "0".repeat(64);
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let right = pair.get(1).unwrap_or(&pair[0]);
                hex(format!("{}{right}", pair[0]).as_bytes())
            })
            .collect();
    }
    level.swap_remove(0)
}

/// Builds one signed record of `shape` for `tenant` from `rng`.
pub fn build(
    tenant_index: usize,
    tenant: &SigningTenant,
    shape: Shape,
    agent: u64,
    epoch: i64,
    rng: &mut StdRng,
) -> Record {
    let points = sample(shape, rng);
    let rows: String = points
        .iter()
        .map(|p| format!("{:.6},{:.6},{:.6}\n", p[0], p[1], p[2]))
        .collect();
    let root = merkle_root(rows.as_bytes());
    let shard_id = format!("bench-agent-{agent:04}");
    let pcs_id = derive_pcs_id(&root, epoch, &shard_id);
    let scales = shape.scales();
    let n_j: Vec<(u64, i64)> = scales
        .iter()
        .map(|&scale| (scale, occupied_voxels(&points, scale)))
        .collect();
    // recompute_d_hat only fails for fewer than two scales or a zero count; neither can happen.
    let d_hat = recompute_d_hat(scales, |scale| {
        n_j.iter().find(|(s, _)| *s == scale).map(|(_, n)| *n)
    })
    .unwrap_or(0.0);
    let degraded = points.len() < MIN_POINTS_FOR_COHERENCE;
    let (coh_star, v_star) = if degraded {
        (0.0, [1.0, 0.0, 0.0])
    } else {
        coherence(&points, &directions())
    };
    let finest = n_j.last().map_or(0, |(_, n)| *n);
    let r = round9((finest as f64 / points.len() as f64).clamp(0.0, 1.0));
    let budget = tenant.params.budget(d_hat, coh_star, r);
    let regime = classify_regime(d_hat, coh_star);
    let signed = SignedFields {
        pcs_id: pcs_id.clone(),
        merkle_root: root.clone(),
        epoch,
        shard_id: shard_id.clone(),
        d_hat,
        coh_star,
        r,
        budget,
    };
    let sig = tenant
        .hmac_secret_opt
        .as_ref()
        .map(|secret| sign_hmac(secret, &signed.canonical_payload()));
    let n_j_object: serde_json::Map<String, serde_json::Value> = n_j
        .iter()
        .map(|(scale, count)| (scale.to_string(), json!(count)))
        .collect();
    let mut body = json!({
        "pcs_id": pcs_id,
        "schema": events::verify::SCHEMA,
        "version": "0.1",
        "shard_id": shard_id,
        "epoch": epoch,
        "attempt": 1,
        "sent_at": "2026-01-01T00:00:00Z",
        "seed": rng.random_range(0..1_000_000),
        "scales": scales,
        "N_j": n_j_object,
        "coh_star": coh_star,
        "v_star": v_star,
        "D_hat": d_hat,
        "r": r,
        "regime": regime,
        "budget": budget,
        "merkle_root": root,
        "ft": {
            "outbox_seq": epoch,
            "degraded": degraded,
            "fallbacks": if degraded { vec!["coherence-skipped"] } else { Vec::new() },
            "clock_skew_ms": 0,
        },
    });
    if let Some(sig) = sig {
        body["sig"] = json!(sig);
    }
    Record {
        tenant: tenant_index,
        pcs_id: signed.pcs_id,
        shape,
        body: serde_json::to_vec(&body).unwrap_or_default().into(),
    }
}

/// What the plan sends, in order: fresh records and, at the chosen ratio, repeats of recent ones.
#[derive(Debug)]
pub struct Plan {
    /// Tenants in the order records refer to them.
    pub tenants: Vec<SigningTenant>,
    /// The submissions, in send order.
    pub submissions: Vec<Record>,
    /// How many submissions repeat an earlier one.
    pub duplicates: usize,
}

impl Plan {
    /// Mean body size in bytes.
    pub fn mean_record_bytes(&self) -> f64 {
        if self.submissions.is_empty() {
            return 0.0;
        }
        let total: usize = self.submissions.iter().map(|r| r.body.len()).sum();
        total as f64 / self.submissions.len() as f64
    }

    /// Submissions by shape.
    pub fn shape_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for record in &self.submissions {
            *counts
                .entry(format!("{:?}", record.shape).to_lowercase())
                .or_default() += 1;
        }
        counts
    }
}

/// Builds `count` submissions over `tenants` (round robin by a random draw), `shapes` drawn evenly,
/// a `duplicate_ratio` share of them repeating one of the last 1,000 fresh records.
/// `progress` is called with the number built so far (every 1,000).
pub fn plan(
    tenants: Vec<SigningTenant>,
    shapes: &[Shape],
    count: usize,
    duplicate_ratio: f64,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut submissions: Vec<Record> = Vec::with_capacity(count);
    let mut fresh: Vec<usize> = Vec::with_capacity(count);
    let mut duplicates = 0;
    let shapes = if shapes.is_empty() {
        &[
            Shape::Line,
            Shape::Plane,
            Shape::Cluster,
            Shape::Cloud,
            Shape::Sparse,
        ][..]
    } else {
        shapes
    };
    for index in 0..count {
        if !fresh.is_empty() && rng.random::<f64>() < duplicate_ratio {
            let window = fresh.len().min(1_000);
            let original = fresh[fresh.len() - 1 - rng.random_range(0..window)];
            submissions.push(submissions[original].clone());
            duplicates += 1;
        } else if !tenants.is_empty() {
            let tenant_index = rng.random_range(0..tenants.len());
            let shape = shapes[rng.random_range(0..shapes.len())];
            let agent = rng.random_range(0..64);
            let epoch = (seed.wrapping_mul(1_000_003).wrapping_add(index as u64) >> 1) as i64;
            let record = build(
                tenant_index,
                &tenants[tenant_index],
                shape,
                agent,
                epoch,
                &mut rng,
            );
            fresh.push(submissions.len());
            submissions.push(record);
        }
        if index % 1_000 == 999 {
            progress(index + 1);
        }
    }
    Plan {
        tenants,
        submissions,
        duplicates,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use events::{OutcomeClass, TenantKey, TenantPolicy, Verdict, VerifyingSecret, decide};

    use super::*;

    fn tenant() -> SigningTenant {
        SigningTenant {
            name: "acme".into(),
            hmac_secret_opt: Some(b"acme-secret".to_vec()),
            params: VerifyParams::default(),
        }
    }

    fn policy() -> TenantPolicy {
        TenantPolicy {
            enabled: true,
            keys: vec![TenantKey {
                id: "k".into(),
                secret: VerifyingSecret::Hmac(b"acme-secret".to_vec()),
            }],
            accept_legacy_prehash: false,
            params: VerifyParams::default(),
            params_version: 1,
        }
    }

    /// Every shape verifies to the class the module promises: accepted (200), or escalated (202)
    /// for `sparse`.
    #[test]
    fn shapes_decide_as_documented() {
        let mut rng = StdRng::seed_from_u64(7);
        let policy = policy();
        let mut regimes: HashMap<&str, usize> = HashMap::new();
        for shape in [
            Shape::Line,
            Shape::Plane,
            Shape::Cluster,
            Shape::Cloud,
            Shape::Sparse,
        ] {
            for epoch in 0..20 {
                let record = build(0, &tenant(), shape, 1, epoch, &mut rng);
                let decision = decide(&record.body, "acme", Some(&policy));
                let expected = if shape == Shape::Sparse {
                    OutcomeClass::Escalated
                } else {
                    OutcomeClass::Accepted
                };
                match &decision.verdict {
                    Verdict::Verified { outcome } => {
                        assert!(outcome.accepted, "{shape:?}: {outcome:?}");
                        assert_eq!(outcome.class(), expected, "{shape:?}: {outcome:?}");
                    }
                    other => panic!("{shape:?}: {other:?}"),
                }
                let value: serde_json::Value = serde_json::from_slice(&record.body).unwrap();
                let regime = match value["regime"].as_str().unwrap() {
                    "sticky" => "sticky",
                    "mixed" => "mixed",
                    _ => "non_sticky",
                };
                *regimes.entry(regime).or_default() += 1;
                let expected_regime = match shape {
                    Shape::Cluster => "sticky",
                    Shape::Cloud => "non_sticky",
                    Shape::Line | Shape::Plane => "mixed",
                    Shape::Sparse => regime,
                };
                assert_eq!(regime, expected_regime, "{shape:?}: {value}");
                assert_eq!(decision.pcs_id_opt.as_deref(), Some(record.pcs_id.as_str()));
            }
        }
        // The shapes cover every regime, as real agents do.
        assert_eq!(regimes.len(), 3, "{regimes:?}");
    }

    #[test]
    fn plan_repeats_at_the_ratio_and_records_are_unique() {
        let plan = plan(vec![tenant()], &[], 2_000, 0.1, 3, |_| {});
        assert_eq!(plan.submissions.len(), 2_000);
        assert!((100..300).contains(&plan.duplicates), "{}", plan.duplicates);
        let distinct: HashSet<&str> = plan.submissions.iter().map(|r| r.pcs_id.as_str()).collect();
        assert_eq!(distinct.len(), 2_000 - plan.duplicates);
        // PCS-sized records: the ceiling run uses this size.
        assert!((500.0..1_200.0).contains(&plan.mean_record_bytes()));
    }

    #[test]
    fn merkle_root_matches_the_agent_for_small_inputs() {
        // One chunk: the root is the hex SHA-256 of it.
        assert_eq!(
            merkle_root(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(merkle_root(b""), "0".repeat(64));
    }
}

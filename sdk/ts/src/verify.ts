/**
 * PCS verification, CONTRACT section 3: a pure function of the record and the tenant's parameters.
 *
 * The server runs the same steps; an SDK runs them to predict the outcome before sending, and the
 * shared vector file pins that both agree, reason strings included, byte for byte.
 *
 * Decisions where the contract is silent (the Rust side makes the same):
 * - `recomputed_D_hat` is present from step 3 on (steps 3-8);
 * - `recomputed_budget` is present from step 5 on (a regime mismatch carries it), computed from the
 *   CLAIMED `D_hat`, `coh_star` and `r`;
 * - an absent `r` counts as 0.0;
 * - `reason` is omitted when accepted and not escalated.
 *
 * @module
 */

import { formatFixed, round9 } from "./decimal.js";
import { isNegative } from "./epoch.js";
import { PCS_SCHEMA, pcsId, type Pcs, type Regime } from "./pcs.js";

/** Per-tenant verification parameters (section 3). */
export interface VerifyParams {
  /** Allowed |claimed D_hat - recomputed|. */
  tol_D: number;
  /** coh_star may exceed 1 by this much. */
  tol_coh: number;
  /** Budget weight of (1 - r). */
  alpha: number;
  /** Budget weight of max(0, D_hat - D0). */
  beta: number;
  /** Budget weight of coh_star. */
  gamma: number;
  /** Budget constant term. */
  base: number;
  /** D_hat threshold above which the budget grows. */
  D0: number;
  /** Allowed |claimed budget - recomputed|. */
  budget_tol: number;
}

/** The contract's default parameters. */
export const DEFAULT_PARAMS: Readonly<VerifyParams> = Object.freeze({
  tol_D: 0.15,
  tol_coh: 0.05,
  alpha: 0.3,
  beta: 0.5,
  gamma: 0.2,
  base: 0.1,
  D0: 2.2,
  budget_tol: 0.01,
});

/** The verification outcome, shaped like the gateway's JSON body. */
export interface Outcome {
  accepted: boolean;
  escalated: boolean;
  /** Present from step 3 on. */
  recomputed_D_hat?: number;
  /** Present from step 5 on. */
  recomputed_budget?: number;
  /** Present unless accepted and not escalated. */
  reason?: string;
}

/** The HTTP status the gateway answers for an outcome: 200 when plainly accepted, else 202. */
export function outcomeStatus(outcome: Outcome): 200 | 202 {
  return outcome.accepted && !outcome.escalated ? 200 : 202;
}

/** Thrown by {@link recomputeDHat}; its message is the part after `D_hat recomputation failed: `. */
export class DHatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DHatError";
  }
}

/**
 * Step 2: the upper median of pairwise slopes of (log2 scale, log2 N_j), rounded to 9 decimals.
 * The median of all pair slopes (Theil-Sen) resists one bad scale better than a least-squares fit.
 */
export function recomputeDHat(scales: readonly number[], counts: Readonly<Record<string, number>>): number {
  if (scales.length < 2) {
    throw new DHatError("need at least 2 scales for regression");
  }
  const points: Array<[number, number]> = [];
  for (const scale of scales) {
    const key = String(scale);
    if (!Object.prototype.hasOwnProperty.call(counts, key)) {
      throw new DHatError(`missing N_j entry for scale ${key}`);
    }
    const count = counts[key] as number;
    if (!(count > 0)) {
      throw new DHatError(`N_j must be positive for scale ${key}`);
    }
    points.push([Math.log2(scale), Math.log2(count)]);
  }
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const [xi, yi] = points[i] as [number, number];
      const [xj, yj] = points[j] as [number, number];
      const dx = xj - xi;
      if (Math.abs(dx) < 1e-9) {
        continue; // repeated scale: no slope
      }
      slopes.push((yj - yi) / dx);
    }
  }
  if (slopes.length === 0) {
    throw new DHatError("no valid slopes computed");
  }
  slopes.sort((a, b) => a - b);
  return round9(slopes[Math.floor(slopes.length / 2)] as number);
}

/** Step 5: the regime the claimed values imply. */
export function expectedRegime(dHat: number, cohStar: number): Regime {
  if (cohStar >= 0.7 && dHat <= 1.5) {
    return "sticky";
  }
  return dHat >= 2.6 ? "non_sticky" : "mixed";
}

/** Step 6: clamp01(base + alpha(1-r) + beta max(0, D_hat-D0) + gamma coh_star), rounded to 9 decimals. */
export function computeBudget(
  dHat: number,
  cohStar: number,
  r: number,
  params: Readonly<VerifyParams> = DEFAULT_PARAMS,
): number {
  // Summed left to right, as the server does; float addition is not associative.
  const raw =
    params.base + params.alpha * (1 - r) + params.beta * Math.max(0, dHat - params.D0) + params.gamma * cohStar;
  return round9(Math.min(1, Math.max(0, raw)));
}

const f4 = (x: number): string => formatFixed(x, 4);

function structuralError(pcs: Pcs): string | null {
  if (pcs.pcs_id === "") return "pcs_id is required";
  if (pcs.schema !== PCS_SCHEMA) return `invalid schema: expected ${PCS_SCHEMA}, got ${pcs.schema}`;
  if (pcs.version === "") return "version is required";
  if (pcs.shard_id === "") return "shard_id is required";
  if (isNegative(pcs.epoch)) return "epoch must be non-negative";
  if (pcs.scales.length === 0) return "scales cannot be empty";
  if (pcs.merkle_root === "") return "merkle_root is required";
  const expected = pcsId(pcs.merkle_root, pcs.epoch, pcs.shard_id);
  if (pcs.pcs_id !== expected) return `pcs_id mismatch: expected ${expected}, got ${pcs.pcs_id}`;
  return null;
}

/**
 * Runs section 3 on a decoded PCS (signatures are checked separately). The first failing step decides.
 * @param params per-tenant overrides of {@link DEFAULT_PARAMS}.
 */
export function verifyPcs(pcs: Pcs, params: Partial<VerifyParams> = {}): Outcome {
  const p: VerifyParams = { ...DEFAULT_PARAMS, ...params };

  const structural = structuralError(pcs);
  if (structural !== null) {
    return { accepted: false, escalated: true, reason: `validation failed: ${structural}` };
  }

  let recomputedDHat: number;
  try {
    recomputedDHat = recomputeDHat(pcs.scales, pcs.N_j);
  } catch (error) {
    if (error instanceof DHatError) {
      return { accepted: false, escalated: true, reason: `D_hat recomputation failed: ${error.message}` };
    }
    throw error;
  }

  const diff = Math.abs(pcs.D_hat - recomputedDHat);
  if (diff > p.tol_D) {
    return {
      accepted: false,
      escalated: true,
      recomputed_D_hat: recomputedDHat,
      reason: `D_hat out of tolerance: claimed=${f4(pcs.D_hat)}, recomputed=${f4(recomputedDHat)}, diff=${f4(diff)} > tol=${f4(p.tol_D)}`,
    };
  }

  const cohLimit = 1 + p.tol_coh;
  if (pcs.coh_star < 0 || pcs.coh_star > cohLimit) {
    return {
      accepted: false,
      escalated: true,
      recomputed_D_hat: recomputedDHat,
      reason: `coh_star out of bounds: ${f4(pcs.coh_star)} not in [0, ${f4(cohLimit)}]`,
    };
  }

  const recomputedBudget = computeBudget(pcs.D_hat, pcs.coh_star, pcs.r ?? 0, p);
  const escalate = (reason: string): Outcome => ({
    accepted: true,
    escalated: true,
    recomputed_D_hat: recomputedDHat,
    recomputed_budget: recomputedBudget,
    reason,
  });

  const regime = expectedRegime(pcs.D_hat, pcs.coh_star);
  if (pcs.regime !== regime) {
    return escalate(`regime mismatch: claimed=${pcs.regime}, expected=${regime}`);
  }
  if (Math.abs(pcs.budget - recomputedBudget) > p.budget_tol) {
    return escalate(`budget deviation: claimed=${f4(pcs.budget)}, recomputed=${f4(recomputedBudget)}`);
  }
  if (pcs.ft?.degraded === true) {
    return escalate("agent reported degraded mode");
  }
  return { accepted: true, escalated: false, recomputed_D_hat: recomputedDHat, recomputed_budget: recomputedBudget };
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { decodePcs } from "../src/decode.js";
import { pcsId, type Pcs } from "../src/pcs.js";
import { computeBudget, expectedRegime, outcomeStatus, recomputeDHat, verifyPcs } from "../src/verify.js";
import { golden } from "./fixtures.js";

/** A valid, accepted PCS built from the contract's section 3 vectors. */
function basePcs(): Pcs {
  const merkle = "abc123";
  return {
    pcs_id: pcsId(merkle, 1, "shard-001"),
    schema: "fractal-lba-kakeya",
    version: "0.1",
    shard_id: "shard-001",
    epoch: 1,
    scales: [2, 4, 8, 16],
    N_j: { "2": 4, "4": 8, "8": 17, "16": 20 },
    coh_star: 0.73,
    D_hat: 1.0,
    r: 0.87,
    regime: "sticky",
    budget: 0.285,
    merkle_root: merkle,
  };
}

describe("section 3 vectors", () => {
  it("recomputes D_hat as the upper median of pair slopes", () => {
    assert.equal(recomputeDHat([2, 4, 8, 16, 32], { "2": 3, "4": 5, "8": 9, "16": 17, "32": 31 }), 0.866733469);
    assert.equal(recomputeDHat([2, 4, 8, 16], { "2": 4, "4": 8, "8": 17, "16": 20 }), 1.0);
  });

  it("computes the budget", () => {
    assert.equal(computeBudget(0.528320834, 0.066666667, 0.318421053), 0.317807017);
    assert.equal(computeBudget(1.41, 0.73, 0.87), 0.285);
    assert.equal(computeBudget(3.0, 1.0, 0.1), 0.97);
    assert.equal(computeBudget(10, 1, 0), 1); // clamped
  });

  it("classifies regimes from the claimed values", () => {
    assert.equal(expectedRegime(1.5, 0.7), "sticky");
    assert.equal(expectedRegime(1.51, 0.7), "mixed");
    assert.equal(expectedRegime(2.6, 0.9), "non_sticky");
    assert.equal(expectedRegime(1.0, 0.69), "mixed");
  });

  it("accepts both golden records with status 200 and no reason", () => {
    for (const name of ["pcs_tiny_case_1.json", "pcs_tiny_case_2.json"]) {
      const outcome = verifyPcs(decodePcs(golden(name)));
      assert.equal(outcome.accepted, true);
      assert.equal(outcome.escalated, false);
      assert.equal("reason" in outcome, false);
      assert.equal(outcomeStatus(outcome), 200);
    }
    assert.deepEqual(verifyPcs(decodePcs(golden("pcs_tiny_case_1.json"))), {
      accepted: true,
      escalated: false,
      recomputed_D_hat: 0.528320834,
      recomputed_budget: 0.317807017,
    });
  });
});

describe("verifyPcs steps", () => {
  it("accepts the base record", () => {
    assert.deepEqual(verifyPcs(basePcs()), { accepted: true, escalated: false, recomputed_D_hat: 1, recomputed_budget: 0.285 });
  });

  it("step 1: structural validation in the contract's order", () => {
    const expectFail = (pcs: Pcs, message: string) =>
      assert.deepEqual(verifyPcs(pcs), { accepted: false, escalated: true, reason: `validation failed: ${message}` });
    expectFail({ ...basePcs(), pcs_id: "", schema: "x" }, "pcs_id is required");
    expectFail({ ...basePcs(), schema: "other", version: "" }, "invalid schema: expected fractal-lba-kakeya, got other");
    expectFail({ ...basePcs(), version: "", shard_id: "" }, "version is required");
    expectFail({ ...basePcs(), shard_id: "" }, "shard_id is required");
    expectFail({ ...basePcs(), epoch: -1, scales: [] }, "epoch must be non-negative");
    expectFail({ ...basePcs(), epoch: -(2n ** 62n) }, "epoch must be non-negative");
    expectFail({ ...basePcs(), scales: [], merkle_root: "" }, "scales cannot be empty");
    expectFail({ ...basePcs(), merkle_root: "" }, "merkle_root is required");
    expectFail(
      { ...basePcs(), pcs_id: "nope" },
      `pcs_id mismatch: expected ${pcsId("abc123", 1, "shard-001")}, got nope`,
    );
  });

  it("step 2: D_hat recomputation failures", () => {
    const expectFail = (patch: Partial<Pcs>, message: string) =>
      assert.deepEqual(verifyPcs({ ...basePcs(), ...patch }), {
        accepted: false,
        escalated: true,
        reason: `D_hat recomputation failed: ${message}`,
      });
    expectFail({ scales: [2] }, "need at least 2 scales for regression");
    expectFail({ scales: [2, 32] }, "missing N_j entry for scale 32");
    expectFail({ N_j: { "2": 4, "4": 0, "8": 17, "16": 20 } }, "N_j must be positive for scale 4");
    expectFail({ N_j: { "2": -4, "4": 8, "8": 17, "16": 20 } }, "N_j must be positive for scale 2");
    expectFail({ scales: [4, 4] }, "no valid slopes computed");
  });

  it("step 3: D_hat out of tolerance, with printf-style numbers", () => {
    assert.deepEqual(verifyPcs({ ...basePcs(), D_hat: 1.2 }), {
      accepted: false,
      escalated: true,
      recomputed_D_hat: 1,
      reason: "D_hat out of tolerance: claimed=1.2000, recomputed=1.0000, diff=0.2000 > tol=0.1500",
    });
    // Exactly at the tolerance is still inside (strict >).
    assert.equal(verifyPcs({ ...basePcs(), D_hat: 1.125 }, { tol_D: 0.125 }).accepted, true);
  });

  it("step 4: coh_star out of bounds", () => {
    assert.deepEqual(verifyPcs({ ...basePcs(), coh_star: 1.2 }), {
      accepted: false,
      escalated: true,
      recomputed_D_hat: 1,
      reason: "coh_star out of bounds: 1.2000 not in [0, 1.0500]",
    });
    assert.equal(verifyPcs({ ...basePcs(), coh_star: -0.00001 }).reason, "coh_star out of bounds: -0.0000 not in [0, 1.0500]");
  });

  it("step 5: regime mismatch carries the recomputed budget", () => {
    assert.deepEqual(verifyPcs({ ...basePcs(), regime: "mixed" }), {
      accepted: true,
      escalated: true,
      recomputed_D_hat: 1,
      recomputed_budget: 0.285,
      reason: "regime mismatch: claimed=mixed, expected=sticky",
    });
    assert.equal(verifyPcs({ ...basePcs(), regime: "chaotic" }).reason, "regime mismatch: claimed=chaotic, expected=sticky");
  });

  it("step 6: budget deviation", () => {
    assert.deepEqual(verifyPcs({ ...basePcs(), budget: 0.3 }), {
      accepted: true,
      escalated: true,
      recomputed_D_hat: 1,
      recomputed_budget: 0.285,
      reason: "budget deviation: claimed=0.3000, recomputed=0.2850",
    });
    assert.equal(verifyPcs({ ...basePcs(), budget: 0.3 }, { budget_tol: 0.02 }).escalated, false);
  });

  it("step 6: absent r counts as 0.0", () => {
    const { r: _r, ...withoutR } = basePcs();
    const outcome = verifyPcs(withoutR);
    assert.equal(outcome.recomputed_budget, computeBudget(1.0, 0.73, 0));
    assert.equal(outcome.reason, `budget deviation: claimed=0.2850, recomputed=0.5460`);
  });

  it("step 7: degraded mode escalates", () => {
    assert.deepEqual(verifyPcs({ ...basePcs(), ft: { degraded: true } }), {
      accepted: true,
      escalated: true,
      recomputed_D_hat: 1,
      recomputed_budget: 0.285,
      reason: "agent reported degraded mode",
    });
  });

  it("is deterministic and does not mutate its input", () => {
    const pcs = basePcs();
    const frozen = JSON.stringify(pcs);
    assert.deepEqual(verifyPcs(pcs), verifyPcs(pcs));
    assert.equal(JSON.stringify(pcs), frozen);
  });
});

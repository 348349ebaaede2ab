"""CONTRACT section 3 as a pure function: each step's outcome and byte-exact reason."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from flk_sdk.canonical import compute_pcs_id
from flk_sdk.pcs import FT, PCS, decode_pcs
from flk_sdk.verify import (
    Outcome,
    VerifyParams,
    classify_regime,
    compute_budget,
    recompute_d_hat,
    verify,
)


def counts(table: dict):
    return lambda s: table.get(s)


def test_d_hat_contract_vectors() -> None:
    assert recompute_d_hat([2, 4, 8, 16, 32], counts({2: 3, 4: 5, 8: 9, 16: 17, 32: 31})) == 0.866733469
    assert recompute_d_hat([2, 4, 8, 16], counts({2: 4, 4: 8, 8: 17, 16: 20})) == 1.0


@pytest.mark.parametrize("scales,table,message", [
    ([2], {2: 1}, "need at least 2 scales for regression"),
    ([2, 4], {2: 1}, "missing N_j entry for scale 4"),
    ([2, 4], {2: 0, 4: 0}, "N_j must be positive for scale 2"),
    ([2, 4], {2: 1, 4: -1}, "N_j must be positive for scale 4"),
    ([4, 4], {4: 3}, "no valid slopes computed"),
])
def test_d_hat_failures(scales, table, message) -> None:
    with pytest.raises(ValueError) as info:
        recompute_d_hat(scales, counts(table))
    assert str(info.value) == message


def test_budget_contract_vectors() -> None:
    assert compute_budget(0.528320834, 0.066666667, 0.318421053) == 0.317807017
    assert compute_budget(1.41, 0.73, 0.87) == 0.285
    assert compute_budget(3.0, 1.0, 0.1) == 0.97
    assert compute_budget(9.0, 1.0, 0.0) == 1.0  # clamped
    assert compute_budget(0.0, 0.0, 5.0, VerifyParams(base=0.0)) == 0.0


def test_regimes() -> None:
    assert classify_regime(1.5, 0.70) == "sticky"
    assert classify_regime(1.5000001, 0.9) == "mixed"
    assert classify_regime(2.6, 0.9) == "non_sticky"
    assert classify_regime(2.5999, 0.1) == "mixed"


def base_pcs(**overrides) -> PCS:
    """A record that passes every step (D_hat 1.0 from the contract's second vector)."""
    pcs = PCS(pcs_id="", shard_id="shard-001", epoch=1, scales=[2, 4, 8, 16],
              N_j={"2": 4, "4": 8, "8": 17, "16": 20}, coh_star=0.73, D_hat=1.0, regime="sticky",
              budget=0.0, merkle_root="abc123", r=0.87)
    pcs.budget = compute_budget(pcs.D_hat, pcs.coh_star, pcs.r)
    pcs = replace(pcs, **overrides)
    if "pcs_id" not in overrides:
        pcs.pcs_id = compute_pcs_id(pcs.merkle_root, pcs.epoch, pcs.shard_id)
    return pcs


def test_accepted_plain() -> None:
    outcome = verify(base_pcs())
    assert outcome.to_dict() == {"accepted": True, "escalated": False, "recomputed_D_hat": 1.0,
                                 "recomputed_budget": compute_budget(1.0, 0.73, 0.87)}
    assert "reason" not in outcome.to_dict()
    assert outcome.http_status == 200


@pytest.mark.parametrize("overrides,reason", [
    ({"pcs_id": ""}, "validation failed: pcs_id is required"),
    ({"schema": "other"}, "validation failed: invalid schema: expected fractal-lba-kakeya, got other"),
    ({"schema": ""}, "validation failed: invalid schema: expected fractal-lba-kakeya, got "),
    ({"version": ""}, "validation failed: version is required"),
    ({"shard_id": ""}, "validation failed: shard_id is required"),
    ({"epoch": -1}, "validation failed: epoch must be non-negative"),
    ({"scales": []}, "validation failed: scales cannot be empty"),
    ({"merkle_root": ""}, "validation failed: merkle_root is required"),
    ({"pcs_id": "nope"}, "validation failed: pcs_id mismatch: expected "
     "9c2a1a9fe3d87edab9aaee193852edc091aa03e263580f9556f1f0d0f1679b93, got nope"),
    ({"scales": [2]}, "D_hat recomputation failed: need at least 2 scales for regression"),
    ({"scales": [2, 32]}, "D_hat recomputation failed: missing N_j entry for scale 32"),
    ({"N_j": {"2": 0, "4": 1}}, "D_hat recomputation failed: N_j must be positive for scale 2"),
])
def test_rejections_without_recomputed_values(overrides, reason) -> None:
    outcome = verify(base_pcs(**overrides))
    assert outcome.to_dict() == {"accepted": False, "escalated": True, "reason": reason}
    assert outcome.http_status == 202


def test_step_order_first_failure_wins() -> None:
    outcome = verify(base_pcs(version="", shard_id="", pcs_id="x"))
    assert outcome.reason == "validation failed: version is required"


def test_d_hat_out_of_tolerance() -> None:
    outcome = verify(base_pcs(D_hat=1.5))
    assert outcome.to_dict() == {
        "accepted": False, "escalated": True, "recomputed_D_hat": 1.0,
        "reason": "D_hat out of tolerance: claimed=1.5000, recomputed=1.0000, diff=0.5000 > tol=0.1500"}
    assert verify(base_pcs(D_hat=1.5), VerifyParams(tol_D=0.6)).reason != outcome.reason


@pytest.mark.parametrize("coh,shown", [(-0.01, "-0.0100"), (1.0500001, "1.0500")])
def test_coh_star_out_of_bounds(coh: float, shown: str) -> None:
    outcome = verify(base_pcs(coh_star=coh))
    assert outcome.to_dict() == {"accepted": False, "escalated": True, "recomputed_D_hat": 1.0,
                                 "reason": f"coh_star out of bounds: {shown} not in [0, 1.0500]"}


def test_coh_star_bound_is_inclusive() -> None:
    assert not verify(base_pcs(coh_star=1.05, regime="sticky")).reason.startswith("coh_star")


def test_regime_mismatch_carries_budget_from_claimed_values() -> None:
    outcome = verify(base_pcs(regime="mixed", budget=0.9))
    assert outcome.to_dict() == {
        "accepted": True, "escalated": True, "recomputed_D_hat": 1.0,
        "recomputed_budget": compute_budget(1.0, 0.73, 0.87),
        "reason": "regime mismatch: claimed=mixed, expected=sticky"}


def test_budget_deviation() -> None:
    outcome = verify(base_pcs(budget=0.5))
    assert outcome.accepted and outcome.escalated
    assert outcome.reason == "budget deviation: claimed=0.5000, recomputed=0.2850"
    assert verify(base_pcs(budget=0.294)).reason is None  # within 0.01


def test_missing_r_counts_as_zero() -> None:
    pcs = base_pcs(r=None)
    outcome = verify(pcs)
    assert outcome.recomputed_budget == compute_budget(1.0, 0.73, 0.0)
    assert outcome.reason.startswith("budget deviation")


def test_degraded() -> None:
    outcome = verify(base_pcs(ft=FT(degraded=True)))
    assert (outcome.accepted, outcome.escalated, outcome.reason) == (
        True, True, "agent reported degraded mode")


def test_percent_4f_rounds_exact_binary_half_even() -> None:
    # The same cases the Rust printf_fixed pins.
    assert ["%.4f" % x for x in (0.15625, 0.03125, 0.09375, 1.05, -0.00001, 1e20)] == [
        "0.1562", "0.0312", "0.0938", "1.0500", "-0.0000", "100000000000000000000.0000"]


def test_params_from_dict() -> None:
    assert VerifyParams.from_dict({"tol_D": 1, "D0": 3}) == VerifyParams(tol_D=1.0, D0=3.0)
    with pytest.raises(ValueError):
        VerifyParams.from_dict({"tol_d": 1})


def test_golden_records_are_accepted(golden: Path) -> None:
    for n in (1, 2):
        pcs = decode_pcs((golden / f"pcs_tiny_case_{n}.json").read_text())
        outcome = verify(pcs)
        assert (outcome.accepted, outcome.escalated) == (True, False)
        assert outcome.recomputed_D_hat == pcs.D_hat and outcome.recomputed_budget == pcs.budget


def test_outcome_round_trip_keeps_extra_fields() -> None:
    body = {"accepted": True, "escalated": False, "recomputed_D_hat": 1, "pcs_id": "x", "region": "eu"}
    outcome = Outcome.from_dict(body)
    assert outcome.recomputed_D_hat == 1.0 and outcome.extra == {"pcs_id": "x", "region": "eu"}
    assert json.loads(json.dumps(outcome.to_dict())) == dict(body, recomputed_D_hat=1.0)

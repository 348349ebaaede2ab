"""Verification (CONTRACT section 3) as a pure function, so an agent can pre-check a record.

The server runs the same steps; reproducing them here lets an SDK user learn *before* sending that a
record would be escalated, with the byte-identical reason the server would give. Where the contract
is silent this follows the Rust server's decisions:

- ``recomputed_D_hat`` is in the outcome from step 3 on, ``recomputed_budget`` from step 5 on (the
  regime-mismatch outcome included);
- the recomputed budget uses the *claimed* ``D_hat``, ``coh_star`` and ``r`` (``r`` absent = 0.0);
- ``reason`` is omitted when the record is accepted and not escalated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .canonical import compute_pcs_id, round9
from .pcs import PCS, SCHEMA

__all__ = [
    "DEFAULT_PARAMS",
    "Outcome",
    "VerifyParams",
    "classify_regime",
    "compute_budget",
    "recompute_d_hat",
    "verify",
]


@dataclass(frozen=True)
class VerifyParams:
    """Per-tenant verification parameters (defaults are the contract's)."""

    tol_D: float = 0.15
    """Allowed |claimed - recomputed| for ``D_hat``."""
    tol_coh: float = 0.05
    """How far ``coh_star`` may exceed 1 (estimation noise)."""
    alpha: float = 0.30
    """Budget weight of ``1 - r``."""
    beta: float = 0.50
    """Budget weight of ``max(0, D_hat - D0)``."""
    gamma: float = 0.20
    """Budget weight of ``coh_star``."""
    base: float = 0.10
    """Budget floor before clamping."""
    D0: float = 2.2
    """Dimension above which the budget grows."""
    budget_tol: float = 0.01
    """Allowed |claimed - recomputed| for the budget."""

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any]) -> "VerifyParams":
        """Build from a (partial) mapping such as a vector's ``params``; unknown names are errors."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown verification parameters: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in overrides.items()})


#: The contract's default parameters (immutable, so safe to share as a default argument).
DEFAULT_PARAMS = VerifyParams()


@dataclass
class Outcome:
    """A verification outcome; :meth:`to_dict` is the contract's response body."""

    accepted: bool
    """The record is accepted (it may still be escalated)."""
    escalated: bool
    """A human should look at it."""
    recomputed_D_hat: Optional[float] = None
    """``D_hat`` recomputed from ``scales``/``N_j`` (present from step 3 on)."""
    recomputed_budget: Optional[float] = None
    """Budget recomputed from the claimed values (present from step 5 on)."""
    reason: Optional[str] = None
    """Why the outcome is not plainly accepted."""
    extra: Dict[str, Any] = field(default_factory=dict)
    """Extra fields a server may add (``pcs_id``, ``region``, ``audit_seq``...)."""

    @property
    def http_status(self) -> int:
        """200 for accepted and not escalated, else 202 (CONTRACT section 4)."""
        return 200 if self.accepted and not self.escalated else 202

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"accepted": self.accepted, "escalated": self.escalated}
        if self.recomputed_D_hat is not None:
            out["recomputed_D_hat"] = self.recomputed_D_hat
        if self.recomputed_budget is not None:
            out["recomputed_budget"] = self.recomputed_budget
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> "Outcome":
        """Parse a server outcome body, keeping unknown fields in :attr:`extra`."""
        core = {"accepted", "escalated", "recomputed_D_hat", "recomputed_budget", "reason"}
        return cls(
            accepted=bool(body.get("accepted", False)),
            escalated=bool(body.get("escalated", False)),
            recomputed_D_hat=_opt_float(body.get("recomputed_D_hat")),
            recomputed_budget=_opt_float(body.get("recomputed_budget")),
            reason=body.get("reason") if isinstance(body.get("reason"), str) else None,
            extra={k: v for k, v in body.items() if k not in core},
        )


def _opt_float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class _StepFailure(Exception):
    pass


def recompute_d_hat(scales: Sequence[int], count_of: Callable[[int], Optional[int]]) -> float:
    """Theil-Sen slope of (log2 scale, log2 N_j), *upper* median, round9 (CONTRACT 3.2).

    Theil-Sen tolerates an outlier scale; the upper median (``slopes[n // 2]``) is what the original
    verifier used, so an even number of slopes never averages. Raises ``ValueError`` with the
    contract's message.
    """
    if len(scales) < 2:
        raise ValueError("need at least 2 scales for regression")
    points = []
    for scale in scales:
        count = count_of(scale)
        if count is None:
            raise ValueError(f"missing N_j entry for scale {scale}")
        if count <= 0:
            raise ValueError(f"N_j must be positive for scale {scale}")
        points.append((math.log2(scale), math.log2(count)))
    slopes: List[float] = []
    for i, (x_i, y_i) in enumerate(points):
        for x_j, y_j in points[i + 1:]:
            dx = x_j - x_i
            if abs(dx) < 1e-9:
                continue
            slopes.append((y_j - y_i) / dx)
    if not slopes:
        raise ValueError("no valid slopes computed")
    slopes.sort()
    return round9(slopes[len(slopes) // 2])


def compute_budget(D_hat: float, coh_star: float, r: float, params: VerifyParams = DEFAULT_PARAMS) -> float:
    """clamp01(base + alpha(1-r) + beta max(0, D_hat-D0) + gamma coh_star), round9 (CONTRACT 3.6).

    The terms are added left to right exactly as written: float addition is not associative, and
    the server evaluates in this order.
    """
    raw = (params.base + params.alpha * (1.0 - r) + params.beta * max(D_hat - params.D0, 0.0)
           + params.gamma * coh_star)
    return round9(min(max(raw, 0.0), 1.0))


def classify_regime(D_hat: float, coh_star: float) -> str:
    """Regime implied by the claimed values (CONTRACT 3.5)."""
    if coh_star >= 0.70 and D_hat <= 1.5:
        return "sticky"
    if D_hat >= 2.6:
        return "non_sticky"
    return "mixed"


def _f4(x: float) -> str:
    # C's %.4f: the exact binary value rounded half-to-even, which Python's % operator does.
    return "%.4f" % x


def _validate_structure(pcs: PCS) -> None:
    if not pcs.pcs_id:
        raise _StepFailure("pcs_id is required")
    if pcs.schema != SCHEMA:
        raise _StepFailure(f"invalid schema: expected {SCHEMA}, got {pcs.schema}")
    if not pcs.version:
        raise _StepFailure("version is required")
    if not pcs.shard_id:
        raise _StepFailure("shard_id is required")
    if pcs.epoch < 0:
        raise _StepFailure("epoch must be non-negative")
    if not pcs.scales:
        raise _StepFailure("scales cannot be empty")
    if not pcs.merkle_root:
        raise _StepFailure("merkle_root is required")
    expected = compute_pcs_id(pcs.merkle_root, pcs.epoch, pcs.shard_id)
    if pcs.pcs_id != expected:
        raise _StepFailure(f"pcs_id mismatch: expected {expected}, got {pcs.pcs_id}")


def verify(pcs: PCS, params: VerifyParams = DEFAULT_PARAMS) -> Outcome:
    """Run CONTRACT section 3 on a decoded PCS; the first failing step decides. Pure."""
    try:
        _validate_structure(pcs)
    except _StepFailure as exc:
        return Outcome(False, True, reason=f"validation failed: {exc}")
    try:
        recomputed = recompute_d_hat(pcs.scales, lambda s: pcs.N_j.get(str(s)))
    except ValueError as exc:
        return Outcome(False, True, reason=f"D_hat recomputation failed: {exc}")
    diff = abs(pcs.D_hat - recomputed)
    if diff > params.tol_D:
        reason = (f"D_hat out of tolerance: claimed={_f4(pcs.D_hat)}, recomputed={_f4(recomputed)}, "
                  f"diff={_f4(diff)} > tol={_f4(params.tol_D)}")
        return Outcome(False, True, recomputed_D_hat=recomputed, reason=reason)
    coh_max = 1.0 + params.tol_coh
    if pcs.coh_star < 0.0 or pcs.coh_star > coh_max:
        reason = f"coh_star out of bounds: {_f4(pcs.coh_star)} not in [0, {_f4(coh_max)}]"
        return Outcome(False, True, recomputed_D_hat=recomputed, reason=reason)
    r = 0.0 if pcs.r is None else pcs.r
    budget = compute_budget(pcs.D_hat, pcs.coh_star, r, params)
    expected_regime = classify_regime(pcs.D_hat, pcs.coh_star)
    if pcs.regime != expected_regime:
        reason = f"regime mismatch: claimed={pcs.regime}, expected={expected_regime}"
        return Outcome(True, True, recomputed, budget, reason)
    if abs(pcs.budget - budget) > params.budget_tol:
        reason = f"budget deviation: claimed={_f4(pcs.budget)}, recomputed={_f4(budget)}"
        return Outcome(True, True, recomputed, budget, reason)
    if pcs.degraded:
        return Outcome(True, True, recomputed, budget, "agent reported degraded mode")
    return Outcome(True, False, recomputed, budget)

"""Agent-side signals (CONTRACT section 5): N_j, D_hat, coh_star, r, regime, budget.

These reproduce the original Python agent, including its quirks, because existing PCS records (and
the golden files) were produced by it. Every number that ends up signed is rounded with ``round9``.
"""

from __future__ import annotations

import math
import zlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .canonical import round9
from .rng import random_unit_directions
from .verify import DEFAULT_PARAMS, VerifyParams, classify_regime, compute_budget, recompute_d_hat

__all__ = [
    "classify_regime",
    "compute_budget",
    "compute_coherence",
    "compute_compressibility",
    "compute_d_hat",
    "compute_n_j",
]

Point = Tuple[float, float, float]

#: Projections narrower than this count as zero width (all points in one bin), as in the original.
ZERO_WIDTH = 1e-9


def compute_n_j(points: Sequence[Point], scales: Sequence[int]) -> Dict[str, int]:
    """Distinct integer voxels ``floor(point * scale)`` per scale, keyed by the scale's decimal."""
    out: Dict[str, int] = {}
    for scale in scales:
        voxels = {tuple(math.floor(c * scale) for c in p) for p in points}
        out[str(scale)] = len(voxels)
    return out


def compute_d_hat(scales: Sequence[int], n_j: Dict[str, int]) -> float:
    """Theil-Sen upper-median slope, round9: the same function the verifier recomputes with."""
    return recompute_d_hat(scales, lambda s: n_j.get(str(s)))


def compute_coherence(points: Sequence[Point], seed: int, num_directions: int = 100,
                      num_bins: int = 20) -> Tuple[float, List[float]]:
    """Best-of-``num_directions`` fraction of points in one of ``num_bins`` projection bins.

    Directions come from :func:`~flk_sdk.rng.random_unit_directions` (the original's seeded legacy
    NumPy normals). Bins are ``np.histogram`` over [min, max] of the projection, the last bin closed.
    The first direction reaching the maximum wins (strict ``>``), so ties keep the earliest. The
    projection is evaluated as ``x*vx + y*vy + z*vz`` left to right rather than by a BLAS dot
    product, whose FMA use varies by machine, so the result is the same everywhere.
    """
    if len(points) == 0:
        return 0.0, [0.0, 0.0, 0.0]
    pts = np.asarray(points, dtype=np.float64)
    best = 0.0
    best_dir: List[float] = [1.0, 0.0, 0.0]
    for vx, vy, vz in random_unit_directions(seed, num_directions):
        proj = pts[:, 0] * vx + pts[:, 1] * vy + pts[:, 2] * vz
        pmin, pmax = float(proj.min()), float(proj.max())
        if abs(pmax - pmin) < ZERO_WIDTH:
            coherence = 1.0
        else:
            hist, _ = np.histogram(proj, bins=num_bins, range=(pmin, pmax))
            coherence = int(hist.max()) / len(pts)
        if coherence > best:
            best = coherence
            best_dir = [vx, vy, vz]
    return round9(best), best_dir


def compute_compressibility(data: bytes) -> float:
    """zlib level-6 compressed size / raw size, clamped to [0, 1], round9; 1.0 for empty input.

    Note that the compressed size depends on the deflate implementation; this uses the zlib that
    CPython links, which is what the original agent used.
    """
    if not data:
        return 1.0
    ratio = len(zlib.compress(data, 6)) / len(data)
    return round9(min(max(ratio, 0.0), 1.0))


def regime_and_budget(D_hat: float, coh_star: float, r: float,
                      params: VerifyParams = DEFAULT_PARAMS) -> Tuple[str, float]:
    """Regime and budget exactly as the verifier will recompute them from the claimed values."""
    return classify_regime(D_hat, coh_star), compute_budget(D_hat, coh_star, r, params)

"""The original agent's random directions, reproduced bit for bit on any platform.

The original agent drew ``coh_star`` directions with NumPy's legacy global generator
(``np.random.seed(seed)`` then ``np.random.randn(3)`` per direction, normalized). NumPy's legacy
normal generator is the Marsaglia polar method over MT19937 doubles, and the golden files show it was
run on a build where the C compiler *fused* ``x1*x1 + x2*x2`` into one FMA (as clang does on arm64):
golden case 2's ``v_star`` is only reproduced with ``r2 = fma(x1, x1, x2*x2)``; without the FMA its
first component is one ulp off. On x86-64 NumPy does not fuse, so calling NumPy would not reproduce the
golden record. This module therefore re-implements the legacy generator with an explicit, exactly
rounded FMA, which gives the golden answer everywhere.

MT19937 itself comes from Python's :class:`random.Random` (the same generator and the same 53-bit
double construction as NumPy's ``random_sample``), seeded the way NumPy's legacy ``seed(int)`` is
(Knuth's ``init_genrand``, not Python's ``init_by_array``).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import List, Optional, Tuple

__all__ = ["LegacyNormal", "fma", "random_unit_directions"]

_MT_N = 624


def _fma_exact(a: float, b: float, c: float) -> float:
    # Exact product and sum in rationals, then one correctly rounded conversion: a true FMA.
    return float(Fraction(a) * Fraction(b) + Fraction(c))


fma = getattr(math, "fma", _fma_exact)  # math.fma exists from Python 3.13


def _init_genrand(seed: int) -> Tuple[int, ...]:
    """MT19937 ``init_genrand``: what NumPy's legacy ``RandomState.seed(int)`` uses."""
    if not 0 <= seed <= 0xFFFFFFFF:
        raise ValueError("seed must be between 0 and 2**32 - 1")
    state = [seed]
    for i in range(1, _MT_N):
        prev = state[-1]
        state.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF)
    return tuple(state)


class LegacyNormal:
    """Standard normal deviates identical to ``np.random.RandomState(seed).randn``.

    Except that ``r2`` is computed with an FMA, matching the build that produced the golden files
    (see the module docstring).
    """

    def __init__(self, seed: int) -> None:
        self._uniform = random.Random()
        # Position 624 makes the generator "twist" before the first draw, as NumPy's does.
        self._uniform.setstate((3, _init_genrand(seed) + (_MT_N,), None))
        self._cached: Optional[float] = None

    def uniform(self) -> float:
        """A double in [0, 1) with 53 random bits (NumPy's ``random_sample``)."""
        return self._uniform.random()

    def normal(self) -> float:
        """One N(0, 1) deviate by the polar method; values come in pairs, the second cached."""
        if self._cached is not None:
            value, self._cached = self._cached, None
            return value
        while True:
            x1 = 2.0 * self.uniform() - 1.0
            x2 = 2.0 * self.uniform() - 1.0
            r2 = fma(x1, x1, x2 * x2)
            if 0.0 < r2 < 1.0:
                break
        f = math.sqrt(-2.0 * math.log(r2) / r2)
        self._cached = f * x1
        return f * x2


def random_unit_directions(seed: int, count: int) -> List[Tuple[float, float, float]]:
    """``count`` unit vectors: normal triples divided by their Euclidean norm, in draw order."""
    normal = LegacyNormal(seed)
    out = []
    for _ in range(count):
        x, y, z = normal.normal(), normal.normal(), normal.normal()
        # sqrt of the left-to-right sum of squares: what np.linalg.norm gives for 3 elements.
        norm = math.sqrt(x * x + y * y + z * z)
        out.append((x / norm, y / norm, z / norm))
    return out

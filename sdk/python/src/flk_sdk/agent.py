"""Build a signed PCS from a CSV of events, as the original agent did (CONTRACT section 5).

The canonical row of an event is ``f"{float(timestamp):.9f},{x},{y},{z}"`` with ``x, y, z`` kept as
the *exact text* of the CSV cell (``0.10`` stays ``0.10``), rows joined by ``\\n`` with no trailing
newline. Those bytes feed both ``r`` (zlib ratio) and ``merkle_root`` (64-byte chunks); re-printing
the coordinates as floats would change both and break compatibility with existing records.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, List, Optional, Sequence, Tuple, Union

from .canonical import compute_pcs_id
from .merkle import merkle_root
from .pcs import FT, PCS
from .signals import (
    compute_coherence,
    compute_compressibility,
    compute_d_hat,
    compute_n_j,
    regime_and_budget,
)
from .signing import sign_ed25519, sign_hmac
from .verify import DEFAULT_PARAMS, VerifyParams

__all__ = ["DEFAULT_SCALES", "EventData", "build_pcs", "build_pcs_from_data", "load_csv"]

DEFAULT_SCALES: Tuple[int, ...] = (2, 4, 8, 16)


@dataclass
class EventData:
    """Parsed events: the 3-D points and the canonical row bytes."""

    points: List[Tuple[float, float, float]]
    """(x, y, z) per event, for N_j and coh_star."""
    canonical: bytes
    """Canonical rows, for r and merkle_root."""


def load_csv(source: Union[str, "os.PathLike[str]", io.TextIOBase]) -> EventData:
    """Read a ``timestamp,x,y,z`` CSV (header required) into points and canonical rows."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, newline="", encoding="utf-8") as handle:
            return _parse(handle)
    return _parse(source)


def _parse(handle: io.TextIOBase) -> EventData:
    reader = csv.DictReader(handle)
    missing = {"timestamp", "x", "y", "z"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"CSV lacks columns: {sorted(missing)}")
    points = []
    rows = []
    for line_no, row in enumerate(reader, start=2):
        try:
            x, y, z = float(row["x"]), float(row["y"]), float(row["z"])
            t = float(row["timestamp"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"line {line_no}: {exc}") from exc
        points.append((x, y, z))
        rows.append(f"{t:.9f},{row['x']},{row['y']},{row['z']}")
    return EventData(points, "\n".join(rows).encode("utf-8"))


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_pcs_from_data(
    data: EventData,
    shard_id: str,
    epoch: int,
    *,
    hmac_key: Optional[Union[str, bytes]] = None,
    ed25519_seed: Optional[Union[str, bytes]] = None,
    seed: int = 42,
    scales: Sequence[int] = DEFAULT_SCALES,
    sent_at: Optional[str] = None,
    attempt: int = 1,
    ft: Optional[FT] = None,
    params: VerifyParams = DEFAULT_PARAMS,
) -> PCS:
    """Compute every signal and return the (optionally signed) PCS.

    Pass at most one of ``hmac_key`` / ``ed25519_seed``; with neither, ``sig`` is left out.
    """
    if hmac_key is not None and ed25519_seed is not None:
        raise ValueError("sign with HMAC or Ed25519, not both")
    n_j = compute_n_j(data.points, scales)
    d_hat = compute_d_hat(scales, n_j)
    coh_star, v_star = compute_coherence(data.points, seed=seed)
    r = compute_compressibility(data.canonical)
    regime, budget = regime_and_budget(d_hat, coh_star, r, params)
    root = merkle_root(data.canonical)
    pcs = PCS(
        pcs_id=compute_pcs_id(root, epoch, shard_id),
        shard_id=shard_id,
        epoch=epoch,
        attempt=attempt,
        sent_at=sent_at if sent_at is not None else _now_rfc3339(),
        seed=seed,
        scales=list(scales),
        N_j=n_j,
        coh_star=coh_star,
        v_star=v_star,
        D_hat=d_hat,
        r=r,
        regime=regime,
        budget=budget,
        merkle_root=root,
        sig="",
        ft=ft if ft is not None else FT(outbox_seq=0, degraded=False, fallbacks=[], clock_skew_ms=0),
    )
    if hmac_key is not None:
        pcs.sig = sign_hmac(pcs, hmac_key)
    elif ed25519_seed is not None:
        pcs.sig = sign_ed25519(pcs, ed25519_seed)
    else:
        pcs.sig = None
    return pcs


def build_pcs(csv_path: Union[str, "os.PathLike[str]"], shard_id: str = "test-shard-001",
              epoch: int = 1, **kwargs: Any) -> PCS:
    """:func:`build_pcs_from_data` on a CSV file (keyword arguments are passed through)."""
    return build_pcs_from_data(load_csv(csv_path), shard_id, epoch, **kwargs)

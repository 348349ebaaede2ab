"""Canonical signing payload (CONTRACT section 2), the bytes every implementation must agree on.

A signature only verifies if signer and verifier serialize the signed subset to the *same bytes*,
so everything here is deliberately literal: a fixed key order, Python ``repr`` float text, ASCII-only
string escaping and decimal (not binary) rounding. Python is the reference language of the original
agent, so most rules are simply "what CPython does"; the code still spells them out so that a change in
a future CPython cannot silently change signatures.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Dict, Mapping, Union

__all__ = [
    "SIGNED_FLOAT_KEYS",
    "SIGNED_KEYS",
    "canonical_payload",
    "compute_pcs_id",
    "format_float",
    "round9",
    "signed_fields",
]

#: The eight signed keys, already in code-point order (the serialization order).
SIGNED_KEYS = ("D_hat", "budget", "coh_star", "epoch", "merkle_root", "pcs_id", "r", "shard_id")
#: Signed keys whose values are rounded to 9 decimals before serialization.
SIGNED_FLOAT_KEYS = ("D_hat", "coh_star", "r", "budget")

# f64 needs at most 309 integer digits + 9 decimals; a generous precision means quantize() can never
# raise InvalidOperation for any finite double (the default context has only 28 digits, which would
# fail on, e.g., 1e20).
_DECIMAL_CTX = Context(prec=400, rounding=ROUND_HALF_UP)
_NINE_PLACES = Decimal("1e-9")

Number = Union[int, float]


def round9(x: Number) -> float:
    """Round to 9 decimals the way CONTRACT 2.2 says: half-up on the shortest repr, in decimal.

    Rounding the binary value (``round(x, 9)``) differs on ties such as ``0.1234567895``, whose
    double is slightly below the tie; the contract rounds the *printed* value so every language gets
    the same answer without arbitrary-precision binary arithmetic. Integers become floats first.
    """
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"cannot round non-finite value {value!r}")
    quantized = Decimal(repr(value)).quantize(_NINE_PLACES, context=_DECIMAL_CTX)
    return float(quantized)


def format_float(x: float) -> str:
    """Print a float as CPython's ``repr`` does (CONTRACT 2.3).

    Spelled out rather than delegated blindly so the rule is visible: shortest round-trip digits,
    positional for 1e-4 <= |x| < 1e16 (always with a fractional part), scientific with at least two
    exponent digits otherwise. CPython's ``repr`` implements exactly this, so we use it and only
    guard against non-finite input, which JSON cannot carry.
    """
    if not math.isfinite(x):
        raise ValueError(f"non-finite float {x!r} cannot be serialized")
    return repr(float(x))


def _escape_string(s: str) -> str:
    """JSON-quote ``s`` with ASCII-only escaping (CONTRACT 2.3).

    ``json.dumps(ensure_ascii=True)`` already escapes exactly the set the contract names: the short
    escapes for ``" \\ \\n \\r \\t \\b \\f``, lowercase ``\\uXXXX`` for every other character outside
    0x20..0x7E (DEL included) and surrogate pairs for astral code points, while ``<>&/`` stay literal.
    Tests pin each of these so a behaviour change in ``json`` would be caught.
    """
    return json.dumps(s, ensure_ascii=True)


def _coerce_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key} must be a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError as exc:
        raise ValueError(f"{key} is beyond the f64 range") from exc
    if not math.isfinite(result):
        raise ValueError(f"{key} must be finite")
    return result


def signed_fields(record: Any) -> Dict[str, Any]:
    """Extract and normalize the signed subset from a mapping or a :class:`~flk_sdk.pcs.PCS`.

    ``r`` is optional in a PCS; an absent ``r`` signs as ``0.0`` (the decision the Rust server made,
    followed here so that both sides sign the same bytes). Floats are rounded with :func:`round9`.
    """
    if not isinstance(record, Mapping):
        to_dict = getattr(record, "to_dict", None)
        if to_dict is None:
            raise TypeError("record must be a mapping or a PCS")
        record = to_dict()
    out: Dict[str, Any] = {}
    for key in ("pcs_id", "merkle_root", "shard_id"):
        value = record.get(key)
        if not isinstance(value, str):
            raise TypeError(f"{key} must be a string")
        out[key] = value
    epoch = record.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError("epoch must be an integer")
    out["epoch"] = epoch
    for key in SIGNED_FLOAT_KEYS:
        value = record.get(key)
        if value is None and key == "r":
            value = 0.0
        out[key] = round9(_coerce_float(key, value))
    return out


def canonical_payload(record: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, ``,``/``:`` separators, ASCII only.

    Built by hand instead of ``json.dumps(sort_keys=True)`` so that float text, integer text and the
    key order are each controlled explicitly rather than inherited from library defaults.
    """
    fields = signed_fields(record)
    parts = []
    for key in SIGNED_KEYS:
        value = fields[key]
        if key == "epoch":
            text = str(int(value))
        elif key in SIGNED_FLOAT_KEYS:
            text = format_float(value)
        else:
            text = _escape_string(value)
        parts.append(f"{_escape_string(key)}:{text}")
    return ("{" + ",".join(parts) + "}").encode("ascii")


def compute_pcs_id(merkle_root: str, epoch: int, shard_id: str) -> str:
    """``sha256(merkle_root|epoch|shard_id)`` in lowercase hex (CONTRACT section 1).

    The id binds the record to its data (merkle root), its time slot and its producer, so the same
    data re-sent in the same epoch dedups while a new epoch gets a fresh id.
    """
    data = f"{merkle_root}|{int(epoch)}|{shard_id}".encode("utf-8")
    return hashlib.sha256(data).hexdigest()

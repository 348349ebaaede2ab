"""The PCS record (CONTRACT section 1): a dataclass plus a strict decoder.

The decoder mirrors the server's rules so the SDK can tell a caller *before* sending that the gateway
would answer 400, and name the key it would complain about:

- not JSON / not UTF-8 / a number beyond the f64 range / not an object: :class:`MalformedPCS` with
  ``key=None``;
- a key of the wrong JSON type, or a bad ``sent_at``: ``MalformedPCS`` naming the key (nested keys
  are dotted: ``ft.degraded``, ``N_j.4``);
- a missing key that verification step 1 reports (``pcs_id``, ``schema``, ``version``, ``shard_id``,
  ``merkle_root``, ``scales``) decodes as empty, because the contract answers those with a 202
  outcome, not a 400;
- any other missing required key (``epoch``, ``N_j``, ``coh_star``, ``D_hat``, ``regime``,
  ``budget``) is malformed;
- ``null`` on an optional key means absent; on a required key it is a type error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Union

from .canonical import compute_pcs_id

__all__ = ["FT", "PCS", "MalformedPCS", "SCHEMA", "VERSION", "decode_pcs", "loads_json",
           "parse_json_object"]

SCHEMA = "fractal-lba-kakeya"
VERSION = "0.1"

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_U64_MAX = 2**64 - 1

# RFC 3339 date-time with a mandatory zone; calendar validity is checked separately.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$"
)


class MalformedPCS(ValueError):
    """The body is not a PCS the gateway would accept (it would answer 400).

    ``key`` names the offending JSON key (dotted for nested keys), or is ``None`` when the body is not
    JSON or not an object.
    """

    def __init__(self, message: str, key: Optional[str] = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass
class FT:
    """Fault-tolerance block the agent reports alongside its signals."""

    outbox_seq: Optional[int] = None
    """Sequence number in the agent's durable outbox (lets operators correlate resends)."""
    degraded: bool = False
    """The agent ran in degraded mode; verification escalates such records (step 7)."""
    fallbacks: List[str] = field(default_factory=list)
    """Fallbacks the agent used, for humans reviewing an escalation."""
    clock_skew_ms: Optional[int] = None
    """Measured clock skew, so ``sent_at`` can be interpreted."""

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.outbox_seq is not None:
            out["outbox_seq"] = self.outbox_seq
        out["degraded"] = self.degraded
        out["fallbacks"] = list(self.fallbacks)
        if self.clock_skew_ms is not None:
            out["clock_skew_ms"] = self.clock_skew_ms
        return out


@dataclass
class PCS:
    """A Proof-of-Computation Summary, schema ``fractal-lba-kakeya``.

    Field order matches the original agent's output so :meth:`to_json` with ``indent=2`` reproduces
    its golden files byte for byte.
    """

    pcs_id: str
    """``sha256(merkle_root|epoch|shard_id)``; see :func:`~flk_sdk.canonical.compute_pcs_id`."""
    shard_id: str
    """The agent's shard (not a Kafka partition)."""
    epoch: int
    """Agent epoch (>= 0); a new epoch yields a new ``pcs_id``."""
    scales: List[int]
    """Box-counting scales, in the order used for regression."""
    N_j: Dict[str, int]
    """Occupied voxel count per scale, keyed by the scale's decimal string."""
    coh_star: float
    """Directional coherence claimed by the agent."""
    D_hat: float
    """Fractal dimension claimed by the agent."""
    regime: str
    """``sticky``, ``mixed`` or ``non_sticky``."""
    budget: float
    """Budget claimed by the agent."""
    merkle_root: str
    """Root of the Merkle tree over the agent's canonical data rows."""
    schema: str = SCHEMA
    """Always ``fractal-lba-kakeya``."""
    version: str = VERSION
    """Schema version."""
    attempt: Optional[int] = None
    """Delivery attempt counter."""
    sent_at: Optional[str] = None
    """RFC 3339 timestamp with zone, kept as given (re-formatting could change the record)."""
    seed: Optional[int] = None
    """Seed of the random directions used for ``coh_star``."""
    v_star: Optional[List[float]] = None
    """Best projection direction found for ``coh_star``."""
    r: Optional[float] = None
    """Compressibility; only feeds the budget. Absent signs as ``0.0``."""
    sig: Optional[str] = None
    """Standard base64 signature over the canonical payload."""
    ft: Optional[FT] = None
    """Fault-tolerance block."""

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict in the original agent's key order; absent optional keys are left out."""
        out: Dict[str, Any] = {"pcs_id": self.pcs_id, "schema": self.schema, "version": self.version,
                               "shard_id": self.shard_id, "epoch": self.epoch}
        for key in ("attempt", "sent_at", "seed"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["scales"] = list(self.scales)
        out["N_j"] = dict(self.N_j)
        out["coh_star"] = self.coh_star
        if self.v_star is not None:
            out["v_star"] = list(self.v_star)
        out["D_hat"] = self.D_hat
        if self.r is not None:
            out["r"] = self.r
        out["regime"] = self.regime
        out["budget"] = self.budget
        out["merkle_root"] = self.merkle_root
        if self.sig is not None:
            out["sig"] = self.sig
        if self.ft is not None:
            out["ft"] = self.ft.to_dict()
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        """Serialize for the wire (compact by default; ``indent=2`` matches the golden files)."""
        if indent is None:
            return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def expected_pcs_id(self) -> str:
        """The id this record *should* carry, for checking before sending."""
        return compute_pcs_id(self.merkle_root, self.epoch, self.shard_id)

    @property
    def degraded(self) -> bool:
        return self.ft is not None and self.ft.degraded

    @classmethod
    def from_json(cls, body: Union[str, bytes]) -> "PCS":
        return decode_pcs(body)


# --------------------------------------------------------------------------- decoding


def _reject_constant(name: str) -> Any:
    # NaN and infinities are not JSON; Python's json accepts them unless told otherwise.
    raise MalformedPCS(f"body is not valid JSON: {name} is not a JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedPCS("body is not valid JSON: number out of range")
    return value


def _parse_int(text: str) -> Any:
    # JSON "-0" is IEEE negative zero for every parser that reads numbers as doubles (Rust's
    # serde_json, Go, JavaScript); Python alone would read the integer 0 and sign "0.0" instead of
    # "-0.0". Reading it as -0.0 keeps signatures identical across languages (and, as in Rust, makes
    # "-0" a float, so not a valid epoch).
    if text == "-0":
        return -0.0
    return int(text)


def loads_json(text: str) -> Any:
    """``json.loads`` with the server's number semantics: no NaN/Infinity, no overflow to inf,
    ``-0`` read as ``-0.0``."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float,
                      parse_int=_parse_int)


def _check_strings(value: Any) -> None:
    """Reject lone surrogates (``"\\ud800"``): valid escape syntax but not Unicode text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise MalformedPCS("body is not valid JSON: lone surrogate in string") from exc
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json_object(body: Union[str, bytes, bytearray]) -> Dict[str, Any]:
    """Parse a request body the way the server does: UTF-8 JSON, finite numbers, an object.

    Duplicate keys keep the last value, as the server's JSON library does.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPCS(f"body is not valid JSON: not UTF-8 ({exc.reason})") from exc
    else:
        text = body
    try:
        value = loads_json(text)
    except MalformedPCS:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedPCS(f"body is not valid JSON: {exc}") from exc
    _check_strings(value)
    if not isinstance(value, dict):
        raise MalformedPCS("body must be a JSON object")
    return value


class _Obj:
    """Typed accessors over one JSON object that name the key in every error."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        return self.prefix + key

    def optional(self, key: str) -> Any:
        return self.data.get(key)

    def required(self, key: str) -> Any:
        if key not in self.data:
            raise MalformedPCS(f"`{self.name(key)}` is required", self.name(key))
        return self.data[key]

    def _string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise MalformedPCS(f"`{self.name(key)}` must be a string", self.name(key))
        return value

    def required_str(self, key: str) -> str:
        return self._string(key, self.required(key))

    def optional_str(self, key: str) -> Optional[str]:
        value = self.optional(key)
        return None if value is None else self._string(key, value)

    def required_int(self, key: str) -> int:
        return integer(self.name(key), self.required(key))

    def optional_int(self, key: str) -> Optional[int]:
        value = self.optional(key)
        return None if value is None else integer(self.name(key), value)

    def required_float(self, key: str) -> float:
        return number(self.name(key), self.required(key))

    def optional_float(self, key: str) -> Optional[float]:
        value = self.optional(key)
        return None if value is None else number(self.name(key), value)


def integer(key: str, value: Any) -> int:
    """A JSON integer that fits i64. ``1.0`` is a float in JSON, hence a type error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPCS(f"`{key}` must be an integer", key)
    if value > _U64_MAX:
        # The server's JSON parser reads such literals as floats: a type error there too.
        raise MalformedPCS(f"`{key}` must be an integer", key)
    if not _I64_MIN <= value <= _I64_MAX:
        raise MalformedPCS(f"`{key}` is out of range for a 64-bit signed integer", key)
    return value


def number(key: str, value: Any) -> float:
    """Any finite JSON number as a float (integers become floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedPCS(f"`{key}` must be a number", key)
    try:
        result = float(value)
    except OverflowError as exc:
        raise MalformedPCS("body is not valid JSON: number out of range") from exc
    if not math.isfinite(result):
        raise MalformedPCS("body is not valid JSON: number out of range")
    return result


def _check_number_ranges(value: Any) -> None:
    """Numbers beyond the f64 range are malformed anywhere in the body, as on the server."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise MalformedPCS("body is not valid JSON: number out of range")
        if isinstance(item, int) and abs(item) > _U64_MAX:
            try:
                float(item)
            except OverflowError as exc:
                raise MalformedPCS("body is not valid JSON: number out of range") from exc
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_rfc3339(key: str, text: str) -> None:
    """RFC 3339 date-time with ``Z`` or a numeric offset; rejects zone-less and impossible dates."""
    match = _RFC3339.match(text)
    problem = f"`{key}` must be an RFC 3339 timestamp with a zone"
    if not match:
        raise MalformedPCS(problem, key)
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        # Leap seconds (:60) are allowed by RFC 3339; validate the rest of the calendar.
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError as exc:
        raise MalformedPCS(problem, key) from exc
    if second > 60:
        raise MalformedPCS(problem, key)
    if match.group(9) is not None:
        if int(match.group(9)) > 23 or int(match.group(10)) > 59:
            raise MalformedPCS(problem, key)


def _decode_scales(value: Any) -> List[int]:
    expected = "`scales` must be an array of positive integers"
    if not isinstance(value, list):
        raise MalformedPCS(expected, "scales")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item <= _U64_MAX:
            raise MalformedPCS(expected, "scales")
        out.append(item)
    return out


def _decode_n_j(value: Any) -> Dict[str, int]:
    if not isinstance(value, dict):
        raise MalformedPCS("`N_j` must be an object of integers", "N_j")
    return {scale: integer(f"N_j.{scale}", count) for scale, count in value.items()}


def _decode_ft(value: Any) -> FT:
    if not isinstance(value, dict):
        raise MalformedPCS("`ft` must be an object", "ft")
    obj = _Obj(value, "ft.")
    fallbacks_raw = obj.optional("fallbacks")
    fallbacks: List[str] = []
    if fallbacks_raw is not None:
        if not isinstance(fallbacks_raw, list) or not all(isinstance(x, str) for x in fallbacks_raw):
            raise MalformedPCS("`ft.fallbacks` must be an array of strings", "ft.fallbacks")
        fallbacks = list(fallbacks_raw)
    degraded_raw = obj.optional("degraded")
    if degraded_raw is not None and not isinstance(degraded_raw, bool):
        raise MalformedPCS("`ft.degraded` must be a boolean", "ft.degraded")
    return FT(
        outbox_seq=obj.optional_int("outbox_seq"),
        degraded=bool(degraded_raw),
        fallbacks=fallbacks,
        clock_skew_ms=obj.optional_int("clock_skew_ms"),
    )


def decode_pcs(body: Union[str, bytes, bytearray, Mapping[str, Any]]) -> PCS:
    """Decode and type-check a PCS body; raises :class:`MalformedPCS` where the gateway says 400."""
    data = body if isinstance(body, Mapping) else parse_json_object(body)
    _check_number_ranges(data)
    obj = _Obj(data)
    scales_raw = obj.optional("scales")
    scales = [] if scales_raw is None else _decode_scales(scales_raw)
    n_j = _decode_n_j(obj.required("N_j"))
    ft_raw = obj.optional("ft")
    ft = None if ft_raw is None else _decode_ft(ft_raw)
    sent_at = obj.optional_str("sent_at")
    if sent_at is not None:
        check_rfc3339("sent_at", sent_at)
    v_star_raw = obj.optional("v_star")
    v_star = None
    if v_star_raw is not None:
        if not isinstance(v_star_raw, list):
            raise MalformedPCS("`v_star` must be an array of numbers", "v_star")
        v_star = [number("v_star", x) for x in v_star_raw]
    return PCS(
        pcs_id=obj.optional_str("pcs_id") or "",
        schema=obj.optional_str("schema") or "",
        version=obj.optional_str("version") or "",
        shard_id=obj.optional_str("shard_id") or "",
        epoch=obj.required_int("epoch"),
        attempt=obj.optional_int("attempt"),
        sent_at=sent_at,
        seed=obj.optional_int("seed"),
        scales=scales,
        N_j=n_j,
        coh_star=obj.required_float("coh_star"),
        v_star=v_star,
        D_hat=obj.required_float("D_hat"),
        r=obj.optional_float("r"),
        regime=obj.required_str("regime"),
        budget=obj.required_float("budget"),
        merkle_root=obj.optional_str("merkle_root") or "",
        sig=obj.optional_str("sig"),
        ft=ft,
    )

"""The shared vector file ``tests/vectors/pcs-vectors.json``, run in full (see its README).

The file is the one source of truth shared with the Rust, Go and TypeScript implementations; this
suite never edits it. Until the file exists these tests skip; the CONTRACT vectors are pinned
independently in the other test modules.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Dict, List

import pytest

from conftest import VECTORS, VECTORS_SHA
from flk_sdk.canonical import canonical_payload, compute_pcs_id, round9
from flk_sdk.pcs import MalformedPCS, decode_pcs
from flk_sdk.signing import (
    ed25519_public_key,
    sign_ed25519,
    sign_hmac,
    sign_hmac_prehash,
    verify_ed25519,
    verify_hmac,
    verify_hmac_prehash,
)
from flk_sdk.verify import VerifyParams, verify


def _load() -> Dict[str, Any]:
    if not VECTORS.exists():
        return {}
    return json.loads(VECTORS.read_text(encoding="utf-8"))


DATA = _load()
needs_file = pytest.mark.skipif(not DATA, reason=f"{VECTORS} not written yet")


def section(name: str) -> List[Any]:
    entries = DATA.get(name, []) if DATA else []
    return entries or [pytest.param(None, marks=pytest.mark.skip(reason=f"no {name} vectors"))]


def ident(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("name") or entry.get("input") or entry.get("pcs_id") or "?")
    return "none"


@needs_file
def test_sha256_pin_matches() -> None:
    assert VECTORS_SHA.exists(), f"{VECTORS_SHA} is missing"
    line = VECTORS_SHA.read_text(encoding="ascii").strip()
    digest, _, name = line.partition("  ")
    assert name == VECTORS.name, f"unexpected file name in {VECTORS_SHA.name}: {name!r}"
    assert hashlib.sha256(VECTORS.read_bytes()).hexdigest() == digest


@needs_file
def test_format_and_sections() -> None:
    assert DATA["format"] == 1
    for name in ("signing", "rounding", "pcs_id", "verification", "malformed"):
        assert isinstance(DATA.get(name), list) and DATA[name], name


@pytest.mark.parametrize("case", section("signing"), ids=ident)
def test_signing(case: Dict[str, Any]) -> None:
    fields, key = case["fields"], case["hmac_key"]
    payload = canonical_payload(fields)
    assert payload.decode("ascii") == case["payload"]
    assert sign_hmac(payload, key) == case["hmac"]
    assert verify_hmac(payload, key, case["hmac"])
    if "hmac_prehash" in case:
        assert sign_hmac_prehash(payload, key) == case["hmac_prehash"]
        assert verify_hmac_prehash(payload, key, case["hmac_prehash"])
    if "ed25519_seed" in case:
        assert ed25519_public_key(case["ed25519_seed"]) == case["ed25519_public"]
        assert sign_ed25519(payload, case["ed25519_seed"]) == case["ed25519"]
        assert verify_ed25519(payload, case["ed25519_public"], case["ed25519"])


@pytest.mark.parametrize("case", section("rounding"), ids=ident)
def test_rounding(case: Dict[str, Any]) -> None:
    assert repr(round9(case["input"])) == case["output_repr"]


@pytest.mark.parametrize("case", section("pcs_id"), ids=ident)
def test_pcs_id(case: Dict[str, Any]) -> None:
    assert compute_pcs_id(case["merkle_root"], case["epoch"], case["shard_id"]) == case["pcs_id"]


@pytest.mark.parametrize("case", section("verification"), ids=ident)
def test_verification(case: Dict[str, Any]) -> None:
    params = VerifyParams.from_dict(case.get("params") or {})
    pcs = decode_pcs(json.dumps(case["pcs"]))
    got = verify(pcs, params).to_dict()
    expected = case["expected"]
    assert set(got) == set(expected), f"keys differ: got {sorted(got)}, expected {sorted(expected)}"
    for key, value in expected.items():
        if key.startswith("recomputed_"):
            assert math.isclose(got[key], value, rel_tol=0, abs_tol=0) or got[key] == value, key
        else:
            assert got[key] == value, key
    assert verify(pcs, params).http_status == case["status"]


@pytest.mark.parametrize("case", section("malformed"), ids=ident)
def test_malformed(case: Dict[str, Any]) -> None:
    with pytest.raises(MalformedPCS) as info:
        decode_pcs(case["body"].encode("utf-8") if isinstance(case["body"], str) else case["body"])
    key = case.get("key")
    assert info.value.key == key
    if key is not None:
        assert key in str(info.value)

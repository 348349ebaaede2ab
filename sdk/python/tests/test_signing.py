"""CONTRACT 2.4/2.5/2.7: HMAC, Ed25519 and legacy pre-hash signatures, with the contract's vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from unittest import mock

import pytest

from flk_sdk.canonical import canonical_payload
from flk_sdk.signing import (
    ed25519_public_key,
    sign_ed25519,
    sign_hmac,
    sign_hmac_prehash,
    verify_ed25519,
    verify_hmac,
    verify_hmac_prehash,
)

SEED = bytes(range(32))
SEED_B64 = base64.b64encode(SEED).decode()
PUB = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="

CASE1_PAYLOAD = (
    b'{"D_hat":0.528320834,"budget":0.317807017,"coh_star":0.066666667,"epoch":1,'
    b'"merkle_root":"e966b52c992aefad3c3d0196db02554f30d10d55e8a6e5e3038f88e79e414112",'
    b'"pcs_id":"c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf",'
    b'"r":0.318421053,"shard_id":"test-shard-001"}'
)


def load(golden: Path, n: int) -> dict:
    return json.loads((golden / f"pcs_tiny_case_{n}.json").read_text())


def test_golden_case_1(golden: Path) -> None:
    pcs = load(golden, 1)
    assert canonical_payload(pcs) == CASE1_PAYLOAD
    assert sign_hmac(pcs, "testsecret") == "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4="
    assert pcs["sig"] == sign_hmac(pcs, "testsecret")
    assert ed25519_public_key(SEED) == PUB
    assert sign_ed25519(pcs, SEED) == (
        "YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3FyXVZlAg==")
    assert sign_hmac_prehash(pcs, "testsecret") == "ie8rdnp+3qXnlMVyHmSdjFT3Unk6sZmoVxun71x2/X4="


def test_golden_case_2(golden: Path) -> None:
    pcs = load(golden, 2)
    assert canonical_payload(pcs).startswith(b'{"D_hat":1.0,"budget":0.349073359,"coh_star":0.2,')
    assert sign_hmac(pcs, "testsecret") == "wahFdOY1XKgg9WTr5UTpryZTviM5zay5VMHcrzHH5hE="
    assert sign_ed25519(pcs, SEED_B64) == (
        "ULhPXPI2/nuh4s0VCG8R1tzqFxqitgzGvqRuIJQykGvruev/QIzYzFoNXO3Vb51b53hfIS9uBApb/SPrl5EODQ==")


def test_contract_test_id_vector() -> None:
    fields = {"pcs_id": "test-id", "merkle_root": "abc123", "epoch": 1, "shard_id": "shard-001",
              "D_hat": 1.412345679, "coh_star": 0.73456789, "r": 0.871234568, "budget": 0.421234568}
    assert sign_hmac(fields, "testsecret") == "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c="


def test_sign_accepts_payload_bytes() -> None:
    assert sign_hmac(CASE1_PAYLOAD, "testsecret") == "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4="


def test_hmac_verify() -> None:
    good = sign_hmac(CASE1_PAYLOAD, "testsecret")
    assert verify_hmac(CASE1_PAYLOAD, "testsecret", good)
    assert not verify_hmac(CASE1_PAYLOAD, "other", good)
    assert not verify_hmac(CASE1_PAYLOAD + b" ", "testsecret", good)
    # Pre-hash signatures are a different scheme: not accepted by the v0.1 check.
    prehash = sign_hmac_prehash(CASE1_PAYLOAD, "testsecret")
    assert not verify_hmac(CASE1_PAYLOAD, "testsecret", prehash)
    assert verify_hmac_prehash(CASE1_PAYLOAD, "testsecret", prehash)
    assert not verify_hmac_prehash(CASE1_PAYLOAD, "testsecret", good)


@pytest.mark.parametrize("bad", ["", "not base64!", "x5KLRpKb75Oy1oxLA+3V", None, 5,
                                 "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4", "\u00e9"])
def test_hmac_verify_rejects_garbage(bad: object) -> None:
    assert not verify_hmac(CASE1_PAYLOAD, "testsecret", bad)


def test_hmac_verify_is_constant_time() -> None:
    with mock.patch("flk_sdk.signing.hmac.compare_digest", wraps=__import__("hmac").compare_digest) as cmp:
        verify_hmac(CASE1_PAYLOAD, "testsecret", sign_hmac(CASE1_PAYLOAD, "testsecret"))
        assert cmp.called


@pytest.mark.parametrize("key", ["", "\u00e9\U0001F600", "a" * 200, "with\nnewline"])
def test_any_utf8_key_is_valid(key: str) -> None:
    import hashlib
    import hmac as std_hmac
    expected = base64.b64encode(std_hmac.new(key.encode("utf-8"), CASE1_PAYLOAD, hashlib.sha256)
                                .digest()).decode()
    assert sign_hmac(CASE1_PAYLOAD, key) == expected
    assert verify_hmac(CASE1_PAYLOAD, key, expected)


def test_ed25519_verify() -> None:
    sig = sign_ed25519(CASE1_PAYLOAD, SEED)
    assert verify_ed25519(CASE1_PAYLOAD, PUB, sig)
    assert verify_ed25519(CASE1_PAYLOAD, base64.b64decode(PUB), sig)
    assert not verify_ed25519(CASE1_PAYLOAD + b"x", PUB, sig)
    assert not verify_ed25519(CASE1_PAYLOAD, ed25519_public_key(bytes(32)), sig)
    assert not verify_ed25519(CASE1_PAYLOAD, PUB, "garbage")
    assert not verify_ed25519(CASE1_PAYLOAD, "short", sig)
    assert not verify_ed25519(CASE1_PAYLOAD, PUB, None)


def test_ed25519_signs_the_digest_not_the_payload() -> None:
    import hashlib
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    raw = Ed25519PrivateKey.from_private_bytes(SEED).sign(hashlib.sha256(CASE1_PAYLOAD).digest())
    assert sign_ed25519(CASE1_PAYLOAD, SEED) == base64.b64encode(raw).decode()


def test_ed25519_seed_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        sign_ed25519(CASE1_PAYLOAD, bytes(31))

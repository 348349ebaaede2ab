"""CONTRACT section 2: rounding, float printing, string escaping, payload bytes, pcs_id."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from flk_sdk.canonical import canonical_payload, compute_pcs_id, format_float, round9, signed_fields

CONTRACT_FIELDS = {
    "pcs_id": "test-id", "merkle_root": "abc123", "epoch": 1, "shard_id": "shard-001",
    "D_hat": 1.412345679, "coh_star": 0.73456789, "r": 0.871234568, "budget": 0.421234568,
}
CONTRACT_PAYLOAD = (
    b'{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,'
    b'"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}'
)


@pytest.mark.parametrize("value,expected", [
    (1.412345678901234, 1.412345679),
    (0.1234567895, 0.12345679),      # half-up on the printed tie; round() would give ...789
    (1.5e-9, 2e-09),
    (12345.6789012345, 12345.678901235),
])
def test_round9_contract_vectors(value: float, expected: float) -> None:
    assert round9(value) == expected


def test_round9_differs_from_binary_rounding_on_ties() -> None:
    # The reason round9 exists: the double below 0.1234567895 rounds *down* in binary.
    assert round(0.1234567895, 9) == 0.123456789
    assert round9(0.1234567895) == 0.12345679


@pytest.mark.parametrize("value,expected_repr", [
    (-0.1234567895, "-0.12345679"),
    (0.9999999995, "1.0"),
    (4e-10, "0.0"),
    (-4e-10, "-0.0"),
    (5e-10, "1e-09"),
    (-5e-10, "-1e-09"),
    (1e-12, "0.0"),
    (1e300, "1e+300"),
    (1e20, "1e+20"),
    (-0.0, "-0.0"),
    (0.0, "0.0"),
    (99999.9999999995, "100000.0"),
    (5e-324, "0.0"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (2, "2.0"),
    (123456789012345678, "1.2345678901234568e+17"),
])
def test_round9_edges(value: float, expected_repr: str) -> None:
    assert repr(round9(value)) == expected_repr


def test_round9_is_idempotent_and_close() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        bits = rng.getrandbits(64)
        x = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if not math.isfinite(x):
            continue
        once = round9(x)
        assert repr(round9(once)) == repr(once)
        if abs(x) < 1e6:
            assert abs(once - x) <= 5e-10 + abs(x) * 1e-15


def test_round9_rejects_non_finite() -> None:
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            round9(bad)


@pytest.mark.parametrize("value,text", [
    (1.0, "1.0"), (0.0, "0.0"), (-0.0, "-0.0"), (0.1, "0.1"), (1e-4, "0.0001"), (1e-5, "1e-05"),
    (1e-7, "1e-07"), (2e-9, "2e-09"), (1.5e-7, "1.5e-07"), (1e16, "1e+16"), (1.5e16, "1.5e+16"),
    (9999999999999998.0, "9999999999999998.0"), (123456789.125, "123456789.125"),
    (1e300, "1e+300"), (-2.5e-308, "-2.5e-308"), (5e-324, "5e-324"), (100.0, "100.0"),
])
def test_format_float_is_python_repr(value: float, text: str) -> None:
    assert format_float(value) == text


def test_contract_payload() -> None:
    assert canonical_payload(CONTRACT_FIELDS) == CONTRACT_PAYLOAD


def test_key_order_is_code_point_order() -> None:
    payload = json.loads(canonical_payload(CONTRACT_FIELDS))
    assert list(payload) == sorted(payload)  # "D_hat" (uppercase) sorts first
    assert list(payload)[0] == "D_hat"


def test_integers_become_floats() -> None:
    fields = dict(CONTRACT_FIELDS, D_hat=1, coh_star=0, r=3, budget=10**20)
    payload = canonical_payload(fields)
    assert b'"D_hat":1.0,' in payload and b'"coh_star":0.0,' in payload
    assert b'"r":3.0,' in payload and b'"budget":1e+20,' in payload


def test_absent_r_signs_as_zero() -> None:
    fields = dict(CONTRACT_FIELDS)
    del fields["r"]
    assert b'"r":0.0,' in canonical_payload(fields)
    assert canonical_payload(dict(fields, r=None)) == canonical_payload(fields)


def test_epoch_prints_as_plain_integer() -> None:
    payload = canonical_payload(dict(CONTRACT_FIELDS, epoch=2**53))
    assert b'"epoch":9007199254740992,' in payload


def test_signed_fields_type_errors() -> None:
    with pytest.raises(TypeError):
        signed_fields(dict(CONTRACT_FIELDS, epoch=1.0))
    with pytest.raises(TypeError):
        signed_fields(dict(CONTRACT_FIELDS, epoch=True))
    with pytest.raises(TypeError):
        signed_fields(dict(CONTRACT_FIELDS, shard_id=5))
    with pytest.raises(TypeError):
        signed_fields(dict(CONTRACT_FIELDS, D_hat="1.0"))
    with pytest.raises(ValueError):
        signed_fields(dict(CONTRACT_FIELDS, D_hat=math.nan))


@pytest.mark.parametrize("text,escaped", [
    ('"', '\\"'), ("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"),
    ("\f", "\\f"), ("\x00", "\\u0000"), ("\x01", "\\u0001"), ("\x1f", "\\u001f"),
    ("\x7f", "\\u007f"),          # DEL is outside 0x20..0x7E: escaped
    ("\x80", "\\u0080"), ("\u00e9", "\\u00e9"), ("\u2028", "\\u2028"), ("\ufeff", "\\ufeff"),
    ("\uffff", "\\uffff"),
    ("\U0001F600", "\\ud83d\\ude00"),  # astral: surrogate pair, lowercase hex
    ("\U0010FFFF", "\\udbff\\udfff"),
    ("<>&/", "<>&/"), (" ~", " ~"), ("'", "'"),
])
def test_string_escaping(text: str, escaped: str) -> None:
    payload = canonical_payload(dict(CONTRACT_FIELDS, shard_id=text)).decode("ascii")
    assert f'"shard_id":"{escaped}"' in payload


def test_payload_is_ascii_for_any_text() -> None:
    rng = random.Random(3)
    for _ in range(500):
        text = "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0xD800),
                                       rng.randrange(0xE000, 0x110000)])) for _ in range(8))
        payload = canonical_payload(dict(CONTRACT_FIELDS, merkle_root=text))
        assert all(b < 0x80 for b in payload)
        assert json.loads(payload)["merkle_root"] == text


def test_pcs_id_reference() -> None:
    assert compute_pcs_id("abc123", 1, "shard-001") == (
        "9c2a1a9fe3d87edab9aaee193852edc091aa03e263580f9556f1f0d0f1679b93")


def test_pcs_id_uses_utf8() -> None:
    import hashlib
    assert compute_pcs_id("r\u00e9", 0, "s\U0001F600") == hashlib.sha256(
        "r\u00e9|0|s\U0001F600".encode("utf-8")).hexdigest()

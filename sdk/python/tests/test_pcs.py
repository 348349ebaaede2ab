"""The PCS decoder: 400-class errors name the key; step-1 keys decode as empty (CONTRACT 1, 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from flk_sdk.pcs import FT, PCS, MalformedPCS, decode_pcs


@pytest.fixture()
def golden1(golden: Path) -> str:
    return (golden / "pcs_tiny_case_1.json").read_text()


def edited(text: str, edit: Callable[[dict], Any]) -> str:
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


def key_of(body: Any) -> Optional[str]:
    with pytest.raises(MalformedPCS) as info:
        decode_pcs(body)
    return info.value.key


def test_golden_decodes_and_round_trips(golden: Path) -> None:
    for n in (1, 2):
        text = (golden / f"pcs_tiny_case_{n}.json").read_text()
        pcs = decode_pcs(text)
        assert pcs.to_json(indent=2) == text
        assert decode_pcs(text.encode()).to_dict() == json.loads(text)
        assert pcs.expected_pcs_id() == pcs.pcs_id
        assert not pcs.degraded


def test_from_json_alias(golden1: str) -> None:
    assert PCS.from_json(golden1) == decode_pcs(golden1)


@pytest.mark.parametrize("key,value", [
    ("epoch", 1.0), ("epoch", "1"), ("epoch", True), ("epoch", None), ("epoch", 2**63),
    ("epoch", 2**64 + 1), ("coh_star", "0.5"), ("coh_star", None), ("D_hat", [1]),
    ("budget", False), ("regime", 1), ("regime", None), ("pcs_id", 5), ("schema", 7),
    ("attempt", 1.5), ("seed", "42"), ("r", "0.3"), ("sig", 5), ("merkle_root", []),
    ("scales", [2, 0]), ("scales", [2, -4]), ("scales", [2.0, 4]), ("scales", "2,4"), ("scales", [True]),
    ("N_j", [1]), ("v_star", [1, "a"]), ("v_star", 1.0), ("ft", []),
    ("sent_at", "2025-01-19T12:00:00"), ("sent_at", "yesterday"), ("sent_at", "2025-01-19 12:00:00Z"),
    ("sent_at", "2025-02-30T12:00:00Z"), ("sent_at", "2025-01-19T25:00:00Z"), ("sent_at", 5),
])
def test_wrong_type_names_the_key(golden1: str, key: str, value: Any) -> None:
    assert key_of(edited(golden1, lambda d: d.__setitem__(key, value))) == key


@pytest.mark.parametrize("ft,key", [
    ({"degraded": "yes"}, "ft.degraded"), ({"outbox_seq": 1.0}, "ft.outbox_seq"),
    ({"fallbacks": [1]}, "ft.fallbacks"), ({"fallbacks": "x"}, "ft.fallbacks"),
    ({"clock_skew_ms": "0"}, "ft.clock_skew_ms"),
])
def test_nested_ft_keys_are_dotted(golden1: str, ft: dict, key: str) -> None:
    assert key_of(edited(golden1, lambda d: d.__setitem__("ft", ft))) == key


def test_n_j_value_errors_name_the_scale(golden1: str) -> None:
    assert key_of(edited(golden1, lambda d: d.__setitem__("N_j", {"2": 1.5}))) == "N_j.2"


@pytest.mark.parametrize("key", ["epoch", "N_j", "coh_star", "D_hat", "regime", "budget"])
def test_other_required_keys_must_be_present(golden1: str, key: str) -> None:
    assert key_of(edited(golden1, lambda d: d.pop(key))) == key


@pytest.mark.parametrize("key", ["pcs_id", "schema", "version", "shard_id", "merkle_root", "scales"])
def test_step_one_keys_decode_as_empty(golden1: str, key: str) -> None:
    pcs = decode_pcs(edited(golden1, lambda d: d.pop(key)))
    assert getattr(pcs, key) in ("", [])


@pytest.mark.parametrize("key", ["attempt", "sent_at", "seed", "v_star", "r", "sig", "ft"])
def test_null_optional_is_absent(golden1: str, key: str) -> None:
    pcs = decode_pcs(edited(golden1, lambda d: d.__setitem__(key, None)))
    assert getattr(pcs, key) is None


@pytest.mark.parametrize("body", [
    b"[1]", b"1", b'"x"', b"null", b"", b"{", b"\xff{}", b'{"D_hat": NaN}', b'{"D_hat": Infinity}',
    b'{"D_hat": 1e400}', b'{"D_hat": -1e400}', b'{"x": "\\ud800"}', b"\xef\xbb\xbf{}",
    b'{"D_hat": 1' + b"0" * 400 + b"}",
])
def test_not_an_object_has_no_key(body: bytes) -> None:
    assert key_of(body) is None


def test_numbers_accept_integers_and_big_literals(golden1: str) -> None:
    pcs = decode_pcs(edited(golden1, lambda d: d.update(D_hat=1, budget=10**20)))
    assert pcs.D_hat == 1.0 and isinstance(pcs.D_hat, float)
    assert pcs.budget == 1e20


def test_negative_epoch_decodes_for_verification_to_report(golden1: str) -> None:
    assert decode_pcs(edited(golden1, lambda d: d.__setitem__("epoch", -1))).epoch == -1


@pytest.mark.parametrize("sent_at", [
    "2025-01-19T12:00:00Z", "2025-01-19t12:00:00z", "2025-01-19T12:00:00.123456Z",
    "2025-01-19T12:00:00+05:30", "2025-01-19T12:00:00-00:00", "2024-02-29T00:00:00Z",
])
def test_good_sent_at(golden1: str, sent_at: str) -> None:
    assert decode_pcs(edited(golden1, lambda d: d.__setitem__("sent_at", sent_at))).sent_at == sent_at


def test_unknown_keys_ignored_and_duplicates_keep_last(golden1: str) -> None:
    pcs = decode_pcs(edited(golden1, lambda d: d.__setitem__("Epoch", "x")))
    assert pcs.epoch == 1
    body = golden1.rstrip().rstrip("}") + ', "epoch": 7}'
    assert decode_pcs(body).epoch == 7


def test_to_json_is_compact_and_reversible() -> None:
    pcs = PCS(pcs_id="p", shard_id="s", epoch=3, scales=[2, 4], N_j={"2": 1, "4": 2}, coh_star=0.5,
              D_hat=1.0, regime="mixed", budget=0.4, merkle_root="m", ft=FT(degraded=True))
    text = pcs.to_json()
    assert " " not in text
    back = decode_pcs(text)
    assert back == pcs and back.degraded


def test_minus_zero_literal_is_negative_zero_like_other_languages(golden1: str) -> None:
    # Rust (serde_json), Go and JavaScript all read JSON "-0" as IEEE -0.0; so must we, or the
    # canonical payload would say "0.0" where every other implementation says "-0.0".
    import math
    body = golden1.replace('"r": 0.318421053', '"r": -0')
    pcs = decode_pcs(body)
    assert pcs.r == 0.0 and math.copysign(1.0, pcs.r) < 0
    assert key_of(golden1.replace('"epoch": 1', '"epoch": -0')) == "epoch"

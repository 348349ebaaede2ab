"""Agent side (CONTRACT section 5): the golden PCS files are reproduced byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from flk_sdk.agent import build_pcs, load_csv
from flk_sdk.merkle import EMPTY_ROOT, merkle_root, merkle_root_of_leaves
from flk_sdk.rng import LegacyNormal, fma, random_unit_directions
from flk_sdk.signals import compute_coherence, compute_compressibility, compute_n_j
from flk_sdk.signing import verify_ed25519, ed25519_public_key

GOLDEN_SENT_AT = "2025-01-19T12:00:00Z"


@pytest.mark.parametrize("case", [1, 2])
def test_golden_file_reproduced_byte_for_byte(golden: Path, case: int) -> None:
    expected = (golden / f"pcs_tiny_case_{case}.json").read_text()
    pcs = build_pcs(golden / f"tiny_case_{case}.csv", "test-shard-001", 1, hmac_key="testsecret",
                    seed=42, sent_at=GOLDEN_SENT_AT)
    gold = json.loads(expected)
    for key in ("pcs_id", "merkle_root", "epoch", "shard_id", "D_hat", "coh_star", "r", "budget",
                "v_star", "regime", "sig", "N_j"):
        assert getattr(pcs, key) == gold[key], key
    assert pcs.to_json(indent=2) == expected


def test_canonical_rows_keep_csv_text(golden: Path) -> None:
    data = load_csv(golden / "tiny_case_2.csv")
    rows = data.canonical.decode().split("\n")
    assert rows[0] == "1.000000000,1.0,0.1,0.05"
    assert rows[10] == "2.000000000,2.0,0.17,0.10"  # "0.10" is kept as written
    assert not data.canonical.endswith(b"\n")
    assert len(data.canonical) == 518 and len(zlib.compress(data.canonical, 6)) == 157


def test_compressibility_of_golden_rows(golden: Path) -> None:
    assert compute_compressibility(load_csv(golden / "tiny_case_1.csv").canonical) == 0.318421053
    assert compute_compressibility(b"") == 1.0
    assert compute_compressibility(b"x") == 1.0  # clamped: zlib output is longer than 1 byte


def test_load_csv_errors() -> None:
    with pytest.raises(ValueError):
        load_csv(io.StringIO("t,x,y,z\n1,2,3,4\n"))
    with pytest.raises(ValueError):
        load_csv(io.StringIO("timestamp,x,y,z\n1,a,3,4\n"))


def test_ed25519_signed_build(golden: Path) -> None:
    seed = bytes(range(32))
    pcs = build_pcs(golden / "tiny_case_1.csv", ed25519_seed=seed, sent_at=GOLDEN_SENT_AT)
    assert pcs.sig == ("YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3"
                       "FyXVZlAg==")
    assert verify_ed25519(pcs, ed25519_public_key(seed), pcs.sig)
    unsigned = build_pcs(golden / "tiny_case_1.csv")
    assert unsigned.sig is None and unsigned.sent_at.endswith("Z")
    with pytest.raises(ValueError):
        build_pcs(golden / "tiny_case_1.csv", hmac_key="k", ed25519_seed=seed)


# ---------------------------------------------------------------- merkle


def test_merkle_tree_shape() -> None:
    h = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    p = lambda a, b: hashlib.sha256((a + b).encode()).hexdigest()  # noqa: E731
    assert merkle_root(b"") == EMPTY_ROOT
    assert merkle_root(b"abc") == h(b"abc")  # one leaf is the root
    data = bytes(range(64)) * 2 + b"tail"    # three chunks: the odd one pairs with itself
    a, b, c = h(data[:64]), h(data[64:128]), h(b"tail")
    assert merkle_root(data) == p(p(a, b), p(c, c))
    assert merkle_root_of_leaves([b"x", b"y"]) == p(h(b"x"), h(b"y"))


def test_golden_merkle_roots(golden: Path) -> None:
    for n in (1, 2):
        gold = json.loads((golden / f"pcs_tiny_case_{n}.json").read_text())
        assert merkle_root(load_csv(golden / f"tiny_case_{n}.csv").canonical) == gold["merkle_root"]


# ---------------------------------------------------------------- rng and coherence


def test_uniforms_match_numpy_legacy() -> None:
    ours = LegacyNormal(42)
    theirs = np.random.RandomState(42).random_sample(2000).tolist()
    assert [ours.uniform() for _ in range(2000)] == theirs


def test_normals_match_numpy_legacy_up_to_the_fma() -> None:
    ours = LegacyNormal(42)
    values = [ours.normal() for _ in range(600)]
    theirs = np.random.RandomState(42).randn(600).tolist()
    # Not always bit-identical (numpy on x86 does not fuse x1*x1 + x2*x2), but within a few ulps.
    for a, b in zip(values, theirs):  # noqa: B905 (py3.9 has no strict=)
        assert math.isclose(a, b, rel_tol=1e-14, abs_tol=1e-300)


def test_fma_is_exact() -> None:
    # 1 + 2^-52 squared = 1 + 2^-51 + 2^-104: the last term survives only in a fused operation.
    x = 1.0 + 2.0**-52
    assert x * x - (1.0 + 2.0**-51) == 0.0
    assert fma(x, x, -(1.0 + 2.0**-51)) == 2.0**-104


def test_golden_v_star_needs_the_fma(golden: Path) -> None:
    gold = json.loads((golden / "pcs_tiny_case_2.json").read_text())["v_star"]
    assert list(random_unit_directions(42, 100)[24]) == gold
    raw = np.random.RandomState(42).randn(100, 3)[24]
    unfused = (raw / np.linalg.norm(raw)).tolist()
    assert unfused[1:] == gold[1:]
    assert abs(unfused[0] - gold[0]) <= 2 * np.spacing(abs(gold[0]))


def test_directions_are_unit_vectors() -> None:
    for v in random_unit_directions(7, 50):
        assert math.isclose(math.fsum(c * c for c in v), 1.0, rel_tol=1e-12)
    with pytest.raises(ValueError):
        LegacyNormal(2**32)


def test_coherence_edge_cases() -> None:
    assert compute_coherence([], seed=1) == (0.0, [0.0, 0.0, 0.0])
    coh, _ = compute_coherence([(0.5, 0.5, 0.5)] * 4, seed=1)
    assert coh == 1.0  # zero-width projection
    line = [(i / 10, 0.0, 0.0) for i in range(10)]
    coh, v = compute_coherence(line, seed=42)
    assert 0.1 <= coh <= 1.0 and len(v) == 3


def test_n_j_counts_distinct_voxels() -> None:
    points = [(0.1, 0.1, 0.1), (0.2, 0.2, 0.2), (0.6, 0.1, 0.1), (-0.1, 0.0, 0.0)]
    assert compute_n_j(points, [1, 2, 4, 8]) == {"1": 2, "2": 3, "4": 3, "8": 4}

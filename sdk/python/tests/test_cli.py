"""The command-line signer, run as a real subprocess (console script and ``python -m``)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

FIELDS = {"pcs_id": "test-id", "merkle_root": "abc123", "epoch": 1, "shard_id": "shard-001",
          "D_hat": 1.412345679, "coh_star": 0.73456789, "r": 0.871234568, "budget": 0.421234568}
PAYLOAD = (b'{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,'
           b'"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}')
SEED_B64 = base64.b64encode(bytes(range(32))).decode()


def console_script() -> Optional[str]:
    candidate = Path(sys.executable).with_name("flk-sdk")
    return str(candidate) if candidate.exists() else shutil.which("flk-sdk")


RUNNERS: List[List[str]] = [[sys.executable, "-m", "flk_sdk"]]
if console_script():
    RUNNERS.append([console_script()])  # type: ignore[list-item]


def run(runner: List[str], args: List[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(runner + args, input=stdin, capture_output=True, timeout=60)


def test_console_script_is_installed() -> None:
    assert console_script() is not None


@pytest.fixture(params=RUNNERS, ids=lambda r: "module" if len(r) > 1 else "script")
def runner(request) -> List[str]:
    return request.param


def test_sign_hmac(runner) -> None:
    out = run(runner, ["sign", "--key", "testsecret"], json.dumps(FIELDS).encode())
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c=\n"


def test_sign_ed25519_and_prehash(runner, golden: Path) -> None:
    body = (golden / "pcs_tiny_case_1.json").read_bytes()  # a whole PCS works: extra keys ignored
    out = run(runner, ["sign", "--alg", "ed25519", "--seed", SEED_B64], body)
    assert out.stdout == (b"YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJ"
                          b"RHzYk3FyXVZlAg==\n")
    out = run(runner, ["sign", "--alg", "hmac-prehash", "--key", "testsecret"], body)
    assert out.stdout == b"ie8rdnp+3qXnlMVyHmSdjFT3Unk6sZmoVxun71x2/X4=\n"


def test_empty_and_non_ascii_keys_are_valid(runner) -> None:
    import hashlib
    import hmac
    for key in ["", "cl\u00e9\U0001F600"]:
        out = run(runner, ["sign", "--key", key], json.dumps(FIELDS).encode())
        expected = base64.b64encode(hmac.new(key.encode(), PAYLOAD, hashlib.sha256).digest())
        assert out.returncode == 0 and out.stdout == expected + b"\n"


def test_canonical_has_no_trailing_newline(runner) -> None:
    out = run(runner, ["canonical"], json.dumps(FIELDS).encode())
    assert out.returncode == 0 and out.stdout == PAYLOAD


@pytest.mark.parametrize("stdin", [
    b"", b"[]", b"not json", b"\xff\xfe", json.dumps(dict(FIELDS, epoch=1.0)).encode(),
    json.dumps({k: v for k, v in FIELDS.items() if k != "r"}).encode(),
    json.dumps(dict(FIELDS, D_hat="1")).encode(), b'{"D_hat": NaN}',
])
def test_bad_input_exits_1_with_message(runner, stdin: bytes) -> None:
    out = run(runner, ["sign", "--key", "k"], stdin)
    assert out.returncode == 1 and out.stdout == b"" and out.stderr.startswith(b"flk-sdk: ")


def test_bad_seed_and_missing_key(runner) -> None:
    body = json.dumps(FIELDS).encode()
    assert run(runner, ["sign", "--alg", "ed25519", "--seed", "AAAA"], body).returncode == 1
    assert run(runner, ["sign", "--alg", "ed25519", "--seed", "!!"], body).returncode == 1
    assert run(runner, ["sign", "--alg", "ed25519"], body).returncode == 1
    assert run(runner, ["sign"], body).returncode == 1


def test_batch(runner) -> None:
    lines = [
        {"fields": FIELDS, "hmac_key": "testsecret", "ed25519_seed": SEED_B64},
        {"fields": dict(FIELDS, shard_id="\x7f\U0001F600", D_hat=2), "hmac_key": ""},
    ]
    stdin = "\n".join(json.dumps(line) for line in lines).encode() + b"\n\n"
    out = run(runner, ["batch"], stdin)
    assert out.returncode == 0, out.stderr
    first, second = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert first["payload"] == PAYLOAD.decode()
    assert first["hmac"] == "Jh7KgV0gdhjyPJ/xWuYYy3WtWqMhn11lP7qi4MsgV4c="
    assert list(first) == ["payload", "hmac", "ed25519"]
    assert '"D_hat":2.0' in second["payload"] and '"shard_id":"\\u007f\\ud83d\\ude00"' in second["payload"]
    assert "ed25519" not in second


def test_batch_bad_line_exits_1(runner) -> None:
    good = json.dumps({"fields": FIELDS, "hmac_key": "k"})
    out = run(runner, ["batch"], (good + "\n{broken\n").encode())
    assert out.returncode == 1 and b"line 2" in out.stderr
    out = run(runner, ["batch"], json.dumps({"fields": dict(FIELDS, epoch="1")}).encode())
    assert out.returncode == 1 and b"epoch" in out.stderr


def test_verify_and_build(runner, golden: Path) -> None:
    out = run(runner, ["verify"], (golden / "pcs_tiny_case_2.json").read_bytes())
    assert json.loads(out.stdout) == {"accepted": True, "escalated": False, "recomputed_D_hat": 1.0,
                                      "recomputed_budget": 0.349073359}
    out = run(runner, ["verify", "--params", '{"budget_tol": 0, "D0": 0.5}'],
              (golden / "pcs_tiny_case_2.json").read_bytes())
    assert json.loads(out.stdout)["reason"].startswith("budget deviation")
    out = run(runner, ["build", "--csv", str(golden / "tiny_case_1.csv"), "--key", "testsecret",
                       "--sent-at", "2025-01-19T12:00:00Z"], b"")
    assert out.returncode == 0
    assert out.stdout.decode() == (golden / "pcs_tiny_case_1.json").read_text() + "\n"
    assert run(runner, ["build", "--csv", "/nonexistent.csv"], b"").returncode == 1


def test_batch_reads_minus_zero_as_negative_zero(runner) -> None:
    line = json.dumps({"fields": FIELDS}).replace('"r": 0.871234568', '"r": -0')
    out = run(runner, ["batch"], line.encode())
    assert out.returncode == 0 and '\\"r\\":-0.0,' in out.stdout.decode()

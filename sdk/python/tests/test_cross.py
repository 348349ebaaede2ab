"""The cross-language harness (tests/cross/cross_sign.py) run against the Python implementation.

Other languages plug in with ``--impl``; here we check the harness itself: it passes when
implementations agree, fails and names the case when one deviates, and its Python answers agree
with an independent recomputation of every signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import REPO_ROOT
from flk_sdk.canonical import round9

CROSS = REPO_ROOT / "tests" / "cross" / "cross_sign.py"
PY_IMPL = f"python={shlex.quote(sys.executable)} -m flk_sdk batch"


def load_cross():
    spec = importlib.util.spec_from_file_location("cross_sign", CROSS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run_cross(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CROSS), *args], capture_output=True, text=True,
                          timeout=600)


def test_two_python_entry_points_agree() -> None:
    script = Path(sys.executable).with_name("flk-sdk")
    out = run_cross("--count", "400", "--seed", "11", "--impl", PY_IMPL,
                    "--impl", f"script={shlex.quote(str(script))} batch")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "400 passed, 0 failed"


def test_a_deviating_implementation_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "import subprocess, sys\n"
        f"out = subprocess.run([{sys.executable!r}, '-m', 'flk_sdk', 'batch'], input=sys.stdin.buffer.read(),"
        " capture_output=True, check=True).stdout.decode().splitlines()\n"
        "out[7] = out[7].replace('\"hmac\":\"', '\"hmac\":\"X', 1)\n"
        "print('\\n'.join(out))\n")
    out = run_cross("--count", "20", "--seed", "3", "--impl", PY_IMPL,
                    "--impl", f"broken={shlex.quote(sys.executable)} {shlex.quote(str(broken))}")
    assert out.returncode == 1
    assert "19 passed, 1 failed" in out.stdout
    assert "--- case 7" in out.stderr


def test_a_crashing_implementation_fails_the_run() -> None:
    out = run_cross("--count", "5", "--impl", PY_IMPL, "--impl", "dead=false")
    assert out.returncode == 1 and "dead: exit status" in out.stderr


def test_generator_is_seeded_and_covers_the_tricky_inputs() -> None:
    cross = load_cross()
    cases, lines = cross.generate(1000, 5)
    assert lines == cross.generate(1000, 5)[1]
    assert lines != cross.generate(1000, 6)[1]
    text = "".join(c["fields"][k] for c in cases for k in ("pcs_id", "merkle_root", "shard_id"))
    for needle in ("\x7f", "\x00", "\"", "\\", "<", "&", "/", "\U0001F600", "\u2028", "\x1f"):
        assert needle in text, repr(needle)
    numbers = [c["fields"][k] for c in cases for k in ("D_hat", "coh_star", "r", "budget")]
    assert any(isinstance(x, int) for x in numbers)
    assert any(isinstance(x, float) and x == 0 and str(x).startswith("-") for x in numbers)
    assert any(repr(x).endswith("5") and len(repr(x).split(".")[-1]) == 10 for x in numbers)
    assert any(isinstance(x, float) and abs(x) >= 1e16 for x in numbers)
    assert any(c["hmac_key"] == "" for c in cases)
    assert max(c["fields"]["epoch"] for c in cases) == 2**53
    assert any("E" in line for line in lines)  # alternative number spellings are exercised


def test_python_answers_match_an_independent_recomputation(tmp_path: Path) -> None:
    cross = load_cross()
    cases, lines = cross.generate(300, 9)
    out = subprocess.run([sys.executable, "-m", "flk_sdk", "batch"], capture_output=True, check=True,
                         input=("\n".join(lines) + "\n").encode(), timeout=300)
    for case, line in zip(cases, out.stdout.decode().splitlines()):  # noqa: B905
        answer = json.loads(line)
        payload = answer["payload"].encode("ascii")
        decoded = json.loads(payload)
        fields = case["fields"]
        assert list(decoded) == sorted(decoded)
        assert all(decoded[k] == fields[k] for k in ("pcs_id", "merkle_root", "shard_id", "epoch"))
        for key in ("D_hat", "coh_star", "r", "budget"):
            assert repr(decoded[key]) == repr(round9(float(fields[key])))
        key = case["hmac_key"].encode("utf-8")
        assert answer["hmac"] == base64.b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode()
        private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(case["ed25519_seed"]))
        assert answer["ed25519"] == base64.b64encode(
            private.sign(hashlib.sha256(payload).digest())).decode()

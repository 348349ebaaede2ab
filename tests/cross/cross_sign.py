#!/usr/bin/env python3
"""Cross-language signing check: every implementation must produce identical payloads and signatures.

Generates ``--count`` seeded random signed-field sets designed to hit the places where languages
differ (float printing and rounding, integer-valued floats, -0.0, subnormals, huge values, half-up
ties at the 9th decimal, alternative JSON spellings of the same double, control characters, DEL,
astral code points, quotes and backslashes, empty and non-ASCII keys, epochs up to 2^53), feeds them
as JSON lines to each implementation's ``batch`` command, and compares the answers case by case.

Usage:

    tests/cross/cross_sign.py --count 1000 --seed 7 \\
        --impl python='python -m flk_sdk batch' \\
        --impl rust='target/debug/flk pcs batch' \\
        --impl go='...' --impl ts='...'

Batch interface (one JSON object per line, in and out, same order):
    in:  {"fields": {<8 signed fields>}, "hmac_key": "...", "ed25519_seed": "<b64 of 32 bytes>"}
    out: {"payload": "...", "hmac": "...", "ed25519": "..."}

Prints ``N passed, M failed``; exits 1 when any two implementations disagree on any case (listing
the first few), or when an implementation fails or answers the wrong number of lines. Standard
library only, so it runs with any Python 3.8+.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import shlex
import struct
import subprocess
import sys
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

FLOAT_KEYS = ("D_hat", "coh_star", "r", "budget")
STRING_KEYS = ("pcs_id", "merkle_root", "shard_id")

# --------------------------------------------------------------------------- generators

_STRING_POOLS: List[str] = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:|",
    "\"\\",
    "".join(chr(c) for c in range(0x00, 0x20)),   # every C0 control, incl. \b \f \n \r \t
    "\x7f",                                        # DEL
    "<>&/'`= ~{}[],",
    "\u00e9\u00fc\u00df\u00a0\u00ff\u0100\u0394\u0416",  # Latin-1 and beyond
    "\u2028\u2029\ufeff\ufffd\uffff\u200b\u4e2d\u6587",   # JS line separators, BOM, CJK
    "\U0001F600\U0001F4A9\U00010000\U0010FFFF\U0001D11E",  # astral: surrogate pairs when escaped
]


def random_string(rng: random.Random, max_len: int = 16) -> str:
    n = rng.choice([0, 1, 2, rng.randrange(0, max_len + 1), max_len])
    return "".join(rng.choice(rng.choice(_STRING_POOLS)) for _ in range(n))


def _random_finite_double(rng: random.Random) -> float:
    while True:
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if math.isfinite(x):
            return x


def _tie(rng: random.Random) -> float:
    """A value whose shortest repr ends in 5 at the 10th decimal: half-up vs half-even differ."""
    int_part = rng.choice([0, 0, 1, 2, 12, 123, 12345, rng.randrange(0, 10**6)])
    frac = rng.randrange(0, 10**9)
    sign = rng.choice(["", "-"])
    return float(f"{sign}{int_part}.{frac:09d}5")


def random_number(rng: random.Random) -> Any:
    """A float (or int) for one of the four rounded fields."""
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([0, 1, -1, 2, 3, 42, 10**6, 2**53, 2**53 + 1, 10**16, 10**20, -(10**15),
                           123456789012345678901234567890])
    if kind == 1:
        return rng.choice([-0.0, 0.0, 1.0, -1.0, 0.5, 2.0, 100.0])
    if kind == 2:
        return rng.choice([1e-12, -1e-12, 5e-10, -5e-10, 4.999999999e-10, 5.000000001e-10, 1.5e-9,
                           5e-324, -5e-324, 2.2250738585072014e-308, 1e-4, 9.999999999999999e-05,
                           1e-5, 1e-7, 0.00010000000005])
    if kind == 3:
        return rng.choice([1e20, -1e20, 1e16, 1e16 - 2, 9999999999999998.0, 1.7976931348623157e308,
                           -1e300, 1e15 + 0.5, 123456789.123456789, 1e21, 4503599627370497.5])
    if kind in (4, 5):
        return _tie(rng)
    if kind == 6:
        return _random_finite_double(rng)
    if kind == 7:
        return rng.uniform(-10, 10)
    if kind == 8:
        return round(rng.uniform(0, 3), rng.randrange(8, 13))
    if kind == 9:
        return rng.uniform(0, 1)
    if kind == 10:
        return rng.randrange(-1000, 1000) / rng.choice([1, 3, 7, 1000, 1024, 10**9])
    return float(rng.randrange(0, 10**rng.randrange(1, 17))) / 10 ** rng.randrange(0, 13)


def random_epoch(rng: random.Random) -> int:
    return rng.choice([0, 1, 2**31 - 1, 2**31, 2**32, 2**53 - 1, 2**53,
                       rng.randrange(0, 1000), rng.randrange(0, 2**53 + 1)])


def number_json(rng: random.Random, value: Any) -> str:
    """JSON text for a number, sometimes in an unusual but equivalent spelling.

    Parsers must round these correctly to the same double (a best-effort float parser fails on
    17-significant-digit and long exact forms).
    """
    if isinstance(value, int):
        return str(value)
    if value == 0.0 and math.copysign(1.0, value) < 0 and rng.random() < 0.3:
        return "-0"  # an integer literal, but IEEE -0.0 for every JSON parser that reads doubles
    if value == 0.0 or rng.random() < 0.5:
        return repr(value)  # json.dumps spelling
    style = rng.randrange(5)
    if style == 0:
        return "%.17g" % value  # may print as a JSON integer ("100"): it still becomes 100.0
    if style == 1:
        return "%.16E" % value
    if style == 2:
        return repr(value).replace("e", "E")
    if style == 3 and abs(value) < 1e30:
        text = format(Decimal(value), "f")  # the exact binary value, up to ~1100 digits
        return text if "." in text else text + ".0"
    mantissa, _, exponent = ("%.17e" % value).partition("e")
    return f"{mantissa}0000e{int(exponent)}"  # trailing zeros, no exponent sign/padding


def make_case(rng: random.Random) -> Tuple[Dict[str, Any], str]:
    """One input object and its JSON line (built by hand to control number spellings)."""
    fields: Dict[str, Any] = {key: random_string(rng, 24 if key != "shard_id" else 12)
                              for key in STRING_KEYS}
    fields["epoch"] = random_epoch(rng)
    for key in FLOAT_KEYS:
        fields[key] = random_number(rng)
    case = {"fields": fields, "hmac_key": random_string(rng, 20),
            "ed25519_seed": base64.b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode()}
    ensure_ascii = rng.random() < 0.5  # both \u escapes and raw UTF-8 must be understood
    keys = list(fields)
    rng.shuffle(keys)  # input key order must not matter
    parts = []
    for key in keys:
        value = fields[key]
        text = (number_json(rng, value) if key in FLOAT_KEYS
                else json.dumps(value, ensure_ascii=ensure_ascii))
        parts.append(f"{json.dumps(key)}:{text}")
    line = ('{"fields":{' + ",".join(parts) + "},"
            f'"hmac_key":{json.dumps(case["hmac_key"], ensure_ascii=ensure_ascii)},'
            f'"ed25519_seed":"{case["ed25519_seed"]}"}}')
    return case, line


def generate(count: int, seed: int) -> Tuple[List[Dict[str, Any]], List[str]]:
    rng = random.Random(seed)
    cases, lines = [], []
    for _ in range(count):
        case, line = make_case(rng)
        cases.append(case)
        lines.append(line)
    return cases, lines


# --------------------------------------------------------------------------- running


def run_impl(name: str, command: str, stdin: bytes, count: int,
             timeout: float) -> Tuple[Optional[List[Any]], str]:
    """Run one implementation on all lines; returns (parsed output lines or None, error text)."""
    try:
        proc = subprocess.run(command, shell=True, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"{name}: timed out after {timeout}s"
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        return None, f"{name}: exit status {proc.returncode}: {err}"
    out_lines = [line for line in proc.stdout.decode("utf-8", "replace").split("\n") if line.strip()]
    if len(out_lines) != count:
        return None, f"{name}: expected {count} output lines, got {len(out_lines)}"
    parsed: List[Any] = []
    for line in out_lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            parsed.append({"<unparsable>": line})
    return parsed, ""


def run_isolated(command: str, lines: Sequence[str], timeout: float) -> List[Any]:
    """Run an implementation once per line, so one rejected line does not hide the others.

    A line the implementation rejects is recorded as ``{"<error>": ...}``: every generated line is
    valid input, so an error is a failure of that case.
    """
    answers: List[Any] = []
    for line in lines:
        try:
            proc = subprocess.run(command, shell=True, input=(line + "\n").encode("utf-8"),
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            answers.append({"<error>": "timed out"})
            continue
        out = [x for x in proc.stdout.decode("utf-8", "replace").split("\n") if x.strip()]
        if proc.returncode != 0 or len(out) != 1:
            err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
            answers.append({"<error>": f"exit status {proc.returncode}: {err}"})
            continue
        try:
            answers.append(json.loads(out[0]))
        except ValueError:
            answers.append({"<unparsable>": out[0]})
    return answers


def parse_impls(specs: Sequence[str]) -> List[Tuple[str, str]]:
    impls = []
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command.strip():
            raise SystemExit(f"--impl must be NAME=COMMAND, got {spec!r}")
        impls.append((name, command))
    return impls


def default_python_impl() -> str:
    return f"{shlex.quote(sys.executable)} -m flk_sdk batch"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--impl", action="append", default=[], metavar="NAME=COMMAND",
                        help="an implementation's batch command (repeatable; default: python only)")
    parser.add_argument("--show", type=int, default=5, help="how many differing cases to print")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per implementation")
    parser.add_argument("--dump", help="write the generated input lines to this file")
    parser.add_argument("--no-isolate", action="store_true",
                        help="do not re-run a failing implementation line by line")
    args = parser.parse_args(argv)

    impls = parse_impls(args.impl) or [("python", default_python_impl())]
    cases, lines = generate(args.count, args.seed)
    stdin = ("\n".join(lines) + "\n").encode("utf-8")
    if args.dump:
        with open(args.dump, "wb") as handle:
            handle.write(stdin)

    results: Dict[str, List[Any]] = {}
    errors: List[str] = []
    for name, command in impls:
        output, error = run_impl(name, command, stdin, len(cases), args.timeout)
        if output is None:
            errors.append(error)
            print(f"ERROR {error}", file=sys.stderr)
            if args.no_isolate:
                continue
            print(f"re-running {name} line by line to find the failing cases", file=sys.stderr)
            output = run_isolated(command, lines, args.timeout)
        results[name] = output

    failed: List[int] = []
    names = list(results)
    for index in range(len(cases)):
        answers = [results[name][index] for name in names]
        broken = any("<error>" in a or "<unparsable>" in a for a in answers if isinstance(a, dict))
        if broken or any(answer != answers[0] for answer in answers[1:]):
            failed.append(index)

    for index in failed[:args.show]:
        print(f"--- case {index} (seed {args.seed}): input line:", file=sys.stderr)
        print(lines[index], file=sys.stderr)
        for name in names:
            print(f"  {name}: {json.dumps(results[name][index])}", file=sys.stderr)
    if len(failed) > args.show:
        print(f"... and {len(failed) - args.show} more differing cases", file=sys.stderr)

    compared = ", ".join(names) if names else "none"
    print(f"implementations compared: {compared}")
    if len(results) < len(impls):  # an implementation failed and was not isolated
        failed = list(range(len(cases)))
    print(f"{len(cases) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Command-line signer: ``flk-sdk`` / ``python -m flk_sdk``.

Subcommands:

- ``sign --key K`` / ``sign --alg ed25519 --seed B64`` / ``sign --alg hmac-prehash --key K``: read a
  JSON object holding the 8 signed fields on stdin, print the signature and a newline;
- ``canonical``: print the exact payload bytes, *without* a trailing newline (so ``| sha256sum`` or a
  byte comparison sees exactly what is signed);
- ``batch``: JSON lines ``{"fields": {...}, "hmac_key": "...", "ed25519_seed": "b64"}`` in, one
  ``{"payload": "...", "hmac": "...", "ed25519": "..."}`` line out per input (the cross-language
  test's interface);
- ``verify [--params JSON]``: read a whole PCS, print the verification outcome JSON;
- ``build --csv FILE``: compute a PCS from an event CSV (optionally signed).

Bad input prints a message on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from typing import Any, Dict, Mapping, Optional, Sequence

from .canonical import canonical_payload
from .pcs import MalformedPCS, decode_pcs, integer, number, parse_json_object
from .signing import sign_ed25519, sign_hmac, sign_hmac_prehash
from .verify import VerifyParams, verify

__all__ = ["main", "parse_signed_fields"]


class UsageError(Exception):
    """Bad input; reported on stderr with exit status 1."""


def parse_signed_fields(obj: Mapping[str, Any]) -> Dict[str, Any]:
    """Type-check the 8 signed fields of a JSON object; all 8 must be present (as in the Rust tool)."""
    out: Dict[str, Any] = {}
    for key in ("pcs_id", "merkle_root", "shard_id"):
        if key not in obj:
            raise MalformedPCS(f"`{key}` is required", key)
        if not isinstance(obj[key], str):
            raise MalformedPCS(f"`{key}` must be a string", key)
        out[key] = obj[key]
    if "epoch" not in obj:
        raise MalformedPCS("`epoch` is required", "epoch")
    out["epoch"] = integer("epoch", obj["epoch"])
    for key in ("D_hat", "coh_star", "r", "budget"):
        if key not in obj:
            raise MalformedPCS(f"`{key}` is required", key)
        out[key] = number(key, obj[key])
    return out


def _read_stdin_text() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"stdin is not UTF-8: {exc}") from exc


def _seed_bytes(seed_b64: str) -> bytes:
    try:
        raw = base64.b64decode(seed_b64.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise UsageError(f"seed is not valid base64: {exc}") from exc
    if len(raw) != 32:
        raise UsageError(f"Ed25519 seed must be 32 bytes, got {len(raw)}")
    return raw


def _cmd_sign(args: argparse.Namespace) -> None:
    fields = parse_signed_fields(parse_json_object(_read_stdin_text()))
    payload = canonical_payload(fields)
    if args.alg == "ed25519":
        if args.seed is None:
            raise UsageError("--alg ed25519 needs --seed B64")
        sig = sign_ed25519(payload, _seed_bytes(args.seed))
    else:
        if args.key is None:
            raise UsageError(f"--alg {args.alg} needs --key K")
        signer = sign_hmac_prehash if args.alg == "hmac-prehash" else sign_hmac
        sig = signer(payload, args.key)
    sys.stdout.write(sig + "\n")


def _cmd_canonical(_args: argparse.Namespace) -> None:
    payload = canonical_payload(parse_signed_fields(parse_json_object(_read_stdin_text())))
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()


def _batch_line(line: str, line_no: int) -> str:
    try:
        item = parse_json_object(line)
        fields_obj = item.get("fields")
        if not isinstance(fields_obj, dict):
            raise UsageError(f"line {line_no}: expected an object with a \"fields\" object")
        fields = parse_signed_fields(fields_obj)
    except MalformedPCS as exc:
        raise UsageError(f"line {line_no}: {exc}") from exc
    payload = canonical_payload(fields)
    out: Dict[str, str] = {"payload": payload.decode("ascii")}
    key = item.get("hmac_key")
    if key is not None:
        if not isinstance(key, str):
            raise UsageError(f"line {line_no}: hmac_key must be a string")
        out["hmac"] = sign_hmac(payload, key)
    seed = item.get("ed25519_seed")
    if seed is not None:
        if not isinstance(seed, str):
            raise UsageError(f"line {line_no}: ed25519_seed must be a base64 string")
        out["ed25519"] = sign_ed25519(payload, _seed_bytes(seed))
    return json.dumps(out, separators=(",", ":"))


def _cmd_batch(_args: argparse.Namespace) -> None:
    stdin = sys.stdin.buffer
    line_no = 0
    for raw in stdin:
        line_no += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"line {line_no}: not UTF-8: {exc}") from exc
        if not line.strip():
            continue
        sys.stdout.write(_batch_line(line, line_no) + "\n")
        sys.stdout.flush()


def _cmd_verify(args: argparse.Namespace) -> None:
    params = VerifyParams()
    if args.params:
        try:
            params = VerifyParams.from_dict(json.loads(args.params))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--params: {exc}") from exc
    outcome = verify(decode_pcs(_read_stdin_text()), params)
    sys.stdout.write(json.dumps(outcome.to_dict()) + "\n")


def _cmd_build(args: argparse.Namespace) -> None:
    from .agent import build_pcs  # numpy import only when needed

    kwargs: Dict[str, Any] = {"seed": args.seed}
    if args.key is not None:
        kwargs["hmac_key"] = args.key
    if args.ed25519_seed is not None:
        kwargs["ed25519_seed"] = _seed_bytes(args.ed25519_seed)
    if args.sent_at is not None:
        kwargs["sent_at"] = args.sent_at
    try:
        pcs = build_pcs(args.csv, args.shard_id, args.epoch, **kwargs)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    sys.stdout.write(pcs.to_json(indent=2) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flk-sdk", description="FLK PCS signing tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser("sign", help="sign the 8 signed fields read as JSON on stdin")
    sign.add_argument("--alg", choices=("hmac", "ed25519", "hmac-prehash"), default="hmac")
    sign.add_argument("--key", help="HMAC secret (any UTF-8 string, empty allowed)")
    sign.add_argument("--seed", help="Ed25519 32-byte seed, standard base64")
    sign.set_defaults(func=_cmd_sign)
    canonical = sub.add_parser("canonical", help="print the canonical payload (no newline)")
    canonical.set_defaults(func=_cmd_canonical)
    batch = sub.add_parser("batch", help="JSON lines in, payload + signatures out")
    batch.set_defaults(func=_cmd_batch)
    ver = sub.add_parser("verify", help="verify a PCS read on stdin (no signature check)")
    ver.add_argument("--params", help="JSON object of parameter overrides")
    ver.set_defaults(func=_cmd_verify)
    build = sub.add_parser("build", help="build a PCS from an event CSV")
    build.add_argument("--csv", required=True)
    build.add_argument("--shard-id", default="test-shard-001")
    build.add_argument("--epoch", type=int, default=1)
    build.add_argument("--seed", type=int, default=42)
    build.add_argument("--key", help="sign with this HMAC secret")
    build.add_argument("--ed25519-seed", help="sign with this Ed25519 seed (base64)")
    build.add_argument("--sent-at", help="RFC 3339 timestamp (default: now)")
    build.set_defaults(func=_cmd_build)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (UsageError, MalformedPCS) as exc:
        sys.stderr.write(f"flk-sdk: {exc}\n")
        return 1
    except BrokenPipeError:  # pragma: no cover - reader went away
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

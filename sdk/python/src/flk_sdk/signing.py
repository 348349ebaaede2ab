"""HMAC-SHA256 and Ed25519 signatures over the canonical payload (CONTRACT 2.4, 2.5, 2.7).

Every function takes either a record (mapping or PCS) or the payload bytes, so callers that already
hold the payload (the CLI, the cross-language test) don't re-canonicalize. Verification never raises
on a bad signature: it returns ``False`` so a caller can't accidentally treat an exception path as
"verified".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .canonical import canonical_payload

__all__ = [
    "ed25519_public_key",
    "sign_ed25519",
    "sign_hmac",
    "sign_hmac_prehash",
    "verify_ed25519",
    "verify_hmac",
    "verify_hmac_prehash",
]

RecordOrPayload = Union[bytes, Any]
Key = Union[str, bytes]


def _payload(record_or_payload: RecordOrPayload) -> bytes:
    if isinstance(record_or_payload, (bytes, bytearray, memoryview)):
        return bytes(record_or_payload)
    return canonical_payload(record_or_payload)


def _key_bytes(key: Key) -> bytes:
    # The contract keys HMAC with the UTF-8 bytes of the secret; any string (even empty) is valid.
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_strict(text: str) -> bytes:
    """Standard base64 *with* padding only; anything else is not a signature we issued."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def sign_hmac(record_or_payload: RecordOrPayload, key: Key) -> str:
    """``base64std(HMAC_SHA256(key, payload))``: no pre-hash (CONTRACT 2.4)."""
    mac = hmac.new(_key_bytes(key), _payload(record_or_payload), hashlib.sha256).digest()
    return _b64(mac)


def sign_hmac_prehash(record_or_payload: RecordOrPayload, key: Key) -> str:
    """Legacy ``HMAC(key, SHA256(payload))``, only to talk to tenants that opted in (CONTRACT 2.7)."""
    digest = hashlib.sha256(_payload(record_or_payload)).digest()
    return _b64(hmac.new(_key_bytes(key), digest, hashlib.sha256).digest())


def _constant_time_b64_equal(expected: str, given: Any) -> bool:
    if not isinstance(given, str):
        return False
    try:
        given_bytes = _b64decode_strict(given)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    # Compare decoded bytes (not text) in constant time so timing leaks nothing about the MAC.
    return hmac.compare_digest(base64.b64decode(expected), given_bytes)


def verify_hmac(record_or_payload: RecordOrPayload, key: Key, sig: Any) -> bool:
    """Constant-time check of a v0.1 HMAC signature."""
    return _constant_time_b64_equal(sign_hmac(record_or_payload, key), sig)


def verify_hmac_prehash(record_or_payload: RecordOrPayload, key: Key, sig: Any) -> bool:
    """Constant-time check of a legacy pre-hash HMAC signature (off by default server-side)."""
    return _constant_time_b64_equal(sign_hmac_prehash(record_or_payload, key), sig)


def _private_key(seed: Union[bytes, str]) -> Ed25519PrivateKey:
    raw = _b64decode_strict(seed) if isinstance(seed, str) else bytes(seed)
    if len(raw) != 32:
        raise ValueError(f"Ed25519 seed must be 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def ed25519_public_key(seed: Union[bytes, str]) -> str:
    """Standard base64 of the raw 32-byte public key for a seed (bytes or base64 text)."""
    public = _private_key(seed).public_key()
    return _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign_ed25519(record_or_payload: RecordOrPayload, seed: Union[bytes, str]) -> str:
    """``base64std(Ed25519_sign(seed, SHA256(payload)))`` (CONTRACT 2.5).

    The message is the 32-byte digest, not the payload: that is what the original servers verified.
    """
    digest = hashlib.sha256(_payload(record_or_payload)).digest()
    return _b64(_private_key(seed).sign(digest))


def verify_ed25519(record_or_payload: RecordOrPayload, public_key: Union[bytes, str], sig: Any) -> bool:
    """Check an Ed25519 signature against a raw or base64 public key; never raises on bad input."""
    try:
        raw_pub = _b64decode_strict(public_key) if isinstance(public_key, str) else bytes(public_key)
        if not isinstance(sig, str):
            return False
        raw_sig = _b64decode_strict(sig)
        key = Ed25519PublicKey.from_public_bytes(raw_pub)
        key.verify(raw_sig, hashlib.sha256(_payload(record_or_payload)).digest())
        return True
    except (InvalidSignature, ValueError, binascii.Error, UnicodeEncodeError):
        return False

"""Offline verification of the audit log's proofs: RFC 6962 Merkle hashing, RFC 9162 inclusion and
consistency proofs, C2SP signed checkpoints and whole proof bundles.

The server keeps every audit entry as a leaf of a Merkle log and publishes checkpoints (tree size and
root) signed with an Ed25519 key. Anyone holding the log's *verifier key* can check, with nothing
but this module, that an entry is in the log (:func:`verify_bundle`) and that a later checkpoint
extends an earlier one (:func:`verify_consistency`). Every rule mirrors the Rust crate ``events``
(``merkle.rs``, ``checkpoint.rs``, ``audit_leaf.rs``, ``audit_proof.rs``) and every case of
``tests/vectors/audit-vectors.json`` is judged the same way here.

- Hashing: a leaf is ``SHA-256(0x00 || entry)``, an inner node ``SHA-256(0x01 || left || right)``,
  the empty tree ``SHA-256("")``. (Unrelated to :mod:`flk_sdk.merkle`, the agent's data root.)
- A checkpoint body is three lines: origin, tree size in decimal, root in standard base64. A signed
  note is the body, an empty line, and lines ``"\u2014 " + key name + " " + base64(key hash (4 bytes)
  || signature (64 bytes))``; the key hash is the first four bytes of ``SHA-256(name || "\\n" || 0x01
  || public key)``. A verifier key is written ``name+<8 hex digits of the key hash>+base64(0x01 ||
  public key)``.
- A leaf is a JSON object (the audit entry); it is hashed as served and only parsed, never
  re-serialized.

Errors all derive from :class:`AuditError` (a ``ValueError``) and say what was wrong; malformed
proofs, notes, keys, leaves and bundle fields (bad base64, wrong lengths, wrong JSON types) never
raise anything else. Only :func:`verify_bundle`'s own arguments of the wrong shape (a bundle that is
not a mapping, a record without the signed fields) raise ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import canonical_payload, signed_fields

__all__ = [
    "BUNDLE_CHECKS",
    "LEAF_VERSION",
    "AuditError",
    "AuditLeaf",
    "BundleError",
    "Checkpoint",
    "CheckpointError",
    "LeafError",
    "LeafSource",
    "NoteVerifier",
    "ProofError",
    "decode_hash",
    "decode_hashes",
    "empty_root",
    "leaf_hash",
    "node_hash",
    "verify_bundle",
    "verify_consistency",
    "verify_inclusion",
]

#: The checks of :func:`verify_bundle`, in the order they run; a failure is named by the first.
BUNDLE_CHECKS = ("checkpoint", "entry", "inclusion", "record")
#: Version written in a leaf's ``v``.
LEAF_VERSION = 1

_HASH_SIZE = 32
_U64_MAX = 2**64 - 1
_ED25519 = 0x01
_SIGNATURE_PREFIX = "\u2014 "
# Rust's `str::trim` (Unicode White_Space); `str.strip()` would also drop U+001C..U+001F.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

Hash = bytes


class AuditError(ValueError):
    """Base class of every error this module raises."""


class ProofError(AuditError):
    """A Merkle proof does not verify, or its arguments are out of range or malformed."""


class CheckpointError(AuditError):
    """A verifier key, signed note or checkpoint was refused.

    ``kind`` is ``"key"`` (the verifier key string is unusable), ``"malformed"`` (the note or body
    is not well formed) or ``"signature"`` (no valid signature by the key, or the origin is not the
    key's log).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class LeafError(AuditError):
    """Entry bytes that are not an audit leaf."""


class BundleError(AuditError):
    """The first check of a proof bundle that failed; ``kind`` is one of :data:`BUNDLE_CHECKS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


# --- hashing ---------------------------------------------------------------------------------------


def empty_root() -> Hash:
    """Root of the empty tree: ``SHA-256("")``."""
    return hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> Hash:
    """``SHA-256(0x00 || entry)``."""
    if not isinstance(entry, (bytes, bytearray, memoryview)):
        raise ProofError(f"entry must be bytes, got {type(entry).__name__}")
    return hashlib.sha256(b"\x00" + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> Hash:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + _hash("left", left) + _hash("right", right)).digest()


def _b64decode(text: Any) -> Optional[bytes]:
    """Standard base64 with canonical padding and zero trailing bits (as Rust's ``STANDARD``), or
    ``None``."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        return None
    # validate=True still accepts non-zero trailing bits ("AB==" for b"\0"); Rust does not.
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def decode_hash(text: Any) -> Hash:
    """One hash from standard base64; :class:`ProofError` unless it is 32 bytes."""
    raw = _b64decode(text)
    if raw is None or len(raw) != _HASH_SIZE:
        raise ProofError("hash is not 32 bytes of base64")
    return raw


def decode_hashes(texts: Any) -> List[Hash]:
    """A list of base64 hashes (an inclusion or consistency proof as the API serves it)."""
    if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Sequence):
        raise ProofError("proof must be a list of base64 hashes")
    out = []
    for i, text in enumerate(texts):
        raw = _b64decode(text)
        if raw is None or len(raw) != _HASH_SIZE:
            raise ProofError(f"hash {i} is not 32 bytes of base64")
        out.append(raw)
    return out


def _hash(name: str, value: Any) -> Hash:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ProofError(f"{name} must be {_HASH_SIZE} bytes, got {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != _HASH_SIZE:
        raise ProofError(f"{name} must be {_HASH_SIZE} bytes, got {len(raw)}")
    return raw


def _proof(value: Any) -> List[Hash]:
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(value, Sequence):
        raise ProofError("proof must be a list of 32-byte hashes")
    return [_hash(f"proof hash {i}", item) for i, item in enumerate(value)]


def _u64(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= _U64_MAX:
        raise ProofError(f"{name} {value} is not in 0..2^64")
    return value


# --- RFC 9162 verification -------------------------------------------------------------------------


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf *hash*) is leaf ``index`` of the tree of ``size`` leaves whose
    root is ``root`` (RFC 9162 section 2.1.3.2). Returns ``None``; raises :class:`ProofError`."""
    r = _hash("leaf hash", leaf)
    index, size = _u64("leaf index", index), _u64("tree size", size)
    hashes, root = _proof(proof), _hash("root", root)
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    for p in hashes:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` leaves with root ``new_root`` extends the tree of
    ``old_size`` leaves with root ``old_root`` (RFC 9162 section 2.1.4.2). Raises
    :class:`ProofError`."""
    old_size, new_size = _u64("old size", old_size), _u64("new size", new_size)
    old_root, new_root = _hash("old root", old_root), _hash("new root", new_root)
    hashes = _proof(proof)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == new_size:
        if hashes:
            raise ProofError("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise ProofError("two different roots for the same tree size")
        return
    if old_size == 0:
        # Every tree extends the empty one.
        if hashes:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not hashes:
        raise ProofError("consistency proof is empty")
    # When the old tree is a complete subtree, its root is the proof's implicit first element.
    if old_size & (old_size - 1) == 0:
        seed, rest = old_root, hashes
    else:
        seed, rest = hashes[0], hashes[1:]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = seed
    for c in rest:
        if sn == 0:
            raise ProofError("consistency proof is longer than expected")
        if fn & 1 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than expected")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


# --- checkpoints and signed notes ------------------------------------------------------------------


def _is_control(c: str) -> bool:
    """Unicode category Cc, as Rust's ``char::is_control``."""
    return c < "\x20" or "\x7f" <= c <= "\x9f"


def _utf8(text: str) -> Optional[bytes]:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not Unicode text
        return None


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint commits to: the log's name, its size and its RFC 6962 root."""

    origin: str
    size: int
    root: Hash

    def body(self) -> str:
        """The body text (what is signed)."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"

    @classmethod
    def parse(cls, body: str) -> "Checkpoint":
        """Read a body: exactly three lines (extension lines are refused; this log writes none)."""
        if not isinstance(body, str) or not body.endswith("\n"):
            raise CheckpointError("malformed", "checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) != 3:
            raise CheckpointError("malformed", "checkpoint body must have exactly three lines")
        origin, size_text, root_text = lines
        if not origin:
            raise CheckpointError("malformed", "checkpoint origin is empty")
        if (
            not size_text
            or not all("0" <= c <= "9" for c in size_text)
            or (len(size_text) > 1 and size_text.startswith("0"))
        ):
            raise CheckpointError("malformed", "checkpoint tree size is not a decimal number")
        size = int(size_text)
        if size > _U64_MAX:
            raise CheckpointError("malformed", "checkpoint tree size is too large")
        root = _b64decode(root_text)
        if root is None or len(root) != _HASH_SIZE:
            raise CheckpointError("malformed", "checkpoint root is not 32 bytes of base64")
        return cls(origin=origin, size=size, root=root)


def _key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([_ED25519]) + public).digest()[:4]


def _check_body(body: str) -> None:
    if not body.endswith("\n"):
        raise CheckpointError("malformed", "note text must end with a newline")
    if "\n\n" in body or body.startswith("\n"):
        raise CheckpointError("malformed", "note text must not contain an empty line")
    if any(_is_control(c) and c != "\n" for c in body):
        raise CheckpointError("malformed", "note text must not contain control characters")


class NoteVerifier:
    """Checks notes signed by one Ed25519 key, given as a verifier key string
    ``name+<8 hex>+base64(0x01 || public key)`` (what the server and Go's ``note.NewVerifier``
    use). Raises :class:`CheckpointError` (kind ``"key"``) for an unusable key string."""

    def __init__(self, verifier_key: str) -> None:
        if not isinstance(verifier_key, str):
            raise CheckpointError("key", "verifier key must be a string")
        parts = verifier_key.strip(_WHITESPACE).split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("key", "verifier key must be name+hash+key")
        name, hash_hex, key_b64 = parts
        if (
            not name
            or any(c in "+ \n" or _is_control(c) for c in name)
            or _utf8(name) is None
        ):
            raise CheckpointError(
                "key", "key name must be non-empty, without '+', spaces or control characters"
            )
        key_bytes = _b64decode(key_b64)
        if key_bytes is None:
            raise CheckpointError("key", "verifier key is not base64")
        if not key_bytes:
            raise CheckpointError("key", "verifier key is empty")
        if key_bytes[0] != _ED25519:
            raise CheckpointError("key", "verifier key is not an Ed25519 key")
        public = key_bytes[1:]
        if len(public) != 32:
            raise CheckpointError("key", "Ed25519 public key must be 32 bytes")
        key_hash = _key_hash(name, public)
        if not hash_hex.isascii() or hash_hex.lower() != key_hash.hex():
            raise CheckpointError("key", "verifier key hash does not match the key")
        self._name = name
        self._hash = key_hash
        self._public = public
        self._key = Ed25519PublicKey.from_public_bytes(public)

    @property
    def name(self) -> str:
        """The key's name (the origin of the log it signs for)."""
        return self._name

    @property
    def key_hash(self) -> bytes:
        """The 4-byte key hash that starts each of its signatures."""
        return self._hash

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public

    def __repr__(self) -> str:
        return f"NoteVerifier(name={self._name!r}, key_hash={self._hash.hex()!r})"

    def open(self, note: str) -> str:
        """Check ``note`` carries a valid signature by this key and return its text (the signed
        body). Signatures by other keys are allowed and ignored (witness cosignatures, say)."""
        if not isinstance(note, str):
            raise CheckpointError("malformed", "note must be text")
        if _utf8(note) is None:
            raise CheckpointError("malformed", "note is not valid Unicode text")
        split = note.rfind("\n\n")
        if split < 0:
            raise CheckpointError("malformed", "note has no signature block")
        body, signatures = note[: split + 1], note[split + 2:]
        _check_body(body)
        if not signatures.endswith("\n"):
            raise CheckpointError("malformed", "signature block must end with a newline")
        found_name = False
        for line in signatures[:-1].split("\n"):
            if not line.startswith(_SIGNATURE_PREFIX):
                raise CheckpointError(
                    "malformed", "signature line must start with an em dash and a space"
                )
            rest = line[len(_SIGNATURE_PREFIX):]
            if " " not in rest:
                raise CheckpointError("malformed", "signature line must be name and signature")
            name, _, blob_b64 = rest.partition(" ")
            blob = _b64decode(blob_b64)
            if blob is None:
                raise CheckpointError("malformed", "signature is not base64")
            if name != self._name or len(blob) < 4 or blob[:4] != self._hash:
                found_name = found_name or name == self._name
                continue
            signature = blob[4:]
            if len(signature) != 64:
                raise CheckpointError("signature", "signature is not 64 bytes")
            try:
                self._key.verify(signature, body.encode("utf-8"))
            except InvalidSignature:
                raise CheckpointError(
                    "signature", f"the signature by {self._name} does not verify"
                ) from None
            return body
        if found_name:
            raise CheckpointError("signature", f"signed by a different key named {self._name}")
        raise CheckpointError("signature", f"no signature by {self._name}")

    def open_checkpoint(self, note: str) -> Checkpoint:
        """Open a signed checkpoint and check its origin is this key's name."""
        checkpoint = Checkpoint.parse(self.open(note))
        if checkpoint.origin != self._name:
            raise CheckpointError(
                "signature",
                f"checkpoint origin {checkpoint.origin!r} is not the key's log {self._name!r}",
            )
        return checkpoint


# --- audit leaves ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeafSource:
    """Where the submission was in the log."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class AuditLeaf:
    """One audit entry as a Merkle leaf (see ``events/src/audit_leaf.rs``)."""

    decided_at_ms: int
    """Decided at, ms since the epoch."""
    dedup: str
    """``first``, ``duplicate``, ``conflict``, ``superseded`` or ``not_deduplicated``."""
    entry_hash: str
    """Hex of the audit chain entry's hash."""
    outcome: str
    """Verdict code of the decision."""
    partition: int
    """Decisions partition (the audit chain)."""
    pcs_id: Optional[str]
    """``pcs_id``, when the body decoded."""
    region: str
    """Region that decided."""
    seq: int
    """Position in the partition's chain."""
    signed_digest: Optional[str]
    """Hex of SHA-256 of the canonical signing payload, when the signature was checked."""
    source: LeafSource
    """The submission's coordinates."""
    tenant: str
    v: int
    """Format version (:data:`LEAF_VERSION`)."""

    @classmethod
    def decode(cls, entry: bytes) -> "AuditLeaf":
        """Read leaf bytes: a JSON object with exactly these fields (unknown or duplicate fields,
        wrong types and other versions are refused with :class:`LeafError`)."""
        value = _leaf_json(entry)
        obj = _LeafObject(value, "", _LEAF_KEYS)
        source = _LeafObject(obj.required("source"), "source.", _SOURCE_KEYS)
        leaf = cls(
            decided_at_ms=obj.integer("decided_at_ms", _I64),
            dedup=obj.string("dedup"),
            entry_hash=obj.string("entry_hash"),
            outcome=obj.string("outcome"),
            partition=obj.integer("partition", _I32),
            pcs_id=obj.optional_string("pcs_id"),
            region=obj.string("region"),
            seq=obj.integer("seq", _I64),
            signed_digest=obj.optional_string("signed_digest"),
            source=LeafSource(
                topic=source.string("topic"),
                partition=source.integer("partition", _I32),
                offset=source.integer("offset", _I64),
            ),
            tenant=obj.string("tenant"),
            v=obj.integer("v", (0, 2**32 - 1)),
        )
        if leaf.v != LEAF_VERSION:
            raise LeafError(f"leaf version {leaf.v} is not {LEAF_VERSION}")
        return leaf


_I32 = (-(2**31), 2**31 - 1)
_I64 = (-(2**63), 2**63 - 1)
_LEAF_KEYS = frozenset(
    ("decided_at_ms", "dedup", "entry_hash", "outcome", "partition", "pcs_id", "region", "seq",
     "signed_digest", "source", "tenant", "v")
)
_SOURCE_KEYS = frozenset(("topic", "partition", "offset"))


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise LeafError(f"duplicate field `{key}`")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise LeafError(f"entry is not JSON: {name} is not a JSON number")


def _leaf_json(entry: Any) -> Any:
    if not isinstance(entry, (bytes, bytearray, memoryview)):
        raise LeafError("entry must be bytes")
    try:
        text = bytes(entry).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LeafError(f"entry is not UTF-8 ({exc.reason})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except LeafError:
        raise
    except (ValueError, RecursionError) as exc:
        raise LeafError(f"entry is not JSON: {exc}") from None


class _LeafObject:
    """Typed accessors over one JSON object that name the field in every error."""

    def __init__(self, value: Any, prefix: str, keys: FrozenSet[str]) -> None:
        if not isinstance(value, dict):
            raise LeafError(f"{prefix.rstrip('.') or 'entry'} must be a JSON object")
        unknown = sorted(set(value) - keys)
        if unknown:
            raise LeafError(f"unknown field `{prefix}{unknown[0]}`")
        self.value: Dict[str, Any] = value
        self.prefix = prefix

    def required(self, key: str) -> Any:
        if key not in self.value:
            raise LeafError(f"missing field `{self.prefix}{key}`")
        return self.value[key]

    def string(self, key: str) -> str:
        value = self.required(key)
        if not isinstance(value, str):
            raise LeafError(f"`{self.prefix}{key}` must be a string")
        if _utf8(value) is None:
            raise LeafError(f"`{self.prefix}{key}` has a lone surrogate")
        return value

    def optional_string(self, key: str) -> Optional[str]:
        if self.value.get(key) is None:
            return None
        return self.string(key)

    def integer(self, key: str, bounds: Tuple[int, int]) -> int:
        value = self.required(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise LeafError(f"`{self.prefix}{key}` must be an integer")
        if not bounds[0] <= value <= bounds[1]:
            raise LeafError(f"`{self.prefix}{key}` is out of range")
        return value


# --- proof bundles ---------------------------------------------------------------------------------


def verify_bundle(
    bundle: Mapping[str, Any],
    verifier_key: Union[str, NoteVerifier],
    record: Any = None,
) -> Tuple[Checkpoint, AuditLeaf]:
    """Check a proof bundle offline; return the checkpoint and the leaf.

    ``bundle`` is the JSON object the proof API serves: ``checkpoint`` (a signed note),
    ``leaf_index``, ``tree_size``, ``entry`` (base64 of the leaf bytes) and ``inclusion`` (base64
    hashes, leaf side first). ``verifier_key`` is the log's key string (or a :class:`NoteVerifier`).
    ``record``, when given, is the PCS you hold (a mapping with the 8 signed fields, or a
    :class:`~flk_sdk.pcs.PCS`).

    The checks run in this order and the first that fails raises :class:`BundleError` with its
    ``kind``: ``checkpoint`` (signed by the key, origin is the key's log), ``entry`` (base64 of an
    audit leaf), ``inclusion`` (tree size is the checkpoint's and the proof leads from the leaf to
    its root), ``record`` (the leaf's ``pcs_id`` and ``signed_digest`` are the record's). A missing
    or mistyped bundle field fails the check that reads it. An unusable key raises
    :class:`CheckpointError` and a record without the signed fields ``TypeError``/``ValueError``
    (as :func:`~flk_sdk.canonical.canonical_payload` does) before any check: those are the
    caller's inputs, not the bundle's.
    """
    verifier = verifier_key if isinstance(verifier_key, NoteVerifier) else NoteVerifier(verifier_key)
    expected: Optional[Tuple[str, str]] = None
    if record is not None:
        expected = (
            signed_fields(record)["pcs_id"],
            hashlib.sha256(canonical_payload(record)).hexdigest(),
        )
    if not isinstance(bundle, Mapping):
        raise TypeError(f"bundle must be a mapping (the proof API's object), not {type(bundle).__name__}")

    note: Any = bundle.get("checkpoint")
    try:
        checkpoint = verifier.open_checkpoint(note)
    except CheckpointError as error:
        raise BundleError("checkpoint", str(error)) from None

    entry = _b64decode(bundle.get("entry"))
    if entry is None:
        raise BundleError("entry", "entry is not base64")
    try:
        leaf = AuditLeaf.decode(entry)
    except LeafError as error:
        raise BundleError("entry", str(error)) from None

    tree_size = bundle.get("tree_size")
    if isinstance(tree_size, bool) or not isinstance(tree_size, int):
        raise BundleError("inclusion", "tree_size must be an integer")
    if tree_size != checkpoint.size:
        raise BundleError(
            "inclusion",
            f"proof is for tree size {tree_size} but the checkpoint is for {checkpoint.size}",
        )
    leaf_index: Any = bundle.get("leaf_index")
    try:
        proof = decode_hashes(bundle.get("inclusion"))
        verify_inclusion(leaf_hash(entry), leaf_index, checkpoint.size, proof, checkpoint.root)
    except ProofError as error:
        raise BundleError("inclusion", str(error)) from None

    if expected is not None:
        pcs_id, digest = expected
        if leaf.pcs_id != pcs_id:
            raise BundleError(
                "record", f"the log holds pcs_id {leaf.pcs_id!r}, the record is {pcs_id!r}"
            )
        if leaf.signed_digest != digest:
            raise BundleError(
                "record",
                "the logged signed digest is not the record's (a different record under this pcs_id)",
            )
    return checkpoint, leaf

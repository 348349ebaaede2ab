"""Offline audit proofs (:mod:`flk_sdk.audit`): every case of the shared
``tests/vectors/audit-vectors.json`` (judged as the Rust verifiers judge it), proofs of every small
tree against an RFC 9162 reference built from the definitions, checkpoints signed here, malformed
input, and the README example.

The vector file is shared with the Rust, Go and TypeScript implementations; this suite never edits it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import AUDIT_VECTORS, AUDIT_VECTORS_SHA, SDK_ROOT
from flk_sdk.audit import (
    BUNDLE_CHECKS,
    AuditError,
    AuditLeaf,
    BundleError,
    Checkpoint,
    CheckpointError,
    LeafError,
    NoteVerifier,
    ProofError,
    decode_hash,
    decode_hashes,
    empty_root,
    leaf_hash,
    node_hash,
    verify_bundle,
    verify_consistency,
    verify_inclusion,
)

DATA: Dict[str, Any] = json.loads(AUDIT_VECTORS.read_text(encoding="utf-8"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def hashes(texts: List[str]) -> List[bytes]:
    return [unb64(text) for text in texts]


def ident(case: Any) -> str:
    if not isinstance(case, dict):
        return "?"
    if "name" in case:
        return str(case["name"]).replace(" ", "-")
    if "old_size" in case:
        return f"{case['old_size']}->{case['new_size']}"
    return f"{case.get('index')}/{case.get('size')}"


# --- the shared vectors ----------------------------------------------------------------------------


def test_sha256_pin_matches() -> None:
    assert AUDIT_VECTORS_SHA.exists(), f"{AUDIT_VECTORS_SHA} is missing"
    line = AUDIT_VECTORS_SHA.read_text(encoding="ascii").strip()
    digest, _, name = line.partition("  ")
    assert name == AUDIT_VECTORS.name, f"unexpected file name in {AUDIT_VECTORS_SHA.name}: {name!r}"
    assert hashlib.sha256(AUDIT_VECTORS.read_bytes()).hexdigest() == digest


def test_format_and_sections() -> None:
    assert DATA["format"] == 1
    for name in ("roots", "inclusion", "consistency"):
        assert isinstance(DATA.get(name), list) and DATA[name], name
    for name in ("checkpoints", "bundles"):
        assert DATA[name]["cases"], name
    # Both kinds of outcome are present, so a verifier that always says yes (or no) fails.
    assert {case["valid"] for case in DATA["inclusion"]} == {True, False}
    assert {case["valid"] for case in DATA["consistency"]} == {True, False}
    assert {case["valid"] for case in DATA["checkpoints"]["cases"]} == {True, False}
    assert {case["expect"] for case in DATA["bundles"]["cases"]} == {"ok", *BUNDLE_CHECKS}


def test_hashing() -> None:
    hashing = DATA["hashing"]
    assert empty_root() == unb64(hashing["empty_root"])
    assert hashing["leaves"]
    for case in hashing["leaves"]:
        assert leaf_hash(unb64(case["entry"])) == unb64(case["leaf_hash"]), case
    node = hashing["node"]
    assert node_hash(unb64(node["left"]), unb64(node["right"])) == unb64(node["hash"])


def mth(leaves: List[bytes]) -> bytes:
    """RFC 6962 MTH straight from the definition (leaves are leaf hashes)."""
    if not leaves:
        return empty_root()
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def roots_by_appending(count: int, leaf: Any) -> List[bytes]:
    """Roots of the first 0..count leaves, appending ``leaf(i)`` one at a time (a frontier)."""
    roots = [empty_root()]
    peaks: List[Tuple[int, bytes]] = []  # (level, hash), largest subtree first
    for i in range(count):
        level, value = 0, leaf_hash(leaf(i))
        while peaks and peaks[-1][0] == level:
            value = node_hash(peaks.pop()[1], value)
            level += 1
        peaks.append((level, value))
        root = peaks[-1][1]
        for _, left in reversed(peaks[:-1]):
            root = node_hash(left, root)
        roots.append(root)
    return roots


def vector_leaf(i: int) -> bytes:
    return f"flk test leaf {i}".encode("utf-8")


def test_roots() -> None:
    assert DATA["roots"]
    biggest = max(case["size"] for case in DATA["roots"])
    roots = roots_by_appending(biggest, vector_leaf)
    for case in DATA["roots"]:
        assert roots[case["size"]] == unb64(case["root"]), f"size {case['size']}"
    # The frontier agrees with the definition.
    leaves = [leaf_hash(vector_leaf(i)) for i in range(40)]
    assert all(roots[n] == mth(leaves[:n]) for n in range(41))


@pytest.mark.parametrize("case", DATA["inclusion"], ids=ident)
def test_inclusion(case: Dict[str, Any]) -> None:
    args = (leaf_hash(unb64(case["entry"])), case["index"], case["size"], hashes(case["proof"]),
            unb64(case["root"]))
    if case["valid"]:
        verify_inclusion(*args)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


@pytest.mark.parametrize("case", DATA["consistency"], ids=ident)
def test_consistency(case: Dict[str, Any]) -> None:
    args = (case["old_size"], case["new_size"], unb64(case["old_root"]), unb64(case["new_root"]),
            hashes(case["proof"]))
    if case["valid"]:
        verify_consistency(*args)
    else:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_checkpoint_verifier_key() -> None:
    verifier = NoteVerifier(DATA["checkpoints"]["verifier_key"])
    assert verifier.name == DATA["checkpoints"]["origin"]
    assert DATA["checkpoints"]["verifier_key"].split("+")[1] == verifier.key_hash.hex()


@pytest.mark.parametrize("case", DATA["checkpoints"]["cases"], ids=ident)
def test_checkpoints(case: Dict[str, Any]) -> None:
    verifier = NoteVerifier(DATA["checkpoints"]["verifier_key"])
    if case["valid"]:
        checkpoint = verifier.open_checkpoint(case["note"])
        assert checkpoint.origin == verifier.name
        assert checkpoint.size == case["size"]
        assert checkpoint.root == unb64(case["root"])
    else:
        with pytest.raises(CheckpointError):
            verifier.open_checkpoint(case["note"])


@pytest.mark.parametrize("case", DATA["bundles"]["cases"], ids=ident)
def test_bundles(case: Dict[str, Any]) -> None:
    try:
        checkpoint, leaf = verify_bundle(case["bundle"], DATA["bundles"]["verifier_key"], case["record"])
    except BundleError as error:
        assert error.kind == case["expect"], str(error)
        assert str(error).startswith(error.kind + ": ")
        return
    assert case["expect"] == "ok"
    assert checkpoint.size == case["bundle"]["tree_size"]
    assert leaf.v == 1 and leaf.tenant


def test_record_payload_is_the_sdk_canonical_payload() -> None:
    from flk_sdk.canonical import canonical_payload

    bundles = DATA["bundles"]
    valid = next(case for case in bundles["cases"] if case["name"] == "valid")
    assert canonical_payload(valid["record"]).decode("ascii") == bundles["record_payload"]
    leaf = AuditLeaf.decode(unb64(valid["bundle"]["entry"]))
    assert leaf.signed_digest == hashlib.sha256(bundles["record_payload"].encode("ascii")).hexdigest()
    assert leaf.pcs_id == valid["record"]["pcs_id"]


# --- proofs of every small tree against RFC 9162's definitions ---------------------------------------


def path(m: int, leaves: List[bytes]) -> List[bytes]:
    """RFC 9162 section 2.1.3.1 PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: List[bytes], complete: bool) -> List[bytes]:
    """RFC 9162 section 2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = split(n)
    if m <= k:
        return subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def consistency(m: int, leaves: List[bytes]) -> List[bytes]:
    return subproof(m, leaves, True) if 0 < m < len(leaves) else []


LEAVES = [leaf_hash(i.to_bytes(8, "big")) for i in range(33)]


@pytest.mark.parametrize("size", range(1, 34))
def test_every_inclusion_proof_of_small_trees(size: int) -> None:
    leaves, root = LEAVES[:size], mth(LEAVES[:size])
    for index in range(size):
        proof = path(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(b"other"), index, size, proof, root)
        if size > 1:
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], (index + 1) % size, size, proof, root)
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], index, size, proof[:-1], root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, proof + [root], root)


@pytest.mark.parametrize("new", range(1, 34))
def test_every_consistency_proof_of_small_trees(new: int) -> None:
    new_root = mth(LEAVES[:new])
    for old in range(new + 1):
        old_root = mth(LEAVES[:old])
        proof = consistency(old, LEAVES[:new])
        verify_consistency(old, new, old_root, new_root, proof)
        if 0 < old < new:
            wrong = node_hash(old_root, old_root)
            with pytest.raises(ProofError):
                verify_consistency(old, new, wrong, new_root, proof)
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, wrong, proof)
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, new_root, proof[:-1])
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, new_root, proof + [new_root])
            for i in range(len(proof)):
                flipped = list(proof)
                flipped[i] = bytes([flipped[i][0] ^ 1]) + flipped[i][1:]
                with pytest.raises(ProofError):
                    verify_consistency(old, new, old_root, new_root, flipped)


def test_consistency_edge_rules() -> None:
    a, b = mth(LEAVES[:3]), mth(LEAVES[:5])
    verify_consistency(0, 5, empty_root(), b, [])
    verify_consistency(0, 0, empty_root(), empty_root(), [])
    with pytest.raises(ProofError, match="empty tree must be empty"):
        verify_consistency(0, 5, empty_root(), b, [a])
    with pytest.raises(ProofError, match="equal sizes need an empty"):
        verify_consistency(5, 5, b, b, [a])
    with pytest.raises(ProofError, match="two different roots"):
        verify_consistency(5, 5, a, b, [])
    with pytest.raises(ProofError, match="old size 6 is larger than new size 5"):
        verify_consistency(6, 5, a, b, [])
    with pytest.raises(ProofError, match="consistency proof is empty"):
        verify_consistency(4, 5, mth(LEAVES[:4]), b, [])
    with pytest.raises(ProofError, match="leaf index 5 is not in a tree of size 5"):
        verify_inclusion(LEAVES[5], 5, 5, [], b)
    with pytest.raises(ProofError, match="leaf index 0 is not in a tree of size 0"):
        verify_inclusion(LEAVES[0], 0, 0, [], empty_root())


# --- checkpoints signed here ------------------------------------------------------------------------


class NoteSigner:
    """Test-only C2SP note signer (the SDK only verifies)."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = name
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.hash = hashlib.sha256(name.encode("utf-8") + b"\n\x01" + self.public).digest()[:4]

    def verifier_key(self) -> str:
        return f"{self.name}+{self.hash.hex()}+{b64(bytes([1]) + self.public)}"

    def signature_line(self, body: str) -> str:
        return f"\u2014 {self.name} {b64(self.hash + self.key.sign(body.encode('utf-8')))}\n"

    def sign(self, body: str) -> str:
        return body + "\n" + self.signature_line(body)


ORIGIN = "flk.test/local"
SIGNER = NoteSigner(ORIGIN, bytes([7]) * 32)
VERIFIER = NoteVerifier(SIGNER.verifier_key())
ROOT = bytes([9]) * 32
BODY = Checkpoint(ORIGIN, 12, ROOT).body()


def test_a_note_signed_here_opens() -> None:
    assert BODY == f"{ORIGIN}\n12\n{b64(ROOT)}\n"
    note = SIGNER.sign(BODY)
    assert VERIFIER.open(note) == BODY
    assert VERIFIER.open_checkpoint(note) == Checkpoint(ORIGIN, 12, ROOT)
    assert VERIFIER.public_key == SIGNER.public
    # Upper-case hex in the key is accepted, surrounding whitespace ignored.
    name, hash_hex, key = SIGNER.verifier_key().split("+", 2)
    assert NoteVerifier(f" {name}+{hash_hex.upper()}+{key}\n").key_hash == SIGNER.hash


def test_cosignatures_by_other_keys_are_ignored() -> None:
    witness = NoteSigner("witness.example", bytes([3]) * 32)
    note = SIGNER.sign(BODY) + witness.signature_line(BODY)
    assert VERIFIER.open_checkpoint(note).size == 12
    note = witness.sign(BODY) + SIGNER.signature_line(BODY)
    assert VERIFIER.open_checkpoint(note).size == 12
    assert NoteVerifier(witness.verifier_key()).open(note) == BODY
    with pytest.raises(CheckpointError, match="no signature by flk.test/local"):
        VERIFIER.open(witness.sign(BODY))


def test_the_origin_must_be_the_keys_log() -> None:
    # Signed by the right key, but the body names another log (the vectors' case of that name is
    # signed by another key name, so it fails earlier: no signature by the key).
    body = Checkpoint("flk.example/other", 12, ROOT).body()
    note = SIGNER.sign(body)
    assert VERIFIER.open(note) == body
    with pytest.raises(CheckpointError, match="is not the key's log") as info:
        VERIFIER.open_checkpoint(note)
    assert info.value.kind == "signature"


def test_tampering_and_foreign_keys_are_refused() -> None:
    note = SIGNER.sign(BODY)
    with pytest.raises(CheckpointError, match="does not verify") as info:
        VERIFIER.open(note.replace("\n12\n", "\n13\n", 1))
    assert info.value.kind == "signature"
    other = NoteSigner(ORIGIN, bytes([8]) * 32)
    with pytest.raises(CheckpointError, match="signed by a different key named"):
        NoteVerifier(other.verifier_key()).open(note)
    with pytest.raises(CheckpointError, match="no signature block"):
        VERIFIER.open(BODY)


@pytest.mark.parametrize("note,message", [
    (SIGNER.sign(BODY)[:-1], "signature block must end with a newline"),
    (BODY + "\n", "signature block must end with a newline"),
    (BODY + "\n\u2014flk.test/local AAAA\n", "signature line must start with an em dash"),
    (BODY + "\n- flk.test/local AAAA\n", "signature line must start with an em dash"),
    (BODY + "\n\u2014 flk.test/local\n", "signature line must be name and signature"),
    (BODY + "\n\u2014 flk.test/local not*base64\n", "signature is not base64"),
    (BODY + "\n\u2014 flk.test/local AB==\n", "signature is not base64"),  # non-zero trailing bits
    ("\n" + SIGNER.sign(BODY), "must not contain an empty line"),
    (SIGNER.sign(BODY.replace("\n12\n", "\n12\x01\n")), "must not contain control characters"),
    (SIGNER.sign(BODY.replace("\n12\n", "\n12\x85\n")), "must not contain control characters"),
    ("o\n1\n\ud800\n\n\u2014 flk.test/local AAAA\n", "not valid Unicode"),
])
def test_malformed_notes(note: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as info:
        VERIFIER.open(note)
    assert info.value.kind == "malformed"


def test_a_matching_signature_of_the_wrong_length() -> None:
    blob = SIGNER.hash + bytes(63)
    with pytest.raises(CheckpointError, match="not 64 bytes"):
        VERIFIER.open(f"{BODY}\n\u2014 {ORIGIN} {b64(blob)}\n")


@pytest.mark.parametrize("body,message", [
    ("o\n12\n", "exactly three lines"),
    (f"o\n12\n{b64(ROOT)}\next\n", "exactly three lines"),
    (f"o\n12\n{b64(ROOT)}", "must end with a newline"),
    (f"\n12\n{b64(ROOT)}\n", "origin is empty"),
    (f"o\n012\n{b64(ROOT)}\n", "not a decimal number"),
    (f"o\n\n{b64(ROOT)}\n", "not a decimal number"),
    (f"o\n-1\n{b64(ROOT)}\n", "not a decimal number"),
    (f"o\n+1\n{b64(ROOT)}\n", "not a decimal number"),
    (f"o\n\u0661\n{b64(ROOT)}\n", "not a decimal number"),  # an Arabic-Indic digit
    (f"o\n{2**64}\n{b64(ROOT)}\n", "too large"),
    ("o\n12\nshort\n", "not 32 bytes of base64"),
    (f"o\n12\n{b64(ROOT[:31])}\n", "not 32 bytes of base64"),
    (f"o\n12\n{b64(ROOT)[:-1]}\n", "not 32 bytes of base64"),
])
def test_malformed_checkpoint_bodies(body: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.parse(body)


def test_checkpoint_sizes_at_the_edges() -> None:
    assert Checkpoint.parse(f"o\n0\n{b64(ROOT)}\n").size == 0
    assert Checkpoint.parse(f"o\n{2**64 - 1}\n{b64(ROOT)}\n").size == 2**64 - 1


def key_parts() -> Tuple[str, str, bytes]:
    name, hash_hex, key = SIGNER.verifier_key().split("+", 2)
    return name, hash_hex, unb64(key)


@pytest.mark.parametrize("key,message", [
    ("no-plus-signs", "name\\+hash\\+key"),
    ("a+b", "name\\+hash\\+key"),
    (SIGNER.verifier_key().replace("+", "+0", 1), "hash does not match"),
    (f"{ORIGIN}+{key_parts()[1]}+not base64", "not base64"),
    (f"{ORIGIN}+{key_parts()[1]}+", "empty"),
    (f"{ORIGIN}+{key_parts()[1]}+{b64(bytes([2]) + key_parts()[2][1:])}", "not an Ed25519 key"),
    (f"{ORIGIN}+{key_parts()[1]}+{b64(key_parts()[2][:-1])}", "32 bytes"),
    (f"{ORIGIN}+{key_parts()[1]}+{b64(key_parts()[2] + bytes(1))}", "32 bytes"),
    (f"+{key_parts()[1]}+{b64(key_parts()[2])}", "key name"),
    (f"a b+{key_parts()[1]}+{b64(key_parts()[2])}", "key name"),
    (f"a\x7fb+{key_parts()[1]}+{b64(key_parts()[2])}", "key name"),
    (f"\x1f{ORIGIN}+{key_parts()[1]}+{b64(key_parts()[2])}", "key name"),  # not whitespace to Rust
    (f"{ORIGIN}+\uff16a72b337+{b64(key_parts()[2])}", "hash does not match"),
])
def test_malformed_verifier_keys(key: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as info:
        NoteVerifier(key)
    assert info.value.kind == "key"


def test_verifier_key_must_be_text() -> None:
    with pytest.raises(CheckpointError, match="must be a string"):
        NoteVerifier(b"bytes")  # type: ignore[arg-type]


# --- malformed proof input --------------------------------------------------------------------------


def test_hash_decoding() -> None:
    assert decode_hash(b64(ROOT)) == ROOT
    assert decode_hashes([b64(ROOT), b64(LEAVES[0])]) == [ROOT, LEAVES[0]]
    for bad in ["", "short", b64(ROOT[:31]), b64(ROOT + b"x"), b64(ROOT)[:-1], " " + b64(ROOT),
                b64(ROOT).replace("=", ""), "\u00e9" * 44, None, 5, ROOT]:
        with pytest.raises(ProofError, match="not 32 bytes of base64"):
            decode_hash(bad)
    with pytest.raises(ProofError, match="hash 1 is not 32 bytes of base64"):
        decode_hashes([b64(ROOT), "!!"])
    for bad_list in ["abc", b"abc", None, {"a": 1}, 7]:
        with pytest.raises(ProofError, match="list of base64 hashes"):
            decode_hashes(bad_list)


@pytest.mark.parametrize("args,message", [
    ((ROOT[:31], 0, 1, [], ROOT), "leaf hash must be 32 bytes, got 31"),
    (("x" * 32, 0, 1, [], ROOT), "leaf hash must be 32 bytes, got str"),
    ((ROOT, 0, 1, [], ROOT + b"\0"), "root must be 32 bytes, got 33"),
    ((ROOT, 0, 2, [ROOT[:5]], ROOT), "proof hash 0 must be 32 bytes, got 5"),
    ((ROOT, 0, 2, ROOT, ROOT), "proof must be a list"),
    ((ROOT, 0, 2, b64(ROOT), ROOT), "proof must be a list"),
    ((ROOT, 0, 2, None, ROOT), "proof must be a list"),
    ((ROOT, -1, 2, [], ROOT), "leaf index -1 is not in 0..2\\^64"),
    ((ROOT, 0, 2**64, [], ROOT), "tree size .* is not in 0..2\\^64"),
    ((ROOT, 1.0, 2, [], ROOT), "leaf index must be an integer, got float"),
    ((ROOT, True, 2, [], ROOT), "leaf index must be an integer, got bool"),
    ((ROOT, "0", 2, [], ROOT), "leaf index must be an integer, got str"),
])
def test_malformed_inclusion_arguments(args: Tuple[Any, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*args)


@pytest.mark.parametrize("args,message", [
    ((-1, 2, ROOT, ROOT, []), "old size -1 is not in 0..2\\^64"),
    ((1, None, ROOT, ROOT, []), "new size must be an integer"),
    ((1, 2, ROOT[:1], ROOT, [ROOT]), "old root must be 32 bytes, got 1"),
    ((1, 2, ROOT, "root", [ROOT]), "new root must be 32 bytes, got str"),
    ((1, 2, ROOT, ROOT, [b""]), "proof hash 0 must be 32 bytes, got 0"),
])
def test_malformed_consistency_arguments(args: Tuple[Any, ...], message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*args)


def test_hashing_needs_bytes() -> None:
    assert leaf_hash(bytearray(b"flk")) == leaf_hash(b"flk") == hashlib.sha256(b"\0flk").digest()
    with pytest.raises(ProofError, match="entry must be bytes, got int"):
        leaf_hash(5)  # type: ignore[arg-type]
    with pytest.raises(ProofError, match="left must be 32 bytes"):
        node_hash(b"", ROOT)


# --- leaves -----------------------------------------------------------------------------------------


VALID = next(case for case in DATA["bundles"]["cases"] if case["name"] == "valid")
ENTRY: Dict[str, Any] = json.loads(unb64(VALID["bundle"]["entry"]))


def entry_with(**changes: Any) -> bytes:
    value = dict(ENTRY)
    for key, new in changes.items():
        if new is Ellipsis:
            del value[key]
        else:
            value[key] = new
    return json.dumps(value).encode("utf-8")


def test_leaf_decodes() -> None:
    leaf = AuditLeaf.decode(unb64(VALID["bundle"]["entry"]))
    assert (leaf.tenant, leaf.partition, leaf.seq, leaf.dedup, leaf.v) == ("alpha", 2, 0, "first", 1)
    assert leaf.source.topic == "flk.submissions"
    optional = AuditLeaf.decode(entry_with(pcs_id=None, signed_digest=...))
    assert optional.pcs_id is None and optional.signed_digest is None


@pytest.mark.parametrize("entry,message", [
    (b"", "not JSON"),
    (b"not json", "not JSON"),
    (b"\xff{}", "not UTF-8"),
    (b"[]", "entry must be a JSON object"),
    (b"[" * 100000, "not JSON"),
    (entry_with(v=2), "leaf version 2 is not 1"),
    (entry_with(v=-1), "`v` is out of range"),
    (entry_with(extra=1), "unknown field `extra`"),
    (entry_with(tenant=...), "missing field `tenant`"),
    (entry_with(seq=1.0), "`seq` must be an integer"),
    (entry_with(seq=True), "`seq` must be an integer"),
    (entry_with(seq=2**63), "`seq` is out of range"),
    (entry_with(partition=2**31), "`partition` is out of range"),
    (entry_with(tenant=5), "`tenant` must be a string"),
    (entry_with(pcs_id=5), "`pcs_id` must be a string"),
    (entry_with(source=[]), "source must be a JSON object"),
    (entry_with(source={"topic": "t", "partition": 1}), "missing field `source.offset`"),
    (entry_with(source={"topic": "t", "partition": 1, "offset": 0, "x": 0}), "unknown field `source.x`"),
    (entry_with(decided_at_ms=float("nan")), "NaN is not a JSON number"),
    (entry_with(tenant="\ud800"), "lone surrogate"),
    (entry_with()[:-1] + b',"tenant":"beta"}', "duplicate field `tenant`"),
    (entry_with() + b" x", "not JSON"),
])
def test_malformed_leaves(entry: bytes, message: str) -> None:
    with pytest.raises(LeafError, match=message):
        AuditLeaf.decode(entry)


# --- bundles ----------------------------------------------------------------------------------------


def signed_bundle(
    entries: List[bytes], index: int, *, record_size: Optional[int] = None, origin: str = ORIGIN
) -> Dict[str, Any]:
    leaves = [leaf_hash(entry) for entry in entries]
    size = len(entries)
    note = SIGNER.sign(Checkpoint(origin, size, mth(leaves)).body())
    return {
        "checkpoint": note,
        "leaf_index": index,
        "tree_size": size if record_size is None else record_size,
        "entry": b64(entries[index]),
        "inclusion": [b64(h) for h in path(index, leaves)],
    }


ENTRIES = [entry_with(seq=i, pcs_id=f"p-{i}") for i in range(6)]


def kind_of(bundle: Any, record: Any = None, key: Any = None) -> str:
    try:
        verify_bundle(bundle, key or VERIFIER, record)
    except BundleError as error:
        assert error.kind in BUNDLE_CHECKS
        return error.kind
    return "ok"


def test_bundles_signed_here() -> None:
    bundle = signed_bundle(ENTRIES, 3)
    checkpoint, leaf = verify_bundle(bundle, SIGNER.verifier_key())
    assert (checkpoint.size, leaf.seq, leaf.pcs_id) == (6, 3, "p-3")
    assert kind_of(bundle) == "ok"
    # The bundle's tree size must be the checkpoint's (the vectors have no such case).
    assert kind_of(signed_bundle(ENTRIES, 3, record_size=5)) == "inclusion"
    assert kind_of(signed_bundle(ENTRIES, 3, origin="flk.example/other")) == "checkpoint"
    assert kind_of(dict(bundle, leaf_index=4)) == "inclusion"
    assert kind_of(dict(bundle, inclusion=bundle["inclusion"][:-1])) == "inclusion"
    assert kind_of(dict(bundle, entry=b64(ENTRIES[4]))) == "inclusion"


def test_checks_run_in_order() -> None:
    bundle = signed_bundle(ENTRIES, 3)
    record = VALID["record"]  # not the record of this leaf
    assert kind_of(bundle, record) == "record"
    broken_inclusion = dict(bundle, leaf_index=4)
    assert kind_of(broken_inclusion, record) == "inclusion"
    broken_entry = dict(broken_inclusion, entry="bm90IGpzb24=")
    assert kind_of(broken_entry, record) == "entry"
    assert kind_of(dict(broken_entry, checkpoint=BODY), record) == "checkpoint"


def test_record_check() -> None:
    bundles = DATA["bundles"]
    key, valid = bundles["verifier_key"], VALID
    assert kind_of(valid["bundle"], valid["record"], key) == "ok"
    other_pcs = dict(valid["record"], pcs_id="another")
    with pytest.raises(BundleError, match="the log holds pcs_id") as info:
        verify_bundle(valid["bundle"], key, other_pcs)
    assert info.value.kind == "record"
    # Integers where floats are signed do not change the payload (they become floats first).
    assert kind_of(valid["bundle"], dict(valid["record"], D_hat=1.5), key) == "ok"
    # A leaf without a pcs_id or digest matches no record.
    entries = [entry_with(pcs_id=None, signed_digest=None)]
    assert kind_of(signed_bundle(entries, 0), valid["record"]) == "record"
    assert kind_of(signed_bundle(entries, 0)) == "ok"


@pytest.mark.parametrize("field,value,kind", [
    ("checkpoint", ..., "checkpoint"),
    ("checkpoint", 5, "checkpoint"),
    ("checkpoint", "", "checkpoint"),
    ("entry", ..., "entry"),
    ("entry", ["x"], "entry"),
    ("entry", "not base64!", "entry"),
    ("entry", "e30", "entry"),  # unpadded
    ("entry", "e31=", "entry"),  # non-zero trailing bits
    ("entry", "e30=", "entry"),  # "{}"
    ("tree_size", ..., "inclusion"),
    ("tree_size", "6", "inclusion"),
    ("tree_size", 6.0, "inclusion"),
    ("tree_size", -6, "inclusion"),
    ("leaf_index", ..., "inclusion"),
    ("leaf_index", -1, "inclusion"),
    ("leaf_index", 6, "inclusion"),
    ("leaf_index", 2**64 + 3, "inclusion"),
    ("leaf_index", "3", "inclusion"),
    ("inclusion", ..., "inclusion"),
    ("inclusion", "abc", "inclusion"),
    ("inclusion", [1, 2, 3], "inclusion"),
    ("inclusion", ["AAAA", "AAAA", "AAAA"], "inclusion"),
])
def test_malformed_bundle_fields(field: str, value: Any, kind: str) -> None:
    bundle = signed_bundle(ENTRIES, 3)
    if value is Ellipsis:
        del bundle[field]
    else:
        bundle[field] = value
    assert kind_of(bundle) == kind


def test_caller_inputs_fail_before_any_check() -> None:
    bundle = signed_bundle(ENTRIES, 3)
    with pytest.raises(CheckpointError) as info:
        verify_bundle(bundle, "not a key")
    assert info.value.kind == "key"
    with pytest.raises(TypeError, match="epoch"):
        verify_bundle(bundle, VERIFIER, {"pcs_id": "p-3", "merkle_root": "m", "shard_id": "s"})
    with pytest.raises(TypeError, match="bundle must be a mapping"):
        verify_bundle([bundle], VERIFIER)  # type: ignore[arg-type]
    assert issubclass(BundleError, AuditError) and issubclass(AuditError, ValueError)


def test_mutated_bundles_never_crash() -> None:
    """Random edits to every field: each ends in ok or a BundleError, never another exception."""
    rng = random.Random(7)
    base = signed_bundle(ENTRIES, 3)
    alphabet = "AZaz09+/=\n \u2014{}\":,x\x00\u00e9"
    seen = set()
    for _ in range(3000):
        bundle = dict(base)
        field = rng.choice(sorted(bundle))
        value = bundle[field]
        if isinstance(value, str):
            chars = list(value)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(len(chars) + 1)
                op = rng.random()
                if op < 0.4 and pos < len(chars):
                    chars[pos] = rng.choice(alphabet)
                elif op < 0.7 and pos < len(chars):
                    del chars[pos]
                else:
                    chars.insert(pos, rng.choice(alphabet))
            bundle[field] = "".join(chars)
        elif isinstance(value, list):
            bundle[field] = rng.choice([value[:-1], value + value[:1], value[::-1], [], [None]])
        else:
            bundle[field] = rng.choice([value + 1, value - 1, -value, None, str(value), 2**70])
        seen.add(kind_of(bundle))
    assert seen >= {"checkpoint", "entry", "inclusion"}


# --- the README example -----------------------------------------------------------------------------


def readme_audit_example() -> str:
    text = (SDK_ROOT / "README.md").read_text()
    section = text.split("## Verifying audit proofs offline", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the audit section has no python example"
    return match.group(1)


@pytest.mark.parametrize("name,expected", [
    ("valid", "logged: alpha accepted leaf 5 of 12"),
    ("record differs from the logged one", "not proven: record - the logged signed digest"),
    ("checkpoint not signed by the key", "not proven: checkpoint - signature: signed by a different"),
])
def test_readme_example_runs(name: str, expected: str, tmp_path: Path, monkeypatch: Any) -> None:
    case = next(case for case in DATA["bundles"]["cases"] if case["name"] == name)
    (tmp_path / "proof.json").write_text(json.dumps(case["bundle"]))
    (tmp_path / "pcs.json").write_text(json.dumps(case["record"]))
    monkeypatch.chdir(tmp_path)
    code = readme_audit_example()
    assert DATA["bundles"]["verifier_key"] in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().startswith(expected), out.getvalue()

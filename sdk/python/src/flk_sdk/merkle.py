"""The agent's data Merkle root (CONTRACT section 5).

Binary tree over 64-byte chunks of the canonical rows. Leaves are the *hex text* of SHA-256 of a
chunk and a parent is SHA-256 of the ASCII concatenation of its children's hex strings (not of the raw
digests): unusual, but it is what the original agent did and what ``merkle_root`` in every existing
PCS commits to. An odd last node is paired with itself.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, List

__all__ = ["CHUNK_SIZE", "EMPTY_ROOT", "chunk", "merkle_root", "merkle_root_of_leaves"]

CHUNK_SIZE = 64
#: Root of an empty input, as the original agent defined it.
EMPTY_ROOT = "0" * 64


def chunk(data: bytes, size: int = CHUNK_SIZE) -> List[bytes]:
    """Split into ``size``-byte chunks; the last one may be shorter."""
    return [data[i:i + size] for i in range(0, len(data), size)]


def merkle_root_of_leaves(leaves: Iterable[bytes]) -> str:
    """Root over already-chunked leaf data."""
    level = [hashlib.sha256(leaf).hexdigest() for leaf in leaves]
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            left = level[i]
            right = level[i + 1] if i + 1 < len(level) else left
            nxt.append(hashlib.sha256((left + right).encode("ascii")).hexdigest())
        level = nxt
    return level[0]


def merkle_root(data: bytes) -> str:
    """Root over the 64-byte chunks of ``data``."""
    return merkle_root_of_leaves(chunk(data))

"""Merkle trees as RFC 9162 (Certificate Transparency 2.0, section 2.1) defines them.

Batch signatures (``bus.batch``, docs/wire-format.md section 7) sign the root of a tree whose
leaves are the exact bytes of the batch's events; each record carries its inclusion proof.

- ``leaf_hash(data) = SHA-256(0x00 || data)``, ``node_hash(left, right) = SHA-256(0x01 || left ||
  right)``: the two prefixes keep a leaf from ever passing for an inner node.
- A tree of ``n > 1`` leaves splits at ``k``, the largest power of two smaller than ``n``: the
  left subtree holds the first ``k`` leaves, the right one the rest (RFC 9162 2.1.1).
- The inclusion proof of leaf ``m`` lists the sibling hashes from the leaf up to the root
  (RFC 9162 2.1.3.1); ``root_from_proof`` is the verification algorithm of 2.1.3.2, which also
  refuses a proof of the wrong length for its index and tree size.

Pure ``hashlib``; everything here is a function of bytes and small integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256
from typing import Final

__all__ = [
    "HASH_SIZE",
    "leaf_hash",
    "node_hash",
    "max_proof_length",
    "tree",
    "root_from_proof",
]

HASH_SIZE: Final = 32
"""Bytes of a SHA-256 hash: every leaf hash, node hash, root and proof entry."""

_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an inner node."""
    return sha256(_NODE + left + right).digest()


def max_proof_length(tree_size: int) -> int:
    """``ceil(log2(tree_size))``: no inclusion proof in a tree of this size is longer."""
    if tree_size < 1:
        raise ValueError(f"tree_size {tree_size}: a tree has at least one leaf")
    return (tree_size - 1).bit_length()


def tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root over the leaf hashes ``leaves`` and every leaf's inclusion proof, in order.

    ``leaves`` are leaf hashes (``leaf_hash``), at least one. Costs one ``node_hash`` per inner
    node (``len(leaves) - 1``) and ``n * log2(n)`` list appends for the proofs.
    """
    if not leaves:
        raise ValueError("leaves: a tree has at least one leaf")
    proofs: list[list[bytes]] = [[] for _ in leaves]
    return _subtree(leaves, 0, len(leaves), proofs), proofs


def _subtree(leaves: Sequence[bytes], low: int, high: int, proofs: list[list[bytes]]) -> bytes:
    size = high - low
    if size == 1:
        return leaves[low]
    middle = low + (1 << ((size - 1).bit_length() - 1))  # the largest power of two < size
    left = _subtree(leaves, low, middle, proofs)
    right = _subtree(leaves, middle, high, proofs)
    # The deeper siblings were appended by the calls above: each proof runs leaf to root.
    for index in range(low, middle):
        proofs[index].append(right)
    for index in range(middle, high):
        proofs[index].append(left)
    return node_hash(left, right)


def root_from_proof(
    leaf: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root that ``proof`` proves ``leaf`` (a leaf hash) is at ``leaf_index`` under.

    RFC 9162 2.1.3.2, steps 1 to 4; the caller compares the result with the signed root (step
    5). ``None`` if the proof cannot be one for this index and size: an index outside the tree,
    or a proof too long or too short. Entries that are not 32 bytes are refused the same way.
    """
    if not 0 <= leaf_index < tree_size:
        return None
    fn = leaf_index
    sn = tree_size - 1
    result = leaf
    for sibling in proof:
        if sn == 0 or len(sibling) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            result = sha256(_NODE + sibling + result).digest()
            if not fn & 1:
                # fn == sn on a left child: the levels where this node has no right sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = sha256(_NODE + result + sibling).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return result

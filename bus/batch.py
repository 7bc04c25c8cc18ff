"""Batch signatures: one Ed25519 signature per batch of events, verifiable record by record.

A publisher that seals ``n`` events at once (``bus.envelope.seal_batch``) hashes each event's
exact single-object-encoded bytes into a leaf of an RFC 9162 Merkle tree (``bus.merkle``) and
signs, once, the **batch root**: a fixed binary layout (``batch_root``)::

    b"exchange-bus batch v1\\x00"       22 bytes, the domain separator
    root                                 32 bytes, the Merkle tree head
    tree_size                            8 bytes, unsigned big-endian
    len(key_id)  key_id                  2 bytes unsigned big-endian, then UTF-8
    len(origin)  origin                  2 bytes unsigned big-endian, then UTF-8 (agency id)

Every record (``SignedEvent`` v2) carries the signature, the origin, the tree size, its leaf
index and its inclusion proof (``BatchProof``), so each record verifies alone: recompute the
leaf, the root from the proof, the batch root, and check the signature. The separator keeps a
batch signature from ever passing for an event signature and back: signed event bytes start
with ``C3 01``, a batch root with ``exchange-bus``.

``RootCache`` remembers batch roots whose signatures verified, so that a receiver checks one
signature per batch instead of one per record. It is a bounded LRU, safe to share between the
threads of a verification pool; callers pass it explicitly (``open_(..., roots=cache)``).
``shared_roots()`` is the one per-process cache that the bridge and the subscriber use when
they are given none.

Bounds (docs/wire-format.md, section 7): a tree has 1 to ``MAX_TREE_SIZE`` leaves, and a proof
at most ``merkle.max_proof_length(tree_size)`` entries (16 for the largest tree).
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from bus.signing import PublicKey

__all__ = [
    "BATCH_DOMAIN",
    "MAX_TREE_SIZE",
    "MAX_PROOF_LENGTH",
    "DEFAULT_ROOT_CACHE_SIZE",
    "BatchProof",
    "RootCache",
    "batch_root",
    "shared_roots",
]

BATCH_DOMAIN: Final = b"exchange-bus batch v1\x00"
"""The 22 bytes every signed batch root starts with (domain separation, version 1)."""

MAX_TREE_SIZE: Final = 65_536
"""Most events one batch signature may cover. Receivers refuse larger trees unread
(``LimitExceeded``); publishers batch far fewer (256 by default)."""

MAX_PROOF_LENGTH: Final = 16
"""``ceil(log2(MAX_TREE_SIZE))``: the longest inclusion proof a receiver reads."""

DEFAULT_ROOT_CACHE_SIZE: Final = 4096
"""Verified batch roots a ``RootCache`` keeps by default. An entry is about 300 bytes, so the
cache stays near 1.2 MiB; 4096 batches are a million events at the publisher's default batch of
256, far more than the batches of one fetch, which arrive interleaved from many partitions."""

_U64: Final = struct.Struct(">Q")
_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProof:
    """What a batch-signed record carries besides its event, key id and signature."""

    origin: str
    """The agency the batch was signed for: equal to the event's ``origin.agency``."""
    tree_size: int
    """Leaves in the batch's tree, 1 to ``MAX_TREE_SIZE``."""
    leaf_index: int
    """This record's leaf, 0 to ``tree_size - 1``."""
    path: tuple[bytes, ...] = field(repr=False)
    """The inclusion proof: sibling hashes of 32 bytes, leaf to root (RFC 9162 2.1.3.1)."""


def batch_root(*, root: bytes, tree_size: int, key_id: str, origin: str) -> bytes:
    """The exact bytes a batch signature covers (the layout in the module docstring)."""
    key = key_id.encode("utf-8")
    agency = origin.encode("utf-8")
    return b"".join(
        (
            BATCH_DOMAIN,
            root,
            _U64.pack(tree_size),
            _U16.pack(len(key)),
            key,
            _U16.pack(len(agency)),
            agency,
        )
    )


class RootCache:
    """Batch roots whose signatures verified: a bounded LRU, safe to share between threads.

    An entry is the public key, the signed batch root (which holds the root, tree size, key id
    and origin) and the signature: a record is let through on a hit only if it proves the very
    root that was signed, under the same key, with the same signature bytes. Only successes are
    kept. Trust (revocation, validity, agency) is never cached: ``open_`` judges it per record.
    """

    __slots__ = ("_capacity", "_entries", "_lock", "hits", "misses")

    def __init__(self, capacity: int = DEFAULT_ROOT_CACHE_SIZE) -> None:
        if capacity < 1:
            raise ValueError(f"capacity {capacity}: a root cache holds at least one root")
        self._capacity = capacity
        self._entries: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        """Signatures found already verified."""
        self.misses = 0
        """Signatures checked (successfully or not)."""

    @property
    def capacity(self) -> int:
        """Most roots kept; the least recently used goes first."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, public_key: PublicKey, signed: bytes, signature: bytes) -> None:
        """Raise ``BadSignature`` unless ``signature`` by ``public_key`` over ``signed`` holds.

        Checked once; later calls with the same three find it in the cache.
        """
        entry = (public_key.raw, signed, signature)
        with self._lock:
            if entry in self._entries:
                self._entries.move_to_end(entry)
                self.hits += 1
                return
            self.misses += 1
        # Outside the lock: libsodium releases the GIL, so pool threads verify in parallel. Two
        # threads may check one root at the same time; both then store the same entry.
        public_key.verify(signed, signature)
        with self._lock:
            self._entries[entry] = None
            self._entries.move_to_end(entry)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


@cache
def shared_roots() -> RootCache:
    """The per-process ``RootCache`` that the bridge's judge and the subscriber default to."""
    return RootCache()

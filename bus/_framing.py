"""The ``SignedEvent`` framing, written and split by hand (v1 and v2).

v1 is three length-prefixed fields (``event`` bytes, ``key_id`` string, ``signature`` bytes);
v2 adds a union of null and ``BatchProof`` (``origin`` string, ``tree_size`` and ``leaf_index``
longs, ``path`` an array of 32-byte fixed). Doing this inline, rather than through fastavro,
keeps the envelope's cost negligible next to Ed25519 and hashing. The reader accepts every
valid Avro encoding of these layouts (array blocks of any size, with or without their byte
count), refuses a proof longer than ``MAX_PROOF_LENGTH`` and a tree larger than
``MAX_TREE_SIZE`` before reading them (``LimitExceeded``), and any trailing byte. A store whose
newest ``SignedEvent`` has another layout is encoded and decoded through the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final, NamedTuple

from bus.batch import MAX_PROOF_LENGTH, MAX_TREE_SIZE, BatchProof
from bus.codec import HEADER_SIZE, SIGNED_EVENT, SchemaStore
from bus.errors import LimitExceeded, MalformedDatum, TruncatedRecord
from bus.merkle import HASH_SIZE

# Parsing Canonical Forms of the SignedEvent layouts written and split by hand.
V1_LAYOUT: Final = (
    '{"name":"bus.intel.SignedEvent","type":"record","fields":['
    '{"name":"event","type":"bytes"},{"name":"key_id","type":"string"},'
    '{"name":"signature","type":"bytes"}]}'
)
V2_LAYOUT: Final = (
    '{"name":"bus.intel.SignedEvent","type":"record","fields":['
    '{"name":"event","type":"bytes"},{"name":"key_id","type":"string"},'
    '{"name":"signature","type":"bytes"},'
    '{"name":"batch","type":["null",{"name":"bus.intel.BatchProof","type":"record","fields":['
    '{"name":"origin","type":"string"},{"name":"tree_size","type":"long"},'
    '{"name":"leaf_index","type":"long"},'
    '{"name":"path","type":{"type":"array","items":'
    '{"name":"bus.intel.Sha256","type":"fixed","size":32}}}]}]}]}'
)
MAX_KEY_ID: Final = 256
"""Longest ``key_id`` read, in bytes (real ones have 40)."""
MAX_ORIGIN: Final = 256
"""Longest ``batch.origin`` read, in bytes (agency ids have at most 63)."""


@dataclass(frozen=True, slots=True)
class Framing:
    """Per store: the headers of the hand-framed versions it has (``None``: it lacks one)."""

    store: SchemaStore
    v1_header: bytes | None
    v2_header: bytes | None
    latest_header: bytes


@cache
def framing(store: SchemaStore) -> Framing:
    """The hand framings ``store`` allows, found by canonical form."""
    headers = {v.canonical_form: v.header for v in store.versions(SIGNED_EVENT)}
    return Framing(
        store=store,
        v1_header=headers.get(V1_LAYOUT),
        v2_header=headers.get(V2_LAYOUT),
        latest_header=store.latest(SIGNED_EVENT).header,
    )


class Parts(NamedTuple):
    """A ``SignedEvent`` split, checked for framing only."""

    event_bytes: bytes
    key_id: str
    signature: bytes
    batch: BatchProof | None


def varint(value: int) -> bytes:
    """An Avro ``long`` (zig-zag, then 7 bits per byte, low first) of a non-negative value."""
    value <<= 1
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_v1(header: bytes, event_bytes: bytes, key_id: bytes, signature: bytes) -> bytes:
    """A v1 value: header, then the three length-prefixed fields."""
    return b"".join(
        (
            header,
            varint(len(event_bytes)),
            event_bytes,
            varint(len(key_id)),
            key_id,
            varint(len(signature)),
            signature,
        )
    )


def batch_suffix(origin: bytes, tree_size: int, leaf_index: int, path: Sequence[bytes]) -> bytes:
    """The v2 ``batch`` union, branch 1: the ``BatchProof`` record, path in one block."""
    parts = [b"\x02", varint(len(origin)), origin, varint(tree_size), varint(leaf_index)]
    if path:
        parts.append(varint(len(path)))
        parts.extend(path)
    parts.append(b"\x00")
    return b"".join(parts)


def _long(value: bytes, position: int, name: str) -> tuple[int, int]:
    size = len(value)
    shift = raw = 0
    while True:
        if position >= size:
            raise TruncatedRecord(f"SignedEvent ends in '{name}' (record is {size} bytes)")
        byte = value[position]
        position += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), position
        shift += 7
        if shift > 63:
            raise MalformedDatum(f"SignedEvent '{name}' is not a valid varint")


def _bytes(value: bytes, position: int, name: str) -> tuple[bytes, int]:
    length, position = _long(value, position, name)
    if length < 0:
        raise MalformedDatum(f"SignedEvent '{name}' has a negative length")
    end = position + length
    if end > len(value):
        raise TruncatedRecord(
            f"SignedEvent '{name}' claims {length} bytes at offset {position}, "
            f"past the end of the {len(value)}-byte record"
        )
    return value[position:end], end


def _text(raw: bytes, name: str, limit: int) -> str:
    if len(raw) > limit:
        raise MalformedDatum(f"SignedEvent '{name}' is {len(raw)} bytes long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedDatum(f"SignedEvent '{name}' is not UTF-8") from None


def _proof(value: bytes, position: int) -> tuple[BatchProof, int]:
    raw_origin, position = _bytes(value, position, "batch.origin")
    origin = _text(raw_origin, "batch.origin", MAX_ORIGIN)
    tree_size, position = _long(value, position, "batch.tree_size")
    if tree_size > MAX_TREE_SIZE:
        raise LimitExceeded(
            f"SignedEvent 'batch.tree_size' is {tree_size}, more than the {MAX_TREE_SIZE} "
            "events one batch signature may cover"
        )
    leaf_index, position = _long(value, position, "batch.leaf_index")
    path: list[bytes] = []
    size = len(value)
    while True:
        count, position = _long(value, position, "batch.path")
        if count == 0:
            break
        if count < 0:  # a block with its size in bytes: read and ignored, the items say it all
            count = -count
            _, position = _long(value, position, "batch.path")
        if len(path) + count > MAX_PROOF_LENGTH:
            raise LimitExceeded(
                f"SignedEvent 'batch.path' holds more than {MAX_PROOF_LENGTH} hashes, the "
                "longest inclusion proof of the largest batch"
            )
        end = position + count * HASH_SIZE
        if end > size:
            raise TruncatedRecord(
                f"SignedEvent 'batch.path' claims {count} hashes at offset {position}, past "
                f"the end of the {size}-byte record"
            )
        path.extend(value[start : start + HASH_SIZE] for start in range(position, end, HASH_SIZE))
        position = end
    proof = BatchProof(origin=origin, tree_size=tree_size, leaf_index=leaf_index, path=tuple(path))
    return proof, position


def split(value: bytes, framing: Framing) -> Parts:
    """The ``SignedEvent``'s parts; ``TruncatedRecord``, ``MalformedDatum``, ``LimitExceeded``,
    or the store's errors for other layouts and foreign headers."""
    header = value[:HEADER_SIZE]
    v2 = header == framing.v2_header
    if v2 or header == framing.v1_header:
        event_bytes, position = _bytes(value, HEADER_SIZE, "event")
        raw_key_id, position = _bytes(value, position, "key_id")
        signature, position = _bytes(value, position, "signature")
        batch: BatchProof | None = None
        if v2:
            branch, position = _long(value, position, "batch")
            if branch == 1:
                batch, position = _proof(value, position)
            elif branch != 0:
                raise MalformedDatum(f"SignedEvent 'batch' union has no branch {branch}")
        if position != len(value):
            raise MalformedDatum(
                f"SignedEvent ends at byte {position} but the record has {len(value)} bytes"
            )
        return Parts(event_bytes, _text(raw_key_id, "key_id", MAX_KEY_ID), signature, batch)
    signed = framing.store.decode(value, SIGNED_EVENT)
    proof = signed.get("batch")
    if proof is not None:
        proof = BatchProof(
            origin=proof["origin"],
            tree_size=proof["tree_size"],
            leaf_index=proof["leaf_index"],
            path=tuple(proof["path"]),
        )
    return Parts(signed["event"], signed["key_id"], signed["signature"], proof)

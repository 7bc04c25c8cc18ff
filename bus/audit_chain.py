"""The tamper-evident audit trail: hash chains of audit records, signed by the bridge.

Each bridge direction keeps one chain per source partition (``chain_id``): the audit records
of that partition's decisions, in order, written by exactly one writer (the partition's audit
transactional id, so a restarted or failed-over lane continues the chain from the head kept in
its audit checkpoint, in the same transaction as the records). Several chains may share a
partition of ``bus.audit`` (source partition modulo the audit topic's partitions); each record
names its chain.

A record's chain hash is SHA-256 over ``CHAIN_DOMAIN``, the chain id (length-prefixed UTF-8),
its sequence (8 bytes big-endian), ``prev_hash`` (the chain hash of the previous record, 32
zero bytes for the first) and the record's Avro encoding with the five chain fields null. The
last record of a chain in each transaction carries the bridge key's Ed25519 signature over
``HEAD_DOMAIN`` + chain id + sequence + its chain hash: one signature per transaction covers
every record before it through ``prev_hash`` (about 27 µs per transaction instead of per
record). So a verifier (``verify_partition``) finds:

- an *altered* record: its successor names another hash (or its own signature fails);
- a *deleted* record: a sequence missing from its chain;
- a *reordered* record: a sequence lower than one before it in the partition;
- an *injected* record: one no valid signature covers (unsigned after the last signed head, a
  second record for a sequence, a record that names no chain, a replayed copy), or whose
  signature does not verify with a bridge key of the source agency.

What the chain cannot say: whether records at the *end* of a chain were deleted after the last
one the verifier sees (compare the chain's last sequence with the audit checkpoint, or with an
earlier run's summary), and whether records before the partition's log start offset existed
(retention deletes them; a chain starting mid-way is reported as an error only when the
partition still starts at offset 0).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import fastavro

from bus.errors import BusError
from bus.signing import Signer
from bus.trust import KeyResolver, TrustedKey

__all__ = [
    "CHAIN_DOMAIN",
    "GENESIS",
    "HEAD_DOMAIN",
    "ChainBreak",
    "ChainHead",
    "ChainRecord",
    "ChainSummary",
    "chain_id",
    "chain_record",
    "chain_tail",
    "head_message",
    "link",
    "verify_partition",
]

CHAIN_DOMAIN: Final = b"bus-audit-chain-v1\x00"
HEAD_DOMAIN: Final = b"bus-audit-head-v1\x00"
GENESIS: Final = bytes(32)
"""``prev_hash`` of the first record of a chain."""

_NULL_TAIL: Final = b"\x00" * 5
"""The five chain fields of AuditRecord v2, all null, as Avro writes them (branch 0 each)."""

_TAIL_SCHEMA: Final = fastavro.parse_schema(
    {
        "type": "record",
        "name": "AuditChainTail",
        "namespace": "bus.audit",
        "fields": [
            {"name": "chain", "type": ["null", "string"]},
            {"name": "sequence", "type": ["null", "long"]},
            {"name": "prev_hash", "type": ["null", "bytes"]},
            {"name": "signature", "type": ["null", "bytes"]},
            {"name": "key_id", "type": ["null", "string"]},
        ],
    }
)
"""The last five fields of AuditRecord v2: Avro writes a record as its fields in order, so the
encoding of this record is exactly the tail of an audit record's encoding."""


def chain_id(source: str, destination: str, topic: str, partition: int) -> str:
    """The chain of one bridge direction and one source partition (its only writer)."""
    return f"{source}->{destination}/{topic}/{partition}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainHead:
    """Where a chain stands: the sequence of its next record and the hash of its last."""

    sequence: int = 0
    hash: bytes = GENESIS

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "hash": self.hash.hex()}

    @classmethod
    def from_json(cls, raw: Any) -> ChainHead:
        """``ValueError`` or ``TypeError`` if ``raw`` is not what ``to_json`` wrote."""
        if not isinstance(raw, dict) or type(raw.get("sequence")) is not int:
            raise TypeError("not a chain head")
        digest = bytes.fromhex(raw["hash"])
        if raw["sequence"] < 0 or len(digest) != 32:
            raise ValueError("not a chain head")
        return cls(sequence=raw["sequence"], hash=digest)


def _hash(chain: str, sequence: int, prev_hash: bytes, body: bytes | memoryview) -> bytes:
    name = chain.encode("utf-8")
    digest = hashlib.sha256(CHAIN_DOMAIN)
    digest.update(struct.pack(">I", len(name)) + name + struct.pack(">Q", sequence) + prev_hash)
    digest.update(body)
    return digest.digest()


def head_message(chain: str, sequence: int, record_hash: bytes) -> bytes:
    """The bytes the bridge key signs for the head ``sequence`` of ``chain``."""
    name = chain.encode("utf-8")
    return (
        HEAD_DOMAIN
        + struct.pack(">I", len(name))
        + name
        + struct.pack(">Q", sequence)
        + (record_hash)
    )


def chain_tail(
    chain: str, sequence: int, prev_hash: bytes, signature: bytes | None, key_id: str | None
) -> bytes:
    """The Avro encoding of the five chain fields (what replaces the null tail).

    Written by hand, as Avro's binary encoding specifies it (a union as its branch index, then
    the value; longs and lengths zig-zag varints), because it runs once per audit record on the
    bridge's hot path; a unit test holds it to fastavro's encoding of ``_TAIL_SCHEMA``.
    """
    name = chain.encode("utf-8")
    parts = [b"\x02", _long(len(name)), name, b"\x02", _long(sequence), b"\x02"]
    parts += [_long(len(prev_hash)), prev_hash]
    if signature is None:
        parts.append(b"\x00")
    else:
        parts += [b"\x02", _long(len(signature)), signature]
    if key_id is None:
        parts.append(b"\x00")
    else:
        kid = key_id.encode("utf-8")
        parts += [b"\x02", _long(len(kid)), kid]
    return b"".join(parts)


def _long(value: int) -> bytes:
    """An Avro long: zig-zag, then a little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def link(
    bodies: Iterable[bytes], *, chain: str, head: ChainHead, signer: Signer | None
) -> tuple[list[bytes], ChainHead]:
    """Chain the encoded audit records ``bodies`` (AuditRecord v2, chain fields null) after
    ``head``; the values to write and the new head. The last one is signed by ``signer`` (None:
    unsigned, which a verifier reports)."""
    body_list = list(bodies)
    values = []
    sequence, previous = head.sequence, head.hash
    for index, body in enumerate(body_list):
        if not body.endswith(_NULL_TAIL):
            raise ValueError("an audit record to chain must have its five chain fields null")
        record_hash = _hash(chain, sequence, previous, body)
        signature = key_id = None
        if signer is not None and index == len(body_list) - 1:
            signature = signer.sign(head_message(chain, sequence, record_hash))
            key_id = signer.key_id
        values.append(
            body[: -len(_NULL_TAIL)] + chain_tail(chain, sequence, previous, signature, key_id)
        )
        sequence, previous = sequence + 1, record_hash
    return values, ChainHead(sequence=sequence, hash=previous)


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainRecord:
    """One record of ``bus.audit`` as the verifier needs it.

    ``record`` is the decoded AuditRecord (None if it does not decode: ``problem`` says why);
    ``body`` its canonical encoding with the chain fields null (``bus.audit``).
    """

    partition: int
    offset: int
    record: Mapping[str, Any] | None
    body: bytes = b""
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainBreak:
    """One thing wrong with the audit trail, where it is."""

    kind: str
    """``altered``, ``deleted``, ``reordered``, ``injected`` or ``unverifiable``."""
    partition: int
    offset: int
    chain: str | None
    message: str


@dataclass(slots=True, kw_only=True)
class ChainSummary:
    """What verifying one partition found."""

    records: int = 0
    chains: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per chain: its first and last authentic sequence."""
    signatures: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class _Node:
    at: ChainRecord
    chain: str
    sequence: int
    prev_hash: bytes
    hash: bytes
    signed: bool = False
    authentic: bool = False
    bad_signature: str | None = None


def verify_partition(
    records: Iterable[ChainRecord],
    *,
    trust: KeyResolver,
    agency: str,
    log_start: int = 0,
) -> ChainSummary:
    """Check the chains in one partition of ``agency``'s ``bus.audit`` (records in offset
    order). Every break is in the summary, with its partition and offset; nothing raises."""
    summary = ChainSummary()
    chains: dict[str, list[_Node]] = {}
    for at in records:
        summary.records += 1
        where = f"{at.partition}@{at.offset}"
        if at.record is None:
            summary.breaks.append(
                ChainBreak(
                    kind="injected",
                    partition=at.partition,
                    offset=at.offset,
                    chain=None,
                    message=f"{where}: not an audit record ({at.problem})",
                )
            )
            continue
        r = at.record
        chain, sequence, prev_hash = r.get("chain"), r.get("sequence"), r.get("prev_hash")
        if chain is None or sequence is None or prev_hash is None or len(prev_hash) != 32:
            summary.breaks.append(
                ChainBreak(
                    kind="injected",
                    partition=at.partition,
                    offset=at.offset,
                    chain=chain,
                    message=f"{where}: the record belongs to no chain (no chain, sequence or "
                    "prev_hash): written by no bridge of this version",
                )
            )
            continue
        node = _Node(
            at=at,
            chain=chain,
            sequence=sequence,
            prev_hash=prev_hash,
            hash=_hash(chain, sequence, prev_hash, at.body),
        )
        node.signed = _signature_ok(node, r, trust=trust, agency=agency, summary=summary)
        chains.setdefault(chain, []).append(node)
    for chain, nodes in chains.items():
        _check_chain(chain, nodes, log_start=log_start, summary=summary)
    summary.breaks.sort(key=lambda b: b.offset)
    return summary


def _signature_ok(
    node: _Node, r: Mapping[str, Any], *, trust: KeyResolver, agency: str, summary: ChainSummary
) -> bool:
    signature, key_id = r.get("signature"), r.get("key_id")
    if signature is None:
        return False
    try:
        key = _bridge_key(trust, str(key_id), agency)
        key.public_key.verify(head_message(node.chain, node.sequence, node.hash), signature)
    except BusError as exc:
        node.bad_signature = str(exc)
        return False
    summary.signatures += 1
    return True


def _bridge_key(trust: KeyResolver, key_id: str, agency: str) -> TrustedKey:
    key = trust.get(key_id)
    if key.role != "bridge" or key.agency != agency or key.revoked_at is not None:
        raise BusError(
            f"key {key.key_id} is not a valid bridge key of {agency} (role {key.role}, "
            f"agency {key.agency}{', revoked' if key.revoked_at else ''})"
        )
    return key


def _check_chain(chain: str, nodes: list[_Node], *, log_start: int, summary: ChainSummary) -> None:
    def report(kind: str, node: _Node, text: str) -> None:
        summary.breaks.append(
            ChainBreak(
                kind=kind,
                partition=node.at.partition,
                offset=node.at.offset,
                chain=chain,
                message=f"{node.at.partition}@{node.at.offset}: sequence {node.sequence} of "
                f"{chain}: {text}",
            )
        )

    by_hash: dict[bytes, _Node] = {}
    replayed = []
    for node in nodes:
        if node.hash in by_hash:
            replayed.append(node)
            node.signed = False  # a copy proves nothing: the original is the record
        else:
            by_hash[node.hash] = node
    # Authentic: a validly signed record, and every record its prev_hash reaches back to.
    broken_links: list[_Node] = []
    for head in nodes:
        if not head.signed or head.authentic:
            continue
        current: _Node | None = head
        while current is not None and not current.authentic:
            current.authentic = True
            if current.sequence == 0 and current.prev_hash == GENESIS:
                break
            previous = by_hash.get(current.prev_hash)
            if previous is None:
                broken_links.append(current)
            current = previous
    by_sequence: dict[int, list[_Node]] = {}
    for node in nodes:
        by_sequence.setdefault(node.sequence, []).append(node)
    for node in replayed:
        report("injected", node, "a second copy of an earlier record (replayed)")
    reported = {id(node) for node in replayed}
    lowest = min((n.sequence for n in nodes if n.authentic), default=0)
    for node in broken_links:
        candidates = [n for n in by_sequence.get(node.sequence - 1, []) if not n.authentic]
        for altered in candidates:
            reported.add(id(altered))
            report(
                "altered",
                altered,
                f"its successor at {node.at.partition}@{node.at.offset} names another hash: "
                "the record was changed",
            )
        if not candidates and not (node.sequence == lowest and log_start > 0):
            # A chain that starts mid-way in a partition retention has trimmed is expected.
            report(
                "deleted",
                node,
                f"the record before it (sequence {node.sequence - 1}) is missing: deleted",
            )
    authentic = [n for n in nodes if n.authentic]
    highest = -1
    for node in authentic:  # offset order
        if node.sequence < highest:
            report("reordered", node, f"comes after sequence {highest} in the partition")
        highest = max(highest, node.sequence)
    authentic_sequences = {n.sequence for n in authentic}
    for node in nodes:
        if node.authentic or id(node) in reported:
            continue
        if node.sequence in authentic_sequences:
            report("injected", node, "a signed record holds this sequence: this one is injected")
        elif node.bad_signature is not None:
            report(
                "altered",
                node,
                f"its signature does not verify, so the record was changed: {node.bad_signature}",
            )
        elif not any(n.authentic and n.signed and n.at.offset > node.at.offset for n in nodes):
            report(
                "injected",
                node,
                "no bridge signature covers it (injected, or the signed record after it was "
                "deleted)",
            )
        else:
            report(
                "unverifiable",
                node,
                "its chain runs into a break before any signature covers it",
            )
    if authentic:
        sequences = sorted(authentic_sequences)
        summary.chains[chain] = (sequences[0], sequences[-1])


def chain_record(
    value: bytes | None, *, partition: int, offset: int, decode: Callable[[bytes], dict[str, Any]]
) -> ChainRecord:
    """What the verifier needs of one ``bus.audit`` record: ``decode`` is
    ``bus.audit.decode_audit_record``. The body is the value with its chain fields set null
    again (they are the last fields of AuditRecord v2, so they are its last bytes): a value
    whose end is not what its own chain fields encode to cannot be chained and is reported."""
    if value is None:
        return ChainRecord(partition=partition, offset=offset, record=None, problem="no value")
    try:
        record = decode(value)
    except BusError as exc:
        return ChainRecord(
            partition=partition, offset=offset, record=None, problem=type(exc).__name__
        )
    chain, sequence, prev_hash = (
        record.get("chain"),
        record.get("sequence"),
        record.get("prev_hash"),
    )
    if chain is None or sequence is None or prev_hash is None:
        return ChainRecord(partition=partition, offset=offset, record=record)  # no chain: reported
    tail = chain_tail(chain, sequence, prev_hash, record.get("signature"), record.get("key_id"))
    if not value.endswith(tail):
        return ChainRecord(
            partition=partition,
            offset=offset,
            record=None,
            problem="its chain fields are not the last bytes of the record",
        )
    return ChainRecord(
        partition=partition, offset=offset, record=record, body=value[: -len(tail)] + _NULL_TAIL
    )

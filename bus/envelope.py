"""Seal events into Kafka values and open them again: the per-record hot path.

``seal(event, key)`` single-object-encodes the ``IntelligenceEvent``, signs those exact bytes and
single-object-encodes the ``SignedEvent`` around them: the result is the Kafka value.

``open_(value, trust)`` does the reverse in the only safe order: check size and framing, find
the key, verify the signature over the bytes as received, and only then decode the event and
check that the key may speak for the event's origin at its ``created_at`` and, by the
receiver's own clock, now (``bus.trust``: grace and skew). Every failure is a
``RecordRejected`` subclass whose ``reason`` is the quarantine reason.

The event is decoded under ``EVENT_LIMITS``: a pre-scan refuses, before fastavro reads it, an
event with more items, longer strings or deeper nesting than any real event needs
(``LimitExceeded``), so that even a verified record costs at most a few milliseconds to decode
or refuse (figures in docs/wire-format.md).

``seal_batch(events, key)`` seals many events with one signature (``SignedEvent`` v2, batch
signatures: ``bus.batch``, ``bus.merkle``, docs/wire-format.md section 7): each value carries
the batch signature and its event's inclusion proof, so ``open_`` verifies every record alone.
Given a ``RootCache`` (``open_(..., roots=cache)``), it checks each batch's signature once.
Records of both versions open the same way; ``seal`` still writes v1.

``peek(value)`` decodes without verifying anything, for people looking at a record
(``bus event show``); never act on what it returns.

The ``SignedEvent`` framings of v1 (bytes, string, bytes) and v2 (the same, then a union of null
and the ``BatchProof`` record) are written and split by hand rather than through fastavro: they
are a few length-prefixed fields, and doing it inline (``bus._framing``) keeps the envelope's
cost negligible next to Ed25519 (and, for batches, next to hashing). Any other ``SignedEvent``
layout goes through the schema store.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bus import _framing, merkle
from bus.batch import (
    MAX_TREE_SIZE,
    BatchProof,
    RootCache,
    batch_root,
)
from bus.codec import (
    INTELLIGENCE_EVENT,
    SIGNED_EVENT,
    DecodeLimits,
    SchemaStore,
    default_store,
)
from bus.errors import (
    BadProof,
    EventError,
    EventFromFuture,
    KeyAgencyMismatch,
    LimitExceeded,
    OversizedRecord,
)
from bus.signing import Signer
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, KeyResolver, TrustedKey, format_time

__all__ = [
    "DEFAULT_MAX_SIZE",
    "EVENT_LIMITS",
    "VerifiedEvent",
    "UnverifiedEvent",
    "seal",
    "seal_batch",
    "open_",
    "peek",
]

DEFAULT_MAX_SIZE: Final = 1_048_576
"""Largest value ``open_`` accepts by default: 1 MiB, Kafka's default ``max.message.bytes``."""

EVENT_LIMITS: Final = DecodeLimits(
    items={
        "handling_codes": 16,
        "releasable_to": 256,
        "subjects": 1000,
        "subjects[].attributes": 64,
        "references": 1000,
    },
    default_items=1000,
    total_items=2048,
    string_bytes={"summary": None, "handling_conditions": 65_536, "payload.data": None},
    default_string_bytes=4096,
    max_depth=16,
)
"""What one ``IntelligenceEvent`` may hold (docs/wire-format.md, "Decode limits").

At most 16 handling codes, 256 recipients in ``releasable_to``, 1000 subjects with 64
attributes each, 1000 references, 1000 items in any other array or map, and 2048 items in all
arrays and maps together; strings and bytes of at most 4096 bytes, except ``summary`` and
``payload.data`` (bounded by the record's size only) and ``handling_conditions`` (64 KiB).
Far above what events carry, and low enough that the fullest event that passes costs about
3 ms to pre-scan and decode (a hostile one is refused sooner)."""

_UUID_TEXT: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedEvent:
    """An event whose signature verified with a key trusted for its origin agency."""

    event: dict[str, Any] = field(repr=False)
    """The decoded ``IntelligenceEvent`` (read into the newest schema version)."""
    event_bytes: bytes = field(repr=False)
    """The exact signed bytes (single-object-encoded event)."""
    key_id: str
    """Id of the key that signed it."""
    agency: str
    """The agency the key belongs to, equal to ``event["origin"]["agency"]``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnverifiedEvent:
    """What a record claims, decoded WITHOUT any verification. Never act on it."""

    event: dict[str, Any] = field(repr=False)
    event_bytes: bytes = field(repr=False)
    key_id: str
    signature: bytes = field(repr=False)
    batch: BatchProof | None = None
    """For a batch-signed record (``SignedEvent`` v2), its claimed place in the batch."""


def _with_text_id(event: Mapping[str, Any]) -> dict[str, Any]:
    event_id = event.get("event_id")
    if isinstance(event_id, uuid.UUID):
        return {**event, "event_id": str(event_id)}
    if isinstance(event_id, str):
        try:
            return {**event, "event_id": str(uuid.UUID(event_id))}
        except ValueError:
            pass
    raise EventError("event_id: must be a UUID (a uuid.UUID or its canonical text)")


def _encode(event: Mapping[str, Any], store: SchemaStore) -> bytes:
    event_id = event.get("event_id")
    if type(event_id) is not str or not _UUID_TEXT.match(event_id):
        event = _with_text_id(event)
    return store.encode(INTELLIGENCE_EVENT, event)


def seal(event: dict[str, Any], key: Signer, *, store: SchemaStore | None = None) -> bytes:
    """Encode ``event``, sign the encoding with ``key`` and return the Kafka value.

    ``event`` is the in-memory form (see ``bus.codec``); it is not checked beyond fitting the
    schema (``EventError`` otherwise): check events from untrusted input with
    ``bus.events.validate`` first. The key should belong to ``event["origin"]["agency"]``, or
    receivers reject the record. The value is a ``SignedEvent`` v1 (one signature per event),
    which every receiver reads; ``seal_batch`` signs many events at once.
    """
    framing = _framing.framing(store or default_store())
    event_bytes = _encode(event, framing.store)
    signature = key.sign(event_bytes)
    if framing.v1_header is not None:
        return _framing.frame_v1(
            framing.v1_header, event_bytes, key.key_id.encode("utf-8"), signature
        )
    return framing.store.encode(
        SIGNED_EVENT, {"event": event_bytes, "key_id": key.key_id, "signature": signature}
    )


def seal_batch(
    events: Sequence[Mapping[str, Any]], key: Signer, *, store: SchemaStore | None = None
) -> list[bytes]:
    """Seal ``events`` with one signature; return their Kafka values, in order.

    Each value is a ``SignedEvent`` v2 that verifies alone: its event, the batch signature over
    the RFC 9162 Merkle root of all the events' encodings (``bus.batch``), its leaf index and
    its inclusion proof. Every event must have the same ``origin.agency``, the key's agency;
    check events from untrusted input with ``bus.events.validate`` first. ``EventError`` if an
    event does not fit the schema; ``ValueError`` for more than ``MAX_TREE_SIZE`` events or
    events of several origins. No events, no values (and no signature).
    """
    if len(events) > MAX_TREE_SIZE:
        raise ValueError(
            f"events: {len(events)} events, more than the {MAX_TREE_SIZE} that one batch "
            "signature may cover; split them"
        )
    if not events:
        return []
    framing = _framing.framing(store or default_store())
    encoded = [_encode(event, framing.store) for event in events]
    origins = {event["origin"]["agency"] for event in events}
    if len(origins) != 1:
        raise ValueError(
            f"events: a batch is signed for one origin agency, these have {len(origins)}; "
            "seal each agency's events apart"
        )
    [origin] = origins
    size = len(encoded)
    root, paths = merkle.tree([merkle.leaf_hash(event_bytes) for event_bytes in encoded])
    signature = key.sign(batch_root(root=root, tree_size=size, key_id=key.key_id, origin=origin))
    if framing.v2_header is None:
        return [
            framing.store.encode(
                SIGNED_EVENT,
                {
                    "event": event_bytes,
                    "key_id": key.key_id,
                    "signature": signature,
                    "batch": {
                        "origin": origin,
                        "tree_size": size,
                        "leaf_index": index,
                        "path": path,
                    },
                },
            )
            for index, (event_bytes, path) in enumerate(zip(encoded, paths, strict=True))
        ]
    head = framing.v2_header
    key_id = _framing.varint(len(key.key_id.encode("utf-8"))) + key.key_id.encode("utf-8")
    signed = key_id + _framing.varint(len(signature)) + signature
    agency = origin.encode("utf-8")
    return [
        b"".join(
            (
                head,
                _framing.varint(len(event_bytes)),
                event_bytes,
                signed,
                _framing.batch_suffix(agency, size, index, path),
            )
        )
        for index, (event_bytes, path) in enumerate(zip(encoded, paths, strict=True))
    ]


def _check_size(value: bytes, max_size: int) -> None:
    if len(value) > max_size:
        raise OversizedRecord(
            f"record is {len(value)} bytes, more than the maximum of {max_size}; "
            "raise max_size only if the agencies agreed on larger events"
        )


def _verify_batch(
    parts: _framing.Parts, batch: BatchProof, trusted: TrustedKey, roots: RootCache | None
) -> None:
    """Check a batch-signed record's proof and the signature over the root it leads to."""
    size = batch.tree_size
    if size > MAX_TREE_SIZE:
        raise LimitExceeded(
            f"batch of key {parts.key_id} claims {size} events, more than the {MAX_TREE_SIZE} "
            "one batch signature may cover"
        )
    if size < 1 or not 0 <= batch.leaf_index < size:
        raise BadProof(
            f"batch of key {parts.key_id}: leaf index {batch.leaf_index} is not in a tree of "
            f"{size} events"
        )
    longest = merkle.max_proof_length(size)
    root = None
    if len(batch.path) <= longest:
        root = merkle.root_from_proof(
            merkle.leaf_hash(parts.event_bytes), batch.leaf_index, size, batch.path
        )
    if root is None:
        raise BadProof(
            f"batch of key {parts.key_id}: a proof of {len(batch.path)} hashes cannot place leaf "
            f"{batch.leaf_index} in a tree of {size} events (RFC 9162 2.1.3.2)"
        )
    signed = batch_root(root=root, tree_size=size, key_id=parts.key_id, origin=batch.origin)
    if roots is None:
        trusted.public_key.verify(signed, parts.signature)
    else:
        roots.verify(trusted.public_key, signed, parts.signature)


def open_(
    value: bytes,
    trust: KeyResolver,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    max_size: int = DEFAULT_MAX_SIZE,
    limits: DecodeLimits = EVENT_LIMITS,
    store: SchemaStore | None = None,
    roots: RootCache | None = None,
) -> VerifiedEvent:
    """Verify a Kafka value and decode its event.

    Order: size, framing, key lookup, signature over the exact event bytes (for a batch-signed
    record: the inclusion proof of the event bytes, then the signature over the batch root it
    leads to), decoding of the event, and finally the key's agency, validity window and
    revocation against the event's origin and ``created_at``, then against the receiver's
    clock ``now`` (default: the current UTC time): the key must be valid at ``now``, its end
    extended by ``grace`` for records already in flight, and ``created_at`` may be at most
    ``max_skew`` ahead of ``now``. The event is decoded under ``limits``.

    ``roots``, a ``RootCache``, remembers batch signatures that verified, so that the records
    of one batch cost one signature check between them; without it, each record's is checked.
    Trust is judged per record either way.

    Raises a ``RecordRejected`` subclass naming what failed (``OversizedRecord``,
    ``TruncatedRecord``, ``BadMarker``, ``UnknownFingerprint``, ``MalformedDatum``,
    ``LimitExceeded``, ``UnknownKey``, ``BadProof``, ``BadSignature``, ``KeyAgencyMismatch``,
    ``KeyNotValid``, ``KeyRevoked``, ``EventFromFuture``).
    """
    _check_size(value, max_size)
    framing = _framing.framing(store or default_store())
    parts = _framing.split(value, framing)
    trusted = trust.get(parts.key_id)
    batch = parts.batch
    if batch is None:
        trusted.public_key.verify(parts.event_bytes, parts.signature)
    else:
        _verify_batch(parts, batch, trusted, roots)
    event = framing.store.decode(parts.event_bytes, INTELLIGENCE_EVENT, limits=limits)
    agency: str = event["origin"]["agency"]
    created_at: datetime = event["created_at"]
    if now is None:
        now = datetime.now(UTC)
    trusted.check(agency, created_at, now=now, grace=grace)
    if batch is not None and batch.origin != agency:
        raise KeyAgencyMismatch(
            f"key {parts.key_id} of {agency} signed this record's batch for another origin "
            f"than the event's ({agency!r}): a batch signature speaks for the agency it names"
        )
    if created_at > now + max_skew:
        raise EventFromFuture(
            f"event of {agency} signed with key {parts.key_id} was created at "
            f"{format_time(created_at)}, more than {max_skew} ahead of the receiver's clock "
            f"({format_time(now)}); check the clocks of the publisher and of this host"
        )
    return VerifiedEvent(
        event=event, event_bytes=parts.event_bytes, key_id=parts.key_id, agency=agency
    )


def peek(
    value: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    limits: DecodeLimits = EVENT_LIMITS,
    store: SchemaStore | None = None,
) -> UnverifiedEvent:
    """Decode a Kafka value WITHOUT verifying it; for display only.

    Raises the same framing and decoding errors as ``open_`` (limits included: the bytes are
    anyone's), but no verification errors.
    """
    _check_size(value, max_size)
    framing = _framing.framing(store or default_store())
    parts = _framing.split(value, framing)
    event = framing.store.decode(parts.event_bytes, INTELLIGENCE_EVENT, limits=limits)
    return UnverifiedEvent(
        event=event,
        event_bytes=parts.event_bytes,
        key_id=parts.key_id,
        signature=parts.signature,
        batch=parts.batch,
    )

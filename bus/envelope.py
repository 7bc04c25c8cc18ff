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

``peek(value)`` decodes without verifying anything, for people looking at a record
(``bus event show``); never act on what it returns.

The ``SignedEvent`` v1 framing (bytes, string, bytes) is written and split by hand rather than
through fastavro: it is three length-prefixed fields, and doing it inline keeps the envelope's
cost negligible next to Ed25519. Any other ``SignedEvent`` version goes through the schema store.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

from bus.codec import (
    HEADER_SIZE,
    INTELLIGENCE_EVENT,
    SIGNED_EVENT,
    DecodeLimits,
    SchemaStore,
    default_store,
)
from bus.errors import (
    EventError,
    EventFromFuture,
    MalformedDatum,
    OversizedRecord,
    TruncatedRecord,
)
from bus.signing import Signer
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, KeyResolver, format_time

__all__ = [
    "DEFAULT_MAX_SIZE",
    "EVENT_LIMITS",
    "VerifiedEvent",
    "UnverifiedEvent",
    "seal",
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

# Parsing Canonical Form of the SignedEvent layout the hand-written framing implements.
_FRAMED_LAYOUT: Final = (
    '{"name":"bus.intel.SignedEvent","type":"record","fields":['
    '{"name":"event","type":"bytes"},{"name":"key_id","type":"string"},'
    '{"name":"signature","type":"bytes"}]}'
)
_MAX_KEY_ID: Final = 256
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


@dataclass(frozen=True, slots=True)
class _Framing:
    """Per store: the SignedEvent header, whether the hand framing applies, the event header."""

    store: SchemaStore
    signed_header: bytes
    hand_framed: bool


@cache
def _framing(store: SchemaStore) -> _Framing:
    latest = store.latest(SIGNED_EVENT)
    return _Framing(
        store=store,
        signed_header=latest.header,
        hand_framed=latest.canonical_form == _FRAMED_LAYOUT,
    )


def _varint(value: int) -> bytes:
    # Avro long: zig-zag, then 7 bits per byte, low first. Only non-negative lengths here.
    value <<= 1
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _with_text_id(event: dict[str, Any]) -> dict[str, Any]:
    event_id = event.get("event_id")
    if isinstance(event_id, uuid.UUID):
        return {**event, "event_id": str(event_id)}
    if isinstance(event_id, str):
        try:
            return {**event, "event_id": str(uuid.UUID(event_id))}
        except ValueError:
            pass
    raise EventError("event_id: must be a UUID (a uuid.UUID or its canonical text)")


def seal(event: dict[str, Any], key: Signer, *, store: SchemaStore | None = None) -> bytes:
    """Encode ``event``, sign the encoding with ``key`` and return the Kafka value.

    ``event`` is the in-memory form (see ``bus.codec``); it is not checked beyond fitting the
    schema (``EventError`` otherwise): check events from untrusted input with
    ``bus.events.validate`` first. The key should belong to ``event["origin"]["agency"]``, or
    receivers reject the record.
    """
    framing = _framing(store or default_store())
    event_id = event.get("event_id")
    if type(event_id) is not str or not _UUID_TEXT.match(event_id):
        event = _with_text_id(event)
    event_bytes = framing.store.encode(INTELLIGENCE_EVENT, event)
    signature = key.sign(event_bytes)
    if framing.hand_framed:
        key_id = key.key_id.encode("utf-8")
        return b"".join(
            (
                framing.signed_header,
                _varint(len(event_bytes)),
                event_bytes,
                _varint(len(key_id)),
                key_id,
                _varint(len(signature)),
                signature,
            )
        )
    return framing.store.encode(
        SIGNED_EVENT, {"event": event_bytes, "key_id": key.key_id, "signature": signature}
    )


def _split(value: bytes, framing: _Framing) -> tuple[bytes, str, bytes]:
    """The SignedEvent's (event bytes, key id, signature), checked for framing only."""
    if framing.hand_framed and value[:HEADER_SIZE] == framing.signed_header:
        position = HEADER_SIZE
        size = len(value)
        parts: list[bytes] = []
        for name in ("event", "key_id", "signature"):
            shift = length = 0
            while True:
                if position >= size:
                    raise TruncatedRecord(
                        f"SignedEvent ends in the length of '{name}' (record is {size} bytes)"
                    )
                byte = value[position]
                position += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift > 63:
                    raise MalformedDatum(f"SignedEvent '{name}' length is not a valid varint")
            if length & 1:
                raise MalformedDatum(f"SignedEvent '{name}' has a negative length")
            length >>= 1
            end = position + length
            if end > size:
                raise TruncatedRecord(
                    f"SignedEvent '{name}' claims {length} bytes at offset {position}, "
                    f"past the end of the {size}-byte record"
                )
            parts.append(value[position:end])
            position = end
        if position != size:
            raise MalformedDatum(
                f"SignedEvent ends at byte {position} but the record has {size} bytes"
            )
        event_bytes, raw_key_id, signature = parts
        if len(raw_key_id) > _MAX_KEY_ID:
            raise MalformedDatum(f"SignedEvent 'key_id' is {len(raw_key_id)} bytes long")
        try:
            key_id = raw_key_id.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedDatum("SignedEvent 'key_id' is not UTF-8") from None
        return event_bytes, key_id, signature
    signed = framing.store.decode(value, SIGNED_EVENT)
    return signed["event"], signed["key_id"], signed["signature"]


def _check_size(value: bytes, max_size: int) -> None:
    if len(value) > max_size:
        raise OversizedRecord(
            f"record is {len(value)} bytes, more than the maximum of {max_size}; "
            "raise max_size only if the agencies agreed on larger events"
        )


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
) -> VerifiedEvent:
    """Verify a Kafka value and decode its event.

    Order: size, framing, key lookup, signature over the exact event bytes, decoding of the
    event, and finally the key's agency, validity window and revocation against the event's
    origin and ``created_at``, then against the receiver's clock ``now`` (default: the current
    UTC time): the key must be valid at ``now``, its end extended by ``grace`` for records
    already in flight, and ``created_at`` may be at most ``max_skew`` ahead of ``now``.
    The event is decoded under ``limits``. Raises a ``RecordRejected`` subclass naming what
    failed (``OversizedRecord``, ``TruncatedRecord``, ``BadMarker``, ``UnknownFingerprint``,
    ``MalformedDatum``, ``LimitExceeded``, ``UnknownKey``, ``BadSignature``,
    ``KeyAgencyMismatch``, ``KeyNotValid``, ``KeyRevoked``, ``EventFromFuture``).
    """
    _check_size(value, max_size)
    framing = _framing(store or default_store())
    event_bytes, key_id, signature = _split(value, framing)
    trusted = trust.get(key_id)
    trusted.public_key.verify(event_bytes, signature)
    event = framing.store.decode(event_bytes, INTELLIGENCE_EVENT, limits=limits)
    agency: str = event["origin"]["agency"]
    created_at: datetime = event["created_at"]
    if now is None:
        now = datetime.now(UTC)
    trusted.check(agency, created_at, now=now, grace=grace)
    if created_at > now + max_skew:
        raise EventFromFuture(
            f"event of {agency} signed with key {key_id} was created at "
            f"{format_time(created_at)}, more than {max_skew} ahead of the receiver's clock "
            f"({format_time(now)}); check the clocks of the publisher and of this host"
        )
    return VerifiedEvent(event=event, event_bytes=event_bytes, key_id=key_id, agency=agency)


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
    framing = _framing(store or default_store())
    event_bytes, key_id, signature = _split(value, framing)
    event = framing.store.decode(event_bytes, INTELLIGENCE_EVENT, limits=limits)
    return UnverifiedEvent(event=event, event_bytes=event_bytes, key_id=key_id, signature=signature)

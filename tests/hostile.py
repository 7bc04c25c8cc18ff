"""Hostile records: a catalogue of malformed and malicious records, and raw writers for them.

``catalogue(keys)`` builds every case of the hostile-record campaign (issue 10): how to build
each raw record (value bytes, key, headers, timestamp, compression) and what must become of it
at the bridge and at subscribers. ``write_case`` writes a case with a plain producer. The
campaign test uses them; chaos tests and demos can too.

Any client can put any bytes in a record, including where the Kafka protocol promises text
(header names are UTF-8 by the protocol, but the broker does not check them). aiokafka's
producer only takes ``str`` header names, so these writers build the batch with a placeholder
name of the same length and patch the bytes in, recomputing the batch's CRC-32C.
"""

from __future__ import annotations

import enum
import secrets
import string
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.record.util import calc_crc32c

from bus.codec import INTELLIGENCE_EVENT, SIGNED_EVENT, default_store
from bus.errors import (
    BadMarker,
    BadSignature,
    EventRejected,
    KeyAgencyMismatch,
    KeyNotValid,
    KeyRevoked,
    MalformedDatum,
    OversizedRecord,
    TruncatedRecord,
    UnknownFingerprint,
    UnknownKey,
    UnreadableRecord,
)
from bus.events import template
from bus.headers import event_headers
from bus.policy import Rule
from bus.signing import SigningKey
from bus.testing import KEY_START
from bus.trust import TrustedKey

__all__ = [
    "ABSENT",
    "ASSUMED_NAMES",
    "CODECS",
    "DELIVERED",
    "DUPLICATE",
    "FORGED_TIMESTAMP_MS",
    "FORWARDED",
    "HostileCase",
    "HostileKeys",
    "Kind",
    "Outcome",
    "Planted",
    "ROLLBACK",
    "RawRecord",
    "Target",
    "catalogue",
    "denied",
    "encode_event",
    "frame",
    "quarantined",
    "send_with_raw_header_names",
    "signed",
    "write_case",
]

# Record batch v2: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8,
# crc uint32 (CRC-32C of everything after it).
_CRC_AT = 17
_CRC_FROM = 21


def _placeholder(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters) for _ in range(length))


async def send_with_raw_header_names(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    *,
    value: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    key: bytes | None = None,
) -> int:
    """Write one record whose header names are the raw ``bytes`` given; return its offset.

    Each name must be at least 8 bytes long, so that its placeholder is unique in the batch.
    """
    swaps: list[tuple[bytes, bytes]] = []
    named: list[tuple[str, bytes]] = []
    for name, header_value in headers:
        if len(name) < 8:
            raise ValueError("raw header names need at least 8 bytes")
        placeholder = _placeholder(len(name))
        swaps.append((placeholder.encode(), name))
        named.append((placeholder, header_value))
    batch = producer.create_batch()
    batch.append(key=key, value=value, timestamp=None, headers=named)
    batch.close()
    build = batch._build  # the builder's one hook; aiokafka has no public raw-batch API

    def patched() -> bytearray:
        data = bytearray(build())
        for placeholder, name in swaps:
            at = bytes(data).index(placeholder)
            data[at : at + len(name)] = name
        struct.pack_into(">I", data, _CRC_AT, calc_crc32c(bytes(data[_CRC_FROM:])))
        return data

    batch._build = patched  # the hook above, replaced on this one batch
    metadata = await (await producer.send_batch(batch, topic, partition=partition))
    return int(metadata.offset)


# --- the catalogue of hostile records ---------------------------------------------------------
#
# Each case says how to build its raw records and what must become of each one: at the bridge of
# the direction SOURCE -> DESTINATION, at a subscriber group of the source topic, and at a
# subscriber group of the destination's mirror of that topic. The campaign
# (tests/integration/test_hostile_campaign.py) writes them with a plain producer into a running
# federation; the chaos tests and the demo can reuse them.
#
# Reason codes and rule names that ``bus`` does not define yet are the names agreed for issue 10;
# ``ASSUMED_NAMES`` lists them so that a reconciliation finds every one.

EVENT_FROM_FUTURE: Final = "event-from-future"
LIMIT_EXCEEDED: Final = "limit-exceeded"
ORIGIN_MISMATCH: Final = "origin-mismatch"
NOT_RELEASABLE: Final = "not-releasable"
REVISION_CONFLICT: Final = "revision-conflict"
RULE_HANDLING_H3: Final = "handling-h3"
RULE_REPLAY: Final = "replay"
RULE_ROLLBACK: Final = "rollback"
ASSUMED_NAMES: Final = frozenset(
    {
        EVENT_FROM_FUTURE,
        LIMIT_EXCEEDED,
        ORIGIN_MISMATCH,
        NOT_RELEASABLE,
        REVISION_CONFLICT,
        RULE_HANDLING_H3,
        RULE_REPLAY,
        RULE_ROLLBACK,
    }
)
"""Reason codes and policy rules the catalogue expects that are not (yet) in ``bus``."""

CODECS: Final = ("gzip", "snappy", "lz4", "zstd")
"""Every compression codec Kafka supports."""

FORGED_TIMESTAMP_MS: Final = 946_684_800_000
"""2000-01-01: a producer timestamp no mirrored record may carry (Kafka refuses future ones)."""

SIZE_LIMIT: Final = 1_048_576
"""The bus's record size limit (``bus.envelope.DEFAULT_MAX_SIZE``, Kafka's default)."""


class Kind(enum.Enum):
    """What becomes of one record at one consumer."""

    QUARANTINED = "quarantined"
    DENIED = "denied"
    FORWARDED = "forwarded"
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    """Skipped by the subscriber as a replay of a revision it delivered (counted ``duplicate``)."""
    ROLLBACK = "rollback"
    """Skipped by the subscriber as an older revision than one it delivered (counted
    ``rollback``: ``bus_consumed_total`` keeps the two apart)."""
    ABSENT = "absent"
    """The consumer never sees the record (it is on another topic)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """``kind``, with the reason code (quarantined) or the policy rule (denied)."""

    kind: Kind
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}({self.code})" if self.code else self.kind.value


def quarantined(reason: str) -> Outcome:
    return Outcome(Kind.QUARANTINED, reason)


def denied(rule: str) -> Outcome:
    return Outcome(Kind.DENIED, rule)


FORWARDED: Final = Outcome(Kind.FORWARDED)
DELIVERED: Final = Outcome(Kind.DELIVERED)
DUPLICATE: Final = Outcome(Kind.DUPLICATE)
ROLLBACK: Final = Outcome(Kind.ROLLBACK)
ABSENT: Final = Outcome(Kind.ABSENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class RawRecord:
    """One record as a plain producer writes it: nothing is checked or filled in.

    A header name given as ``bytes`` is written as those raw bytes (``send_with_raw_header_names``;
    at least 8 bytes long), so that it may be anything, UTF-8 or not.
    """

    value: bytes | None = field(repr=False)
    key: bytes | None = b"hostile"
    headers: tuple[tuple[str | bytes, bytes], ...] = field(default=(), repr=False)
    timestamp_ms: int | None = None

    @property
    def raw_header_names(self) -> bool:
        return any(isinstance(name, bytes) for name, _ in self.headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Planted:
    """A record of a case and what must become of it.

    ``bridge``: at the bridge (quarantined with a reason, denied by a rule, or forwarded: then
    once, with headers and key rebuilt from the verified event and without the producer's
    timestamp). ``subscriber``: at a subscriber group of the topic the record is written to.
    ``mirror_subscriber``: at a subscriber group of the destination's mirror (by default,
    delivered when the bridge forwards the record, never seen otherwise).
    """

    record: RawRecord
    bridge: Outcome
    subscriber: Outcome
    event_id: str | None = None
    """The id of the event the value carries, when it carries one that can be read."""
    mirror_subscriber: Outcome | None = None

    @property
    def at_mirror_subscriber(self) -> Outcome:
        if self.mirror_subscriber is not None:
            return self.mirror_subscriber
        return DELIVERED if self.bridge == FORWARDED else ABSENT


class Target(enum.Enum):
    SOURCE = "source"
    """The source topic the bridge moves (``intel.events`` of the source agency)."""
    MIRROR = "mirror"
    """The destination's mirror of it, written directly (the bridge never reads it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostileCase:
    """A named attack: its records, written in order to one partition, and their fates."""

    name: str
    point: int
    """The point of issue 10 it exercises (1-10; the campaign is point 11)."""
    records: tuple[Planted, ...]
    target: Target = Target.SOURCE
    compression: str | None = None
    """The records go in one batch compressed with this codec."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostileKeys:
    """The keys a catalogue needs: each agency's trusted key, and keys with bad standing.

    ``trusted_extras()`` are the entries to append to the receivers' trust store before they
    start: a revoked key, a key not valid yet, one that expired before the events were created,
    and one that expired (by the receiver's clock) long ago.
    """

    agencies: Mapping[str, SigningKey]
    source: str
    destination: str
    third: str
    now: datetime
    revoked: SigningKey = field(default_factory=SigningKey.generate)
    not_yet_valid: SigningKey = field(default_factory=SigningKey.generate)
    expired: SigningKey = field(default_factory=SigningKey.generate)
    expired_long_ago: SigningKey = field(default_factory=SigningKey.generate)
    stranger: SigningKey = field(default_factory=SigningKey.generate)
    """Not in any trust store."""

    def trusted_extras(self) -> list[TrustedKey]:
        src, start = self.source, KEY_START
        return [
            TrustedKey(
                agency=src,
                public_key=self.revoked.public_key,
                not_before=start,
                revoked_at=self.now - timedelta(hours=1),
            ),
            TrustedKey(
                agency=src,
                public_key=self.not_yet_valid.public_key,
                not_before=self.now + timedelta(days=1),
            ),
            TrustedKey(
                agency=src,
                public_key=self.expired.public_key,
                not_before=start,
                not_after=self.now - timedelta(days=1),
            ),
            TrustedKey(
                agency=src,
                public_key=self.expired_long_ago.public_key,
                not_before=start,
                not_after=self.now - timedelta(days=30),
            ),
        ]


def _long(value: int) -> bytes:
    """An Avro ``long``: zig-zag, then 7 bits a byte, low group first (any sign)."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame(event_bytes: bytes, key_id: bytes | str, signature: bytes) -> bytes:
    """A ``SignedEvent`` v1 value around any bytes, key id and signature (nothing checked)."""
    raw_id = key_id.encode() if isinstance(key_id, str) else key_id
    header = default_store().versions(SIGNED_EVENT)[0].header  # v1: no batch proof
    return b"".join(
        (
            header,
            _long(len(event_bytes)),
            event_bytes,
            _long(len(raw_id)),
            raw_id,
            _long(len(signature)),
            signature,
        )
    )


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The single-object encoding of an event dict, with no check beyond the schema."""
    return default_store().encode(INTELLIGENCE_EVENT, dict(event))


def signed(event_bytes: bytes, key: SigningKey) -> bytes:
    """``event_bytes``, whatever they are, signed with ``key`` and framed."""
    return frame(event_bytes, key.key_id, key.sign(event_bytes))


class _Events:
    """Valid events of the catalogue's agencies, each with a fresh id and the catalogue's time."""

    def __init__(self, keys: HostileKeys) -> None:
        self.keys = keys
        self.serial = 0

    def event(self, agency: str | None = None, area: str = "CYBERCRIME", **fields: Any) -> Any:
        k = self.keys
        self.serial += 1
        created_at = k.now - timedelta(minutes=1)
        event = template(area, agency=agency or k.source, now=created_at)
        event["event_id"] = str(uuid.uuid4())
        event["expires_at"] = k.now + timedelta(days=1)
        event["releasable_to"] = [k.destination]
        event["correlation_id"] = f"hostile-{self.serial}"
        event.update(fields)
        return event

    def seal(self, event: Mapping[str, Any], key: SigningKey | None = None) -> bytes:
        origin = event["origin"]["agency"]
        return signed(encode_event(event), key or self.keys.agencies[origin])


def _rejected(
    name: str, point: int, value: bytes | None, reason: str, **record: Any
) -> HostileCase:
    """A one-record case quarantined with ``reason`` by the bridge and the subscriber."""
    return HostileCase(
        name=name,
        point=point,
        records=(
            Planted(
                record=RawRecord(value=value, **record),
                bridge=quarantined(reason),
                subscriber=quarantined(reason),
            ),
        ),
    )


def _verified(
    name: str,
    point: int,
    events: _Events,
    event: Mapping[str, Any],
    *,
    bridge: Outcome,
    subscriber: Outcome = DELIVERED,
    signer: SigningKey | None = None,
    publisher_headers: bool = True,
    to_the_limit: bool = False,
    **record: Any,
) -> HostileCase:
    """A one-record case whose value is ``event`` signed (by its origin's key by default),
    keyed by its correlation id and with its CloudEvents headers (then ``headers``) as a
    publisher writes it, unless ``key`` or ``publisher_headers=False`` say otherwise.
    ``to_the_limit`` pads it with one large header up to the size limit."""
    record.setdefault("key", str(event["correlation_id"]).encode())
    if publisher_headers:
        record["headers"] = (*event_headers(event), *record.get("headers", ()))
    raw = RawRecord(value=events.seal(event, signer), **record)
    return HostileCase(
        name=name,
        point=point,
        records=(
            Planted(
                record=_to_the_limit(raw) if to_the_limit else raw,
                bridge=bridge,
                subscriber=subscriber,
                event_id=str(event["event_id"]),
            ),
        ),
    )


def _to_the_limit(record: RawRecord) -> RawRecord:
    """``record`` with a header ``x-huge`` that brings it to a few bytes under the size limit:
    it fits, but a copy with a few headers more (hop or reason headers) would not."""
    size = len(record.value or b"") + len(record.key or b"") + len("x-huge")
    size += sum(len(name) + len(value) for name, value in record.headers)
    # The batch (61 bytes) and record framing (~30) take the rest.
    padding = (("x-huge", b"h" * (SIZE_LIMIT - 100 - size)),)
    return replace(record, headers=(*record.headers, *padding))


def _invalid(name: str, events: _Events, reason: str, **fields: Any) -> HostileCase:
    """A verified event that breaks the event model: quarantined with ``reason`` everywhere."""
    event = events.event(**fields)
    return _verified(
        name, 6, events, event, bridge=quarantined(reason), subscriber=quarantined(reason)
    )


def _framing_cases(ev: _Events) -> list[HostileCase]:
    k = ev.keys
    good = ev.seal(ev.event())
    signed_header = default_store().latest(SIGNED_EVENT).header
    event_header = default_store().latest(INTELLIGENCE_EVENT).header
    key = k.agencies[k.source]
    return [
        _rejected("empty-value", 1, b"", TruncatedRecord.reason),
        _rejected("null-value", 1, None, TruncatedRecord.reason),
        _rejected("one-byte", 1, b"\xc3", TruncatedRecord.reason),
        _rejected("wrong-marker", 1, b"\xc3\x02" + good[2:], BadMarker.reason),
        _rejected("not-avro-at-all", 1, b"GET / HTTP/1.1\r\n\r\n", BadMarker.reason),
        _rejected(
            "unknown-fingerprint", 1, b"\xc3\x01" + bytes(8) + good[10:], UnknownFingerprint.reason
        ),
        _rejected(
            "bare-event-without-envelope",
            1,
            encode_event(ev.event()),
            UnknownFingerprint.reason,
        ),
        _rejected("truncated-datum", 1, good[: len(good) // 2], TruncatedRecord.reason),
        _rejected("trailing-garbage", 1, good + b"\x00garbage", MalformedDatum.reason),
        _rejected(
            "negative-length",
            1,
            signed_header + _long(-5) + bytes(40),
            MalformedDatum.reason,
        ),
        _rejected("endless-length-varint", 1, signed_header + b"\xff" * 12, MalformedDatum.reason),
        _rejected(
            "oversized",
            2,
            signed_header + b"\x00" * (SIZE_LIMIT + 50_000),
            OversizedRecord.reason,
        ),
        _rejected(
            "signed-garbage", 1, signed(b"garbage, signed by a real key", key), BadMarker.reason
        ),
        _rejected(
            "signed-garbage-datum",
            1,
            signed(event_header + b"\xff" * 64, key),
            MalformedDatum.reason,
        ),
        _rejected("signed-empty-event", 1, signed(b"", key), TruncatedRecord.reason),
        _rejected(
            "signed-envelope-inside-envelope",
            1,
            signed(good, key),
            UnknownFingerprint.reason,
        ),
    ]


def _signature_cases(ev: _Events) -> list[HostileCase]:
    k = ev.keys
    key = k.agencies[k.source]
    event = ev.event()
    event_bytes = encode_event(event)
    signature = key.sign(event_bytes)
    flipped_signature = bytes([signature[0] ^ 0x01]) + signature[1:]
    at = len(event_bytes) // 2
    flipped_event = event_bytes[:at] + bytes([event_bytes[at] ^ 0x01]) + event_bytes[at + 1 :]
    other = encode_event(ev.event())
    ahead = ev.event()
    ahead["created_at"] = k.now + timedelta(days=30)
    ahead["expires_at"] = k.now + timedelta(days=31)
    old = ev.event()
    old["created_at"] = k.now - timedelta(days=31)
    bad_signature = BadSignature.reason
    return [
        _rejected(
            "flipped-bit-in-signature",
            1,
            frame(event_bytes, key.key_id, flipped_signature),
            bad_signature,
        ),
        _rejected(
            "flipped-bit-in-event", 1, frame(flipped_event, key.key_id, signature), bad_signature
        ),
        _rejected("empty-signature", 1, frame(event_bytes, key.key_id, b""), bad_signature),
        _rejected(
            "short-signature", 1, frame(event_bytes, key.key_id, signature[:63]), bad_signature
        ),
        _rejected(
            "signature-of-another-event",
            1,
            frame(event_bytes, key.key_id, key.sign(other)),
            bad_signature,
        ),
        _rejected("unknown-key-id", 1, ev.seal(ev.event(), k.stranger), UnknownKey.reason),
        _rejected(
            "overlong-key-id",
            1,
            frame(event_bytes, "ed25519:" + "0" * 400, signature),
            MalformedDatum.reason,
        ),
        _rejected(
            "key-id-not-utf8",
            1,
            frame(event_bytes, b"ed25519:\xff\xfe\xfd", signature),
            MalformedDatum.reason,
        ),
        _rejected(
            "origin-spoofed-with-destination-key",
            1,
            ev.seal(ev.event(), k.agencies[k.destination]),
            KeyAgencyMismatch.reason,
        ),
        _rejected(
            "origin-spoofed-with-third-agency-key",
            1,
            ev.seal(ev.event(), k.agencies[k.third]),
            KeyAgencyMismatch.reason,
        ),
        _rejected("revoked-key", 5, ev.seal(ev.event(), k.revoked), KeyRevoked.reason),
        _rejected("key-not-yet-valid", 5, ev.seal(ev.event(), k.not_yet_valid), KeyNotValid.reason),
        _rejected(
            "key-expired-before-created-at", 5, ev.seal(ev.event(), k.expired), KeyNotValid.reason
        ),
        _rejected(
            "key-expired-by-receiver-clock",
            5,
            ev.seal(old, k.expired_long_ago),
            KeyNotValid.reason,
        ),
        _rejected("created-at-far-in-the-future", 5, ev.seal(ahead), EVENT_FROM_FUTURE),
    ]


def _content_cases(ev: _Events) -> list[HostileCase]:
    k = ev.keys
    rejected = EventRejected.reason
    expired = ev.event()
    expired["created_at"] = k.now - timedelta(hours=2)
    expired["expires_at"] = k.now - timedelta(hours=1)
    return [
        _invalid("empty-handling-codes", ev, rejected, handling_codes=[]),
        _invalid("handling-code-twice", ev, rejected, handling_codes=["H0", "H0"]),
        _invalid("negative-revision", ev, rejected, revision=-3),
        _invalid("revision-zero", ev, rejected, revision=0),
        _invalid(
            "expires-before-created",
            ev,
            rejected,
            expires_at=k.now - timedelta(days=1),
        ),
        _invalid("h3-without-conditions", ev, rejected, handling_codes=["H3"]),
        _invalid("empty-title", ev, rejected, title="  "),
        _invalid("empty-correlation-id", ev, rejected, correlation_id=""),
        _invalid("event-id-not-a-uuid", ev, rejected, event_id="not-a-uuid"),
        # Point 10: agency ids match the full string; "europol\n" is not europol.
        _invalid(
            "releasable-to-with-trailing-newline",
            ev,
            rejected,
            releasable_to=[f"{k.destination}\n"],
        ),
        _verified(
            "h3-with-conditions-without-explicit-release",
            6,
            ev,
            ev.event(handling_codes=["H3"], handling_conditions="Not for the account provider."),
            bridge=denied(RULE_HANDLING_H3),
        ),
        _verified("already-expired", 6, ev, expired, bridge=denied(Rule.EXPIRED)),
        _verified(
            "not-releasable-to-destination",
            6,
            ev,
            ev.event(releasable_to=[k.third]),
            bridge=denied(Rule.RELEASABLE_TO),
        ),
        _verified("tlp-red", 6, ev, ev.event(tlp="RED"), bridge=denied(Rule.TLP)),
        _verified("tlp-amber-strict", 6, ev, ev.event(tlp="AMBER_STRICT"), bridge=denied(Rule.TLP)),
        _verified(
            "crime-area-not-in-agreement",
            6,
            ev,
            ev.event(area="OTHER"),
            bridge=denied(Rule.CRIME_AREA),
        ),
        _verified(
            "destination-event-republished-at-source",
            6,
            ev,
            ev.event(agency=k.destination, releasable_to=[k.source, k.destination]),
            bridge=denied(Rule.LOOP_ORIGIN),
        ),
        _verified(
            "third-agency-event-republished-at-source",
            6,
            ev,
            ev.event(agency=k.third),
            bridge=denied(Rule.ONWARD_FORWARDING),
        ),
    ]


def _bomb(ev: _Events, name: str, value: bytes) -> HostileCase:
    return HostileCase(
        name=name,
        point=9,
        records=(
            Planted(
                record=RawRecord(value=value),
                bridge=quarantined(LIMIT_EXCEEDED),
                subscriber=quarantined(LIMIT_EXCEEDED),
            ),
        ),
    )


def _bomb_cases(ev: _Events) -> list[HostileCase]:
    """Verified events (a real key signed them) whose decoding costs far more than an event
    should: arrays and maps of hundreds of thousands of minimal items, within the size limit.
    (``IntelligenceEvent`` v1 has no recursive type, so Avro cannot nest deeply.)"""
    key = ev.keys.agencies[ev.keys.source]
    subject = {"kind": "PERSON", "value": "", "attributes": {}}
    many_subjects = ev.event(subjects=[subject] * 250_000)
    many_references = ev.event(references=[""] * 600_000)
    many_attributes = ev.event(
        subjects=[
            {"kind": "PERSON", "value": "", "attributes": {str(i): "" for i in range(120_000)}}
        ]
    )
    many_recipients = ev.event(releasable_to=[ev.keys.destination] * 90_000)
    # An array that claims 2**62 items, followed by a few thousand: the count alone must stop it.
    plain = encode_event(ev.event(references=[], payload=None))
    assert plain.endswith(b"\x00\x00")  # references: end of array; payload: null
    huge_count = plain[:-2] + _long(2**62) + b"\x00" * 4096
    return [
        _bomb(ev, "bomb-250k-subjects", signed(encode_event(many_subjects), key)),
        _bomb(ev, "bomb-600k-references", signed(encode_event(many_references), key)),
        _bomb(ev, "bomb-120k-attributes", signed(encode_event(many_attributes), key)),
        _bomb(ev, "bomb-90k-recipients", signed(encode_event(many_recipients), key)),
        _bomb(ev, "bomb-array-count-2-62", signed(huge_count, key)),
    ]


def _kafka_cases(ev: _Events) -> list[HostileCase]:
    k = ev.keys

    def forwarded(name: str, point: int, **record: Any) -> HostileCase:
        event = ev.event()
        return _verified(name, point, ev, event, bridge=FORWARDED, **record)

    thousand = tuple((f"x-hostile-{i:04d}", b"v" * 16) for i in range(1000))
    forged_ce = (
        ("ce_specversion", b"0.3"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", f"/agencies/{k.destination}/units/forged".encode()),
        ("ce_type", b"int.exchangebus.intel.v9"),
        ("ce_time", b"1999-12-31T23:59:59.000000Z"),
        ("content-type", b"text/plain"),
    )
    forged_hops = (
        ("bus_path", f"{k.destination},{k.third}".encode()),
        ("bus_hop", f"{k.third}->{k.source} forged-bridge".encode()),
    )
    unreadable_event = ev.event()
    huge_event = ev.event()
    cases = [
        HostileCase(
            name="header-name-not-utf8",
            point=1,
            records=(
                Planted(
                    # A valid, releasable event: unreadable must still mean never forwarded.
                    record=RawRecord(
                        value=ev.seal(unreadable_event),
                        headers=((b"\xff\xfe-not-utf8", b"x"),),
                    ),
                    bridge=quarantined(UnreadableRecord.reason),
                    subscriber=quarantined(UnreadableRecord.reason),
                    event_id=str(unreadable_event["event_id"]),
                ),
            ),
        ),
        _rejected(
            "thousand-headers-on-garbage", 2, b"not an event", BadMarker.reason, headers=thousand
        ),
        HostileCase(
            name="huge-header-on-garbage",
            point=2,
            records=(
                Planted(
                    record=_to_the_limit(RawRecord(value=b"not an event")),
                    bridge=quarantined(BadMarker.reason),
                    subscriber=quarantined(BadMarker.reason),
                ),
            ),
        ),
        _rejected(
            "forged-quarantine-headers-on-garbage",
            2,
            b"not an event",
            BadMarker.reason,
            headers=(("bus_reason", b"ok"), ("bus_source_offset", b"-1"), ("bus_error", b"\xff")),
        ),
        forwarded("thousand-headers-on-valid-event", 3, headers=thousand),
        _verified(
            "huge-header-on-valid-event",
            2,
            ev,
            huge_event,
            bridge=FORWARDED,
            to_the_limit=True,
        ),
        forwarded("forged-cloudevents-headers", 3, headers=forged_ce, publisher_headers=False),
        forwarded("forged-hop-headers", 3, headers=forged_hops),
        forwarded("forged-kafka-key", 3, key=b"another-case"),
        forwarded("forged-timestamp", 3, timestamp_ms=FORGED_TIMESTAMP_MS),
    ]
    for codec in CODECS:
        events = [ev.event() for _ in range(3)]
        cases.append(
            HostileCase(
                name=f"compressed-{codec}",
                point=1,
                compression=codec,
                records=tuple(
                    Planted(
                        record=RawRecord(
                            value=ev.seal(e),
                            key=str(e["correlation_id"]).encode(),
                            headers=tuple(event_headers(e)),
                        ),
                        bridge=FORWARDED,
                        subscriber=DELIVERED,
                        event_id=str(e["event_id"]),
                    )
                    for e in events
                ),
            )
        )
    return cases


def _replay_cases(ev: _Events) -> list[HostileCase]:
    def keyed(value: bytes, event: Mapping[str, Any]) -> RawRecord:
        return RawRecord(
            value=value,
            key=str(event["correlation_id"]).encode(),
            headers=tuple(event_headers(event)),
        )

    def pair(name: str, first: RawRecord, second: Planted, event_id: str) -> HostileCase:
        return HostileCase(
            name=name,
            point=7,
            records=(
                Planted(record=first, bridge=FORWARDED, subscriber=DELIVERED, event_id=event_id),
                second,
            ),
        )

    once = ev.event()
    value = ev.seal(once)
    again = ev.event()
    again_value = ev.seal(again)
    newer = ev.event(revision=2)
    older = {**newer, "revision": 1}
    body = ev.event()
    other_body = {**body, "title": "The same id and revision, another body"}
    return [
        pair(
            "replay-same-record",
            keyed(value, once),
            Planted(
                record=keyed(value, once),
                bridge=denied(RULE_REPLAY),
                subscriber=DUPLICATE,
                event_id=once["event_id"],
            ),
            once["event_id"],
        ),
        pair(
            "replay-with-other-key-and-headers",
            keyed(again_value, again),
            Planted(
                record=RawRecord(
                    value=again_value, key=b"elsewhere", headers=(("x-replayed", b"1"),)
                ),
                bridge=denied(RULE_REPLAY),
                subscriber=DUPLICATE,
                event_id=again["event_id"],
            ),
            again["event_id"],
        ),
        pair(
            "rollback-to-lower-revision",
            keyed(ev.seal(newer), newer),
            Planted(
                record=keyed(ev.seal(older), older),
                bridge=denied(RULE_ROLLBACK),
                subscriber=ROLLBACK,
                event_id=newer["event_id"],
            ),
            newer["event_id"],
        ),
        pair(
            "same-revision-other-body",
            keyed(ev.seal(body), body),
            Planted(
                record=keyed(ev.seal(other_body), other_body),
                bridge=quarantined(REVISION_CONFLICT),
                subscriber=quarantined(REVISION_CONFLICT),
                event_id=body["event_id"],
            ),
            body["event_id"],
        ),
    ]


def _mirror_cases(ev: _Events) -> list[HostileCase]:
    """Point 8: records written straight into the destination's mirror of the source topic,
    which only the bridge should write; its subscribers refuse what the bridge could not
    have sent."""
    k = ev.keys

    def injected(name: str, event: Mapping[str, Any], reason: str) -> HostileCase:
        return HostileCase(
            name=name,
            point=8,
            target=Target.MIRROR,
            records=(
                Planted(
                    record=RawRecord(value=ev.seal(event)),
                    bridge=ABSENT,
                    subscriber=ABSENT,
                    mirror_subscriber=quarantined(reason),
                    event_id=str(event["event_id"]),
                ),
            ),
        )

    return [
        injected(
            "mirror-event-of-the-destination-itself",
            ev.event(agency=k.destination, releasable_to=[k.source]),
            ORIGIN_MISMATCH,
        ),
        injected("mirror-event-of-a-third-agency", ev.event(agency=k.third), ORIGIN_MISMATCH),
        injected(
            "mirror-event-not-releasable-to-destination",
            ev.event(releasable_to=[k.third]),
            NOT_RELEASABLE,
        ),
    ]


def catalogue(keys: HostileKeys) -> list[HostileCase]:
    """Every hostile case, built afresh (new event ids) with ``keys``.

    Names are unique and stable: the campaign reports by name, and ``only`` lists select by it.
    """
    ev = _Events(keys)
    cases = [
        *_framing_cases(ev),
        *_signature_cases(ev),
        *_content_cases(ev),
        *_bomb_cases(ev),
        *_kafka_cases(ev),
        *_replay_cases(ev),
        *_mirror_cases(ev),
    ]
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise AssertionError(f"hostile case names used twice: {sorted(duplicates)}")
    return cases


# --- writing them --------------------------------------------------------------------------


async def write_case(
    producers: Mapping[str | None, AIOKafkaProducer], topic: str, partition: int, case: HostileCase
) -> list[int]:
    """Write ``case``'s records, in order, to ``topic``/``partition``; their offsets.

    ``producers`` maps a codec (``None``: no compression) to a started plain producer.
    A compressed case goes as one batch.
    """
    producer = producers[case.compression]
    if case.compression is not None:
        batch = producer.create_batch()
        for planted in case.records:
            r = planted.record
            batch.append(key=r.key, value=r.value, timestamp=r.timestamp_ms, headers=_named(r))
        batch.close()
        metadata = await (await producer.send_batch(batch, topic, partition=partition))
        return [int(metadata.offset) + i for i in range(len(case.records))]
    offsets = []
    for planted in case.records:
        r = planted.record
        if r.raw_header_names:
            headers = [(_raw(name), value) for name, value in r.headers]
            offset = await send_with_raw_header_names(
                producer, topic, partition, value=r.value or b"", headers=headers, key=r.key
            )
        else:
            future = await producer.send(
                topic,
                r.value,
                key=r.key,
                partition=partition,
                timestamp_ms=r.timestamp_ms,
                headers=_named(r),
            )
            offset = int((await future).offset)
        offsets.append(offset)
    return offsets


def _named(record: RawRecord) -> list[tuple[str, bytes]]:
    return [
        (name if isinstance(name, str) else name.decode(), value) for name, value in record.headers
    ]


def _raw(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode()

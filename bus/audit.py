"""Audit trail: one ``AuditRecord`` per release decision of a bridge.

The bridge writes every decision, forwarded or denied, to the ``bus.audit`` topic of the
*source* cluster, so that the owner of the data can always answer "what left, to whom, and
why". A record holds ids, agencies, the rule and its reason, and where the event was read
(topic, partition, offset): never the event's contents. The strings that may quote input (the
policy's reason can list the event's ``releasable_to`` or the unsigned hop path; the origin is
the event's own) are bounded (``MAX_REASON_LENGTH``, ``bus._quote``), so an audit record stays a
few KiB whatever the event holds.

::

    decision = policy.decide(request)
    record = audit_record(decision, request, position=position, bridge_id="interpol->europol/0")
    producer.send(config.topics.audit, key=audit_key(record), value=encode_audit_record(record))

For the bridge's hot path, ``encode_audit`` returns the key and value of the same record from
its fields without building the dict (several times cheaper: docs/performance.md).

The value is the Avro single-object encoding of ``schemas/AuditRecord.v1.avsc``
(``bus.audit.AuditRecord``), through the shared schema store. Keying by event id keeps every
decision about one event in one partition, in order.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

from bus._quote import bounded
from bus.codec import SchemaStore, default_store
from bus.errors import EventError
from bus.policy import Decision, ReleaseRequest

__all__ = [
    "AUDIT_RECORD",
    "MAX_REASON_LENGTH",
    "FORWARDED",
    "DENIED",
    "SourcePosition",
    "audit_record",
    "audit_key",
    "encode_audit_record",
    "encode_audit",
    "decode_audit_record",
]

AUDIT_RECORD: Final = "bus.audit.AuditRecord"
"""Full Avro name of the audit record schema."""
FORWARDED: Final = "FORWARDED"
"""``decision`` of an event the policy allowed and the bridge forwarded."""
DENIED: Final = "DENIED"
"""``decision`` of an event the policy refused."""
MAX_REASON_LENGTH: Final = 1000
"""``reason`` is cut to this many characters, ``origin`` to 200 (``bus._quote.bounded``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcePosition:
    """Where on the source cluster the bridge read the event it decided on."""

    topic: str
    partition: int
    offset: int

    def __post_init__(self) -> None:
        if not self.topic:
            raise ValueError("SourcePosition.topic must not be empty")
        if self.partition < 0 or self.offset < 0:
            raise ValueError(
                f"{self.topic}: partition {self.partition} and offset {self.offset} "
                "must not be negative"
            )


def audit_record(
    decision: Decision,
    request: ReleaseRequest,
    *,
    position: SourcePosition,
    bridge_id: str,
    decided_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``AuditRecord`` (as the dict fastavro writes) for ``decision`` about ``request``.

    ``decided_at`` defaults to ``request.now``, the instant the policy decided at. Raises
    :class:`~bus.errors.EventError` when the event id is not a UUID or ``bridge_id`` is empty.
    """
    if not bridge_id:
        raise EventError("audit record: bridge_id must not be empty")
    try:
        event_id = str(uuid.UUID(request.event_id))
    except ValueError:
        raise EventError(
            f"audit record at {position.topic}/{position.partition}@{position.offset}: "
            "event_id is not a UUID"
        ) from None
    moment = decided_at if decided_at is not None else request.now
    if moment.utcoffset() is None:
        raise EventError("audit record: decided_at must be timezone-aware")
    return {
        "event_id": event_id,
        "origin": bounded(request.origin),
        "source": request.source,
        "destination": request.destination,
        "decision": FORWARDED if decision.allowed else DENIED,
        "rule": str(decision.rule),
        "reason": bounded(decision.reason, MAX_REASON_LENGTH),
        "decided_at": moment,
        "source_topic": position.topic,
        "source_partition": position.partition,
        "source_offset": position.offset,
        "bridge_id": bridge_id,
    }


def audit_key(record: dict[str, Any]) -> bytes:
    """The Kafka key of an audit record: its event id, so one event's decisions stay in order."""
    return str(record["event_id"]).encode("ascii")


def encode_audit_record(record: dict[str, Any], *, store: SchemaStore | None = None) -> bytes:
    """The Kafka value of ``record``: Avro single-object encoding of ``AuditRecord``.

    Raises :class:`~bus.errors.EventError` naming the field that does not fit the schema.
    """
    return (store or default_store()).encode(AUDIT_RECORD, record)


def decode_audit_record(
    value: bytes | memoryview, *, store: SchemaStore | None = None
) -> dict[str, Any]:
    """Decode a value of the ``bus.audit`` topic (``WireError`` subclasses on bad bytes)."""
    return (store or default_store()).decode(value, AUDIT_RECORD)


# The layout ``encode_audit`` writes by hand (Parsing Canonical Form of AuditRecord v1).
_LAYOUT: Final = (
    '{"name":"bus.audit.AuditRecord","type":"record","fields":['
    '{"name":"event_id","type":"string"},{"name":"origin","type":"string"},'
    '{"name":"source","type":"string"},{"name":"destination","type":"string"},'
    '{"name":"decision","type":{"name":"bus.audit.AuditDecision","type":"enum",'
    '"symbols":["FORWARDED","DENIED"]}},{"name":"rule","type":"string"},'
    '{"name":"reason","type":"string"},{"name":"decided_at","type":"long"},'
    '{"name":"source_topic","type":"string"},{"name":"source_partition","type":"int"},'
    '{"name":"source_offset","type":"long"},{"name":"bridge_id","type":"string"}]}'
)
_UUID_TEXT: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MIDDLES: Final = 4096
"""Most encoded (origin, source, destination, decision) runs ``encode_audit`` remembers."""


def encode_audit(
    decision: Decision,
    *,
    event_id: str,
    origin: str,
    source: str,
    destination: str,
    position: SourcePosition,
    bridge_id: str,
    decided_at: datetime,
    store: SchemaStore | None = None,
) -> tuple[bytes, bytes]:
    """The Kafka key and value of the audit record of ``decision`` about event ``event_id``.

    The same bytes as ``audit_key`` and ``encode_audit_record`` of ``audit_record(...)`` with
    these fields, and the same ``EventError``s, built without the dict: the record's fields are
    written in place, and the run that is the same for every event with one decision (origin,
    source, destination, decision, rule, reason) is encoded once and remembered (at most 4,096
    runs). A store whose newest ``AuditRecord`` has another layout goes through the dict.
    """
    if not bridge_id:
        raise EventError("audit record: bridge_id must not be empty")
    if type(event_id) is not str or not _UUID_TEXT.match(event_id):
        try:
            event_id = str(uuid.UUID(event_id))
        except (ValueError, TypeError, AttributeError):
            raise EventError(
                f"audit record at {position.topic}/{position.partition}@{position.offset}: "
                "event_id is not a UUID"
            ) from None
    if decided_at.utcoffset() is None:
        raise EventError("audit record: decided_at must be timezone-aware")
    # The same bounds as ``audit_record``: a reason may quote unsigned input at any length.
    origin = bounded(origin)
    if len(decision.reason) > MAX_REASON_LENGTH:
        decision = replace(decision, reason=bounded(decision.reason, MAX_REASON_LENGTH))
    writer = _writer(store or default_store())
    key = event_id.encode("ascii")
    if writer is None:
        record = {
            "event_id": event_id,
            "origin": origin,
            "source": source,
            "destination": destination,
            "decision": FORWARDED if decision.allowed else DENIED,
            "rule": str(decision.rule),
            "reason": decision.reason,
            "decided_at": decided_at,
            "source_topic": position.topic,
            "source_partition": position.partition,
            "source_offset": position.offset,
            "bridge_id": bridge_id,
        }
        return key, encode_audit_record(record, store=store)
    return key, writer.encode(
        decision,
        key,
        origin,
        source,
        destination,
        position,
        bridge_id,
        decided_at,
    )


class _Writer:
    """Writes ``AuditRecord`` v1 by hand; remembers the encoded run of each decision."""

    __slots__ = ("_header", "_lock", "_middles")

    def __init__(self, header: bytes) -> None:
        self._header = header
        self._middles: dict[tuple[str, str, str, Decision], bytes] = {}
        self._lock = threading.Lock()

    def encode(
        self,
        decision: Decision,
        event_id: bytes,
        origin: str,
        source: str,
        destination: str,
        position: SourcePosition,
        bridge_id: str,
        decided_at: datetime,
    ) -> bytes:
        run_key = (origin, source, destination, decision)
        middle = self._middles.get(run_key)
        if middle is None:
            middle = b"".join(
                (
                    _string(origin),
                    _string(source),
                    _string(destination),
                    _long(0 if decision.allowed else 1),  # AuditDecision's symbol index
                    _string(str(decision.rule)),
                    _string(decision.reason),
                )
            )
            with self._lock:
                if len(self._middles) >= _MIDDLES:
                    self._middles.clear()  # reasons name expiry times: one-offs, let them go
                self._middles[run_key] = middle
        delta = decided_at - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return b"".join(
            (
                self._header,
                _long(len(event_id)),
                event_id,
                middle,
                _long(micros),
                _string(position.topic),
                _long(position.partition),
                _long(position.offset),
                _string(bridge_id),
            )
        )


@cache
def _writer(store: SchemaStore) -> _Writer | None:
    latest = store.latest(AUDIT_RECORD)
    return _Writer(latest.header) if latest.canonical_form == _LAYOUT else None


_SMALL: Final = tuple(bytes((n << 1,)) for n in range(64))  # lengths, partitions: one byte


def _long(value: int) -> bytes:
    """An Avro ``int`` or ``long``: zig-zag, then 7 bits per byte, low first."""
    if 0 <= value < 64:
        return _SMALL[value]
    value = (value << 1) ^ (value >> 63)
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _long(len(data)) + data

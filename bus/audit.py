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

The value is the Avro single-object encoding of ``schemas/AuditRecord.v1.avsc``
(``bus.audit.AuditRecord``), through the shared schema store. Keying by event id keeps every
decision about one event in one partition, in order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
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

"""What the bridge does with one source record: forward it, deny it, or quarantine it.

Pure: no Kafka, no clock (``now`` is given), so it is tested without a broker and can run in a
worker thread. The order is the design's: verify the bytes as received, then decode, then ask
the policy. Nothing that fails verification is ever decided on, let alone forwarded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bus._revisions import EventIdentity
from bus.audit import SourcePosition, audit_key, audit_record, encode_audit_record
from bus.bridge._hops import path_of
from bus.envelope import open_
from bus.errors import EventError, EventRejected, RecordRejected, TruncatedRecord
from bus.policy import Decision, ReleasePolicy, ReleaseRequest
from bus.records import SourceRecord
from bus.trust import KeyResolver

__all__ = ["Outcome", "Verdict", "judge"]


class Outcome(enum.Enum):
    FORWARD = "forward"
    DENY = "deny"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The bridge's decision about one source record, with what to write about it."""

    record: SourceRecord = field(repr=False)
    outcome: Outcome
    decision: Decision | None = None
    """The policy's decision (FORWARD and DENY)."""
    error: RecordRejected | None = None
    """Why the record is quarantined (QUARANTINE)."""
    audit_key: bytes | None = field(default=None, repr=False)
    audit_value: bytes | None = field(default=None, repr=False)
    """The encoded ``AuditRecord`` (FORWARD and DENY)."""
    created_at: datetime | None = None
    """The event's creation time, for the end-to-end latency of forwarded events."""
    identity: EventIdentity | None = None
    """Which version of which event it is (FORWARD and DENY), for replays and rollbacks."""


def judge(
    record: SourceRecord,
    *,
    trust: KeyResolver,
    policy: ReleasePolicy,
    source: str,
    destination: str,
    bridge_id: str,
    now: datetime,
    max_size: int,
) -> Verdict:
    """Verify, decode and decide one record of ``source``'s cluster bound for ``destination``."""
    where = f"{record.topic}/{record.partition}@{record.offset}"
    if record.value is None:
        return _quarantine(record, TruncatedRecord(f"{where}: the record has no value"))
    try:
        verified = open_(record.value, trust, max_size=max_size)
        request = ReleaseRequest.from_event(
            verified.event,
            source=source,
            destination=destination,
            path=path_of(record.headers),
            now=now,
        )
        decision = policy.decide(request)
        identity = EventIdentity.of(verified.event, verified.event_bytes)
        audit: dict[str, Any] = audit_record(
            decision,
            request,
            position=SourcePosition(
                topic=record.topic, partition=record.partition, offset=record.offset
            ),
            bridge_id=bridge_id,
            decided_at=now,
        )
    except RecordRejected as exc:
        return _quarantine(record, exc)
    except EventError as exc:
        # Verified, but not an event the policy can decide on: refuse it, never guess.
        return _quarantine(record, EventRejected(f"{where}: {exc}"))
    return Verdict(
        record=record,
        outcome=Outcome.FORWARD if decision.allowed else Outcome.DENY,
        decision=decision,
        audit_key=audit_key(audit),
        audit_value=encode_audit_record(audit),
        created_at=verified.event["created_at"],
        identity=identity,
    )


def _quarantine(record: SourceRecord, error: RecordRejected) -> Verdict:
    return Verdict(record=record, outcome=Outcome.QUARANTINE, error=error)

"""What the bridge does with one source record: forward it, deny it, or quarantine it.

Pure: no Kafka, no clock (``now`` is given), so it is tested without a broker and can run in a
worker thread. The order is the design's: verify the bytes as received, then decode, then
validate the event (``bus.events.validate``), then ask the policy. Nothing that fails
verification or validation is ever decided on, let alone forwarded; the policy sees verified
facts only (the hop path is derived from the signed origin, never read from a header).

No exception escapes ``judge``: anything unexpected raised while judging one record (a bug, or
a library failing on hostile input) quarantines that record as ``UnexpectedFailure`` (reason
``internal-error``) and is logged once with its traceback. Cancellation and
``KeyboardInterrupt`` are not ``Exception``s and are never caught.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bus._revisions import EventIdentity
from bus.audit import SourcePosition, encode_audit
from bus.batch import RootCache, shared_roots
from bus.bridge._hops import verified_path
from bus.envelope import open_
from bus.errors import (
    EventError,
    EventRejected,
    RecordRejected,
    TruncatedRecord,
    UnexpectedFailure,
)
from bus.events import validate
from bus.policy import Decision, Policy, ReleasePolicy, ReleaseRequest
from bus.records import SourceRecord, unreadable_error
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, KeyResolver

__all__ = ["Outcome", "Verdict", "judge"]

log = logging.getLogger("bus.bridge")


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
    event: dict[str, Any] | None = field(default=None, repr=False)
    """The verified and validated event (FORWARD and DENY): the mirrored record's key and
    headers are rebuilt from it, never copied from the source record."""
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
    key_grace: timedelta = DEFAULT_GRACE,
    max_clock_skew: timedelta = DEFAULT_MAX_SKEW,
    roots: RootCache | None = None,
) -> Verdict:
    """Verify, decode, validate and decide one record of ``source``'s cluster bound for
    ``destination``. Never raises ``Exception``: what fails is a QUARANTINE verdict.

    ``now`` is the bridge's clock: the policy decides by it, and keys are judged by it too
    (``key_grace``, ``max_clock_skew``: see ``envelope.open_``). ``roots`` keeps the batch
    signatures already verified (default: the per-process ``bus.batch.shared_roots()``); it
    is safe to share between the threads that judge.
    """
    where = f"{record.topic}/{record.partition}@{record.offset}"
    unreadable = unreadable_error(record)
    if unreadable is not None:
        return _quarantine(record, unreadable)
    if record.value is None:
        return _quarantine(record, TruncatedRecord(f"{where}: the record has no value"))
    stage = "verifying"
    try:
        verified = open_(
            record.value,
            trust,
            now=now,
            grace=key_grace,
            max_skew=max_clock_skew,
            max_size=max_size,
            roots=shared_roots() if roots is None else roots,
        )
        event = verified.event
        stage = "validating"
        validate(event)
        stage = "deciding"
        path = verified_path(origin=verified.agency, source=source)
        if isinstance(policy, Policy):  # remembers decisions by markings: the same answers
            decision = policy.decide_event(
                event, source=source, destination=destination, path=path, now=now
            )
        else:
            decision = policy.decide(
                ReleaseRequest.from_event(
                    event, source=source, destination=destination, path=path, now=now
                )
            )
        identity = EventIdentity.of(event, verified.event_bytes)
        stage = "auditing"
        key, value = encode_audit(
            decision,
            event_id=event["event_id"],
            origin=verified.agency,
            source=source,
            destination=destination,
            position=SourcePosition(
                topic=record.topic, partition=record.partition, offset=record.offset
            ),
            bridge_id=bridge_id,
            decided_at=now,
        )
        verdict = Verdict(
            record=record,
            outcome=Outcome.FORWARD if decision.allowed else Outcome.DENY,
            decision=decision,
            audit_key=key,
            audit_value=value,
            created_at=event["created_at"],
            event=event,
            identity=identity,
        )
    except RecordRejected as exc:
        return _quarantine(record, exc)
    except EventError as exc:
        # Verified, but not an event of the model (validation) or that the policy can decide
        # on: refuse it, never guess. The message names the field, bounded.
        return _quarantine(record, EventRejected(f"{where}: {exc}"))
    except Exception as exc:  # no exception escapes judging; BaseException is not caught
        return _quarantine(record, _unexpected(exc, where=where, stage=stage))
    return verdict


def _unexpected(exc: Exception, *, where: str, stage: str) -> UnexpectedFailure:
    """The error of a record whose judging raised ``exc``, logged once with the traceback.

    The message names the exception type and the stage, never its text: that may quote input.
    """
    log.error(
        "%s: %s raised while %s the record; it is quarantined as internal-error",
        where,
        type(exc).__name__,
        stage,
        exc_info=exc,
    )
    return UnexpectedFailure(
        f"{where}: {type(exc).__name__} raised while {stage} the record "
        "(a bug or a library failing on this input; the bridge's log has the traceback)"
    )


def _quarantine(record: SourceRecord, error: RecordRejected) -> Verdict:
    return Verdict(record=record, outcome=Outcome.QUARANTINE, error=error)

"""Replays, rollbacks and revision conflicts at the bridge: the decision after the policy.

Pure: no Kafka. The bridge keeps, per direction, which version of each event it forwarded
(``bus._revisions.RevisionIndex``, shared by the lanes of a worker). Once a batch is judged,
``screen`` looks each verified event up and changes its verdict:

- an event the policy allows whose revision was forwarded already with the same bytes is denied
  with rule ``replay``; one with a lower revision than one forwarded, with rule ``rollback``;
- any verified event (allowed or denied) with a forwarded revision's id and number but other
  bytes is quarantined as ``RevisionConflict`` (reason ``revision-conflict``);
- an allowed event of a new revision stays forwarded, and is entered into the index at once.

An entry names the source record it came from, so a record read again (a commit that did not
land, a crash between the audit and the mirror commits) meets its own entry and keeps its verdict
instead of passing for a replay of itself.

What is forwarded is kept on the destination, in ``bus.checkpoints.forwarded.<source>.<topic>``,
written in the transaction of the mirrored records (``entry_record``); ``read_entry`` reads it
back. See ``docs/decisions/0008-replays-and-revisions.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bus._revisions import EventIdentity, Position, Repeat, RevisionIndex, Seen
from bus.audit import DENIED, decode_audit_record, encode_audit_record
from bus.bridge._verdict import Outcome, Verdict
from bus.errors import CheckpointError, RevisionConflict
from bus.policy import Decision, Rule

__all__ = ["entry_record", "forwarded_topic", "read_entry", "screen"]

_MAX_ID = 100
"""Longest event id an entry may have (event ids are UUIDs: 36 characters)."""


def forwarded_topic(source: str, topic: str) -> str:
    """The destination's topic that holds which events of ``source``'s ``topic`` were forwarded
    (beside its checkpoints, ``bus.checkpoints.<source>.<topic>``)."""
    return f"bus.checkpoints.forwarded.{source}.{topic}"


def screen(
    verdicts: Sequence[Verdict], *, index: RevisionIndex, destination: str, now: datetime
) -> list[Verdict]:
    """The verdicts of a judged batch after the replay rules (module docs); enters the events
    that stay forwarded into ``index``."""
    moment = now.timestamp()
    screened = []
    for v in verdicts:
        identity = v.identity
        if identity is None or v.outcome is Outcome.QUARANTINE:
            screened.append(v)
            continue
        r = v.record
        position: Position = (r.topic, r.partition, r.offset)
        repeat, entry = index.classify(identity, now=moment)
        if entry is not None and entry.position == position and repeat is Repeat.REPLAY:
            screened.append(v)  # its own entry: the same record read again
        elif repeat is Repeat.CONFLICT:
            assert entry is not None
            screened.append(_conflict(v, identity, entry))
        elif v.outcome is not Outcome.FORWARD:
            screened.append(v)  # denied by the policy: its rule is the answer
        elif repeat is Repeat.NEW:
            index.remember(identity, now=moment, position=position)
            screened.append(v)
        else:
            assert entry is not None
            screened.append(_deny(v, identity, entry, repeat, destination))
    return screened


def _where(entry: Seen) -> str:
    if entry.position is None:
        return ""
    topic, partition, offset = entry.position
    return f" (from {topic}/{partition}@{offset})"


def _deny(
    v: Verdict, identity: EventIdentity, entry: Seen, repeat: Repeat, destination: str
) -> Verdict:
    if repeat is Repeat.REPLAY:
        rule = Rule.REPLAY
        reason = (
            f"revision {identity.revision} of the event was already forwarded to "
            f"{destination}{_where(entry)}: a replay"
        )
    else:
        rule = Rule.ROLLBACK
        reason = (
            f"revision {identity.revision} is older than revision {entry.revision} already "
            f"forwarded to {destination}{_where(entry)}: a rollback"
        )
    decision = Decision(allowed=False, rule=rule, reason=reason)
    audit_value = v.audit_value
    if audit_value is not None:
        audit = decode_audit_record(audit_value)
        audit.update(decision=DENIED, rule=str(rule), reason=reason)
        audit_value = encode_audit_record(audit)
    return replace(v, outcome=Outcome.DENY, decision=decision, audit_value=audit_value)


def _conflict(v: Verdict, identity: EventIdentity, entry: Seen) -> Verdict:
    r = v.record
    error = RevisionConflict(
        f"{r.topic}/{r.partition}@{r.offset}: event {identity.event_id} revision "
        f"{identity.revision} has other signed bytes (sha256 {identity.digest.hex()[:16]}...) "
        f"than the revision already forwarded{_where(entry)} (sha256 "
        f"{entry.digest.hex()[:16]}...)"
    )
    return replace(v, outcome=Outcome.QUARANTINE, decision=None, error=error)


def entry_record(identity: EventIdentity, position: Position) -> tuple[bytes, bytes]:
    """Key and value of the record that says ``identity`` was forwarded from ``position``."""
    topic, partition, offset = position
    value = {
        "revision": identity.revision,
        "sha256": identity.digest.hex(),
        "expires_at": identity.expires_at,
        "source": {"topic": topic, "partition": partition, "offset": offset},
    }
    return identity.event_id.encode(), json.dumps(value, separators=(",", ":")).encode()


def read_entry(
    key: bytes | None, value: bytes | None, *, timestamp_ms: int, now: float, where: str
) -> tuple[str, Seen]:
    """An entry of a forwarded topic, forwarded when its record was written (``timestamp_ms``;
    ``now`` if it has none); ``CheckpointError`` naming ``where`` and the field if it is not
    one (never the value)."""
    try:
        event_id = (key or b"").decode("utf-8")
        raw: Any = json.loads(value or b"")
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{where}: not a forwarded-event entry (not JSON)") from None
    if not 0 < len(event_id) <= _MAX_ID or not isinstance(raw, dict):
        raise CheckpointError(f"{where}: not a forwarded-event entry (no key or not an object)")
    try:
        revision = raw["revision"]
        digest = bytes.fromhex(raw["sha256"])
        expires_at = raw["expires_at"]
        source = raw["source"]
        position = (source["topic"], source["partition"], source["offset"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{where}: not a forwarded-event entry (a field is missing)"
        ) from None
    valid = (
        isinstance(revision, int)
        and not isinstance(revision, bool)
        and revision >= 1
        and len(digest) == 32
        and (expires_at is None or isinstance(expires_at, int | float))
        and isinstance(position[0], str)
        and all(isinstance(n, int) and n >= 0 for n in position[1:])
    )
    if not valid:
        raise CheckpointError(f"{where}: not a forwarded-event entry (a field is malformed)")
    seen_at = timestamp_ms / 1000 if timestamp_ms >= 0 else now
    return event_id, Seen(
        revision=revision,
        digest=digest,
        expires_at=float(expires_at) if expires_at is not None else None,
        seen_at=seen_at,
        position=position,
    )

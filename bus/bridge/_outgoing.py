"""What a lane writes for one batch: the records of its source log and of its destination log.

Pure: no Kafka client, no clock (``now`` is given). Given the verdicts of a batch and the lane's
checkpoints, it says which records each log commits, so that each record of the source is
audited exactly once and mirrored exactly once:

- the source log gets the audit record of every decision and a quarantine copy of every record
  that failed verification, for the records at or above its checkpoint ``audited_until``;
- the destination log gets every released record at or above its checkpoint ``next_offset``:
  the value byte for byte (the origin's signature), the key and the CloudEvents headers rebuilt
  from the verified event, and the bridge's own hop headers (``_hops``). Nothing else of the
  source record crosses: not its key, its other headers or its timestamp.
  In the same transaction, an entry per released event in the forwarded topic
  (``_replays``): what the direction has forwarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bus.bridge._hops import mirrored_headers
from bus.bridge._replays import entry_record, forwarded_topic
from bus.bridge._verdict import Outcome, Verdict
from bus.bridge.settings import BridgeSettings
from bus.headers import event_key
from bus.records import quarantine_copy

__all__ = ["Outgoing", "destination_log_records", "source_log_records"]

_QUARANTINE_HEADROOM = 8192
"""Bytes kept free for the reason headers when a rejected value is copied to quarantine."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One record to write in a transaction."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def source_log_records(
    verdicts: Sequence[Verdict],
    *,
    audited_until: int,
    settings: BridgeSettings,
    audit_partition: int,
    quarantine_partition: int,
    now: datetime,
) -> list[Outgoing]:
    """The audit record of each decision and each quarantined record, for the source.

    Only records at or above ``audited_until``: the ones below were audited before a crash or a
    failover. ``audit_partition`` and ``quarantine_partition``: where the source partition's
    trail goes, so that it stays in order.
    """
    s = settings
    records = []
    for v in verdicts:
        r = v.record
        if r.offset < audited_until:
            continue  # audited before a crash or a failover: exactly once
        if v.outcome is Outcome.QUARANTINE:
            assert v.error is not None
            # Inside a transaction a too-large record cannot be retried without its value,
            # so decide up front: one that would not fit beside the headers goes without.
            copy = quarantine_copy(
                r,
                v.error,
                quarantined_at=now,
                consumer=s.bridge_id,
                omit_value=len(r.value or b"") + _QUARANTINE_HEADROOM > s.max_record_size,
            )
            records.append(
                Outgoing(
                    topic=s.topics.quarantine,
                    value=copy.value,
                    key=copy.key,
                    partition=quarantine_partition,
                    timestamp_ms=copy.timestamp_ms,
                    headers=copy.headers,
                )
            )
        else:
            records.append(
                Outgoing(
                    topic=s.topics.audit,
                    value=v.audit_value,
                    key=v.audit_key,
                    partition=audit_partition,
                )
            )
    return records


def destination_log_records(
    verdicts: Sequence[Verdict],
    *,
    next_offset: int,
    settings: BridgeSettings,
    topic: str,
    partition: int,
) -> list[Outgoing]:
    """The released records of source ``topic``/``partition``, rebuilt from what was verified,
    for the same partition of the mirrored topic on the destination.

    Only records at or above ``next_offset``, the destination's checkpoint. The value is the
    source's, byte for byte; the key and headers derive from the verified event; the timestamp
    is left to the producer (``None``): the source record's is unsigned, and a broker may
    refuse a timestamp far from its clock (``message.timestamp.after.max.ms``), which would
    wedge the lane.
    """
    s = settings
    mirror = s.mirror_topic(topic)
    records = []
    for v in verdicts:
        if v.outcome is not Outcome.FORWARD or v.record.offset < next_offset:
            continue  # below the checkpoint: mirrored before a crash, read again for the audit
        assert v.event is not None, "a FORWARD verdict carries its verified event"
        records.append(
            Outgoing(
                topic=mirror,
                value=v.record.value,
                key=event_key(v.event),
                partition=partition,
                timestamp_ms=None,
                headers=mirrored_headers(
                    v.event,
                    source=s.source.name,
                    destination=s.destination.name,
                    bridge_id=s.bridge_id,
                ),
            )
        )
    return records + forwarded_entries(
        verdicts, next_offset=next_offset, source=s.source.name, topic=topic, partition=partition
    )


def forwarded_entries(
    verdicts: Sequence[Verdict], *, next_offset: int, source: str, topic: str, partition: int
) -> list[Outgoing]:
    """What the destination must remember of the events forwarded in this transaction (one
    entry per event, ``_replays``), for the same partition of the forwarded topic."""
    state = forwarded_topic(source, topic)
    entries = []
    for v in verdicts:
        r = v.record
        if v.outcome is Outcome.FORWARD and r.offset >= next_offset and v.identity is not None:
            key, value = entry_record(v.identity, (r.topic, r.partition, r.offset))
            entries.append(Outgoing(topic=state, value=value, key=key, partition=partition))
    return entries

"""What a lane writes for one batch: the records of its source log and of its destination log.

Pure: no Kafka client, no clock (``now`` is given). Given the verdicts of a batch and the lane's
checkpoints, it says which records each log commits, so that each record of the source is
audited exactly once and mirrored exactly once:

- the source log gets the audit record of every decision and a quarantine copy of every record
  that failed verification, for the records at or above its checkpoint ``audited_until``;
- the destination log gets every released record, value byte for byte with the hop headers,
  at or above its checkpoint ``next_offset``.

Nothing it writes may exceed ``max_record_size``: inside a transaction a record the producer or
the broker refuses as too large fails the whole batch, again at every retry, and wedges the
lane. So ``admitted`` first turns every verdict whose mirrored copy or audit record would not
fit into a quarantine (``OversizedRecord``), and a quarantine copy is the first of its forms that
fits (``bus.records.quarantine_copy``: whole, without its value, or a bounded dead letter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bus.bridge._hops import forwarded_headers
from bus.bridge._verdict import Outcome, Verdict
from bus.bridge.settings import BridgeSettings
from bus.errors import OversizedRecord
from bus.records import quarantine_copy, record_size

__all__ = ["Outgoing", "admitted", "destination_log_records", "source_log_records"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One record to write in a transaction."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()

    @property
    def size(self) -> int:
        """An upper bound of its size on the wire (``bus.records.record_size``)."""
        return record_size(self.key, self.value, self.headers)


def admitted(verdicts: Sequence[Verdict], *, settings: BridgeSettings) -> list[Verdict]:
    """``verdicts``, with each one whose mirrored copy or audit record would exceed
    ``max_record_size`` turned into a quarantine (``OversizedRecord``): never forwarded, never
    retried for ever. Deterministic, so both logs of a lane see the same verdicts."""
    s = settings
    result = []
    for v in verdicts:
        too_large: str | None = None
        if v.outcome is Outcome.FORWARD:
            size = _mirrored(v, s, topic=v.record.topic, partition=v.record.partition).size
            if size > s.max_record_size:
                too_large = f"its mirrored copy would be {size} bytes"
        if too_large is None and v.outcome is not Outcome.QUARANTINE:
            size = record_size(v.audit_key, v.audit_value, ())
            if size > s.max_record_size:
                too_large = f"its audit record would be {size} bytes"
        if too_large is None:
            result.append(v)
            continue
        r = v.record
        error = OversizedRecord(
            f"{r.topic}/{r.partition}@{r.offset}: {too_large}, over the bridge's limit of "
            f"{s.max_record_size} bytes (max_record_size); not forwarded"
        )
        result.append(
            dataclasses.replace(
                v,
                outcome=Outcome.QUARANTINE,
                error=error,
                decision=None,
                audit_key=None,
                audit_value=None,
            )
        )
    return result


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
            # Inside a transaction a too-large record fails the batch at every retry, so
            # decide up front: the first form of the copy that fits.
            copy = quarantine_copy(
                r,
                v.error,
                quarantined_at=now,
                consumer=s.bridge_id,
                max_size=s.max_record_size,
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
    """The released records of source ``topic``/``partition``, byte for byte with the hop
    headers, for the same partition of the mirrored topic on the destination.

    Only records at or above ``next_offset``, the destination's checkpoint.
    """
    return [
        _mirrored(v, settings, topic=topic, partition=partition)
        for v in verdicts
        # Below the checkpoint: mirrored before a crash, read again only to be audited.
        if v.outcome is Outcome.FORWARD and v.record.offset >= next_offset
    ]


def _mirrored(v: Verdict, s: BridgeSettings, *, topic: str, partition: int) -> Outgoing:
    """The mirrored copy of a released record of source ``topic``."""
    return Outgoing(
        topic=s.mirror_topic(topic),
        value=v.record.value,
        key=v.record.key,
        partition=partition,
        timestamp_ms=v.record.timestamp if v.record.timestamp >= 0 else None,
        headers=forwarded_headers(
            v.record.headers,
            source=s.source.name,
            destination=s.destination.name,
            bridge_id=s.bridge_id,
        ),
    )

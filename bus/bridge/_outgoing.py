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

from bus.audit_chain import ChainHead, link
from bus.bridge._hops import mirrored_headers
from bus.bridge._replays import entry_record, forwarded_topic
from bus.bridge._verdict import Outcome, Verdict
from bus.bridge.settings import BridgeSettings
from bus.errors import OversizedRecord
from bus.headers import event_key
from bus.records import quarantine_copy, record_size
from bus.signing import Signer

__all__ = [
    "Outgoing",
    "admitted",
    "chain_audit_records",
    "destination_log_records",
    "source_log_records",
]


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


def chain_audit_records(
    records: Sequence[Outgoing],
    *,
    audit_topic: str,
    chain: str,
    head: ChainHead,
    signer: Signer | None,
) -> tuple[list[Outgoing], ChainHead]:
    """``records`` with the audit records (those of ``audit_topic``) chained after ``head``
    in their order, the last one signed (``bus.audit_chain.link``); and the chain's new head,
    which the transaction's checkpoint keeps. Other records pass unchanged."""
    audits = [r for r in records if r.topic == audit_topic and r.value is not None]
    if not audits:
        return list(records), head
    values, new_head = link(
        (r.value for r in audits if r.value is not None), chain=chain, head=head, signer=signer
    )
    chained = dict(zip(map(id, audits), values, strict=True))
    return [
        dataclasses.replace(r, value=chained[id(r)]) if id(r) in chained else r for r in records
    ], new_head


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
    records = [
        _mirrored(v, settings, topic=topic, partition=partition)
        for v in verdicts
        # Below the checkpoint: mirrored before a crash, read again only to be audited.
        if v.outcome is Outcome.FORWARD and v.record.offset >= next_offset
    ]
    return records + forwarded_entries(
        verdicts,
        next_offset=next_offset,
        source=settings.source.name,
        topic=topic,
        partition=partition,
    )


def _mirrored(v: Verdict, s: BridgeSettings, *, topic: str, partition: int) -> Outgoing:
    """The mirrored copy of a released record of source ``topic``: the value byte for byte, the
    key and headers rebuilt from the verified event, the producer's own timestamp."""
    assert v.event is not None, "a FORWARD verdict carries its verified event"
    return Outgoing(
        topic=s.mirror_topic(topic),
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

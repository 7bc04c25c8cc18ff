"""Fetching that no single record can stop.

aiokafka parses each record as it hands it out of ``getmany``. A record that it cannot parse (a
header name that is not UTF-8 is one that any client can write) raises from ``getmany`` every
time, at the same position, for ever: the consumer is wedged. Worse, the records that the same
call had already drained from other partitions are lost with the exception, although their
positions have moved on.

``fetch`` is ``getmany`` that survives this. It notes every partition's position before the
call; when the call raises anything but a Kafka error (or cancellation), it seeks every
partition back to that position and reads each one a record at a time. A position that fails
twice in a row is the record's fault: it is returned as an ``Unreadable`` stand-in (topic,
partition, offset and the error; no key, value or headers, since none could be read), and the
partition moves on past it. Callers quarantine the stand-in like any rejected record, so the
skip is recorded, never silent.

The offset of a stand-in is where reading failed: the unreadable record, or a transaction marker
just before it (markers are not records, so the next stand-in then names the record itself).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from bus.errors import UnreadableRecord

__all__ = ["Unreadable", "fetch"]

log = logging.getLogger("bus.fetch")

_PROBE_LIMIT = 500
"""Records read one at a time per partition while looking for an unreadable one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unreadable:
    """Stands in for a record the Kafka client could not read; quarantine it with ``error``.

    It has the shape of a consumer record (``bus.quarantine.SourceRecord``) with nothing but
    its coordinates.
    """

    topic: str
    partition: int
    offset: int
    error: UnreadableRecord = field(repr=False)
    timestamp: int = -1
    key: None = None
    value: None = None
    headers: tuple[tuple[str, bytes], ...] = ()


async def fetch(
    consumer: AIOKafkaConsumer,
    *,
    timeout_ms: int,
    max_records: int | None = None,
    partitions: Collection[TopicPartition] | None = None,
) -> dict[TopicPartition, Sequence[Any]]:
    """``consumer.getmany(*partitions, timeout_ms=..., max_records=...)``, past any unreadable
    record; ``partitions`` None: every assigned partition (an empty collection: none).

    Kafka errors and cancellation propagate as they do from ``getmany``; anything else raised
    while records are parsed is turned into ``Unreadable`` stand-ins in the partition's list, at
    the position where it was found.
    """
    if partitions is not None and not partitions:
        return {}
    before = await _positions(consumer, partitions)
    only = () if partitions is None else tuple(partitions)
    try:
        return dict(await consumer.getmany(*only, timeout_ms=timeout_ms, max_records=max_records))
    except KafkaError:
        raise
    except Exception as exc:  # anything the client raised while parsing records
        log.warning(
            "the Kafka client failed while reading %s (%s); reading them one record at a time",
            ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(before)) or "nothing",
            type(exc).__name__,
        )
    for tp, position in before.items():
        # Undo what the failed call drained and lost: every partition restarts where it was.
        consumer.seek(tp, position)
    result: dict[TopicPartition, Sequence[Any]] = {}
    for tp, position in before.items():
        records = await _probe(consumer, tp, position, timeout_ms=timeout_ms)
        if records:
            result[tp] = records
    return result


async def _positions(
    consumer: AIOKafkaConsumer, partitions: Collection[TopicPartition] | None
) -> dict[TopicPartition, int]:
    paused = consumer.paused()
    positions = {}
    for tp in consumer.assignment():
        if tp in paused or (partitions is not None and tp not in partitions):
            continue
        try:
            positions[tp] = await consumer.position(tp)
        except IllegalStateError:
            continue  # revoked meanwhile: nothing of it will be returned
    return positions


async def _probe(
    consumer: AIOKafkaConsumer, tp: TopicPartition, position: int, *, timeout_ms: int
) -> list[Any]:
    """Read ``tp`` one record at a time from ``position``; stop at the first unreadable one."""
    records: list[Any] = []
    failed_once = False
    while len(records) < _PROBE_LIMIT:
        try:
            batch = await consumer.getmany(tp, timeout_ms=timeout_ms, max_records=1)
        except KafkaError:
            raise
        except Exception as exc:
            consumer.seek(tp, position)
            if not failed_once:
                failed_once = True  # only a failure that repeats in place is the record's
                continue
            where = f"{tp.topic}/{tp.partition}@{position}"
            log.warning("%s: the Kafka client cannot read this record; skipping it", where)
            records.append(
                Unreadable(
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=position,
                    error=UnreadableRecord(
                        f"{where}: the Kafka client cannot read this record "
                        f"({type(exc).__name__}); it was skipped"
                    ),
                )
            )
            consumer.seek(tp, position + 1)
            break
        got = batch.get(tp, ())
        if not got:
            break
        records.extend(got)
        position = got[-1].offset + 1
        failed_once = False
    return records

"""The quarantine writer: where records that cannot be accepted go, with the reason, never dropped.

``Quarantine.put(record, error)`` writes a rejected record to the quarantine topic
(``bus.quarantine``) of the cluster the given producer talks to, and returns only once the
cluster has acknowledged it: a consumer commits past the rejected record only after that. What
it writes is ``bus.records.quarantine_copy``: the original key, value bytes, timestamp and
headers, plus the reason headers.

Reading the quarantine back (``read_quarantined``, ``QuarantinedRecord``) is pure and lives in
``bus.records``; both names are re-exported here, where users of ``bus.quarantine`` found them.

The quarantine is independent of the subscriber: the bridge writes the same records (in its
own transactions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from bus._kafka import translated
from bus.envelope import DEFAULT_MAX_SIZE
from bus.errors import PublishError, RecordRejected
from bus.metrics import QuarantineMetrics
from bus.records import (
    CopyForm,
    QuarantineCopy,
    QuarantinedRecord,
    SourceRecord,
    quarantine_copy,
    read_quarantined,
)

__all__ = [
    "Quarantined",
    "Quarantine",
    # re-exported from bus.records
    "QuarantinedRecord",
    "read_quarantined",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantined:
    """Where a rejected record was quarantined, and why."""

    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    topic: str
    partition: int
    offset: int


class Quarantine:
    """Writes rejected records to the quarantine topic through a started producer it does not own.

    ``agency`` labels the metrics; ``consumer`` (a group id, a bridge name) goes into the
    ``bus_consumer`` header. The producer should be idempotent with ``acks="all"``.
    """

    __slots__ = ("_agency", "_consumer", "_max_size", "_metrics", "_producer", "topic")

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        topic: str,
        agency: str,
        consumer: str | None = None,
        registry: CollectorRegistry | None = None,
        max_record_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._producer = producer
        self._max_size = max_record_size
        self.topic = topic
        self._agency = agency
        self._consumer = consumer
        self._metrics = QuarantineMetrics.on(registry)

    async def _send(self, copy: QuarantineCopy) -> Any:
        future = await self._producer.send(
            self.topic,
            copy.value,
            key=copy.key,
            timestamp_ms=copy.timestamp_ms,
            headers=copy.headers,
        )
        return await future

    async def put(self, record: SourceRecord, error: RecordRejected) -> Quarantined:
        """Write ``record`` with the reason of ``error``; return once the cluster has it.

        The copy is the first form of ``bus.records.quarantine_copy`` that fits under
        ``max_record_size`` (whole, without the value, or a dead letter with sizes and digests
        only); if the cluster still finds it too large (its topic's limit is lower), the dead
        letter is sent. The original stays in the source topic for its retention. Raises
        ``PublishError`` naming the source record if the cluster does not take it: then the
        caller must not commit past it.
        """
        with translated(
            f"could not quarantine {record.topic}/{record.partition}@{record.offset} "
            f"({error.reason}) to topic {self.topic}",
            error=PublishError,
        ):
            quarantined_at = datetime.now(UTC)
            copy = quarantine_copy(
                record,
                error,
                quarantined_at=quarantined_at,
                consumer=self._consumer,
                max_size=self._max_size,
            )
            while True:
                try:
                    metadata = await self._send(copy)
                    break
                except MessageSizeTooLargeError:
                    if copy.form is CopyForm.DEAD_LETTER:
                        raise
                    # The topic's limit is lower than ours: the next smaller form.
                    copy = quarantine_copy(
                        record,
                        error,
                        quarantined_at=quarantined_at,
                        consumer=self._consumer,
                        max_size=copy.size - 1,
                    )
        self._metrics.quarantined.labels(self._agency, record.topic, error.reason).inc()
        return Quarantined(
            reason=error.reason,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            topic=metadata.topic,
            partition=metadata.partition,
            offset=metadata.offset,
        )

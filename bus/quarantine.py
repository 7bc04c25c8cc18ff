"""The quarantine: where records that cannot be accepted go, with the reason, never dropped.

``Quarantine.put(record, error)`` writes a rejected record to the quarantine topic
(``bus.quarantine``) of the cluster the given producer talks to, and returns only once the
cluster has acknowledged it: a consumer commits past the rejected record only after that. The
quarantine record keeps the original key, value bytes, timestamp and headers and adds the
reason headers of ``bus.headers`` (reason code, message, source topic/partition/offset, time,
and who quarantined it).

``read_quarantined(record)`` reads a record of the quarantine topic back into a
``QuarantinedRecord`` (for ``bus tail`` and tests).

The quarantine is independent of the subscriber: the bridge uses it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from bus import headers as h
from bus._time import parse_time
from bus.errors import PublishError, RecordRejected
from bus.metrics import QuarantineMetrics

__all__ = [
    "SourceRecord",
    "Quarantined",
    "Quarantine",
    "QuarantineCopy",
    "quarantine_copy",
    "QuarantinedRecord",
    "read_quarantined",
]


class SourceRecord(Protocol):
    """What the quarantine needs of a rejected record (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Iterable[tuple[str, bytes]]: ...


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

    __slots__ = ("_agency", "_consumer", "_metrics", "_producer", "topic")

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        topic: str,
        agency: str,
        consumer: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._agency = agency
        self._consumer = consumer
        self._metrics = QuarantineMetrics.on(registry)

    async def _send(self, record: SourceRecord, error: RecordRejected, *, omit_value: bool) -> Any:
        copy = quarantine_copy(
            record,
            error,
            quarantined_at=datetime.now(UTC),
            consumer=self._consumer,
            omit_value=omit_value,
        )
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

        A value too large for the quarantine topic together with the reason headers (an
        ``OversizedRecord``, say) is left out, and ``bus_value_omitted`` gives its size: the
        original stays in the source topic for its retention. Raises ``PublishError`` naming the
        source record if the cluster does not take it: then the caller must not commit past it.
        """
        try:
            try:
                metadata = await self._send(record, error, omit_value=False)
            except MessageSizeTooLargeError:
                metadata = await self._send(record, error, omit_value=True)
        except KafkaError as exc:
            raise PublishError(
                f"could not quarantine {record.topic}/{record.partition}@{record.offset} "
                f"({error.reason}) to topic {self.topic}: {type(exc).__name__}: {exc}"
            ) from exc
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


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineCopy:
    """What goes to the quarantine topic for one rejected record."""

    key: bytes | None
    value: bytes | None = field(repr=False)
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(repr=False)


def quarantine_copy(
    record: SourceRecord,
    error: RecordRejected,
    *,
    quarantined_at: datetime,
    consumer: str | None,
    omit_value: bool,
) -> QuarantineCopy:
    """The quarantine record of ``record``: its key, value (unless ``omit_value``, then
    ``bus_value_omitted`` gives the size), timestamp and headers, plus the reason headers."""
    value = None if omit_value else record.value
    headers = h.quarantine_headers(
        record.headers,
        reason=error.reason,
        error=str(error),
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        quarantined_at=quarantined_at,
        consumer=consumer,
        value_omitted=len(record.value or b"") if omit_value else None,
    )
    # A record with neither key nor value (possible on the wire) still needs a record here.
    key = record.key if record.key is not None or value is not None else b""
    timestamp = record.timestamp if record.timestamp >= 0 else None
    return QuarantineCopy(key=key, value=value, timestamp_ms=timestamp, headers=headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantinedRecord:
    """A record read from the quarantine topic, with its reason headers parsed."""

    reason: str
    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    quarantined_at: datetime
    consumer: str | None
    value_omitted: int | None
    """The original value's size when it was too large to copy (then ``value`` is None)."""
    key: bytes | None = field(repr=False)
    value: bytes | None = field(repr=False)
    timestamp: int
    original_headers: tuple[tuple[str, bytes], ...] = field(repr=False)
    """The rejected record's headers, renamed back if they were prefixed."""
    topic: str
    partition: int
    offset: int
    """Where this quarantine record is."""


def read_quarantined(record: SourceRecord) -> QuarantinedRecord:
    """Parse a quarantine record; ``ValueError`` naming the record if a reason header is wrong."""
    where = f"{record.topic}/{record.partition}@{record.offset}"
    values: dict[str, str] = {}
    original: list[tuple[str, bytes]] = []
    for name, value in record.headers or ():
        if name in h.QUARANTINE_HEADERS:
            try:
                values[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{where}: header {name} is not UTF-8") from None
        elif name.removeprefix(h.ORIGINAL_PREFIX) in h.QUARANTINE_HEADERS:
            original.append((name.removeprefix(h.ORIGINAL_PREFIX), value))
        else:
            original.append((name, value))
    required = (
        h.REASON,
        h.ERROR,
        h.SOURCE_TOPIC,
        h.SOURCE_PARTITION,
        h.SOURCE_OFFSET,
        h.QUARANTINED_AT,
    )
    missing = [name for name in required if name not in values]
    if missing:
        raise ValueError(f"{where}: not a quarantine record, headers missing: {missing}")
    try:
        partition = int(values[h.SOURCE_PARTITION])
        offset = int(values[h.SOURCE_OFFSET])
        quarantined_at = parse_time(values[h.QUARANTINED_AT])
        omitted = int(values[h.VALUE_OMITTED]) if h.VALUE_OMITTED in values else None
    except ValueError as exc:
        raise ValueError(f"{where}: malformed quarantine header: {exc}") from None
    return QuarantinedRecord(
        reason=values[h.REASON],
        error=values[h.ERROR],
        source_topic=values[h.SOURCE_TOPIC],
        source_partition=partition,
        source_offset=offset,
        quarantined_at=quarantined_at,
        consumer=values.get(h.CONSUMER),
        value_omitted=omitted,
        key=record.key,
        value=record.value,
        timestamp=record.timestamp,
        original_headers=tuple(original),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )

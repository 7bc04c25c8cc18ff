"""Verified events for your own consumers: the gate every record passes, and an aiokafka
value deserializer.

A stream processor that reads the bus with its own Kafka consumer (a plain ``AIOKafkaConsumer``
here, a Faust agent in ``bus.faust_streams``) hands each record to an ``EventGate``::

    async with open_gate(config, "europol", consumer="case-indexer") as gate:
        consumer = AIOKafkaConsumer(
            "interpol.intel.events",
            **gate.client_options(),                 # the agency's servers and mutual TLS
            group_id="case-indexer",
            isolation_level="read_committed",         # bridges write in transactions
            enable_auto_commit=False,
            value_deserializer=gate.deserializer,     # optional: verifies while fetching
        )
        await consumer.start()
        async for record in consumer:
            delivery = await gate.admit(record)       # a Delivery, or None: quarantined/skipped
            if delivery is not None:
                await index(delivery.event)
                gate.done(delivery)                   # handled: its replays are skipped
            await consumer.commit()

``admit`` judges the record as the subscriber does (``bus.verifier``: verified and decoded, v1
and batch-signed v2 alike, validated, and on a mirrored topic the release checks), and
quarantines a rejected one to ``bus.quarantine`` of the same cluster, with its original bytes
and reason, returning only once the cluster acknowledged the copy: committing after ``admit``
returned never loses a record. Transient Kafka errors while quarantining are retried with
backoff (``bus_subscriber_retries_total{stage="quarantine"}``); others raise
``PublishError``, and then the record must not be committed. Replays: the gate remembers the
events ``done`` was called for (``dedup_capacity``) and skips their duplicates and rollbacks.

aiokafka calls a value deserializer with the value bytes alone, not the topic, and from its
fetcher: it can neither apply the release checks of mirrored topics nor quarantine. So
``gate.deserializer`` never raises: it returns a ``Judged`` (the raw bytes, and the verified
event or the rejection that does not depend on the topic), which ``admit`` completes. A
``Judged`` is not a verdict on its own: only ``admit`` applies the release checks.

Limitation: a record the Kafka client itself cannot parse (a header name that is not UTF-8)
stops a plain aiokafka consumer's ``getmany`` at that position; the subscriber
(``bus.subscriber``) reads past such records (``bus._fetch``), these helpers do not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bus._kafka import client_options, is_transient, translated
from bus._quote import bounded
from bus.config import AgencySettings, Config
from bus.envelope import VerifiedEvent
from bus.errors import RecordRejected, TransportError
from bus.metrics import SubscriberMetrics
from bus.quarantine import Quarantine, Quarantined
from bus.records import SourceRecord
from bus.subscriber import Delivery, Rejection
from bus.verifier import DEFAULT_DEDUP_CAPACITY, Outcome, RecordVerifier, where

__all__ = ["EventGate", "Judged", "gate_for", "open_gate"]

log = logging.getLogger("bus.streams")

_BACKOFF_S: Final = 0.2
_MAX_BACKOFF_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Judged:
    """What ``EventGate.deserializer`` made of a record's value: the original bytes (for the
    quarantine) and the verified event or the rejection, before the topic's release checks.

    Pass the record to ``EventGate.admit``: it completes the checks and quarantines."""

    value: bytes | None = field(repr=False)
    opened: VerifiedEvent | RecordRejected


@dataclass(frozen=True, slots=True, kw_only=True)
class _Raw:
    """A record with its original value bytes (the view the quarantine copies)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def _raw(record: SourceRecord, value: bytes | None) -> _Raw:
    return _Raw(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=record.timestamp,
        key=record.key,
        value=value,
        headers=tuple(record.headers or ()),
    )


class EventGate:
    """Judges the records of your own consumer, quarantines the rejected; from ``open_gate``.

    ``on_rejected`` is called with each ``Rejection`` once it was quarantined.
    """

    def __init__(
        self,
        verifier: RecordVerifier,
        *,
        settings: AgencySettings,
        quarantine_topic: str,
        consumer: str | None,
        registry: CollectorRegistry | None = None,
        on_rejected: Callable[[Rejection], None] | None = None,
    ) -> None:
        self.verifier = verifier
        self.agency = verifier.agency
        self._settings = settings
        self._quarantine_topic = quarantine_topic
        self._consumer = consumer
        self._registry = registry
        self._metrics = SubscriberMetrics.on(registry)
        self._on_rejected = on_rejected
        self._producer: AIOKafkaProducer | None = None
        self._quarantine: Quarantine | None = None
        self._lock = asyncio.Lock()

    def client_options(self, *, client_id: str | None = None) -> dict[str, Any]:
        """aiokafka options for the agency's cluster: its servers and mutual TLS."""
        return client_options(self._settings, client_id=client_id)

    def deserializer(self, value: bytes | None) -> Judged:
        """An aiokafka ``value_deserializer``: never raises; see ``Judged``."""
        return Judged(value, self.verifier.open(value))

    async def admit(self, record: SourceRecord) -> Delivery | None:
        """The ``Delivery`` of ``record`` (its value raw bytes or a ``Judged``), or ``None``
        once it was quarantined (rejected) or skipped (a duplicate or a rollback)."""
        value: object = record.value  # a Judged where the deserializer made one
        opened: VerifiedEvent | RecordRejected | None = None
        if isinstance(value, Judged):
            raw, opened = _raw(record, value.value), value.opened
        else:
            raw = _raw(record, record.value)
        attempt = 0
        while True:
            try:
                quarantine = await self._quarantine_writer()
                admission = await self.verifier.admit(raw, quarantine, opened=opened)
                break
            except TransportError as exc:
                if not is_transient(exc):
                    raise
                attempt += 1
                self._metrics.retries.labels(self.agency, "quarantine").inc()
                log.warning(
                    "%s on %s's cluster: quarantining failed, retrying: %s",
                    where(raw),
                    self.agency,
                    bounded(str(exc), 1000),
                )
                await asyncio.sleep(min(_MAX_BACKOFF_S, _BACKOFF_S * 2 ** min(attempt, 10)))
        self._metrics.consumed.labels(self.agency, raw.topic, admission.outcome.value).inc()
        if admission.error is not None:
            self._report(raw, admission.error, admission.quarantined)
            return None
        if admission.outcome is not Outcome.DELIVERED:
            return None
        assert admission.verified is not None
        return Delivery(
            verified=admission.verified,
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            headers=raw.headers,
            timestamp=raw.timestamp,
        )

    def done(self, delivery: Delivery) -> None:
        """``delivery`` was handled: later copies of its event are skipped as duplicates."""
        self.verifier.remember(delivery.verified)

    def _report(
        self, record: SourceRecord, error: RecordRejected, quarantined: Quarantined | None
    ) -> None:
        message = bounded(f"{where(record)}: {error}", 1000)
        log.warning("rejected (%s) and quarantined: %s", error.reason, message)
        if self._on_rejected is not None:
            self._on_rejected(
                Rejection(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    reason=error.reason,
                    error=message,
                    quarantined=quarantined,
                )
            )

    async def _quarantine_writer(self) -> Quarantine:
        """The quarantine writer, its producer started on first use (most runs need none)."""
        if self._quarantine is not None:
            return self._quarantine
        async with self._lock:
            if self._quarantine is None:
                producer = AIOKafkaProducer(
                    **client_options(self._settings, client_id=f"bus-quarantine-{self.agency}"),
                    acks="all",
                    enable_idempotence=True,
                )
                with translated(
                    f"cannot connect the quarantine writer to {self.agency}'s cluster",
                ):
                    try:
                        await producer.start()
                    except BaseException:
                        await producer.stop()
                        raise
                self._producer = producer
                self._quarantine = Quarantine(
                    producer,
                    topic=self._quarantine_topic,
                    agency=self.agency,
                    consumer=self._consumer,
                    registry=self._registry,
                )
            return self._quarantine

    async def aclose(self) -> None:
        """Flush and close the quarantine producer. Safe to call twice."""
        producer, self._producer, self._quarantine = self._producer, None, None
        if producer is not None:
            await producer.stop()


def gate_for(
    config: Config,
    agency: str,
    *,
    consumer: str | None = None,
    dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
    registry: CollectorRegistry | None = None,
    on_rejected: Callable[[Rejection], None] | None = None,
    **verifier_options: Any,
) -> EventGate:
    """An ``EventGate`` for ``agency``'s readers (not started: its producer starts on the
    first rejection; ``aclose`` it). ``consumer`` names the reader (its group id) in the
    quarantine's ``bus_consumer`` header. ``verifier_options`` are those of
    ``RecordVerifier.for_agency`` (``trust``, ``require_release``, ``key_grace_s``,
    ``max_clock_skew_s``, ``roots``)."""
    verifier = RecordVerifier.for_agency(
        config,
        agency,
        dedup_capacity=dedup_capacity,
        registry=registry,
        log=log,
        role="stream processor",
        **verifier_options,
    )
    return EventGate(
        verifier,
        settings=config.agency(agency),
        quarantine_topic=config.topics.quarantine,
        consumer=consumer,
        registry=registry,
        on_rejected=on_rejected,
    )


@asynccontextmanager
async def open_gate(config: Config, agency: str, **options: Any) -> AsyncIterator[EventGate]:
    """An ``EventGate`` (``gate_for``'s options) whose quarantine producer is closed at the end."""
    gate = gate_for(config, agency, **options)
    try:
        yield gate
    finally:
        await gate.aclose()

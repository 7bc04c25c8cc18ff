"""The correlator: identifiers shared by events of different agencies, as ``CorrelationHit``s.

One worker per agency reads, on the agency's own cluster, its ``intel.events`` and every
mirrored feed ``<peer>.intel.events`` of the configuration, from the beginning. Each record is
judged as a subscriber judges it (verified against the trust store, validated, and on a mirror
signed by that peer and releasable to the agency; on the own feed, signed by the agency
itself); a record that fails goes to ``bus.quarantine`` with its reason. A verified event's
identifiers (``bus.correlate._identifiers``) go into the index (``bus.correlate._index``);
a match with an event of another origin is written to ``bus.correlations``.

Exactly once, across crashes: every batch is one Kafka transaction of a producer whose
transactional id is ``bus-correlate.<agency>`` (so a new worker fences the one before it):
the hits, the quarantined records, the index's changes (to the compacted changelog topic
``bus-correlate.<agency>.state``) and the consumer offsets (group ``bus-correlate.<agency>``)
commit together or not at all. A session starts by fencing, reading the changelog to its end
into memory (the index is exactly the changelog's) and seeking to the committed offsets; any
error drops the session and starts a new one (``bus_correlate_recoveries_total``), so what
an aborted or unknown transaction did in memory never survives it. See
docs/decisions/0015-correlator.md for why this is not Faust's own exactly-once mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ProducerFenced
from prometheus_client import CollectorRegistry

from bus._fetch import fetch
from bus._kafka import client_options, stop_within, translated, within
from bus.batch import RootCache
from bus.codec import SchemaStore, default_store
from bus.config import AgencySettings, Config, correlator_identity
from bus.correlate._identifiers import identifiers
from bus.correlate._index import CorrelationIndex, EventEntry, hit_datum
from bus.correlate._metrics import CorrelatorMetrics
from bus.envelope import VerifiedEvent
from bus.errors import (
    BusError,
    ConfigError,
    Fenced,
    OriginMismatch,
    RecordRejected,
    TransportError,
    UnexpectedFailure,
)
from bus.quarantine import Quarantine
from bus.records import SourceRecord
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, KeyResolver
from bus.verifier import RecordVerifier

__all__ = [
    "CORRELATION_HIT",
    "Correlator",
    "CorrelatorSettings",
]

log = logging.getLogger("bus.correlate")

CORRELATION_HIT: Final = "bus.correlate.CorrelationHit"
_PREFIX: Final = "bus-correlate."
_COMPACTED: Final = {
    "cleanup.policy": "compact",
    "segment.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.1",
}
_FOREVER: Final = {"retention.ms": "-1"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrelatorSettings:
    """Where the correlator of one agency reads and writes, and how."""

    agency: AgencySettings
    """The agency's cluster, reached with the correlator's identity."""
    own_topic: str
    mirrors: dict[str, str]
    """Mirrored feed -> the peer that writes it."""
    output_topic: str = "bus.correlations"
    quarantine_topic: str = "bus.quarantine"
    max_batch: int = 500
    operation_timeout_s: float = 30.0
    discover_interval_s: float = 10.0
    """How often to look for a mirrored feed that appeared (a new peer's bridge)."""
    key_grace_s: float = DEFAULT_GRACE.total_seconds()
    max_clock_skew_s: float = DEFAULT_MAX_SKEW.total_seconds()

    @property
    def name(self) -> str:
        return self.agency.name

    app_id: str
    """Group, transactional id and the prefix of the correlator's changelog topic:
    ``bus-correlate.<agency>`` (``.<topic>`` after it when the feed is not the events topic)."""

    @property
    def state_topic(self) -> str:
        return f"{self.app_id}.state"

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.own_topic, *sorted(self.mirrors))

    @classmethod
    def from_config(
        cls, config: Config, agency: str, *, topic: str | None = None, **options: Any
    ) -> CorrelatorSettings:
        """Settings for ``agency``'s correlator: its identity (``correlator.<agency>``; none on a
        cluster without TLS), its feed ``topic`` (default: the events topic) and every peer's
        mirror of it (``<peer>.<topic>``)."""
        settings = config.agency(agency)
        identity = correlator_identity(agency)
        if settings.tls is not None and identity not in settings.identities:
            raise ConfigError(
                f"agency {agency}: no TLS identity {identity!r} in the configuration; "
                f'add [agencies.{agency}.tls.identities."{identity}"] (`bus local up` writes it)'
            )
        own = topic or config.topics.events
        if config.mirror_source(own, reader=agency) is not None:
            raise ConfigError(f"{own} is a mirrored feed; give the agency's own topic")
        mirrors = {f"{peer}.{own}": peer for peer in config.agencies if peer != agency}
        app_id = f"{_PREFIX}{agency}" if own == config.topics.events else f"{_PREFIX}{agency}.{own}"
        return cls(
            agency=settings.as_identity(identity),
            own_topic=own,
            mirrors=mirrors,
            app_id=app_id,
            quarantine_topic=config.topics.quarantine,
            **options,
        )


class _Restart(BusError):
    """A mirrored feed appeared: start a new session that reads it too."""


class Correlator:
    """Runs sessions until stopped (module docs); ``health()`` for ``/healthz``."""

    def __init__(
        self,
        settings: CorrelatorSettings,
        *,
        trust: KeyResolver,
        registry: CollectorRegistry | None = None,
        store: SchemaStore | None = None,
    ) -> None:
        self.settings = settings
        self._trust = trust
        self._store = store or default_store()
        self._verifier = RecordVerifier(
            agency=settings.name,
            trust=trust,
            mirrors=settings.mirrors,
            key_grace=timedelta(seconds=settings.key_grace_s),
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
            roots=RootCache(),
            log=log,
            role="correlator",
        )
        self.metrics = CorrelatorMetrics.on(registry)
        self._registry = registry
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        """Set once a session has read its state and started consuming."""
        self.index = CorrelationIndex()
        self._reading: tuple[str, ...] = ()
        self._last_error: str | None = None
        self.stopped_cleanly = True

    def stop(self) -> None:
        """Ask ``run`` to finish the batch in flight and return."""
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return {
            "healthy": self.started.is_set() and self._last_error is None,
            "agency": self.settings.name,
            "reading": list(self._reading),
            "tables": self.index.sizes(),
            "last_error": self._last_error,
        }

    async def run(self) -> None:
        """Sessions until ``stop()``; a fenced worker (another took over) raises ``Fenced``."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                await self._session()
                self._last_error = None
            except _Restart:
                log.info("correlator %s: a new feed appeared; starting over", self.settings.name)
            except asyncio.CancelledError:
                raise
            except (ProducerFenced, Fenced) as exc:
                raise Fenced(
                    f"correlator {self.settings.name}: another worker with transactional id "
                    f"{self.settings.app_id} took over; this one stops"
                ) from exc
            except Exception as exc:
                self.started.clear()
                self._last_error = f"{type(exc).__name__}: {exc}"[:500]
                self.metrics.recoveries.labels(self.settings.name).inc()
                log.warning(
                    "correlator %s: session failed (%s); its state is read again from %s in %.1f s",
                    self.settings.name,
                    self._last_error,
                    self.settings.state_topic,
                    backoff,
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5

    async def _session(self) -> None:
        s = self.settings
        options = client_options(s.agency, client_id=f"bus-correlate-{s.name}")
        timeout_ms = int(s.operation_timeout_s * 1000)
        async with AsyncExitStack() as stack:
            inputs = await self._ensure_topics()
            self._reading = tuple(inputs)
            producer = AIOKafkaProducer(
                **options,
                transactional_id=s.app_id,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=timeout_ms,
                transaction_timeout_ms=max(timeout_ms * 2, 60000),
                linger_ms=5,
            )
            with translated(f"cannot start the correlator's producer on {s.name}'s cluster"):
                await producer.start()  # fences the worker before, aborts its transaction
            stack.push_async_callback(producer.stop)
            self.index = await self._restore(options)
            consumer = AIOKafkaConsumer(
                **options,
                group_id=s.app_id,
                isolation_level="read_committed",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=s.max_batch,
            )
            with translated(f"cannot start the correlator's consumer on {s.name}'s cluster"):
                await consumer.start()
            stack.push_async_callback(consumer.stop)
            partitions = await self._partitions(consumer, inputs)
            consumer.assign(partitions)
            positions: dict[TopicPartition, int] = {}
            for tp in partitions:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                    committed = 0
                else:
                    consumer.seek(tp, committed)
                positions[tp] = committed
            quarantine = Quarantine(
                producer,
                topic=s.quarantine_topic,
                agency=s.name,
                consumer=s.app_id,
                registry=self._registry,
            )
            self._update_sizes()
            self.started.set()
            log.info(
                "correlator %s: %d events indexed from %s; reading %s",
                s.name,
                len(self.index.events),
                s.state_topic,
                ", ".join(inputs),
            )
            next_look = time.monotonic() + s.discover_interval_s
            while not self._stop.is_set():
                batch = await fetch(consumer, timeout_ms=500, max_records=s.max_batch)
                records = [r for tp in sorted(batch) for r in batch[tp]]
                expired: list[tuple[str, bytes | None]] = []
                if time.monotonic() > next_look:
                    next_look = time.monotonic() + s.discover_interval_s
                    if set(await self._present()) - set(inputs):
                        raise _Restart()
                    expired = self.index.expire(_now_us())
                if records or expired:
                    await self._transaction(producer, quarantine, records, expired)
                    for record in records:
                        positions[TopicPartition(record.topic, record.partition)] = (
                            record.offset + 1
                        )
                self._update_lag(consumer, positions)

    async def _transaction(
        self,
        producer: AIOKafkaProducer,
        quarantine: Quarantine,
        records: Sequence[SourceRecord],
        expired: list[tuple[str, bytes | None]],
    ) -> None:
        s = self.settings
        now = datetime.now(UTC)
        now_us = _now_us(now)
        offsets: dict[TopicPartition, int] = {}
        counts: list[tuple[str, str]] = []
        hits: list[str] = []
        # It waits for a producer id with no limit of its own (bus._kafka.within).
        await within(producer.begin_transaction(), s.operation_timeout_s, "beginning a transaction")
        futures = [await self._send_state(producer, key, value) for key, value in expired]
        for record in records:
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
            verdict = self._judge(record)
            if isinstance(verdict, RecordRejected):
                await quarantine.put(record, verdict)
                counts.append((record.topic, "rejected"))
                continue
            try:
                entry = _entry(verdict, record)
            except Exception as exc:  # a bug on this input must not wedge the feed
                log.exception(
                    "%s/%s@%s: %s raised while reading the identifiers; rejected as internal-error",
                    record.topic,
                    record.partition,
                    record.offset,
                    type(exc).__name__,
                )
                await quarantine.put(
                    record,
                    UnexpectedFailure(f"{type(exc).__name__} raised while reading identifiers"),
                )
                counts.append((record.topic, "rejected"))
                continue
            offer = self.index.offer(entry, now_us)
            counts.append((record.topic, offer.outcome.value))
            for key, value in offer.changes:
                futures.append(await self._send_state(producer, key, value))
            for hit in offer.hits:
                value = self._store.encode(
                    CORRELATION_HIT, hit_datum(hit, agency=s.name, detected_at=now)
                )
                futures.append(
                    await producer.send(
                        s.output_topic,
                        value,
                        key=hit.hit_id.encode(),
                        headers=[("content-type", b"application/avro")],
                    )
                )
                hits.append(hit.identifier.kind)
        await asyncio.gather(*futures)
        if offsets:
            await producer.send_offsets_to_transaction(offsets, s.app_id)
        await producer.commit_transaction()
        # Counted once committed: what an aborted transaction did is done again.
        for topic, outcome in counts:
            self.metrics.events.labels(s.name, topic, outcome).inc()
        for kind in hits:
            self.metrics.hits.labels(s.name, kind).inc()
        self._update_sizes()

    async def _send_state(self, producer: AIOKafkaProducer, key: str, value: bytes | None) -> Any:
        return await producer.send(self.settings.state_topic, value, key=key.encode())

    def _judge(self, record: SourceRecord) -> VerifiedEvent | RecordRejected:
        """The verified, valid event given to this agency, or why not; never raises.

        ``bus.verifier`` judges as a subscriber does (on a peer's mirror: signed by that peer
        and releasable to the agency); on the own feed, the event must be the agency's own.
        """
        verdict = self._verifier.judge(record)
        own = record.topic == self.settings.own_topic
        if isinstance(verdict, VerifiedEvent) and own and verdict.agency != self.settings.name:
            return OriginMismatch(
                f"event {verdict.event['event_id']} was signed by {verdict.agency}, but "
                f"{record.topic} carries {self.settings.name}'s own events"
            )
        return verdict

    async def _restore(self, options: dict[str, Any]) -> CorrelationIndex:
        """The index as the changelog has it (read_committed, to its end)."""
        s = self.settings
        index = CorrelationIndex()
        consumer = AIOKafkaConsumer(
            **options, isolation_level="read_committed", enable_auto_commit=False
        )
        with translated(f"cannot read {s.state_topic} on {s.name}'s cluster"):
            await consumer.start()
            try:
                partitions = await self._partitions(consumer, [s.state_topic])
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                ends = await consumer.end_offsets(partitions)
                remaining = {tp for tp in partitions if ends[tp] > 0}
                while remaining:
                    batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                    for records in batch.values():
                        for record in records:
                            self._load(index, record)
                    for tp in list(remaining):
                        position = consumer.position(tp)
                        what = f"reading {s.state_topic}"
                        if await within(position, s.operation_timeout_s, what) >= ends[tp]:
                            remaining.discard(tp)
            finally:
                await stop_within(consumer)
        return index

    @staticmethod
    def _load(index: CorrelationIndex, record: Any) -> None:
        try:
            key = record.key.decode() if record.key is not None else ""
            index.load(key, record.value)
        except (ValueError, UnicodeDecodeError) as exc:
            # Only the correlator writes its changelog (ACLs): a bad entry is a bug; skip it.
            log.error(  # noqa: TRY400  # the message is the story; no traceback to add
                "%s/%s@%s: changelog entry skipped: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )

    async def _partitions(
        self, consumer: AIOKafkaConsumer, topics: Sequence[str]
    ) -> list[TopicPartition]:
        cluster = await consumer._client.fetch_all_metadata()  # fresh, as bus.subscriber does
        found = []
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if not partitions:
                raise TransportError(f"topic {topic!r} has no partitions on {self.settings.name}")
            found += [TopicPartition(topic, p) for p in sorted(partitions)]
        return found

    async def _ensure_topics(self) -> list[str]:
        """Create the output and changelog topics when missing; the inputs that exist."""
        s = self.settings
        admin = AIOKafkaAdminClient(
            **client_options(s.agency, client_id=f"bus-correlate-admin-{s.name}")
        )
        with translated(f"cannot reach {s.name}'s cluster"):
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                wanted = [
                    NewTopic(s.output_topic, 3, 1, topic_configs=_FOREVER),
                    NewTopic(s.state_topic, 1, 1, topic_configs=_COMPACTED),
                ]
                missing = [t for t in wanted if t.name not in existing]
                if missing:
                    response = await admin.create_topics(missing)
                    for name, code, *_ in response.topic_errors:
                        if code not in (0, 36):  # 36: created meanwhile
                            raise TransportError(
                                f"creating topic {name!r} on {s.name} failed with error {code}"
                            )
            finally:
                await admin.close()
        if s.own_topic not in existing:
            raise ConfigError(f"topic {s.own_topic!r} does not exist on {s.name}'s cluster")
        return [t for t in s.inputs if t in existing]

    async def _present(self) -> list[str]:
        s = self.settings
        admin = AIOKafkaAdminClient(
            **client_options(s.agency, client_id=f"bus-correlate-admin-{s.name}")
        )
        with translated(f"cannot reach {s.name}'s cluster"):
            await admin.start()
            try:
                existing = set(await admin.list_topics())
            finally:
                await admin.close()
        return [t for t in s.inputs if t in existing]

    def _update_sizes(self) -> None:
        for table, size in self.index.sizes().items():
            self.metrics.table_entries.labels(self.settings.name, table).set(size)

    def _update_lag(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        lag: dict[str, int] = {}
        for tp, position in positions.items():
            stable = consumer.last_stable_offset(tp)  # None until a fetch returned it
            if stable is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, stable - position)
        for topic, value in lag.items():
            self.metrics.lag.labels(self.settings.name, topic).set(value)


def _now_us(now: datetime | None = None) -> int:
    moment = now if now is not None else datetime.now(UTC)
    return int(moment.timestamp() * 1_000_000)


def _micros(moment: Any) -> int | None:
    return int(moment.timestamp() * 1_000_000) if isinstance(moment, datetime) else None


def _entry(verified: VerifiedEvent, record: SourceRecord) -> EventEntry:
    event = verified.event
    created = _micros(event["created_at"])
    assert created is not None  # validated
    return EventEntry(
        event_id=event["event_id"],
        revision=event.get("revision", 1),
        origin=verified.agency,
        crime_area=event.get("crime_area", "OTHER"),
        created_at=created,
        occurred_at=_micros(event.get("occurred_at")),
        expires_at=_micros(event.get("expires_at")),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        identifiers=tuple(sorted(identifiers(event))),
    )

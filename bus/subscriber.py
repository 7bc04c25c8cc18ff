"""The subscriber: verified, decoded events for stream processors, committed only once handled.

::

    async with open_subscriber(config, "interpol", group_id="case-indexer") as subscriber:
        async for delivery in subscriber:
            await index(delivery.event)          # if this raises, `delivery` is not committed

    await run_subscriber(config, "interpol", handler, group_id="case-indexer")  # the same

The commit rule (at-least-once): a delivery counts as handled when the loop asks for the next
one (the body of ``async for`` completed), or when ``subscriber.done(delivery)`` is called
(use it before ``break``). Handled offsets are committed in batches: before each fetch from the
cluster, at least every ``commit_interval_s`` while handling, when partitions are revoked, and
when the subscriber closes (also after an exception:
everything handled before the failing delivery is committed, the failing one is not). So a
subscriber that crashes or is killed re-delivers, at its next start, at most what it fetched
since its last commit, and never loses an event.

Records are read with ``read_committed`` isolation and no auto-commit. Each is verified and
decoded by ``bus.envelope.open_`` against the trust store, with the keys judged by this host's
clock too (``key_grace_s`` past a key's end for records in flight; ``created_at`` at most
``max_clock_skew_s`` ahead), then validated
(``bus.events.validate``: a verified event that breaks the event model is ``EventRejected``).
On a mirrored topic (``<agency>.<topic>`` for any topic, when ``<agency>`` is another agency
of the configuration: written only by that agency's bridge, ``Config.mirror_source``) the
subscriber also requires, unless ``require_release=False``, that the event's signed origin is
that agency (``OriginMismatch``) and that its ``releasable_to`` names the subscriber's own
agency (``NotReleasable``). Nothing raised while judging a record escapes: an unexpected error
is ``UnexpectedFailure`` (reason ``internal-error``), logged once with its traceback. A record
that is rejected (any ``RecordRejected``; a record without a value is ``TruncatedRecord``, a
record the Kafka client could not read is ``UnreadableRecord``) is written to the
quarantine topic of the same cluster with its original bytes and the reason headers
(``bus.quarantine``), counted, reported to ``on_rejected`` if given, and committed past only
after the cluster acknowledged the quarantine record. Then the subscriber goes on. (The
judging is ``bus.verifier.RecordVerifier``'s, which Faust agents and aiokafka consumers share
through ``bus.streams`` and ``bus.faust_streams``.)

Without a ``group_id`` the subscriber reads every partition of its topics by itself, commits
nothing and, by default, quarantines nothing (it is a viewer, like ``bus tail`` without
``--group``): rejected records are only reported.

No record stops a subscriber: records are fetched with ``bus._fetch.fetch``, so one the Kafka
client itself cannot parse (say, a header name that is not UTF-8) is skipped by its offset and
quarantined with reason ``unreadable`` and its coordinates. Batches compressed with any codec
Kafka supports (gzip, snappy, lz4, zstd) are read. Transient Kafka errors (a broker away or
electing a leader, a coordinator moving, a timeout: ``bus._kafka.is_transient``) while fetching,
committing or quarantining are retried with backoff and counted in
``bus_subscriber_retries_total``; nothing is skipped meanwhile. Iteration ends with a
``TransportError`` only on errors an operator must fix: an authorization failure (ACLs), a
topic or partition that does not exist (deleted), an offset out of range, a record too large to
fetch.


Replays and revisions (``docs/decisions/0008-replays-and-revisions.md``): a subscriber with a
group remembers, for the last ``dedup_capacity`` event ids it handled (default 100,000) across
every topic it reads, the highest revision handled and the SHA-256 of its signed bytes. The same
revision again (say an event that reached the agency by two routes) is skipped as a duplicate,
a lower revision is skipped as a rollback (both committed past, counted), and the same revision
with other bytes is quarantined as ``RevisionConflict``. A later revision is delivered. This is
kept in memory: after a restart the group resumes after what it committed, so only a copy of an
event handled before the restart that is published after it is delivered again. A group-less
subscriber (a viewer) does not de-duplicate unless given ``dedup_capacity``; 0 turns it off.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CollectorRegistry

from bus._fetch import fetch
from bus._kafka import client_options, is_transient, translated
from bus._quote import bounded
from bus._reloading import ReloadingTrustStore
from bus.batch import RootCache
from bus.config import Config
from bus.envelope import VerifiedEvent
from bus.errors import ConfigError, RecordRejected, TransportError
from bus.metrics import SubscriberMetrics, TrustMetrics
from bus.quarantine import Quarantine, Quarantined
from bus.records import SourceRecord
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, KeyResolver
from bus.verifier import (
    DEFAULT_DEDUP_CAPACITY,
    MAX_CLOCK_SETTING_S,
    Outcome,
    RecordVerifier,
    mirrors_of,
    where,
)

_T = TypeVar("_T")

__all__ = [
    "Delivery",
    "Rejection",
    "Subscriber",
    "assign_all",
    "mirrors_of",
    "open_subscriber",
    "run_subscriber",
]

Record = SourceRecord
"""A fetched record (aiokafka's ``ConsumerRecord``, or ``bus._fetch.Unreadable``)."""

log = logging.getLogger("bus.subscriber")

_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 5.0
"""Retries of transient errors wait 0.2 s, doubling up to 5 s."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A verified event and where it was read."""

    verified: VerifiedEvent
    topic: str
    partition: int
    offset: int
    key: bytes | None = field(repr=False)
    headers: tuple[tuple[str, bytes], ...] = field(repr=False)
    timestamp: int
    """The record's Kafka timestamp, milliseconds since the epoch."""

    @property
    def event(self) -> dict[str, Any]:
        """The decoded ``IntelligenceEvent`` (in-memory form)."""
        return self.verified.event

    @property
    def event_id(self) -> str:
        """The event's id."""
        return str(self.verified.event["event_id"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A record the subscriber could not accept."""

    topic: str
    partition: int
    offset: int
    reason: str
    """The ``RecordRejected.reason`` code."""
    error: str
    """What was wrong, naming where (never the payload)."""
    quarantined: Quarantined | None
    """Where it was quarantined; ``None`` when this subscriber does not quarantine."""


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, subscriber: Subscriber) -> None:
        self._subscriber = subscriber

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._subscriber._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        pass


class Subscriber:
    """Async iterator of ``Delivery``; get one from ``open_subscriber``."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        agency: str,
        group_id: str | None,
        trust: KeyResolver,
        quarantine: Quarantine | None,
        mirrors: dict[str, str] | None = None,
        dedup_capacity: int,
        on_rejected: Callable[[Rejection], None] | None,
        max_records: int,
        commit_interval_s: float,
        registry: CollectorRegistry | None,
        key_grace: timedelta = DEFAULT_GRACE,
        max_clock_skew: timedelta = DEFAULT_MAX_SKEW,
        roots: RootCache | None = None,
        until_end: bool = False,
    ) -> None:
        self._consumer = consumer
        self._until_end = until_end
        self._ends: dict[TopicPartition, int] = {}
        self.agency = agency
        self.group_id = group_id
        self._quarantine = quarantine
        self._verifier = RecordVerifier(
            agency=agency,
            trust=trust,
            mirrors=mirrors,  # mirrored topic -> the agency it is mirrored from
            key_grace=key_grace,
            max_clock_skew=max_clock_skew,
            roots=roots,
            dedup_capacity=dedup_capacity,
            log=log,
            role="subscriber",
        )
        self._on_rejected = on_rejected
        self._max_records = max_records
        self._metrics = SubscriberMetrics.on(registry)
        self._delivered: dict[str, Any] = {}  # topic -> its bus_consumed_total child
        self._buffer: deque[Record] = deque()
        self._current: Delivery | None = None
        self._handled: dict[TopicPartition, int] = {}
        self._commit_interval = commit_interval_s
        self._last_commit = time.monotonic()
        self._state = _State.OPEN

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Delivery:
        if self._state is _State.CLOSED:
            raise StopAsyncIteration
        if self._current is not None:
            self.done(self._current)
        if self._handled and time.monotonic() - self._last_commit >= self._commit_interval:
            await self.commit()
        while True:
            if not self._buffer:
                await self._retrying("commit", self.commit)
                if self._until_end and await self._at_end():
                    raise StopAsyncIteration
                await self._retrying("fetch", self._fetch)
                continue
            record = self._buffer[0]
            # Judged synchronously (``_accept`` without its coroutine): no await between here
            # and the popleft on the good path.
            outcome, verdict = self._verifier.classify(record)
            if isinstance(verdict, RecordRejected):
                await self._rejected(record, verdict)
                if self._buffer and self._buffer[0] is record:
                    self._buffer.popleft()  # else revoked meanwhile: the buffer was emptied
                continue
            self._buffer.popleft()
            delivery = self._judged(record, outcome, verdict)
            if delivery is not None:
                self._current = delivery
                return delivery

    async def _accept(self, record: Record) -> Delivery | None:
        """Verify ``record``; a ``Delivery``, or ``None`` once it is quarantined or skipped."""
        outcome, verdict = self._verifier.classify(record)
        if isinstance(verdict, RecordRejected):
            await self._rejected(record, verdict)
            return None
        return self._judged(record, outcome, verdict)

    async def _rejected(self, record: Record, error: RecordRejected) -> None:
        """Quarantine ``record`` (retrying transient errors), then report and skip it."""
        admission = await self._retrying(
            "quarantine",
            functools.partial(self._verifier.quarantined, record, error, self._quarantine),
        )
        self._reject(record, error, admission.quarantined)

    def _judged(self, record: Record, outcome: Outcome, verified: VerifiedEvent) -> Delivery | None:
        """Count an accepted ``record``; its ``Delivery``, or ``None`` for a skipped repeat."""
        self._count(record.topic, outcome)
        if outcome is not Outcome.DELIVERED:  # a duplicate or a rollback: skipped
            self._mark(TopicPartition(record.topic, record.partition), record.offset)
            return None
        headers = record.headers
        return Delivery(
            verified=verified,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            headers=headers if type(headers) is tuple else tuple(headers),
            timestamp=record.timestamp,
        )

    def _count(self, topic: str, outcome: Outcome) -> None:
        """``bus_consumed_total`` + 1; a delivery's labelled child is looked up once per topic
        (keyed by the topic alone: hashing the enum costs a Python call)."""
        if outcome is not Outcome.DELIVERED:
            self._metrics.consumed.labels(self.agency, topic, outcome.value).inc()
            return
        child = self._delivered.get(topic)
        if child is None:
            child = self._metrics.consumed.labels(self.agency, topic, outcome.value)
            self._delivered[topic] = child
        child.inc()

    async def _retrying(self, stage: str, action: Callable[[], Awaitable[_T]]) -> _T:
        """``await action()``, retrying transient Kafka errors with backoff; others raise."""
        attempt = 0
        while True:
            try:
                return await action()
            except TransportError as exc:
                if not is_transient(exc) or self._state is _State.CLOSED:
                    raise
                attempt += 1
                self._metrics.retries.labels(self.agency, stage).inc()
                log.warning(
                    "subscriber of %s (group %s): %s failed, retrying: %s",
                    self.agency,
                    self.group_id,
                    stage,
                    bounded(str(exc), 1000),
                )
                await asyncio.sleep(min(_MAX_BACKOFF_S, _BACKOFF_S * 2 ** min(attempt, 10)))

    def done(self, delivery: Delivery) -> None:
        """Mark ``delivery`` (and everything before it on its partition) as handled.

        The next commit includes it. Iterating on marks the previous delivery automatically.
        """
        if delivery is self._current:
            self._current = None
        self._verifier.remember(delivery.verified)
        self._mark(TopicPartition(delivery.topic, delivery.partition), delivery.offset)

    def _mark(self, tp: TopicPartition, offset: int) -> None:
        if self.group_id is not None and tp not in self._consumer.assignment():
            return  # revoked meanwhile: its new owner re-delivers from the last commit
        if offset + 1 > self._handled.get(tp, -1):
            self._handled[tp] = offset + 1

    async def commit(self) -> None:
        """Commit every handled offset now (a no-op without a consumer group)."""
        self._last_commit = time.monotonic()
        if self.group_id is None or not self._handled:
            self._handled.clear()
            return
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in self._handled.items() if tp in assigned}
        self._handled.clear()
        if not offsets:
            return
        where = ", ".join(f"{tp.topic}/{tp.partition}@{o}" for tp, o in offsets.items())
        with translated(
            f"group {self.group_id} on {self.agency}'s cluster could not commit {where}"
        ):
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError:
                # The group rebalanced under us: the partitions' new owners re-deliver from the
                # last commit (at-least-once); nothing is lost.
                return

    async def _at_end(self) -> bool:
        """Whether every assigned partition was read up to its end offset (the last stable
        offset) as it was when the partition was first assigned."""
        assigned = self._consumer.assignment()
        if not assigned:
            return False  # a group not joined yet: its partitions are still to come
        with translated(f"reading the end offsets on {self.agency}'s cluster failed"):
            unknown = [tp for tp in assigned if tp not in self._ends]
            if unknown:
                self._ends.update(await self._consumer.end_offsets(unknown))
            for tp in assigned:
                if await self._consumer.position(tp) < self._ends[tp]:
                    return False
        return True

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Still a member with these partitions: commit what was handled of them, then forget
        # what was fetched but not handled; the next owner reads it again.
        offsets = {tp: o for tp, o in self._handled.items() if tp in revoked}
        if offsets and self.group_id is not None:
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError:
                pass  # already out of the generation: re-delivered, not lost
            except KafkaError:
                pass  # the same: at-least-once covers it; the new owner reads it again
        for tp in revoked:
            self._handled.pop(tp, None)
        self._buffer = deque(
            r for r in self._buffer if TopicPartition(r.topic, r.partition) not in revoked
        )

    async def _fetch(self) -> None:
        topics = ", ".join(sorted(self._consumer.subscription() or ()))
        with translated(f"reading {topics} on {self.agency}'s cluster failed"):
            batch = await fetch(self._consumer, timeout_ms=1000, max_records=self._max_records)
        for records in batch.values():
            self._buffer.extend(records)

    def _reject(
        self, record: Record, error: RecordRejected, quarantined: Quarantined | None
    ) -> None:
        self._count(record.topic, Outcome.REJECTED)
        if self._on_rejected is not None:
            self._on_rejected(
                Rejection(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    reason=error.reason,
                    error=bounded(f"{where(record)}: {error}", 1000),
                    quarantined=quarantined,
                )
            )
        self._mark(TopicPartition(record.topic, record.partition), record.offset)

    async def aclose(self) -> None:
        """Stop fetching, commit what was handled, close. Safe to call twice."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._buffer.clear()
        try:
            await self.commit()
        finally:
            await self._consumer.stop()


async def assign_all(
    consumer: AIOKafkaConsumer, topics: Sequence[str], agency: str, *, from_beginning: bool
) -> None:
    """Assign every partition of ``topics`` to a group-less consumer, at the start or the end.

    Waits briefly for a just-created topic's leaders; ``ConfigError`` if a topic does not exist.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        # ``consumer.topics()`` fetches fresh metadata but does not store it where
        # ``partitions_for_topic`` looks, so read the fresh metadata directly.
        cluster = await consumer._client.fetch_all_metadata()
        found = {topic: cluster.partitions_for_topic(topic) for topic in topics}
        if all(found.values()) or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    missing = [topic for topic, partitions in found.items() if not partitions]
    if missing:
        raise ConfigError(f"topic {missing[0]!r} does not exist on {agency}'s cluster")
    assigned = [TopicPartition(t, p) for t in topics for p in sorted(found[t])]
    consumer.assign(assigned)
    if from_beginning:
        await consumer.seek_to_beginning(*assigned)
    else:
        await consumer.seek_to_end(*assigned)


@asynccontextmanager
async def open_subscriber(
    config: Config,
    agency: str,
    *,
    group_id: str | None,
    topics: Sequence[str] | None = None,
    from_beginning: bool = False,
    trust: KeyResolver | None = None,
    quarantine: bool | None = None,
    require_release: bool = True,
    dedup_capacity: int | None = None,
    on_rejected: Callable[[Rejection], None] | None = None,
    max_records: int = 500,
    commit_interval_s: float = 5.0,
    key_grace_s: float = DEFAULT_GRACE.total_seconds(),
    max_clock_skew_s: float = DEFAULT_MAX_SKEW.total_seconds(),
    consumer_options: dict[str, Any] | None = None,
    registry: CollectorRegistry | None = None,
    roots: RootCache | None = None,
    until_end: bool = False,
) -> AsyncIterator[Subscriber]:
    """A started ``Subscriber`` of ``topics`` (default: the events topic) on ``agency``'s cluster.

    ``group_id`` names the consumer group whose offsets are committed (``None``: no group, no
    commits). ``from_beginning`` starts a group without committed offsets (or a group-less
    subscriber) at the oldest records instead of new ones only. ``trust`` defaults to the
    agency's ``trust_store`` from the configuration. ``quarantine`` defaults to ``True`` with
    a group and ``False`` without. ``key_grace_s`` (default one hour) is how long past a key's
    end, by this host's clock, events signed with it are still accepted; ``max_clock_skew_s``
    (default five minutes) how far ahead of this host's clock an event's ``created_at`` may be
    (``bus.trust``). ``require_release`` (default ``True``): on a mirrored topic
    (``<agency>.<topic>``, ``<agency>`` another agency of ``config``), reject an event whose
    signed origin is not that agency or whose ``releasable_to`` does not name ``agency``; turn
    it off to read a feed that carries
    onward-forwarded events of third agencies. ``dedup_capacity`` (replays and rollbacks,
    module docs) defaults to ``DEFAULT_DEDUP_CAPACITY`` with a group and 0 (off) without.
    ``consumer_options`` go to ``AIOKafkaConsumer``
    as they are (e.g. ``session_timeout_ms``, ``group_instance_id``). ``roots`` keeps the batch
    signatures already verified (``bus.batch.RootCache``; default: the per-process
    ``shared_roots()``), so each batch's signature is checked once. ``until_end`` ends the
    iteration once every assigned partition was read to the end offset it had when it was
    assigned (for scripts, as ``kcat -e``); with a group, not before the group is joined.
    """
    settings = config.agency(agency)
    if trust is None:
        if settings.trust_store is None:
            raise ConfigError(
                f"{config.path or 'configuration'}: agencies.{agency}.trust_store is not set; "
                "a subscriber needs a trust store to verify events"
            )
        # Follows the file: a rotation or revocation applies without a restart.
        trust = ReloadingTrustStore(
            settings.trust_store, on_reload=TrustMetrics.on(registry).count_reload
        )
    if dedup_capacity is None:
        dedup_capacity = DEFAULT_DEDUP_CAPACITY if group_id is not None else 0
    if dedup_capacity < 0:
        raise ConfigError(f"dedup_capacity {dedup_capacity}: give 0 (off) or more")
    for name, seconds in (("key_grace_s", key_grace_s), ("max_clock_skew_s", max_clock_skew_s)):
        if not 0 <= seconds <= MAX_CLOCK_SETTING_S:
            raise ConfigError(f"{name} {seconds}: give 0 to {MAX_CLOCK_SETTING_S:.0f} seconds")
    topics = tuple(topics or (config.topics.events,))
    mirrors = mirrors_of(config, agency, topics) if require_release else {}
    if quarantine is None:
        quarantine = group_id is not None
    async with AsyncExitStack() as stack:
        consumer = AIOKafkaConsumer(
            **client_options(settings, client_id=f"bus-subscriber-{agency}"),
            group_id=group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            **(consumer_options or {}),
        )
        quarantine_writer = None
        try:
            with translated(
                f"cannot connect a subscriber to {agency}'s cluster at "
                f"{', '.join(settings.bootstrap_servers)}"
            ):
                if quarantine:
                    producer = AIOKafkaProducer(
                        **client_options(settings, client_id=f"bus-quarantine-{agency}"),
                        acks="all",
                        enable_idempotence=True,
                    )
                    stack.push_async_callback(producer.stop)
                    await producer.start()
                    quarantine_writer = Quarantine(
                        producer,
                        topic=config.topics.quarantine,
                        agency=agency,
                        consumer=group_id,
                        registry=registry,
                    )
                await consumer.start()
        except TransportError:
            await consumer.stop()
            raise
        subscriber = Subscriber(
            consumer,
            agency=agency,
            group_id=group_id,
            trust=trust,
            quarantine=quarantine_writer,
            mirrors=mirrors,
            dedup_capacity=dedup_capacity,
            on_rejected=on_rejected,
            max_records=max_records,
            commit_interval_s=commit_interval_s,
            registry=registry,
            key_grace=timedelta(seconds=key_grace_s),
            max_clock_skew=timedelta(seconds=max_clock_skew_s),
            roots=roots,
            until_end=until_end,
        )
        # Closing order: the subscriber (stop fetching, commit, close the consumer) first, then
        # the quarantine producer (flushed by stop): the stack unwinds in reverse.
        stack.push_async_callback(subscriber.aclose)
        with translated(f"cannot read {', '.join(topics)} on {agency}'s cluster"):
            if group_id is None:
                await assign_all(consumer, topics, agency, from_beginning=from_beginning)
            else:
                consumer.subscribe(list(topics), listener=_Listener(subscriber))
        yield subscriber


async def run_subscriber(
    config: Config,
    agency: str,
    handler: Callable[[Delivery], Awaitable[None]],
    **options: Any,
) -> None:
    """Call ``await handler(delivery)`` for every event, committing each after it returned.

    Runs until cancelled. If ``handler`` raises, the exception propagates, everything handled
    before is committed and the failing event is not: the next start delivers it again.
    ``options`` are those of ``open_subscriber``.
    """
    async with open_subscriber(config, agency, **options) as subscriber:
        async for delivery in subscriber:
            await handler(delivery)

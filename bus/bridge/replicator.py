"""The replication hot path: source partitions -> the destination's mirrored topic, exactly once.

One aiokafka consumer (group ``bus-bridge.<source>.<destination>``) reads the source topics
with ``read_committed``. Each assigned source partition is a *lane* with its own
transactional producer on the destination (transactional id per source partition, so a new
owner fences any zombie of the old one). For every fetched batch of a lane:

1. each record is verified, decoded and judged (``_verdict.judge``): forward, deny or
   quarantine;
2. quarantined records and the audit record of every decision are written to the source
   cluster and acknowledged (at least once: a retry after a crash may repeat them; each
   carries the source offset and the bridge id);
3. one destination transaction writes the forwarded records, byte for byte with a hop header,
   to the same partition of ``<source>.<topic>``, and the checkpoint (the next source offset)
   to ``bus.checkpoints.<source>.<topic>``; then commits.

A lane starts at its checkpoint, read after its producer's ``init_transactions`` has fenced
any earlier owner. Errors never escape a lane: a failed write or commit closes and recreates
the producer (never an abort after a commit timed out: its outcome is unknown), re-reads the
checkpoint to learn whether the commit landed, and retries with backoff, consuming nothing
meanwhile. So the destination holds each released source record exactly once, whatever
crashes, across restarts of either cluster and rebalances between workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, ProducerFenced
from prometheus_client import CollectorRegistry

from bus.bridge._checkpoint import Checkpoint, checkpoint_key, checkpoint_topic, transactional_id
from bus.bridge._hops import forwarded_headers
from bus.bridge._metrics import BridgeMetrics
from bus.bridge._verdict import Outcome, Verdict, judge
from bus.bridge.settings import BridgeSettings
from bus.errors import PublishError, TransportError
from bus.policy import ReleasePolicy
from bus.quarantine import Quarantine
from bus.trust import KeyResolver

__all__ = ["Replicator"]

log = logging.getLogger("bus.bridge")

_RETRYABLE = (KafkaError, TransportError, TimeoutError, OSError)
_FENCED_GRACE_S = 20.0
"""How long a fenced lane waits for its revocation before it takes its partition back."""


@dataclass(slots=True, kw_only=True)
class _Lane:
    """One source partition this worker moves, with its destination producer."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    next_offset: int
    checkpointed_at: float = field(default_factory=time.monotonic)
    failing_since: float | None = None


class _Failed(Exception):
    """A write or commit failed; the lane must be reopened before trying again."""


class Replicator:
    """Moves released events of one direction; ``run()`` until cancelled or ``stop()``."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        trust: KeyResolver,
        policy: ReleasePolicy,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._trust = trust
        self._policy = policy
        self._clock = clock
        self._metrics = BridgeMetrics.on(registry)
        self._registry = registry
        self._labels = (settings.source.name, settings.destination.name)
        self._lanes: dict[TopicPartition, _Lane] = {}
        self._pending: set[TopicPartition] = set()
        self._lock = asyncio.Lock()
        self._revoking = False
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._source_producer: AIOKafkaProducer | None = None
        self._quarantine: Quarantine | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.started = asyncio.Event()

    # --- status -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: healthy when started and no lane has failed for 30 s or more."""
        now = time.monotonic()
        failing = {
            f"{tp.topic}/{tp.partition}": round(now - lane.failing_since, 1)
            for tp, lane in self._lanes.items()
            if lane.failing_since is not None
        }
        healthy = self.started.is_set() and not any(age >= 30 for age in failing.values())
        return {
            "healthy": healthy,
            "direction": self.settings.name,
            "bridge_id": self.settings.bridge_id,
            "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in self._lanes),
            "failing_for_s": failing,
        }

    def stop(self) -> None:
        """Ask ``run()`` to finish the batch in flight, close everything and return."""
        self._stopping.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Replicate until cancelled or stopped. Shutdown: stop fetching, finish, close."""
        s = self.settings
        self._pool = ThreadPoolExecutor(s.verify_threads) if s.verify_threads > 0 else None
        self._source_producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            client_id=f"{s.bridge_id}/source",
            **s.source.kafka_options(),
        )
        self._consumer = AIOKafkaConsumer(
            group_id=s.group_id,
            client_id=s.bridge_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **s.source.kafka_options(),
        )
        try:
            await self._retrying("start", self._ensure_destination_topics)
            await self._retrying("start", self._source_producer.start)
            self._quarantine = Quarantine(
                self._source_producer,
                topic=s.topics.quarantine,
                agency=s.source.name,
                consumer=s.bridge_id,
                registry=self._registry,
            )
            await self._retrying("start", self._consumer.start)
            self._consumer.subscribe(list(s.source_topics), listener=_Listener(self))
            self.started.set()
            log.info("bridge %s started as %s", s.name, s.bridge_id)
            await self._loop(self._consumer)
        finally:
            await self._shutdown()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            await self._open_pending(consumer)
            batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.max_batch)
            async with self._lock:
                for tp, records in batches.items():
                    lane = self._lanes.get(tp)
                    if lane is not None and not self._stopping.is_set():
                        await self._move(lane, records)
                self._observe_lag(consumer)
            if time.monotonic() - last_commit >= 1.0:
                await self._commit_source_offsets(consumer)
                last_commit = time.monotonic()

    async def _shutdown(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(*_RETRYABLE):
                await self._commit_source_offsets(consumer)
        async with self._lock:
            for lane in list(self._lanes.values()):
                await self._close_lane(lane)
            self._lanes.clear()
        if consumer is not None:
            with contextlib.suppress(*_RETRYABLE):
                await asyncio.wait_for(consumer.stop(), self.settings.operation_timeout_s)
        if self._source_producer is not None:
            with contextlib.suppress(*_RETRYABLE):
                await asyncio.wait_for(
                    self._source_producer.stop(), self.settings.operation_timeout_s
                )
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._metrics.assigned.labels(*self._labels).set(0)

    async def _retrying(self, stage: str, action: Callable[[], Any]) -> None:
        """Run ``action`` until it succeeds, with backoff; only cancellation stops it."""
        attempt = 0
        while True:
            try:
                await asyncio.wait_for(action(), self.settings.operation_timeout_s)
            except _RETRYABLE as exc:
                attempt += 1
                self._metrics.retries.labels(*self._labels, stage).inc()
                log.warning("bridge %s: %s failed (%s); retrying", self.settings.name, stage, exc)
                await asyncio.sleep(self._backoff(attempt))
            else:
                return

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        return float(min(s.max_backoff_s, s.retry_backoff_s * 2 ** min(attempt, 10)))

    # --- destination topics -------------------------------------------------------------

    async def _ensure_destination_topics(self) -> None:
        """Create each mirrored topic (same partition count as its source) and checkpoints."""
        s = self.settings
        source_admin = AIOKafkaAdminClient(**s.source.kafka_options())
        dest_admin = AIOKafkaAdminClient(**s.destination.kafka_options())
        await source_admin.start()
        try:
            await dest_admin.start()
            try:
                described = await source_admin.describe_topics(list(s.source_topics))
                existing = set(await dest_admin.list_topics())
                wanted = []
                for info in described:
                    if info["error_code"] != 0:
                        raise TransportError(
                            f"bridge {s.name}: source topic {info['topic']!r} is not available "
                            f"on {s.source.name} (error {info['error_code']})"
                        )
                    partitions = len(info["partitions"])
                    mirror = s.mirror_topic(info["topic"])
                    checkpoints = checkpoint_topic(s.source.name, info["topic"])
                    if mirror not in existing:
                        wanted.append(NewTopic(mirror, partitions, 1))
                    if checkpoints not in existing:
                        wanted.append(
                            NewTopic(
                                checkpoints,
                                partitions,
                                1,
                                topic_configs={
                                    "cleanup.policy": "compact",
                                    "segment.ms": "3600000",
                                    "min.cleanable.dirty.ratio": "0.1",
                                },
                            )
                        )
                if wanted:
                    response = await dest_admin.create_topics(wanted)
                    for name, code, *_ in response.topic_errors:
                        if code not in (0, 36):  # 36: created meanwhile by another worker
                            raise TransportError(
                                f"bridge {s.name}: creating {name!r} on {s.destination.name} "
                                f"failed with error {code}"
                            )
                    log.info(
                        "bridge %s: created %s on %s",
                        s.name,
                        ", ".join(t.name for t in wanted),
                        s.destination.name,
                    )
            finally:
                await dest_admin.close()
        finally:
            await source_admin.close()

    # --- lanes --------------------------------------------------------------------------

    def _assigned(self, partitions: Iterable[TopicPartition]) -> None:
        consumer = self._consumer
        new = [tp for tp in partitions if tp not in self._lanes]
        if consumer is not None and new:
            # Nothing is fetched for a partition until its lane starts at its checkpoint.
            consumer.pause(*new)
        self._pending.update(new)

    async def _revoked(self, partitions: Iterable[TopicPartition]) -> None:
        self._revoking = True  # a lane retrying a batch gives up; the new owner redoes it
        try:
            async with self._lock:
                for tp in partitions:
                    self._pending.discard(tp)
                    lane = self._lanes.pop(tp, None)
                    if lane is not None:
                        await self._close_lane(lane)
                self._metrics.assigned.labels(*self._labels).set(len(self._lanes))
        finally:
            self._revoking = False

    async def _open_pending(self, consumer: AIOKafkaConsumer) -> None:
        while self._pending and not self._stopping.is_set():
            tp = min(self._pending, key=lambda t: (t.topic, t.partition))
            lane = await self._open_lane(tp)
            if lane is None:  # revoked or stopping while it opened
                continue
            async with self._lock:
                if tp not in self._pending:
                    await self._close_lane(lane)
                    continue
                self._pending.discard(tp)
                self._lanes[tp] = lane
                consumer.seek(tp, lane.next_offset)
                consumer.resume(tp)
                self._metrics.assigned.labels(*self._labels).set(len(self._lanes))
            log.info(
                "bridge %s: moving %s/%d from offset %d",
                self.settings.name,
                tp.topic,
                tp.partition,
                lane.next_offset,
            )

    async def _open_lane(self, tp: TopicPartition) -> _Lane | None:
        """A started transactional producer for ``tp`` and the checkpoint it fenced into place."""
        attempt = 0
        while tp in self._pending and not self._stopping.is_set():
            producer = self._new_producer(tp)
            try:
                await asyncio.wait_for(producer.start(), self.settings.operation_timeout_s)
                checkpoint = await self._read_checkpoint(tp)
            except _RETRYABLE as exc:
                await self._stop_producer(producer)
                attempt += 1
                self._metrics.retries.labels(*self._labels, "destination").inc()
                log.warning(
                    "bridge %s: cannot open %s/%d on %s (%s); retrying",
                    self.settings.name,
                    tp.topic,
                    tp.partition,
                    self.settings.destination.name,
                    exc,
                )
                await asyncio.sleep(self._backoff(attempt))
                continue
            return _Lane(tp=tp, producer=producer, next_offset=checkpoint)
        return None

    def _new_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            transactional_id=transactional_id(
                s.source.name, s.destination.name, tp.topic, tp.partition
            ),
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=512 * 1024,
            transaction_timeout_ms=s.transaction_timeout_ms,
            request_timeout_ms=int(s.operation_timeout_s * 1000),
            client_id=f"{s.bridge_id}/{tp.topic}/{tp.partition}",
            **s.destination.kafka_options(),
        )

    async def _stop_producer(self, producer: AIOKafkaProducer) -> None:
        # A producer of an unreachable cluster may never finish stopping: bound the wait.
        with contextlib.suppress(*_RETRYABLE):
            await asyncio.wait_for(producer.stop(), 5.0)

    async def _close_lane(self, lane: _Lane) -> None:
        await self._stop_producer(lane.producer)
        labels = (*self._labels, lane.tp.topic, str(lane.tp.partition))
        with contextlib.suppress(KeyError):
            self._metrics.lag.remove(*labels)
        with contextlib.suppress(KeyError):
            self._metrics.checkpoint_age.remove(*labels)

    async def _read_checkpoint(self, tp: TopicPartition) -> int:
        """The next source offset of ``tp``, from the destination (0 when none was written)."""
        s = self.settings
        topic = checkpoint_topic(s.source.name, tp.topic)
        key = checkpoint_key(s.source.name, tp.topic, tp.partition)
        where = TopicPartition(topic, tp.partition)
        reader = AIOKafkaConsumer(
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(s.operation_timeout_s * 1000),
            **s.destination.kafka_options(),
        )
        await asyncio.wait_for(reader.start(), s.operation_timeout_s)
        try:
            reader.assign([where])
            end = (await reader.end_offsets([where]))[where]
            found: Checkpoint | None = None
            if end > 0:
                await reader.seek_to_beginning(where)
                deadline = time.monotonic() + s.operation_timeout_s
                while await reader.position(where) < end:
                    if time.monotonic() > deadline:
                        raise TransportError(f"reading checkpoint {topic}/{tp.partition} timed out")
                    batch = await reader.getmany(where, timeout_ms=500)
                    for record in batch.get(where, []):
                        if record.key == key and record.value is not None:
                            found = Checkpoint.decode(
                                record.value, where=f"{topic}/{tp.partition}@{record.offset}"
                            )
            return found.next_offset if found is not None else 0
        finally:
            await reader.stop()

    # --- one batch ----------------------------------------------------------------------

    async def _judge_all(self, records: Sequence[Any]) -> list[Verdict]:
        s = self.settings
        now = self._clock()

        def run(chunk: Sequence[Any]) -> list[Verdict]:
            return [
                judge(
                    r,
                    trust=self._trust,
                    policy=self._policy,
                    source=s.source.name,
                    destination=s.destination.name,
                    bridge_id=s.bridge_id,
                    now=now,
                    max_size=s.max_record_size,
                )
                for r in chunk
            ]

        if self._pool is None or len(records) < 64:
            return run(records)
        threads = s.verify_threads
        size = -(-len(records) // threads)
        loop = asyncio.get_running_loop()
        chunks = [records[i : i + size] for i in range(0, len(records), size)]
        results = await asyncio.gather(*(loop.run_in_executor(self._pool, run, c) for c in chunks))
        return [v for part in results for v in part]

    async def _move(self, lane: _Lane, records: Sequence[Any]) -> None:
        """Move one fetched batch of a lane; returns when done, or when the lane is lost."""
        records = [r for r in records if r.offset >= lane.next_offset]
        if not records:
            return
        started = time.monotonic()
        verdicts = await self._judge_all(records)
        next_offset = records[-1].offset + 1
        source_written = False
        attempt = 0
        while True:
            try:
                if not source_written:
                    await self._write_source(verdicts)
                    source_written = True
                await self._write_destination(lane, verdicts, next_offset)
                break
            except ProducerFenced:
                # Another worker owns this partition now (its revocation is on the way), or our
                # transaction outlived its timeout. Never write with this producer again, and
                # give the group time to revoke before taking the partition back.
                self._metrics.aborts.labels(*self._labels).inc()
                log.warning(
                    "bridge %s: fenced on %s/%d",
                    self.settings.name,
                    lane.tp.topic,
                    lane.tp.partition,
                )
                if await self._revoked_within(_FENCED_GRACE_S):
                    return
            except _Failed as exc:
                self._metrics.aborts.labels(*self._labels).inc()
                log.warning("bridge %s: %s", self.settings.name, exc)
            except PublishError as exc:
                self._metrics.retries.labels(*self._labels, "source").inc()
                log.warning("bridge %s: %s; retrying", self.settings.name, exc)
            if lane.failing_since is None:
                lane.failing_since = time.monotonic()
            attempt += 1
            if await self._revoked_within(self._backoff(attempt)):
                return
            if not source_written:
                continue
            checkpoint = await self._reopen(lane)
            if checkpoint < 0:
                return  # revoked or stopping while the destination was unavailable
            if checkpoint >= next_offset:
                break  # the commit had landed after all: its outcome was only unknown to us
            if checkpoint != lane.next_offset:
                # Someone else moved part of this partition meanwhile: start over from there.
                lane.next_offset = checkpoint
                if self._consumer is not None:
                    self._consumer.seek(lane.tp, checkpoint)
                return
        lane.failing_since = None
        lane.next_offset = next_offset
        lane.checkpointed_at = time.monotonic()
        self._account(verdicts, started)

    async def _revoked_within(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a revocation or a stop is under way."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._revoking or self._stopping.is_set():
                return True
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self._revoking or self._stopping.is_set()

    async def _reopen(self, lane: _Lane) -> int:
        """Recreate the lane's producer (fencing the old one) and return the checkpoint."""
        await self._stop_producer(lane.producer)
        while True:
            lane.producer = self._new_producer(lane.tp)
            try:
                await asyncio.wait_for(lane.producer.start(), self.settings.operation_timeout_s)
                return await self._read_checkpoint(lane.tp)
            except _RETRYABLE as exc:
                await self._stop_producer(lane.producer)
                self._metrics.retries.labels(*self._labels, "destination").inc()
                log.warning("bridge %s: destination unavailable (%s)", self.settings.name, exc)
                if await self._revoked_within(self._backoff(3)):
                    return -1

    async def _write_source(self, verdicts: Sequence[Verdict]) -> None:
        """Quarantine and audit records on the source cluster, acknowledged."""
        s = self.settings
        producer, quarantine = self._source_producer, self._quarantine
        assert producer is not None
        assert quarantine is not None
        futures = []
        try:
            for v in verdicts:
                if v.outcome is Outcome.QUARANTINE:
                    assert v.error is not None
                    await asyncio.wait_for(quarantine.put(v.record, v.error), s.operation_timeout_s)
                else:
                    futures.append(
                        await producer.send(s.topics.audit, v.audit_value, key=v.audit_key)
                    )
            await asyncio.wait_for(asyncio.gather(*futures), s.operation_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            for future in futures:
                future.cancel()
            raise PublishError(
                f"writing audit records to {s.topics.audit} on {s.source.name} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def _write_destination(
        self, lane: _Lane, verdicts: Sequence[Verdict], next_offset: int
    ) -> None:
        """One transaction: the forwarded records and the checkpoint after them."""
        s = self.settings
        tp = lane.tp
        producer = lane.producer
        mirror = s.mirror_topic(tp.topic)
        checkpoint = Checkpoint(
            next_offset=next_offset, bridge_id=s.bridge_id, written_at=self._clock()
        )
        try:
            await producer.begin_transaction()
            for v in verdicts:
                if v.outcome is Outcome.FORWARD:
                    r = v.record
                    await producer.send(
                        mirror,
                        r.value,
                        key=r.key,
                        partition=tp.partition,
                        timestamp_ms=r.timestamp if r.timestamp >= 0 else None,
                        headers=forwarded_headers(
                            r.headers,
                            source=s.source.name,
                            destination=s.destination.name,
                            bridge_id=s.bridge_id,
                        ),
                    )
            await producer.send(
                checkpoint_topic(s.source.name, tp.topic),
                checkpoint.encode(),
                key=checkpoint_key(s.source.name, tp.topic, tp.partition),
                partition=tp.partition,
            )
            await asyncio.wait_for(producer.commit_transaction(), s.operation_timeout_s)
        except ProducerFenced:
            raise
        except (KafkaError, TimeoutError) as exc:
            raise _Failed(
                f"transaction for {tp.topic}/{tp.partition} (up to offset {next_offset - 1}) on "
                f"{s.destination.name} failed or has an unknown outcome: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # --- accounting ---------------------------------------------------------------------

    def _account(self, verdicts: Sequence[Verdict], started: float) -> None:
        m = self._metrics
        now = self._clock()
        forwarded = 0
        for v in verdicts:
            if v.outcome is Outcome.FORWARD:
                forwarded += 1
                if v.created_at is not None:
                    m.latency.labels(*self._labels).observe(
                        max(0.0, (now - v.created_at).total_seconds())
                    )
            elif v.outcome is Outcome.DENY:
                assert v.decision is not None
                m.denied.labels(*self._labels, str(v.decision.rule)).inc()
            else:
                assert v.error is not None
                m.quarantined.labels(*self._labels, v.error.reason).inc()
        if forwarded:
            topic = self.settings.mirror_topic(verdicts[0].record.topic)
            m.forwarded.labels(*self._labels, topic).inc(forwarded)
        m.batch_seconds.labels(*self._labels).observe(time.monotonic() - started)

    def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        for tp, lane in self._lanes.items():
            labels = (*self._labels, tp.topic, str(tp.partition))
            stable = consumer.last_stable_offset(tp)
            if stable is not None:
                self._metrics.lag.labels(*labels).set(max(0, stable - lane.next_offset))
                if stable <= lane.next_offset:
                    lane.checkpointed_at = now  # nothing to move: the checkpoint is current
            self._metrics.checkpoint_age.labels(*labels).set(now - lane.checkpointed_at)

    async def _commit_source_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """For operators' lag tools only: the checkpoint on the destination is the truth."""
        offsets = {tp: lane.next_offset for tp, lane in self._lanes.items() if lane.next_offset}
        if offsets:
            with contextlib.suppress(*_RETRYABLE):
                await consumer.commit(offsets)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's base is untyped
    def __init__(self, replicator: Replicator) -> None:
        self._replicator = replicator

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._replicator._revoked(revoked)  # the listener is its part

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._replicator._assigned(assigned)  # the listener is its part

"""The replication hot path: source partitions -> the destination's mirrored topic, exactly once.

One aiokafka consumer (group ``bus-bridge.<source>.<destination>``) reads the source topics
with ``read_committed``. Each assigned source partition is a *lane* (``_lane.Lane``) with two
transactional logs (``_txlog.TxLog``), each with a transactional id of that partition, so that a
new owner fences any zombie of the old one:

- the *source log* writes the audit record of every decision and the quarantined records to the
  source cluster, with a checkpoint ``audited_until`` in the same transaction;
- the *destination log* writes the released records, byte for byte with hop headers, to the
  same partition of ``<source>.<topic>`` on the destination, with the checkpoint
  ``next_offset`` in the same transaction.

For every fetched batch of a lane: judge each record (verify the bytes, decode, decide:
``_verdict.judge``), then commit, concurrently, the source log for the records not yet audited
and the destination log for the records not yet mirrored (``_lane``; what each log writes:
``_outgoing``). Each lane has at most one batch committing and one collecting behind it
(``_batches``): records fetched while a lane commits are judged at once and commit with its next
batch, as soon as its commit in flight ends, whatever the other lanes do; the fetch reads only
the lanes with room. A lane's batch commits only if the one before it landed whole, else it is
dropped and fetched again from the checkpoints (decision 0024).
A lane reads from the lower of its two checkpoints, audits only above the source's and mirrors
only above the destination's, so both the mirror and the audit trail hold each record exactly
once.

Errors never escape a lane: a failed or unknown commit reopens that log (never an abort after a
commit timed out), whose re-read checkpoint tells whether the commit landed, then retries with
backoff, consuming nothing meanwhile. So the destination holds each released source record
exactly once across crashes, restarts of either cluster and rebalances between workers.

This module is the consumer's side: the fetch loop, the rebalance listener that opens and closes
lanes, shutdown, health, and the metrics of committed batches and lag.

No record stops the loop: it fetches with ``bus._fetch.fetch``, so a record the Kafka client
cannot parse comes back as an ``Unreadable`` stand-in at its offset and is quarantined
(``unreadable``) like any rejected record. Kafka errors while fetching are retried with backoff
(``bus_bridge_retries_total{stage="fetch"}``); any other exception in a batch is logged with
its traceback, counted (``bus_bridge_errors_total``) and the batch retried from the lane's
checkpoints. Only cancellation (or ``stop()``) ends ``run()``.

A lane stopped by an untrusted checkpoint (``_lane``) keeps its partition paused: nothing of it
is fetched or moved, the other lanes go on, ``/healthz`` names it and answers 503, and every
``checkpoint_recheck_s`` its checkpoints are read again, so that it goes on by itself once an
operator has corrected them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry

from bus._fetch import fetch
from bus._kafka import RETRYABLE, client_options, within
from bus._quote import bounded
from bus.audit_chain import chain_id
from bus.bridge._batches import Batch, Batches
from bus.bridge._checkpoint import (
    audit_checkpoint_topic,
    checkpoint_key,
    checkpoint_topic,
    transactional_id,
)
from bus.bridge._forwarded import Forwarded
from bus.bridge._lane import Lane
from bus.bridge._metrics import BridgeMetrics, LastStableOffsets
from bus.bridge._replays import screen
from bus.bridge._topics import ensure_topics
from bus.bridge._txlog import TxLog
from bus.bridge._verdict import Outcome, Verdict, judge
from bus.bridge._watchdog import Watchdog
from bus.bridge.settings import BridgeSettings
from bus.errors import TransportError
from bus.policy import ReleasePolicy
from bus.signing import Signer
from bus.trust import KeyResolver

__all__ = ["Replicator"]

log = logging.getLogger("bus.bridge")

_JUDGE_SLICE = 64
"""Records judged on the event loop between two yields to it (a few milliseconds); fewer are
judged there even with verify threads."""


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
        audit_signer: Signer | None = None,
    ) -> None:
        """``audit_signer``: the direction's bridge key, which signs the head of each audit
        chain in every transaction (``bus.audit_chain``); None writes the chains unsigned,
        which ``bus audit verify`` reports."""
        self.settings = settings
        self._audit_signer = audit_signer
        self._trust = trust
        self._policy = policy
        self._clock = clock
        self._metrics = BridgeMetrics.on(registry)
        self._registry = registry
        self._labels = (settings.source.name, settings.destination.name)
        self._lanes: dict[TopicPartition, Lane] = {}
        self._pending: set[TopicPartition] = set()
        self._batches = Batches(settings.max_batch)
        """Each lane's batch committing and the one collecting behind it (``_batches``)."""
        self._stopped: dict[TopicPartition, Lane] = {}
        """Lanes stopped by an untrusted checkpoint: their partitions stay paused."""
        self._lock = asyncio.Lock()
        self._revoking = False
        self._stopping = asyncio.Event()
        self.stopped_cleanly = True
        """False once a step of the shutdown ran out of time (the worker then exits non-zero)."""
        self._consumer: AIOKafkaConsumer | None = None
        self._bus_partitions: dict[str, int] = {}
        """Partition counts of the source's audit and quarantine topics."""
        self._pool: ThreadPoolExecutor | None = None
        self._forwarded = Forwarded(settings, metrics=self._metrics, clock=clock)
        """What the direction forwarded: replays and rollbacks are denied (``_replays``)."""
        self._lso = LastStableOffsets(self._metrics)
        self._watchdog = Watchdog(
            name=settings.name,
            after_s=max(60.0, 4 * settings.operation_timeout_s),
            on_tick=self._observe_checkpoint_ages,
        )
        self.started = asyncio.Event()

    # --- status -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: healthy when started, no lane has failed for 30 s or more, no lane
        is stopped by an untrusted checkpoint (``stopped`` names them, with the reason) and the
        fetch loop has not stalled (``stalled_for_s``: ``_watchdog``)."""
        now = time.monotonic()
        failing = {
            f"{tp.topic}/{tp.partition}": round(now - lane.failing_since, 1)
            for tp, lane in self._lanes.items()
            if lane.failing_since is not None
        }
        stopped = {
            f"{tp.topic}/{tp.partition}": lane.stopped.reason
            for tp, lane in self._stopped.items()
            if lane.stopped is not None
        }
        stalled = self._watchdog.stalled_for()
        healthy = (
            self.started.is_set()
            and not any(age >= 30 for age in failing.values())
            and not stopped
            and stalled is None
        )
        return {
            "healthy": healthy,
            "direction": self.settings.name,
            "bridge_id": self.settings.bridge_id,
            "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in self._lanes),
            "failing_for_s": failing,
            "stopped": stopped,
            "stalled_for_s": None if stalled is None else round(stalled, 1),
        }

    def stop(self) -> None:
        """Ask ``run()`` to finish the batch in flight, close everything and return."""
        self._stopping.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Replicate until cancelled or stopped. Shutdown: stop fetching, finish, close."""
        s = self.settings
        self._pool = ThreadPoolExecutor(s.verify_threads) if s.verify_threads > 0 else None
        self._consumer = AIOKafkaConsumer(
            group_id=s.group_id,
            client_id=s.bridge_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=20,
            **client_options(s.source),
        )
        try:
            await self._retrying("start", self._ensure_topics)
            await self._forwarded.start()  # retries by itself: a large state may take long
            await self._retrying("start", self._consumer.start)
            self._consumer.subscribe(list(s.source_topics), listener=_Listener(self))
            self.started.set()
            log.info("bridge %s started as %s", s.name, s.bridge_id)
            async with asyncio.TaskGroup() as background:
                following = background.create_task(self._forwarded.follow())
                self._watchdog.beat()
                watching = background.create_task(self._watchdog.run())
                try:
                    await self._loop(self._consumer)
                finally:
                    following.cancel()
                    watching.cancel()
        finally:
            await self._shutdown()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        last_commit = time.monotonic()
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._step(consumer)
            except RETRYABLE as exc:
                failures += 1
                self._metrics.retries.labels(*self._labels, "fetch").inc()
                log.warning(
                    "bridge %s: fetching failed (%s); retrying",
                    self.settings.name,
                    bounded(str(exc), 1000),
                )
                await asyncio.sleep(self.settings.backoff_s(failures))
                continue
            except Exception:
                # A bug: never let it end the worker. What was fetched but not committed is
                # fetched again from the lanes' checkpoints.
                failures += 1
                self._metrics.errors.labels(*self._labels, "loop").inc()
                log.exception("bridge %s: unexpected error in the fetch loop", self.settings.name)
                await self._rewind_lanes()
                await asyncio.sleep(self.settings.backoff_s(failures))
                continue
            failures = 0
            self._watchdog.beat()
            if time.monotonic() - last_commit >= 1.0:
                await self._commit_source_offsets(consumer)
                last_commit = time.monotonic()

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        """Open the lanes due, fetch once for the lanes with room, judge what came and add each
        lane's records to the batch it collects behind its commit in flight (``_batches``)."""
        self._recheck_stopped()
        await self._open_pending(consumer)
        await self._park_stopped()
        batches = self._batches
        room = {tp for tp in self._lanes if not batches.full(tp)}
        if self._lanes and not room:
            # Every lane has a batch committing and a full one waiting: wait for one to finish.
            tasks = batches.tasks(list(self._lanes))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return
        # Where each lane's next records must start: after its last batch, if any.
        expected = {tp: batches.queued_until(tp, self._lanes[tp].resume_from) for tp in room}
        # A lane that carries records takes those instead of a fetch of its partition; they are
        # taken out only once the fetch succeeded (a failed fetch is retried, nothing rewound).
        carrying = {tp for tp in room if batches.carries(tp)}
        fetching = fetch(
            consumer,
            timeout_ms=0 if carrying else 200,
            max_records=self.settings.max_batch * max(1, len(room)),
            partitions=room - carrying if self._lanes else None,
        )
        # Bounded: before fetching, ``fetch`` awaits each partition's position.
        fetched = await within(fetching, self.settings.operation_timeout_s, "fetching")
        fetched.update(batches.carried(carrying))
        started = time.monotonic()
        moving = [
            (lane, batches.take(tp, [r for r in records if r.offset >= expected[tp]]))
            for tp, records in fetched.items()
            if (lane := self._lanes.get(tp)) is not None and tp in expected
        ]
        moving = [(lane, records) for lane, records in moving if records]
        # Every lane's records are judged before any of them is queued; the lanes' judging
        # overlaps (``verify_threads``) and so does it the commits in flight.
        judged = await asyncio.gather(*(self._judged(lane, records) for lane, records in moving))
        async with self._lock:  # not while ``_revoked`` settles and closes lanes
            for (lane, records), verdicts in zip(moving, judged, strict=True):
                if verdicts is not None and not self._stopping.is_set():
                    batches.add(
                        lane.tp,
                        verdicts,
                        after=expected[lane.tp],
                        next_offset=records[-1].offset + 1,
                        started=started,
                        commit=functools.partial(self._commit_after, lane=lane),
                    )
            self._observe_lag(consumer)

    async def _park_stopped(self) -> None:
        """Park the lanes stopped by an untrusted checkpoint, once their batches are done."""
        for lane in [lane for lane in self._lanes.values() if lane.stopped is not None]:
            async with self._lock:
                await self._batches.settle([lane.tp])
                if self._lanes.get(lane.tp) is lane:
                    await self._park(lane)

    async def _rewind_lanes(self) -> None:
        async with self._lock:
            await self._batches.settle()
            for tp, lane in self._lanes.items():
                self._seek(tp, lane.resume_from)

    async def _shutdown(self) -> None:
        """Commit, close the lanes, the consumer and the forwarded state: every step within one
        deadline of ``operation_timeout_s`` (a step out of time is abandoned, and the shutdown
        counts as unclean). Nothing is lost either way: the checkpoints are on the destination.
        """
        deadline = asyncio.get_running_loop().time() + self.settings.operation_timeout_s
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await self._within(deadline, "commit", self._commit_source_offsets(consumer))

        async def close_lanes() -> None:
            async with self._lock:
                await self._batches.settle()  # the batches in flight finish
                for lane in list(self._lanes.values()):
                    await self._close_lane(lane)
                self._lanes.clear()

        await self._within(deadline, "closing the lanes", close_lanes())
        if consumer is not None:
            # Waits while its JoinGroup is held by the group (a killed member's session).
            await self._within(deadline, "stopping the consumer", consumer.stop())
        await self._within(deadline, "closing the forwarded state", self._forwarded.aclose())
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._metrics.assigned.labels(*self._labels).set(0)

    async def _within(self, deadline: float, step: str, action: Awaitable[Any]) -> None:
        remaining = max(0.1, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(action, remaining)
        except RETRYABLE as exc:  # TimeoutError among them
            self.stopped_cleanly = False
            log.warning(
                "bridge %s: shutdown: %s did not finish (%s); going on",
                self.settings.name,
                step,
                bounded(str(exc) or type(exc).__name__, 300),
            )

    async def _retrying(self, stage: str, action: Callable[[], Any]) -> None:
        """Run ``action`` until it succeeds, with backoff; only cancellation stops it."""
        attempt = 0
        while True:
            try:
                await asyncio.wait_for(action(), self.settings.operation_timeout_s)
            except RETRYABLE as exc:
                attempt += 1
                self._metrics.retries.labels(*self._labels, stage).inc()
                # A timeout's message is empty: its type says what happened.
                why = str(exc) or type(exc).__name__
                log.warning("bridge %s: %s failed (%s); retrying", self.settings.name, stage, why)
                await asyncio.sleep(self.settings.backoff_s(attempt))
            else:
                return

    # --- topics -------------------------------------------------------------------------

    async def _ensure_topics(self) -> None:
        self._bus_partitions = await ensure_topics(self.settings)

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
        revoked = list(partitions)
        try:
            async with self._lock:
                await self._batches.settle(revoked)  # a lane retrying gives up: ``_revoking``
                for tp in revoked:
                    self._pending.discard(tp)
                    lane = self._lanes.pop(tp, None) or self._stopped.pop(tp, None)
                    if lane is not None:
                        await self._close_lane(lane)
                self._metrics.assigned.labels(*self._labels).set(len(self._lanes))
        finally:
            self._revoking = False

    def _recheck_stopped(self) -> None:
        """Stopped lanes due for a re-check are opened again (``_open_pending``)."""
        now = time.monotonic()
        for tp, lane in self._stopped.items():
            if now >= lane.recheck_at:
                self._pending.add(tp)

    async def _park(self, lane: Lane) -> None:
        """Take a lane stopped by an untrusted checkpoint out of the moving ones: its partition
        stays paused (nothing of it is fetched) until a re-check finds the checkpoint sane."""
        tp = lane.tp
        self._lanes.pop(tp, None)
        await lane.close()
        self._stopped[tp] = lane
        if self._consumer is not None and tp in self._consumer.assignment():
            self._consumer.pause(tp)
        self._metrics.assigned.labels(*self._labels).set(len(self._lanes))

    async def _open_pending(self, consumer: AIOKafkaConsumer) -> None:
        """Open every pending lane, all at once (each one's round trips to both clusters
        overlap the others': on a long link that is most of a rebalance), and move none until
        all are open: a lane's ``Forwarded.load`` must be known to every other lane's replay
        screen before that lane moves a record (``_replays``)."""
        while self._pending and not self._stopping.is_set():
            pending = sorted(self._pending, key=lambda t: (t.topic, t.partition))
            opened = await asyncio.gather(*(self._open_lane(tp) for tp in pending))
            for tp, lane in zip(pending, opened, strict=True):
                if lane is not None:  # None: revoked or stopping while it opened
                    await self._install(consumer, tp, lane)

    async def _install(self, consumer: AIOKafkaConsumer, tp: TopicPartition, lane: Lane) -> None:
        """Make an opened lane move (or park it, stopped by an untrusted checkpoint)."""
        async with self._lock:
            if tp not in self._pending:  # revoked after it opened
                await self._close_lane(lane)
                return
            self._pending.discard(tp)
            if lane.stopped is not None:
                await self._park(lane)
                return
            self._stopped.pop(tp, None)
            self._lanes[tp] = lane
            self._seek(tp, lane.resume_from)
            consumer.resume(tp)
            self._metrics.assigned.labels(*self._labels).set(len(self._lanes))
        log.info(
            "bridge %s: moving %s/%d from offset %d (audited until %d)",
            self.settings.name,
            tp.topic,
            tp.partition,
            lane.next_offset,
            lane.audited_until,
        )

    def _new_lane(self, tp: TopicPartition) -> Lane:
        s = self.settings
        src, dst = s.source.name, s.destination.name
        common = {
            "partition": tp.partition,
            "timeout_s": s.operation_timeout_s,
            "transaction_timeout_ms": s.transaction_timeout_ms,
        }
        return Lane(
            tp=tp,
            source_log=TxLog(
                cluster=s.source,
                transactional_id=transactional_id(src, dst, tp.topic, tp.partition, "audit"),
                checkpoint_topic=audit_checkpoint_topic(dst, tp.topic),
                checkpoint_key=checkpoint_key(src, tp.topic, tp.partition),
                direction=s.name,
                client_id=f"{s.bridge_id}/audit/{tp.topic}/{tp.partition}",
                **common,
            ),
            destination_log=TxLog(
                cluster=s.destination,
                transactional_id=transactional_id(src, dst, tp.topic, tp.partition, "mirror"),
                checkpoint_topic=checkpoint_topic(src, tp.topic),
                checkpoint_key=checkpoint_key(src, tp.topic, tp.partition),
                direction=s.name,
                client_id=f"{s.bridge_id}/mirror/{tp.topic}/{tp.partition}",
                **common,
            ),
            settings=s,
            metrics=self._metrics,
            # Explicit partitions (the source partition's): no per-record key hashing on the hot
            # path, and each source partition's audit trail stays in order in one partition.
            audit_partition=tp.partition % self._bus_partitions[s.topics.audit],
            quarantine_partition=tp.partition % self._bus_partitions[s.topics.quarantine],
            leaving=self._leaving,
            seek=self._seek,
            source_bounds=lambda: self._source_bounds(tp),
            clock=self._clock,
            chain=chain_id(src, dst, tp.topic, tp.partition),
            audit_signer=self._audit_signer,
        )

    async def _source_bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """The earliest retained offset of source ``tp`` and its end (the last stable offset:
        the consumer reads ``read_committed``); no lane moves a record at or past it."""
        consumer = self._consumer
        if consumer is None:
            raise TransportError(f"bridge {self.settings.name}: the consumer is closed")
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        return int(start), int(end)

    def _leaving(self) -> bool:
        """A lane retrying a batch gives up: its partition is being revoked or the worker stops."""
        return self._revoking or self._stopping.is_set()

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        self._batches.drop_carried(tp)
        if self._consumer is not None:
            self._consumer.seek(tp, offset)

    async def _open_lane(self, tp: TopicPartition) -> Lane | None:
        """Both logs of ``tp`` opened (every earlier owner fenced) and their checkpoints read;
        the lane is ``stopped`` if a checkpoint cannot be trusted. A stopped lane is re-opened
        as it is, so that its alarm is raised once per reason, not at every re-check."""
        lane = self._stopped.get(tp) or self._new_lane(tp)
        attempt = 0
        while tp in self._pending and not self._stopping.is_set():
            try:
                await lane.open()
                # Fenced: what the previous owner forwarded is all committed; know it first.
                await self._forwarded.load(tp.topic, tp.partition)
            except Exception as exc:
                await lane.close()
                attempt += 1
                if isinstance(exc, RETRYABLE):
                    self._metrics.retries.labels(*self._labels, "open").inc()
                    log.warning(
                        "bridge %s: cannot open %s/%d (%s); retrying",
                        self.settings.name,
                        tp.topic,
                        tp.partition,
                        bounded(str(exc), 1000),
                    )
                else:
                    self._metrics.errors.labels(*self._labels, "open").inc()
                    log.exception(
                        "bridge %s: unexpected error opening %s/%d; retrying",
                        self.settings.name,
                        tp.topic,
                        tp.partition,
                    )
                await asyncio.sleep(self.settings.backoff_s(attempt))
                continue
            return lane
        await self._close_lane(lane)
        return None

    async def _close_lane(self, lane: Lane) -> None:
        self._batches.drop_carried(lane.tp)
        await lane.close()
        lane.forget_metrics()
        labels = (*self._labels, lane.tp.topic, str(lane.tp.partition))
        with contextlib.suppress(KeyError):
            self._metrics.lag.remove(*labels)
        with contextlib.suppress(KeyError):
            self._metrics.checkpoint_age.remove(*labels)
        self._lso.forget(labels)

    # --- one batch ----------------------------------------------------------------------

    async def _judge_all(self, records: Sequence[Any]) -> list[Verdict]:
        s = self.settings
        now = self._clock()

        def run(chunk: Sequence[Any]) -> list[Verdict]:
            # ``judge`` quarantines an ``Unreadable`` stand-in of ``fetch`` with its own error.
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
                    key_grace=s.key_grace,
                    max_clock_skew=s.max_clock_skew,
                )
                for r in chunk
            ]

        if self._pool is None or len(records) <= _JUDGE_SLICE:
            # On the loop, in slices, yielding between them: the commits in flight send their
            # next request as soon as the last one is answered, not after a whole fetch.
            verdicts: list[Verdict] = []
            for start in range(0, len(records), _JUDGE_SLICE):
                if start:
                    await asyncio.sleep(0)
                verdicts += run(records[start : start + _JUDGE_SLICE])
            return verdicts
        size = -(-len(records) // s.verify_threads)
        loop = asyncio.get_running_loop()
        chunks = [records[i : i + size] for i in range(0, len(records), size)]
        results = await asyncio.gather(*(loop.run_in_executor(self._pool, run, c) for c in chunks))
        return [v for part in results for v in part]

    async def _judged(self, lane: Lane, records: Sequence[Any]) -> list[Verdict] | None:
        """The verdicts of a lane's fetched batch after the replay screen; None (logged,
        counted, the lane sought back to its checkpoints) if judging failed: a bug."""
        try:
            return screen(
                await self._judge_all(records),
                index=self._forwarded.index,
                destination=self.settings.destination.name,
                now=self._clock(),
            )
        except Exception:
            await self._unexpected(lane, records[0].offset)
            return None

    async def _commit_after(
        self, previous: asyncio.Task[None] | None, batch: Batch, *, lane: Lane
    ) -> None:
        """Commit ``batch`` once the one before it (``previous``) is done, if that one landed
        whole; else drop it and seek the lane back to its checkpoints."""
        if previous is not None:
            await previous
        batch.committing = True  # from here on it takes no more records
        tp = lane.tp
        if self._stopping.is_set() or self._lanes.get(tp) is not lane:
            return
        if lane.resume_from != batch.after:
            # The batch before it did not land whole (the lane gave up, or sought back): this
            # one does not follow it; the lane fetches again from its checkpoints.
            self._seek(tp, lane.resume_from)
            return
        await self._commit(lane, batch.verdicts, batch.next_offset, batch.started)

    async def _commit(
        self, lane: Lane, verdicts: Sequence[Verdict], next_offset: int, started: float
    ) -> None:
        """Commit one judged batch of a lane; returns when done, or when the lane is lost.

        Never raises but cancellation: an unexpected error is logged, counted, and the batch
        fetched again from the lane's checkpoints after a backoff.
        """
        first_mirrored = lane.next_offset
        try:
            if await lane.commit(verdicts, next_offset=next_offset):
                self._account([v for v in verdicts if v.record.offset >= first_mirrored], started)
        except Exception:
            await self._unexpected(lane, verdicts[0].record.offset)

    async def _unexpected(self, lane: Lane, offset: int) -> None:
        """A bug while moving a lane's records from ``offset``: logged with its traceback,
        counted, the lane sought back to its checkpoints, then a backoff."""
        self._metrics.errors.labels(*self._labels, "batch").inc()
        log.exception(
            "bridge %s: unexpected error moving %s/%d from offset %d; retrying the batch",
            self.settings.name,
            lane.tp.topic,
            lane.tp.partition,
            offset,
        )
        self._seek(lane.tp, lane.resume_from)
        await asyncio.sleep(self.settings.max_backoff_s)

    # --- accounting ---------------------------------------------------------------------

    def _account(self, verdicts: Sequence[Verdict], started: float) -> None:
        """Metrics of one committed batch: one label lookup per series, not per event."""
        m = self._metrics
        now = self._clock()
        latency = m.latency.labels(*self._labels)
        forwarded = 0
        denied: Counter[str] = Counter()
        quarantined: Counter[str] = Counter()
        for v in verdicts:
            if v.outcome is Outcome.FORWARD:
                forwarded += 1
                if v.created_at is not None:
                    latency.observe(max(0.0, (now - v.created_at).total_seconds()))
            elif v.decision is not None:
                denied[str(v.decision.rule)] += 1
            elif v.error is not None:
                quarantined[v.error.reason] += 1
        if forwarded:
            topic = self.settings.mirror_topic(verdicts[0].record.topic)
            m.forwarded.labels(*self._labels, topic).inc(forwarded)
        for rule, n in denied.items():
            m.denied.labels(*self._labels, rule).inc(n)
        for reason, n in quarantined.items():
            m.quarantined.labels(*self._labels, reason).inc(n)
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
                self._lso.observe(labels, stable=stable, high=consumer.highwater(tp), now=now)
        self._observe_checkpoint_ages(now)

    def _observe_checkpoint_ages(self, now: float) -> None:
        """Also called by the watchdog: the ages grow while the loop is stopped."""
        for tp, lane in self._lanes.items():
            labels = (*self._labels, tp.topic, str(tp.partition))
            self._metrics.checkpoint_age.labels(*labels).set(now - lane.checkpointed_at)

    async def _commit_source_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """For operators' lag tools only: the checkpoint on the destination is the truth."""
        offsets = {tp: lane.next_offset for tp, lane in self._lanes.items() if lane.next_offset}
        if offsets:
            with contextlib.suppress(*RETRYABLE):
                # Waits for the group coordinator with no limit of its own.
                timeout = self.settings.operation_timeout_s
                await within(consumer.commit(offsets), timeout, "committing the source offsets")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's base is untyped
    def __init__(self, replicator: Replicator) -> None:
        self._replicator = replicator

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._replicator._revoked(revoked)  # the listener is its part

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._replicator._assigned(assigned)  # the listener is its part

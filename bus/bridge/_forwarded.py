"""What a bridge direction has forwarded, as far as this worker knows: read from the destination.

The lanes write an entry per forwarded event to ``bus.checkpoints.forwarded.<source>.<topic>``
on the destination, in the transaction of the mirrored records (``_outgoing``, ``_replays``).
A worker holds them in one ``RevisionIndex`` shared by its lanes, and keeps it current:

- ``start`` reads every partition of the direction's forwarded topics to its end, before any
  lane moves;
- ``follow`` (a background task) then reads what the other workers of the direction commit;
- ``load`` reads one partition to its end again when its lane opens: its producers have fenced
  the previous owner, so nothing it committed is missed (each partition has that one writer).

An entry that is not one (only the bridge's principal may write these topics) is skipped with a
log line naming where, and counted. See ``docs/decisions/0008-replays-and-revisions.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bus._fetch import fetch
from bus._kafka import RETRYABLE, client_options, stop_within, within
from bus._revisions import RevisionIndex
from bus.bridge._metrics import BridgeMetrics
from bus.bridge._replays import forwarded_topic, read_entry
from bus.bridge.settings import BridgeSettings
from bus.errors import CheckpointError, TransportError
from bus.subscriber import assign_all

__all__ = ["Forwarded"]

log = logging.getLogger("bus.bridge")


class Forwarded:
    """The index of what this direction forwarded, loaded from and kept in step with the
    destination's forwarded topics."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        metrics: BridgeMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.index = RevisionIndex(
            capacity=settings.replay_capacity, window_s=settings.replay_window_s
        )
        self._metrics = metrics
        self._labels = (settings.source.name, settings.destination.name)
        self._clock = clock
        self._follower: AIOKafkaConsumer | None = None

    def _reader(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(s.operation_timeout_s * 1000),
            **client_options(s.destination),
        )

    async def start(self) -> None:
        """Read everything the direction forwarded (within the window) before any lane moves;
        retries with backoff until it has (only cancellation stops it)."""
        attempt = 0
        while True:
            try:
                await self._start()
            except RETRYABLE as exc:
                await self.aclose()
                attempt += 1
                self._metrics.retries.labels(*self._labels, "start").inc()
                log.warning(
                    "bridge %s: cannot read forwarded events (%s); retrying", self._name, exc
                )
                await asyncio.sleep(self.settings.backoff_s(attempt))
            else:
                return

    async def _start(self) -> None:
        await self.aclose()
        s = self.settings
        topics = [forwarded_topic(s.source.name, t) for t in s.source_topics]
        follower = self._reader()
        self._follower = follower
        await asyncio.wait_for(follower.start(), s.operation_timeout_s)
        await assign_all(follower, topics, s.destination.name, from_beginning=True)
        await self._read_to_end(follower, follower.assignment())
        log.info(
            "bridge %s: %d forwarded events remembered from %s",
            s.name,
            len(self.index),
            s.destination.name,
        )

    async def follow(self) -> None:
        """Merge what the direction's workers commit, until cancelled; never raises otherwise."""
        attempt = 0
        while True:
            follower = self._follower
            if follower is None:
                await asyncio.sleep(0.5)
                continue
            try:
                # Bounded: before fetching, ``fetch`` awaits each partition's position.
                following = fetch(follower, timeout_ms=500)
                timeout = self.settings.operation_timeout_s
                batches = await within(following, timeout, "following the forwarded events")
            except RETRYABLE as exc:
                attempt += 1
                log.warning("bridge %s: reading forwarded events failed (%s)", self._name, exc)
                await asyncio.sleep(self.settings.backoff_s(attempt))
                continue
            attempt = 0
            for records in batches.values():
                self._merge(records)

    async def load(self, topic: str, partition: int) -> None:
        """Read the forwarded entries of source ``topic``/``partition`` to their end (after its
        lane fenced the previous owner)."""
        where = TopicPartition(forwarded_topic(self.settings.source.name, topic), partition)
        reader = self._reader()
        try:
            await asyncio.wait_for(reader.start(), self.settings.operation_timeout_s)
            reader.assign([where])
            await reader.seek_to_beginning(where)
            await self._read_to_end(reader, {where})
        finally:
            await stop_within(reader)

    async def aclose(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            await stop_within(follower)

    @property
    def _name(self) -> str:
        return self.settings.name

    async def _read_to_end(
        self, reader: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
    ) -> None:
        wanted = list(partitions)
        if not wanted:
            return
        # read_committed: the last stable offsets; after fencing, nothing below them is pending.
        ends = await reader.end_offsets(wanted)
        timeout = self.settings.operation_timeout_s
        deadline = time.monotonic() + timeout
        reading = f"bridge {self._name}: reading the forwarded events"
        while True:
            behind = [
                tp
                for tp in wanted
                if await within(reader.position(tp), timeout, f"{reading} ({tp.topic})") < ends[tp]
            ]
            if not behind:
                break
            if time.monotonic() > deadline:
                raise TransportError(
                    f"bridge {self._name}: reading the forwarded events on "
                    f"{self.settings.destination.name} made no progress for {timeout:g} s "
                    f"({behind[0].topic}/{behind[0].partition} and {len(behind) - 1} more behind)"
                )
            batches = await fetch(reader, timeout_ms=500)
            for records in batches.values():
                self._merge(records)
            if batches:  # a large state takes long to read: only a stall times out
                deadline = time.monotonic() + timeout

    def _merge(self, records: Sequence[Any]) -> None:
        now = self._clock().timestamp()
        for record in records:
            where = f"{record.topic}/{record.partition}@{record.offset}"
            try:
                event_id, entry = read_entry(
                    record.key, record.value, timestamp_ms=record.timestamp, now=now, where=where
                )
            except CheckpointError as exc:
                self._metrics.replay_state_invalid.labels(*self._labels).inc()
                log.warning("bridge %s: skipped: %s", self._name, exc)
                continue
            self.index.merge(event_id, entry, now=now)
        self._metrics.replay_entries.labels(*self._labels).set(len(self.index))

"""One clock for every contender: from the first record sent to the last committed on the
destination.

- ``sealed``: pre-signed events (``SignedEvent`` v2, batches of 256, as the ``Publisher`` writes
  them; ``bus.testing.EventPlan``'s, about 69% released by the bridge's policy) of about a given
  size;
- ``warm_up``: one released event per partition through to the destination before anything is
  timed, so group joins, ``init_transactions`` and MirrorMaker's connectors are outside every
  figure; it returns the destination's ``read_committed`` reader;
- ``timed``: a publisher process sends the events (at a rate, or as fast as it can) and notes
  when it sent the first; the reader notes when each record arrives.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._clusters import DESTINATION, PARTITIONS, SOURCE, quiet
from bench._contenders import join
from bus.codec import INTELLIGENCE_EVENT, default_store
from bus.envelope import seal_batch
from bus.headers import event_headers
from bus.signing import SigningKey
from bus.testing import EventPlan

__all__ = ["SIGN_BATCH", "Arrivals", "Record", "sealed", "sized_event", "timed", "warm_up"]

SIGN_BATCH = 256
_FILLER = "Observed at the border crossing; details through the liaison channel. "

Record = tuple[int, bytes, bytes, list[tuple[str, bytes]]]
"""(partition, key, value, headers)."""


# --- events ------------------------------------------------------------------------------


def sized_event(i: int, size: int) -> dict[str, Any]:
    """Event ``i`` of ``EventPlan`` (released or not as it says), trimmed or padded so that
    its Avro encoding is about ``size`` bytes (never below the smallest valid event)."""
    event = EventPlan(origin=SOURCE, destination=DESTINATION, count=1).event(i)
    event["subjects"] = event["subjects"][:1]
    event["references"] = []
    event["payload"] = None
    event["summary"] = ""
    event["title"] = event["title"][:40]
    missing = max(0, size - len(default_store().encode(INTELLIGENCE_EVENT, event)) - 2)
    event["summary"] = (_FILLER * (missing // len(_FILLER) + 1))[:missing]
    return event


def sealed(
    count: int, size: int, key: SigningKey, start: float, rate: float | None
) -> list[Record]:
    """``count`` events, batch-signed by ``key``, event ``i`` on partition ``i % PARTITIONS``;
    ``created_at`` is each event's due send time (``start + i / rate``; all ``start`` at
    ``max``)."""
    events = []
    for i in range(count):
        event = sized_event(i, size)
        due = start + (i / rate if rate else 0.0)
        event["created_at"] = datetime.fromtimestamp(due, UTC)
        event["expires_at"] = event["created_at"] + timedelta(days=1)
        events.append(event)
    out = []
    for first in range(0, count, SIGN_BATCH):
        chunk = events[first : first + SIGN_BATCH]
        for offset, (event, value) in enumerate(zip(chunk, seal_batch(chunk, key), strict=True)):
            i = first + offset
            out.append(
                (i % PARTITIONS, event["correlation_id"].encode(), value, event_headers(event))
            )
    return out


# --- the publisher (a spawned process) ---------------------------------------------------


def _publisher_child(
    bootstrap: str,
    topic: str,
    key_path: str,
    rate: float,
    count: int,
    size: int,
    partitions: int,
    first_sent: Any,
) -> None:
    """Send ``count`` events round-robin over ``partitions`` at ``rate``/s (0: as fast as the
    producer can); note when the first was sent. Events are sealed before the clock starts,
    stamped with their due times."""
    quiet()
    key = SigningKey.load(Path(key_path))
    probe = time.perf_counter()
    sealed(64, size, key, time.time(), None)
    per_event = (time.perf_counter() - probe) / 64
    start = time.time() + per_event * count * 1.5 + 1.0
    records = [
        (i % partitions, k, v, h)
        for i, (_, k, v, h) in enumerate(sealed(count, size, key, start, rate or None))
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5 if not rate else 1,
            max_batch_size=256 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        await producer.start()
        try:
            pending = []
            await asyncio.sleep(max(0.0, start - time.time()))
            first_sent.value = time.time()
            for i, (partition, k, v, headers) in enumerate(records):
                if rate:
                    ahead = start + i / rate - time.time()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                pending.append(
                    await producer.send(topic, v, key=k, partition=partition, headers=headers)
                )
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(send())


# --- the destination ---------------------------------------------------------------------


async def warm_up(
    src: str,
    dst: str,
    topic: str,
    mirror: str,
    *,
    partitions: int,
    key_path: Path,
    size: int,
    alive: Callable[[], None],
) -> AIOKafkaConsumer:
    """Send one released event to each partition of ``topic`` and wait until all of them are
    committed on ``mirror``; return the reader of ``mirror``, past them. ``alive`` raises when
    the contender died or it is too late."""
    key = SigningKey.load(key_path)
    released = list(itertools.islice(filter(EventPlan.is_released, itertools.count(1)), partitions))
    warm = sealed(released[-1] + 1, size, key, time.time(), None)
    producer = AIOKafkaProducer(bootstrap_servers=src, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for p, i in enumerate(released):
            _, k, v, h = warm[i]
            await producer.send_and_wait(topic, v, key=k, partition=p, headers=h)
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(
        bootstrap_servers=dst,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await reader.start()
    try:
        while mirror not in await reader.topics():
            alive()
            await asyncio.sleep(0.2)
        reader.assign([TopicPartition(mirror, p) for p in range(partitions)])
        seen = 0
        while seen < partitions:
            alive()
            batches = await reader.getmany(timeout_ms=200)
            seen += sum(len(rs) for rs in batches.values())
    except BaseException:
        await reader.stop()
        raise
    return reader


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrivals:
    """What the destination's reader saw of one timed run."""

    first_sent: float
    """When the publisher sent the first record (epoch seconds; 0 if it never did)."""
    arrived: int
    last: float
    """When the last record arrived (epoch seconds)."""
    load_average: list[float]
    """The 1-minute load average before and after the run."""

    @property
    def seconds(self) -> float:
        """From the first record sent to the last committed on the destination."""
        if self.arrived and self.first_sent:
            return self.last - self.first_sent
        return float("nan")


async def timed(
    reader: AIOKafkaConsumer,
    *,
    src: str,
    topic: str,
    key_path: Path,
    rate: float,
    count: int,
    size: int,
    partitions: int,
    expected: int,
    budget_s: float,
    alive: Callable[[], None],
    each: Callable[[float, Any], None] | None = None,
) -> Arrivals:
    """Publish ``count`` events to ``topic`` at ``rate`` (0: max) from a process of its own
    and read until ``expected`` records arrived or ``budget_s`` passed; ``each(arrival,
    record)`` for every record, if given."""
    ctx = multiprocessing.get_context("spawn")
    first_sent = ctx.Value("d", 0.0)
    publisher = ctx.Process(
        target=_publisher_child,
        args=(src, topic, str(key_path), rate, count, size, partitions, first_sent),
    )
    load_before = os.getloadavg()[0]
    publisher.start()
    arrived, last = 0, 0.0
    until = time.monotonic() + budget_s
    try:
        while arrived < expected and time.monotonic() < until:
            alive()
            batches = await reader.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                if not records:
                    continue
                arrived += len(records)
                last = now
                if each is not None:
                    for r in records:
                        each(now, r)
    finally:
        await join(publisher, 120)
    return Arrivals(
        first_sent=first_sent.value,
        arrived=arrived,
        last=last,
        load_average=[load_before, os.getloadavg()[0]],
    )

"""Throughput, latency and profile of the bridge on real Apache Kafka, against its ceilings.

Run ``python -m bench.bench_bridge`` (``--quick`` for a short run). Starts a fresh two-agency
local federation (``bus.testing.running_federation``: a temporary home, free ports), stops it at
the end (also on error), and measures with ~1 KB signed events (``bus.testing.EventPlan``
events with a padded summary; about 69% released, the rest denied: not releasable or TLP RED):

1. Throughput (source events per second) moving N pre-published events from interpol's topic
   (6 partitions) to europol:

   a. a raw aiokafka pass-through, no verification: ``getmany`` -> idempotent producer on the
      other cluster, same partition, delivery awaited per fetch (the Python ceiling);
   b. the same with a transactional producer per partition and one transaction (records and a
      small checkpoint) per partition per fetch, committed one partition after the other as the
      replicator does; and the same with the partitions' transactions committed concurrently;
   c. the ``Replicator`` in-process with ``verify_threads=0``, then ``verify_threads=2``
      (verification, policy, audit records, transactions, checkpoints);
   d. two ``Replicator`` workers (separate processes) sharing the partitions;
   e. MirrorMaker 2 from the same Kafka jars, counted with end offsets of the mirrored topic.

   Each rate is taken from the first event seen on the destination to the last one, so start-up
   (group join, ``init_transactions``, MM2's connectors) is left out, and so is the whole first
   batch of each contender, which flatters the slowest (issue 12): short runs have shown the
   bridge above MirrorMaker 2 here where ``bench.bench_e2e`` shows it far below. Compare
   contenders with ``bench.bench_e2e`` (``python -m bench``), which times every one from the
   first record sent to the last committed; this module stays for its profile (3.).
2. End-to-end latency, ``created_at`` -> committed on the destination (a ``read_committed``
   consumer compares arrival with ``created_at``), at fixed publish rates, for the replicator
   and the raw pass-through (each in a process of its own; the publisher too).
3. A cProfile of an in-process replicator run (``verify_threads=0``, so that all work is on the
   profiled thread), own time grouped by what it does, and wall time per stage of a batch.

Figures are printed, never asserted: tests do not time things.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import platform
import pstats
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import _contenders
from bench._clusters import DESTINATION, PARTITIONS, SOURCE, quiet, two_agencies
from bench._passthrough import PassThrough, passthrough_child
from bench.bench_stages import PAD
from bus.bridge import Replicator
from bus.config import Config
from bus.envelope import peek, seal_batch
from bus.local._install import kafka_version
from bus.signing import SigningKey
from bus.testing import EventPlan, connect, create_topic, produce_keyed

__all__ = ["main"]


# --- events ------------------------------------------------------------------------------


def _slug(name: str) -> str:
    """``name`` as a piece of a topic name or client id."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]


def _sealed(
    count: int, key: SigningKey, created_at: Callable[[int], datetime] | None = None
) -> list[tuple[bytes, bytes]]:
    """``count`` signed ~1 KB events as (key, value), ``created_at(i)`` if given, else now;
    batch-signed by 256 (``SignedEvent`` v2), as the ``Publisher`` writes them."""
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=count)
    events = []
    for i in range(count):
        event = plan.event(i)
        event["summary"] += PAD
        if created_at is not None:
            event["created_at"] = created_at(i)
            event["expires_at"] = event["created_at"] + timedelta(days=1)
        events.append(event)
    out = []
    for first in range(0, count, 256):
        chunk = events[first : first + 256]
        values = seal_batch(chunk, key)
        out += [(e["correlation_id"].encode(), v) for e, v in zip(chunk, values, strict=True)]
    return out


# --- small Kafka helpers -----------------------------------------------------------------

_BATCHING = {"linger_ms": 5, "max_batch_size": 256 * 1024}


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> int:
    """Sum of the end offsets of ``topic`` (0 while it does not exist)."""
    if topic not in await consumer.topics():
        return 0
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    return sum(ends.values())


async def _rate(
    name: str, count: Callable[[], Awaitable[int]], total: int, *, timeout_s: float
) -> float:
    """Events per second from the first event counted to the last (start-up left out)."""
    deadline = time.monotonic() + timeout_s
    first_at: float | None = None
    first = 0
    while True:
        done = await count()
        now = time.monotonic()
        if first_at is None and done > 0:
            first_at, first = now, done
        if done >= total:
            break
        if now > deadline:
            raise TimeoutError(f"{name}: {done} of {total} events after {timeout_s:.0f} s")
        await asyncio.sleep(0.02)
    assert first_at is not None
    elapsed = now - first_at
    rate = (total - first) / elapsed if elapsed > 0 else float("inf")
    print(f"  {name:44} {rate:>9,.0f} events/s  ({total - first} events in {elapsed:.2f} s)")
    return rate


# --- the latency publisher (a spawned process) -------------------------------------------


def _publisher_child(bootstrap: str, topic: str, key_path: str, rate: float, count: int) -> None:
    """Publish ``count`` events at ``rate``/s; each ``created_at`` is its scheduled send time.

    Sealing costs about as much as a core can do at 2,000/s, so the events are sealed first,
    stamped with the times they will be sent at, then sent on schedule.
    """
    key = SigningKey.load(Path(key_path))
    probe = time.perf_counter()
    _sealed(50, key)
    per_event = (time.perf_counter() - probe) / 50
    start = time.time() + per_event * count * 1.5 + 1.0
    values = _sealed(count, key, lambda i: datetime.fromtimestamp(start + i / rate, UTC))

    async def send() -> None:
        producer = AIOKafkaProducer(
            **connect(bootstrap), acks="all", enable_idempotence=True, linger_ms=1
        )
        await producer.start()
        try:
            futures = []
            await asyncio.sleep(max(0.0, start - time.time()))
            for i, (k, v) in enumerate(values):
                ahead = start + i / rate - time.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                futures.append(await producer.send(topic, v, key=k))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


# --- the bench ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Bench:
    config: Config
    config_path: Path
    key_path: Path
    jars: Path
    home: Path
    events: int
    seconds: float
    values: list[tuple[bytes, bytes]]

    @property
    def src(self) -> str:
        return ",".join(self.config.agency(SOURCE).bootstrap_servers)

    @property
    def dst(self) -> str:
        return ",".join(self.config.agency(DESTINATION).bootstrap_servers)

    async def topic(self, kind: str, *, publish: bool = True) -> str:
        name = f"bench.{_slug(kind)}.{uuid.uuid4().hex[:6]}"
        await create_topic(self.src, name, PARTITIONS)
        if publish:
            await produce_keyed(self.src, name, self.values, producer=_BATCHING)
        return name

    # 1a, 1b
    async def passthrough(self, name: str, **options: bool) -> float:
        topic = await self.topic(name)
        mirror = f"{SOURCE}.{topic}"
        await create_topic(self.dst, mirror, PARTITIONS)
        if options.get("transactional"):
            await create_topic(self.dst, f"{mirror}.checkpoints", PARTITIONS)
        loop = PassThrough(self.src, self.dst, topic, mirror, **options)
        task = asyncio.ensure_future(loop.run())

        async def count() -> int:
            if task.done():
                task.result()
            return loop.done

        try:
            return await _rate(name, count, self.events, timeout_s=300)
        finally:
            loop.stopping.set()
            await task

    # 1c
    async def replicator(self, name: str, verify_threads: int) -> float:
        topic = await self.topic(name)
        replicator, registry = _contenders.replicator(
            self.config, topic, f"bench-{_slug(name)}", verify_threads
        )
        task = asyncio.ensure_future(replicator.run())

        async def count() -> int:
            if task.done():
                task.result()
            return _contenders.processed(registry)

        try:
            return await _rate(name, count, self.events, timeout_s=300)
        finally:
            replicator.stop()
            await task

    # 1d
    async def workers(self, name: str, count: int, verify_threads: int) -> float:
        topic = await self.topic(name, publish=False)
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        progress = [ctx.Value("q", 0) for _ in range(count)]
        assigned = [ctx.Value("q", 0) for _ in range(count)]
        children = [
            ctx.Process(
                target=_contenders.replicator_child,
                args=(
                    str(self.config_path),
                    topic,
                    f"bench-{_slug(name)}-{i}",
                    verify_threads,
                    progress[i],
                    assigned[i],
                    stop,
                ),
            )
            for i in range(count)
        ]
        for child in children:
            child.start()
        try:
            deadline = time.monotonic() + 120
            # Every worker owns partitions (group settled) before the events are published.
            while not (
                all(a.value > 0 for a in assigned) and sum(a.value for a in assigned) == PARTITIONS
            ):
                if time.monotonic() > deadline or not all(c.is_alive() for c in children):
                    raise RuntimeError(f"{name}: workers never shared the partitions")
                await asyncio.sleep(0.1)
            print(f"    partitions per worker: {[a.value for a in assigned]}")
            publishing = asyncio.ensure_future(
                produce_keyed(self.src, topic, self.values, producer=_BATCHING)
            )

            async def done() -> int:
                return sum(p.value for p in progress)

            rate = await _rate(name, done, self.events, timeout_s=300)
            await publishing
            return rate
        finally:
            stop.set()
            for child in children:
                await _contenders.join(child)

    # 1e
    async def mirrormaker(self, name: str) -> float:
        topic = await self.topic(name)
        process = await asyncio.to_thread(
            _contenders.start_mirrormaker, self.home / "mm2", self.src, self.dst, topic, self.jars
        )
        consumer = AIOKafkaConsumer(**connect(self.dst), group_id=None)
        await consumer.start()
        started = time.monotonic()
        try:

            async def count() -> int:
                if process.poll() is not None:
                    raise RuntimeError(f"MirrorMaker exited with {process.returncode}")
                return await _end_offsets(consumer, f"{SOURCE}.{topic}")

            rate = await _rate(name, count, self.events, timeout_s=240)
            print(f"    (MM2 start to last event: {time.monotonic() - started:.1f} s)")
            return rate
        finally:
            await consumer.stop()
            await _contenders.stop(process)

    # 2
    async def latency(self, name: str, rate: float, *, replicator: bool) -> None:
        count = int(rate * self.seconds)
        topic = await self.topic(f"{name}-{int(rate)}", publish=False)
        mirror = f"{SOURCE}.{topic}"
        ctx = multiprocessing.get_context("spawn")
        stop, ready = ctx.Event(), ctx.Event()
        if replicator:
            assigned, progress = ctx.Value("q", 0), ctx.Value("q", 0)
            child = ctx.Process(
                target=_contenders.replicator_child,
                args=(
                    str(self.config_path),
                    topic,
                    f"bench-{_slug(name)}",
                    0,
                    progress,
                    assigned,
                    stop,
                ),
            )
            expected = sum(1 for i in range(count) if EventPlan.is_released(i))
        else:
            await create_topic(self.dst, mirror, PARTITIONS)
            child = ctx.Process(
                target=passthrough_child, args=(self.src, self.dst, topic, mirror, ready, stop)
            )
            expected = count
        child.start()
        publisher = None
        try:
            deadline = time.monotonic() + 120
            while not (ready.is_set() or (replicator and assigned.value == PARTITIONS)):
                if time.monotonic() > deadline or not child.is_alive():
                    raise RuntimeError(f"{name}: never ready")
                await asyncio.sleep(0.05)
            consumer = AIOKafkaConsumer(
                **connect(self.dst),
                group_id=None,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                consumer.assign([TopicPartition(mirror, p) for p in range(PARTITIONS)])
                publisher = ctx.Process(
                    target=_publisher_child,
                    args=(self.src, topic, str(self.key_path), rate, count),
                )
                publisher.start()
                latencies: list[float] = []
                until = time.monotonic() + self.seconds * 3 + 60
                while len(latencies) < expected and time.monotonic() < until:
                    batches = await consumer.getmany(timeout_ms=100)
                    arrived = time.time()
                    for records in batches.values():
                        for r in records:
                            created = peek(r.value).event["created_at"].timestamp()
                            latencies.append(arrived - created)
            finally:
                await consumer.stop()
        finally:
            stop.set()
            for process in (publisher, child):
                if process is not None:
                    await _contenders.join(process)
        latencies.sort()
        if not latencies:
            print(f"  {name:20} {rate:>6,.0f}/s  no event arrived")
            return
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"  {name:20} {rate:>6,.0f}/s  p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {latencies[-1] * 1000:7.1f} ms  ({len(latencies)}/{expected} events)"
        )

    # 3
    async def profile(self, events: int) -> dict[str, Any]:
        topic = await self.topic("profile")
        replicator, registry = _contenders.replicator(self.config, topic, "bench-profile", 0)
        stages = _time_stages(replicator)
        task = asyncio.ensure_future(replicator.run())
        profiler = cProfile.Profile()
        try:
            await replicator.started.wait()
            profiler.enable()
            started = time.monotonic()
            while _contenders.processed(registry) < events:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            wall = time.monotonic() - started
            profiler.disable()
        finally:
            replicator.stop()
            await task
        return _print_profile(profiler, wall, events, stages)


# --- profile reporting -------------------------------------------------------------------

_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting for I/O (epoll)", ("select.epoll", "method 'poll'")),
    ("ed25519 verify (PyNaCl)", ("nacl/", "crypto_sign")),
    ("avro decode (fastavro read)", ("fastavro/_read", "schemaless_reader", "reader")),
    ("avro encode (fastavro write)", ("fastavro/_write", "schemaless_writer", "writer")),
    ("envelope, trust, codec", ("bus/envelope", "bus/signing", "bus/trust", "bus/codec")),
    ("policy", ("bus/policy",)),
    ("audit record build", ("bus/audit",)),
    ("bridge: judge, hops, checkpoint", ("bus/bridge/",)),
    ("aiokafka producer + transactions", ("aiokafka/producer",)),
    ("aiokafka consumer / fetcher", ("aiokafka/consumer",)),
    ("aiokafka records (batch build/read)", ("aiokafka/record",)),
    ("aiokafka network + protocol", ("aiokafka/conn", "aiokafka/client", "aiokafka/protocol")),
    ("prometheus metrics", ("prometheus_client",)),
    ("asyncio event loop", ("asyncio/",)),
    ("datetime, uuid, json", ("datetime", "uuid", "json/", "_strptime")),
)


def _category(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    for name, needles in _CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    return "other (python, builtins)"


def _print_profile(
    profiler: cProfile.Profile, wall: float, events: int, stages: dict[str, list[float]]
) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    by_category: dict[str, float] = {}
    for (filename, _, function), (_, _, own, _, _) in raw.items():
        key = _category(filename, function)
        by_category[key] = by_category.get(key, 0.0) + own
    total = sum(by_category.values())
    print(
        f"  {events} events in {wall:.2f} s wall ({events / wall:,.0f}/s); "
        f"profiled time {total:.2f} s (cProfile slows Python code down)"
    )
    print(f"  {'own time by category':40} {'s':>7} {'share':>6} {'us/event':>9}")
    for name, seconds in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"  {name:40} {seconds:7.2f} {seconds / total:6.1%} {seconds / events * 1e6:9.1f}")
    print("  wall time per stage of a batch (awaits included), summed over the run:")
    for stage, times in stages.items():
        print(
            f"  {stage:40} {sum(times):7.2f} s {sum(times) / wall:6.1%} of wall, "
            f"{len(times)} calls, mean {sum(times) / max(1, len(times)) * 1000:6.2f} ms"
        )
    print("  top functions by own time:")
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:15]
    for (filename, line, function), (_, calls, own, cumulative, _) in top:
        short = "/".join(Path(filename).parts[-2:]) if filename != "~" else ""
        print(f"  {own:7.3f} s {cumulative:7.3f} s cum {calls:>8}  {short}:{line} {function}"[:150])
    return {
        "events": events,
        "wall_s": wall,
        "load_average": list(os.getloadavg()),
        "own_us_per_event": {
            name: seconds / events * 1e6
            for name, seconds in sorted(by_category.items(), key=lambda kv: -kv[1])
        },
        "batch_stages": {
            stage: {
                "calls": len(times),
                "share_of_wall": sum(times) / wall,
                "us_per_event": sum(times) / events * 1e6,
                "mean_ms": sum(times) / max(1, len(times)) * 1000,
            }
            for stage, times in stages.items()
        },
    }


def _time_stages(replicator: Replicator) -> dict[str, list[float]]:
    """Wrap the replicator's batch stages to sum their wall time (awaits included)."""
    stages: dict[str, list[float]] = {}
    names = {
        "_judge_all": "verify + decode + policy + audit (judge)",
        "_write_source": "audit records to source, acknowledged",
        "_write_destination": "destination transaction + commit",
        "_commit_audit": "audit transaction on the source, committed",
        "_commit_mirror": "destination transaction + commit",
        "_move": "whole batch (_move)",
    }
    for attribute, label in names.items():
        original = getattr(replicator, attribute, None)
        if original is None:  # the replicator's stages were renamed: time what is there
            continue
        times = stages.setdefault(label, [])

        def timed(
            *args: Any, _original: Any = original, _times: list[float] = times
        ) -> Awaitable[Any]:
            async def call() -> Any:
                started = time.perf_counter()
                try:
                    return await _original(*args)
                finally:
                    _times.append(time.perf_counter() - started)

            return call()

        setattr(replicator, attribute, timed)
    return stages


# --- main --------------------------------------------------------------------------------


async def _run(
    bench: Bench, *, skip_mm2: bool, profile_events: int, profile_only: bool
) -> dict[str, Any]:
    if profile_only:
        print(f"\nprofile: in-process replicator, verify_threads=0, {profile_events} events")
        return await bench.profile(profile_events)
    n = bench.events
    print(f"\n1. throughput, {n} pre-published events, {PARTITIONS} partitions")
    raw = await bench.passthrough("a. raw pass-through (idempotent)")
    txn = await bench.passthrough("b. pass-through + transactions", transactional=True)
    txn_c = await bench.passthrough(
        "b'. same, partitions committed concurrently", transactional=True, concurrent=True
    )
    rep0 = await bench.replicator("c. replicator, verify_threads=0", 0)
    rep2 = await bench.replicator("c. replicator, verify_threads=2", 2)
    two = await bench.workers("d. two replicator workers (processes, vt=0)", 2, 0)
    mm2 = None if skip_mm2 else await bench.mirrormaker("e. MirrorMaker 2")
    best = max(rep0, rep2)
    print("  ratios:")
    print(f"    replicator vt=0 / raw pass-through   {rep0 / raw:5.2f}  (target >= 0.6)")
    print(f"    replicator vt=2 / raw pass-through   {rep2 / raw:5.2f}")
    print(f"    replicator vt=0 / txn pass-through   {rep0 / txn:5.2f}")
    print(f"    txn pass-through / raw pass-through  {txn / raw:5.2f}")
    print(f"    concurrent txn / sequential txn      {txn_c / txn:5.2f}")
    print(f"    two workers / one worker (vt=0)      {two / rep0:5.2f}")
    if mm2 is not None:
        print(f"    best replicator / MirrorMaker 2      {best / mm2:5.2f}")
    print(
        f"\n2. end-to-end latency (created_at -> committed on {DESTINATION}), {bench.seconds:.0f} s"
    )
    for rate in (500.0, 2000.0):
        await bench.latency("raw pass-through", rate, replicator=False)
        await bench.latency("replicator (vt=0)", rate, replicator=True)
    print(f"\n3. profile: in-process replicator, verify_threads=0, {profile_events} events")
    bench.values = bench.values[:profile_events]
    return await bench.profile(profile_events)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_bridge", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events, shorter latency runs")
    parser.add_argument("--events", type=int, help="events per throughput run")
    parser.add_argument("--skip-mm2", action="store_true", help="leave MirrorMaker 2 out")
    parser.add_argument("--profile-only", action="store_true", help="only the profile (3.)")
    args = parser.parse_args(argv)
    quiet()
    events = args.events or (6000 if args.quick else 20000)
    if args.profile_only:
        events = args.events or (4000 if args.quick else 10000)
    seconds = 5.0 if args.quick else 10.0
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores; "
        f"Apache Kafka {kafka_version()} (KRaft, one node per agency, loopback)"
    )
    # The figures compare with earlier plaintext runs: the nodes and every client here
    # (connect() gives plain options for them) speak plaintext.
    with two_agencies("bench-bridge-") as setup:
        print(f"federation up in {setup.up_s:.1f} s")
        t = time.monotonic()
        values = _sealed(events, setup.federated.keys[SOURCE])
        print(
            f"sealed {events} events in {time.monotonic() - t:.1f} s, "
            f"value {len(values[0][1])} bytes, "
            f"{sum(1 for i in range(events) if EventPlan.is_released(i))} to be released"
        )
        bench = Bench(
            config=setup.federated.config,
            config_path=setup.config_path,
            key_path=setup.key_path,
            jars=setup.jars,
            home=setup.home,
            events=events,
            seconds=seconds,
            values=values,
        )
        return asyncio.run(
            _run(
                bench,
                skip_mm2=args.skip_mm2,
                profile_events=min(events, 10000),
                profile_only=args.profile_only,
            )
        )


if __name__ == "__main__":
    main()

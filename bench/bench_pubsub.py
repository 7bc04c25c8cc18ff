"""Publisher and subscriber throughput against raw aiokafka clients, on real Kafka.

Run ``python -m bench.bench_pubsub [--quick] [--events N] [--rounds R] [--profile]``. Starts
its own one-node Kafka (KRaft) federation in a temporary folder on free ports, then measures,
for realistic ~1 KB events:

- publishing: a raw ``AIOKafkaProducer`` sending already-sealed values (same bytes, keys and
  headers, same producer settings: idempotent, ``acks=all``, linger 5 ms, 256 KiB batches)
  against ``Publisher.publish_many`` on the events (which validates, encodes and signs each);
- consuming: a raw ``AIOKafkaConsumer`` (``read_committed``, ``getmany``) against a
  ``Subscriber`` yielding verified, decoded events, without a group and with one (commits).

Each figure is the best of ``--rounds`` interleaved rounds, and each ratio the median of the
ratios within a round (issue 12's targets: publisher >= 0.6 x the raw producer, subscriber
>= 0.4 x the raw consumer); beside them, this process's CPU time per event for each contender
(the client's side only, start-up included), which moves much less with the machine's load.
With ``--profile``: CPU time per event without Kafka of what the publisher and the subscriber
must do against their whole per-event paths, then a cProfile of each on Kafka (what they show:
``docs/pubsub-profile.md``). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata
from prometheus_client import CollectorRegistry

from bench.bench_core import realistic_event
from bus import envelope, events
from bus.batch import RootCache
from bus.config import Config
from bus.envelope import seal_batch
from bus.headers import event_headers, event_key
from bus.publisher import Publisher, open_publisher
from bus.signing import SigningKey
from bus.subscriber import Subscriber, open_subscriber
from bus.testing import connect, create_topic, running_federation, signed_config
from bus.trust import TrustedKey, TrustStore

__all__ = ["main"]

AGENCY = "interpol"
PARTITIONS = 3
_PRODUCER = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_batch_size": 262144}


def _events(count: int) -> list[dict[str, Any]]:
    template = realistic_event()
    return [
        {**template, "event_id": str(uuid.uuid4()), "correlation_id": f"case-{i % 64}"}
        for i in range(count)
    ]


async def _raw_produce(bootstrap: str, topic: str, records: list[Any], window: int) -> float:
    producer = AIOKafkaProducer(**connect(bootstrap), **_PRODUCER)
    await producer.start()
    try:
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for key, value, headers in records:
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _publish(config: Config, topic: str, batch: list[dict[str, Any]], window: int) -> float:
    async with open_publisher(config, AGENCY, topic=topic, max_in_flight=window) as publisher:
        started = time.perf_counter()
        await publisher.publish_many(batch)
        return len(batch) / (time.perf_counter() - started)


async def _raw_consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        **connect(bootstrap),
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        seen = 0
        started: float | None = None
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if started is None and batch:
                started = time.perf_counter()  # group join excluded, as for the subscriber
            for records in batch.values():
                seen += len(records)
        assert started is not None
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _subscribe(config: Config, topic: str, count: int, *, group: bool) -> float:
    async with open_subscriber(
        config,
        AGENCY,
        group_id=f"bench-sub-{uuid.uuid4().hex[:8]}" if group else None,
        topics=[topic],
        from_beginning=True,
    ) as subscriber:
        seen = 0
        started: float | None = None
        async for delivery in subscriber:
            if started is None:
                started = time.perf_counter()
            seen += 1
            if seen == count:
                subscriber.done(delivery)
                break
        assert started is not None
        # The first delivery is excluded from the count as it starts the clock.
        return (count - 1) / (time.perf_counter() - started)


async def _bench(config: Config, count: int, rounds: int, window: int) -> dict[str, Any]:
    bootstrap = ",".join(config.agency(AGENCY).bootstrap_servers)
    key_path = config.agency(AGENCY).signing_key
    assert key_path is not None
    key = SigningKey.load(key_path)
    rates: dict[str, float] = {}
    per_round: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    cpu_started = time.process_time()

    def best(name: str, rate: float) -> None:
        nonlocal cpu_started
        rates[name] = max(rates.get(name, 0.0), rate)
        per_round.setdefault(name, []).append(rate)
        # This process's CPU time over the whole run (client start-up included; the broker,
        # another process, excluded): much less sensitive to the machine's load than rates.
        cpu.setdefault(name, []).append((time.process_time() - cpu_started) / count * 1e6)
        cpu_started = time.process_time()

    for round_ in range(rounds):
        batch = _events(count)
        records = [
            (e["correlation_id"].encode(), envelope.seal(e, key), event_headers(e)) for e in batch
        ]
        raw_topic, bus_topic = f"bench.raw.{round_}", f"bench.bus.{round_}"
        await create_topic(bootstrap, raw_topic, PARTITIONS)
        await create_topic(bootstrap, bus_topic, PARTITIONS)
        load = os.getloadavg()[0]
        cpu_started = time.process_time()
        best("raw producer", await _raw_produce(bootstrap, raw_topic, records, window))
        best("publisher", await _publish(config, bus_topic, batch, window))
        best("raw consumer", await _raw_consume(bootstrap, bus_topic, count))
        best("subscriber, no group", await _subscribe(config, bus_topic, count, group=False))
        best("subscriber, group", await _subscribe(config, bus_topic, count, group=True))
        per_round.setdefault("load average", []).append(load)
        cpu_started = time.process_time()  # the next round's topic set-up is nobody's
        print(
            f"  round {round_ + 1} (load {load:.1f}): "
            + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in per_round.items() if k != "load average")
        )
    print(f"best of {rounds} rounds, {count} events each, {PARTITIONS} partitions:")
    for name, rate in rates.items():
        print(f"  {name:24} {rate:>10,.0f} events/s")
    ratios: dict[str, list[float]] = {}
    for name, base, target in (
        ("publisher", "raw producer", 0.6),
        ("subscriber, no group", "raw consumer", 0.4),
        ("subscriber, group", "raw consumer", 0.4),
    ):
        within = [a / b for a, b in zip(per_round[name], per_round[base], strict=True)]
        ratios[f"{name} / {base}"] = within
        print(
            f"{name + ' / ' + base:33} {statistics.median(within):5.2f} "
            f"[{min(within):.2f}-{max(within):.2f}] within rounds  (target >= {target})"
        )
    print("client CPU time per event, this process (us; median [min-max] over rounds):")
    for name, spent in cpu.items():
        print(f"  {name:24} {statistics.median(spent):7.1f} [{min(spent):.1f}-{max(spent):.1f}]")
    return {
        "events": count,
        "rounds": rounds,
        "rates": per_round,
        "ratios": ratios,
        "cpu_us_per_event": cpu,
    }


def _path_costs(rounds: int = 7) -> dict[str, float]:
    """CPU time per event, without Kafka, of what the publisher must do (validate, seal in
    batches of 256, headers and key) against ``publish_many`` with a producer that acknowledges
    at once, and of ``open_`` + ``validate`` (what a subscriber must do) against the
    subscriber's whole per-event path (``__anext__`` over fetched records, then ``done``), with
    and without the replay screen: the best of ``rounds`` interleaved rounds over 2,560 1 KB
    events."""
    key = SigningKey.generate()
    now = datetime.now(UTC)
    trust = TrustStore(
        [TrustedKey(agency=AGENCY, public_key=key.public_key, not_before=now - timedelta(days=400))]
    )
    batch = _events(2560)
    values = [v for i in range(0, len(batch), 256) for v in seal_batch(batch[i : i + 256], key)]
    records = [
        ConsumerRecord("t", i % 3, i, 0, 0, b"k", v, None, 1, len(v), tuple(event_headers(e)))
        for i, (v, e) in enumerate(zip(values, batch, strict=True))
    ]

    def opened() -> None:
        roots = RootCache()
        for value in values:
            events.validate(envelope.open_(value, trust, roots=roots).event)

    async def subscribed(dedup: int) -> None:
        subscriber = Subscriber(
            cast(Any, None),  # a group-less subscriber with records fetched touches no consumer
            agency=AGENCY,
            group_id=None,
            trust=trust,
            quarantine=None,
            dedup_capacity=dedup,
            on_rejected=None,
            max_records=500,
            commit_interval_s=3600.0,
            registry=CollectorRegistry(),
            roots=RootCache(),
        )
        subscriber._buffer.extend(records)
        for _ in records:
            delivery = await subscriber.__anext__()
        subscriber.done(delivery)

    class _Producer:
        """Acknowledges every record on the next turn of the loop: the publisher's own cost."""

        async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
            loop = asyncio.get_running_loop()
            ack: asyncio.Future[Any] = loop.create_future()
            loop.call_soon(ack.set_result, RecordMetadata(topic, 0, None, 0, -1, None, 0))
            return ack

    def sealed() -> None:
        for i in range(0, len(batch), 256):
            chunk = batch[i : i + 256]
            for event in chunk:
                events.validate(event)
            seal_batch(chunk, key)
            for event in chunk:
                event_headers(event), event_key(event)

    async def published() -> None:
        publisher = Publisher(
            cast(Any, _Producer()),
            agency=AGENCY,
            topic="t",
            signer=key,
            max_in_flight=10_000,
            registry=CollectorRegistry(),
        )
        await publisher.publish_many(batch)

    runs: dict[str, Callable[[], Any]] = {
        "validate + seal_batch + headers and key": sealed,
        "publisher per event, producer stubbed": lambda: asyncio.run(published()),
        "open_ + validate": opened,
        "subscriber per event, no replay screen": lambda: asyncio.run(subscribed(0)),
        "subscriber per event, replay screen": lambda: asyncio.run(subscribed(100_000)),
    }
    costs: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.process_time()
            run()
            costs[name].append((time.process_time() - started) / len(records) * 1e6)
    print(f"CPU time per event without Kafka (us; best and median of {rounds} rounds):")
    for name, spent in costs.items():
        print(f"  {name:40} {min(spent):6.1f} {statistics.median(spent):6.1f}")
    return {name: min(spent) for name, spent in costs.items()}


async def _profile(config: Config, count: int, window: int) -> dict[str, Any]:
    """cProfile of the publisher and of each subscriber over ``count`` events: own time per
    event of the costliest functions, by this process's CPU clock (cProfile slows Python code,
    not the broker, so shares are skewed towards Python)."""
    bootstrap = ",".join(config.agency(AGENCY).bootstrap_servers)
    topic = "bench.profile"
    await create_topic(bootstrap, topic, PARTITIONS)
    batch = _events(count)
    result: dict[str, Any] = {"events": count, "path": _path_costs()}
    runs: list[tuple[str, Any]] = [
        ("publisher", lambda: _publish(config, topic, batch, window)),
        ("subscriber, no group", lambda: _subscribe(config, topic, count, group=False)),
        ("subscriber, group", lambda: _subscribe(config, topic, count, group=True)),
    ]
    for name, run in runs:
        profiler = cProfile.Profile(time.process_time)  # CPU time: the load adds no waits
        profiler.enable()
        rate = await run()
        profiler.disable()
        stats = pstats.Stats(profiler)
        rows = sorted(
            ((tt, nc, func) for func, (_, nc, tt, _, _) in stats.stats.items()),  # type: ignore[attr-defined]
            reverse=True,
        )
        total = sum(tt for tt, _, _ in rows)
        print(
            f"{name}: {rate:,.0f} events/s under cProfile, own time {total / count * 1e6:.1f} "
            "us per event; the costliest functions (own time, us per event, calls per event):"
        )
        top = []
        for tt, nc, (path, line, func) in rows[:25]:
            where = f"{Path(path).name}:{line}({func})" if line else func
            print(f"  {tt / count * 1e6:8.2f}  {nc / count:7.2f}  {where}")
            top.append({"function": where, "us_per_event": tt / count * 1e6, "calls": nc / count})
        result[name] = {"rate": rate, "us_per_event": total / count * 1e6, "top": top}
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Start a federation, measure, print, stop."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_pubsub", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--events", type=int, help="events per run")
    parser.add_argument("--rounds", type=int, help="rounds (best of)")
    parser.add_argument("--window", type=int, default=10_000, help="max events in flight")
    parser.add_argument(
        "--profile", action="store_true", help="only profile the publisher and the subscribers"
    )
    args = parser.parse_args(argv)
    count = args.events or (5000 if args.quick else 20000)
    rounds = args.rounds or (1 if args.quick else 3)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores; Kafka on loopback")
    with (
        tempfile.TemporaryDirectory(prefix="bench-pubsub-") as tmp,
        # The figures compare with earlier plaintext runs: the nodes and every client here
        # (connect() gives plain options for them) speak plaintext.
        running_federation(
            Path(tmp) / "federation", (AGENCY,), partitions=PARTITIONS, insecure_plaintext=True
        ) as federation,
    ):
        config = signed_config(federation.config, Path(tmp) / "keys")
        if args.profile:
            return asyncio.run(_profile(config, count, args.window))
        return asyncio.run(_bench(config, count, rounds, args.window))


if __name__ == "__main__":
    main()

"""One direction's bridge throughput against partitions and worker processes.

Run ``python -m bench.bench_scale [--quick] [--reps R] [--events N] [--partitions 1,3,6,12]
[--workers 1,2,3] [--json FILE]``. Starts a fresh two-agency plaintext federation (one KRaft
node per agency, free ports, a temporary home), as ``bench.bench_e2e`` does, and for each
configuration moves N pre-signed events (``SignedEvent`` v2, ~1 KB, about 69% released) from
interpol to europol through ``bus bridge run`` processes of the one direction (the same
consumer group, so they share the partitions):

- partitions: a topic of 1, 3, 6, 12 partitions, one worker;
- workers: 1, 2, 3 workers on a topic of 6 partitions (``max(--partitions)`` if smaller than 6
  is not asked for: the topic has at least as many partitions as there are workers).

Each configuration gets a topic of its own; its workers are started, every partition must be
assigned (``/healthz``) and one released event per partition must arrive on the destination
before anything is timed. Then a publisher process sends the N events as fast as it can, spread
over the partitions, and a ``read_committed`` consumer on the destination notes the arrival of
the last released record. Every configuration is timed as ``bench.bench_e2e`` times every
contender: source events / (last record committed on the destination - first record sent).
Each figure is also given as a ratio to the 1-partition, 1-worker figure of the same
repetition (configurations are interleaved within a repetition, so a busy machine slows them
alike). The load average is recorded beside every run. Figures are printed and returned
(``bench.report`` writes them), never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.bench_bridge import DESTINATION, SOURCE, _quiet
from bench.bench_e2e import _delete_topics, machine, peak_rss_mib, sealed
from bench.bench_mesh import _health
from bus.local._install import kafka_version
from bus.signing import SigningKey
from bus.testing import (
    EventPlan,
    create_topic,
    federated_config,
    free_base_port,
    running_federation,
)

__all__ = ["main", "measure"]

SIZE = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    reps: int
    events: int
    partitions: tuple[int, ...]
    """Partition counts, each with one worker."""
    workers: tuple[int, ...]
    """Worker counts, each on a topic of ``worker_partitions`` partitions."""
    worker_partitions: int = 6

    def configurations(self) -> list[tuple[int, int]]:
        """(partitions, workers), the baseline (1, 1) first, each once."""
        out = [(1, 1)]
        for p in self.partitions:
            out.append((p, 1))
        for w in self.workers:
            out.append((max(self.worker_partitions, w), w))
        return list(dict.fromkeys(out))


def plan_for(*, quick: bool, reps: int | None, events: int | None) -> Plan:
    if quick:
        return Plan(reps=reps or 1, events=events or 3000, partitions=(1, 6), workers=(1, 2))
    return Plan(reps=reps or 2, events=events or 20000, partitions=(1, 3, 6, 12), workers=(1, 2, 3))


def _publisher_child(
    bootstrap: str, topic: str, key_path: str, count: int, partitions: int, first_sent: Any
) -> None:
    """Send ``count`` ~1 KB events round-robin over ``partitions`` as fast as the producer can;
    note when the first was sent. Events are sealed before the clock starts."""
    _quiet()
    key = SigningKey.load(Path(key_path))
    records = [
        (i % partitions, k, v, h)
        for i, (_, k, v, h) in enumerate(sealed(count, SIZE, key, time.time(), None))
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        await producer.start()
        try:
            pending = []
            first_sent.value = time.time()
            for partition, k, v, headers in records:
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


@dataclass(slots=True, kw_only=True)
class Setup:
    src: str
    dst: str
    config_path: Path
    key_path: Path
    home: Path


class Configuration:
    """``workers`` ``bus bridge run`` processes of interpol->europol on a topic of its own."""

    def __init__(self, setup: Setup, partitions: int, workers: int) -> None:
        self.setup, self.partitions, self.workers = setup, partitions, workers
        self.topic = f"bench.scale.p{partitions}w{workers}.{uuid.uuid4().hex[:6]}"
        self.mirror = f"{SOURCE}.{self.topic}"
        self.processes: list[tuple[subprocess.Popen[bytes], int]] = []
        self.reader: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.setup
        await create_topic(s.src, self.topic, self.partitions)
        for n in range(self.workers):
            port = free_base_port(1)
            log = s.home / f"{self.topic}-{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: ASYNC220  # returns at once
                    [
                        sys.executable,
                        "-m",
                        "bus",
                        "bridge",
                        "run",
                        "--config",
                        str(s.config_path),
                        "--from",
                        SOURCE,
                        "--to",
                        DESTINATION,
                        "--topic",
                        self.topic,
                        "--bridge-id",
                        f"bench-scale-{n}",
                        "--web-port",
                        str(port),
                        "--loglevel",
                        "warn",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.processes.append((process, port))
        deadline = time.monotonic() + 600
        while True:
            self._alive(deadline)
            assigned = 0
            for _, port in self.processes:
                status = await asyncio.to_thread(_health, port) or {}
                assigned += len(status.get("partitions") or ())
            if assigned >= self.partitions:
                break
            await asyncio.sleep(0.5)
        # Warm-up: one released event per partition, through, before anything is timed.
        key = SigningKey.load(s.key_path)
        released = [i for i in range(1, 400) if EventPlan.is_released(i)][: self.partitions]
        warm = sealed(released[-1] + 1, SIZE, key, time.time(), None)
        producer = AIOKafkaProducer(bootstrap_servers=s.src, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for p, i in enumerate(released):
                _, k, v, h = warm[i]
                await producer.send_and_wait(self.topic, v, key=k, partition=p, headers=h)
        finally:
            await producer.stop()
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=s.dst,
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await self.reader.start()
        while self.mirror not in await self.reader.topics():
            self._alive(deadline)
            await asyncio.sleep(0.2)
        self.reader.assign([TopicPartition(self.mirror, p) for p in range(self.partitions)])
        seen = 0
        while seen < self.partitions:
            self._alive(deadline)
            batches = await self.reader.getmany(timeout_ms=200)
            seen += sum(len(rs) for rs in batches.values())

    def _alive(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"p{self.partitions} w{self.workers}: not ready in time")
        for process, _ in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a bridge worker exited with {process.returncode}")

    async def run(self, count: int) -> dict[str, Any]:
        assert self.reader is not None
        s = self.setup
        expected = sum(1 for i in range(count) if EventPlan.is_released(i))
        ctx = multiprocessing.get_context("spawn")
        first_sent = ctx.Value("d", 0.0)
        publisher = ctx.Process(
            target=_publisher_child,
            args=(s.src, self.topic, str(s.key_path), count, self.partitions, first_sent),
        )
        load_before = os.getloadavg()[0]
        publisher.start()
        arrived, last = 0, 0.0
        until = time.monotonic() + count / 100 + 300
        try:
            while arrived < expected and time.monotonic() < until:
                self._alive(float("inf"))
                batches = await self.reader.getmany(timeout_ms=100)
                got = sum(len(rs) for rs in batches.values())
                if got:
                    arrived += got
                    last = time.time()
        finally:
            await asyncio.to_thread(publisher.join, 120)
            if publisher.is_alive():
                publisher.terminate()
        started = first_sent.value
        elapsed = last - started if arrived and started else float("nan")
        rss = [peak_rss_mib(p.pid) for p, _ in self.processes]
        return {
            "partitions": self.partitions,
            "workers": self.workers,
            "events": count,
            "expected": expected,
            "arrived": arrived,
            "seconds": elapsed,
            "throughput": count / elapsed if arrived >= expected and elapsed > 0 else None,
            "load_average": [load_before, os.getloadavg()[0]],
            "peak_rss_mib": [r for r in rss if r is not None],
        }

    async def stop(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader.stop()
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.processes:
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 30)
        await _delete_topics(self.setup.src, self.topic)
        await _delete_topics(self.setup.dst, self.topic)


async def _measure(setup: Setup, plan: Plan) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for rep in range(plan.reps):
        for partitions, workers in plan.configurations():
            configuration = Configuration(setup, partitions, workers)
            try:
                await configuration.start()
                result = await configuration.run(plan.events)
                result["rep"] = rep
                runs.append(result)
                _print_run(result)
            except Exception as exc:  # one failing configuration must not lose the others
                print(
                    f"  p{partitions} w{workers}: failed: {type(exc).__name__}: {exc}", flush=True
                )
                runs.append(
                    {
                        "partitions": partitions,
                        "workers": workers,
                        "rep": rep,
                        "error": repr(exc)[:300],
                    }
                )
            finally:
                await configuration.stop()
    return runs


def _print_run(r: dict[str, Any]) -> None:
    line = (
        f"  rep {r['rep']} {r['partitions']:>2} partitions {r['workers']} worker(s): "
        f"{r['arrived']}/{r['expected']} in {r['seconds']:6.2f} s"
    )
    if r.get("throughput"):
        line += f"  {r['throughput']:>7,.0f} events/s"
    if r["peak_rss_mib"]:
        line += f"  rss {'+'.join(f'{m:.0f}' for m in r['peak_rss_mib'])} MiB"
    line += f"  load {r['load_average'][0]:.1f}"
    print(line, flush=True)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each configuration's events/s and its ratio to 1 partition, 1 worker of the same rep."""
    ok = [r for r in runs if "error" not in r and r.get("throughput")]
    by = {(r["rep"], r["partitions"], r["workers"]): r["throughput"] for r in ok}
    figures: dict[str, dict[str, list[float]]] = {}
    for (rep, p, w), rate in sorted(by.items()):
        key = f"{p} partitions, {w} worker(s)"
        entry = figures.setdefault(key, {"events_per_s": [], "ratio": []})
        entry["events_per_s"].append(rate)
        base = by.get((rep, 1, 1))
        if base:
            entry["ratio"].append(rate / base)
    return {
        key: {
            "events_per_s": statistics.median(v["events_per_s"]),
            "ratio": statistics.median(v["ratio"]) if v["ratio"] else None,
            "ratio_min": min(v["ratio"]) if v["ratio"] else None,
            "ratio_max": max(v["ratio"]) if v["ratio"] else None,
            "n": len(v["events_per_s"]),
        }
        for key, v in figures.items()
    }


def measure(plan: Plan) -> dict[str, Any]:
    """Start a federation, run ``plan``, stop it; return every run and the ratios."""
    _quiet()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        home = Path(tmp)
        with running_federation(
            home / "federation", (SOURCE, DESTINATION), insecure_plaintext=True
        ) as federation:
            federated = federated_config(federation, home / "signed")
            key_path = federated.config.agency(SOURCE).signing_key
            assert key_path is not None
            setup = Setup(
                src=federation.bootstrap(SOURCE),
                dst=federation.bootstrap(DESTINATION),
                config_path=federated.path,
                key_path=key_path,
                home=home,
            )
            runs = asyncio.run(_measure(setup, plan))
    return {
        "machine": machine(),
        "kafka": kafka_version(),
        "plan": {
            "reps": plan.reps,
            "events": plan.events,
            "size": SIZE,
            "configurations": [list(c) for c in plan.configurations()],
        },
        "runs": runs,
        "summary": summarise(runs),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="3,000 events; 1 and 6 partitions, 1 and 2 workers"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 2; --quick 1)")
    parser.add_argument("--events", type=int, help="events per run (default 20,000)")
    parser.add_argument("--partitions", help="comma-separated partition counts (one worker)")
    parser.add_argument("--workers", help="comma-separated worker counts (on 6 partitions)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    plan = plan_for(quick=args.quick, reps=args.reps, events=args.events)
    if args.partitions or args.workers:
        plan = Plan(
            reps=plan.reps,
            events=plan.events,
            partitions=tuple(int(x) for x in args.partitions.split(","))
            if args.partitions
            else plan.partitions,
            workers=tuple(int(x) for x in args.workers.split(","))
            if args.workers
            else plan.workers,
        )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores; Apache Kafka "
        f"{kafka_version()}; {plan.reps} repetition(s) of {plan.events} events of {SIZE} B; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    result = measure(plan)
    print("  events/s and ratio to 1 partition, 1 worker (median [min-max]):")
    for key, r in result["summary"].items():
        ratio = (
            f"{r['ratio']:5.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
            if r["ratio"] is not None
            else "  n/a"
        )
        print(f"    {key:28} {r['events_per_s']:>8,.0f}  {ratio}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

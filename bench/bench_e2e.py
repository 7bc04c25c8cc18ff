"""End to end, every contender timed the same way: the bridge against MirrorMaker 2 and raw loops.

Run ``python -m bench.bench_e2e [--quick] [--reps R] [--events N] [--json FILE]``. Starts a fresh
two-agency local federation (one KRaft node per agency, free ports, a temporary home) and, for
each contender, in a process of its own:

- ``raw``: a plain aiokafka pass-through, ``getmany`` -> idempotent producer (no verification);
- ``txn``: the same with one transaction (records + a checkpoint) per partition per fetch,
  the partitions' transactions committed concurrently: exactly once, nothing else;
- ``bridge``: the ``Replicator`` (one worker, ``verify_threads=0``): verification, policy,
  audit, exactly once;
- ``mm2``: MirrorMaker 2 from the same Kafka jars (one task, ``-Xmx512m``).

Each contender is started on a topic of its own (6 partitions) and warmed up: one released
event per partition must arrive on the destination before anything is timed, so group joins,
``init_transactions`` and MirrorMaker's connectors are outside every figure, for everyone alike.
Then a publisher process sends N pre-signed events (``SignedEvent`` v2, batches of 256, as the
``Publisher`` writes them; about 69% released by the bridge's policy) either at a fixed rate or
as fast as it can (``max``), and a ``read_committed`` consumer on the destination notes when
each record arrives. For every run:

- throughput: source events / (arrival of the last record committed on the destination -
  the moment the first record was sent). The bridge forwards only released events, so its last
  record is the last released one; MirrorMaker 2 and the loops copy all N;
- latency per record: arrival - the moment it was due to be sent (``ce_time`` header, which
  every contender carries over: the bridge rebuilds it from the signed ``created_at``);
- peak resident set (``VmHWM``) of the contender's process.

Rounds are interleaved (each repetition runs every contender in turn), so a busy machine
slows them alike; every headline figure is a ratio within one repetition. The load average is
recorded beside every run. Figures are printed and returned (``bench.report`` writes them),
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.bench_bridge import (
    _MM2_LOG4J,
    DESTINATION,
    PARTITIONS,
    SOURCE,
    PassThrough,
    _mm2_properties,
    _passthrough_child,
    _quiet,
    _replicator_child,
)
from bus.codec import INTELLIGENCE_EVENT, default_store
from bus.config import java_home
from bus.envelope import seal_batch
from bus.headers import CE_TIME, event_headers
from bus.local._install import find_java, kafka_version
from bus.signing import SigningKey
from bus.testing import EventPlan, create_topic, federated_config, running_federation

__all__ = ["CONTENDERS", "main", "measure"]

CONTENDERS = ("raw", "txn", "bridge", "mm2")
SIGN_BATCH = 256
_FILLER = "Observed at the border crossing; details through the liaison channel. "


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
) -> list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]:
    """(partition, key, value, headers) of ``count`` events, batch-signed by ``key``;
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


def _publisher_child(
    bootstrap: str,
    topic: str,
    key_path: str,
    rate: float,
    count: int,
    size: int,
    first_sent: Any,
    sealed_at: Any,
) -> None:
    """Send ``count`` events at ``rate``/s (0: as fast as the producer can); note when the
    first was sent. Events are sealed before the clock starts, stamped with their due times."""
    _quiet()
    key = SigningKey.load(Path(key_path))
    probe = time.perf_counter()
    sealed(64, size, key, time.time(), None)
    per_event = (time.perf_counter() - probe) / 64
    start = time.time() + per_event * count * 1.5 + 1.0
    records = sealed(count, size, key, start, rate or None)
    sealed_at.value = time.time()

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


def _transactional_child(
    source: str, destination: str, topic: str, mirror: str, ready: Any, stop: Any
) -> None:
    """The transactional pass-through (partitions committed concurrently) until ``stop``."""
    _quiet()

    async def work() -> None:
        loop = PassThrough(source, destination, topic, mirror, transactional=True, concurrent=True)
        task = asyncio.ensure_future(loop.run())
        await loop.ready.wait()
        ready.set()
        while not stop.is_set() and not task.done():  # noqa: ASYNC110  # a process's event
            await asyncio.sleep(0.05)
        loop.stopping.set()
        await asyncio.wait_for(task, 60)

    asyncio.run(work())


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set of process ``pid`` (``VmHWM``), MiB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# --- one contender -----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Setup:
    src: str
    dst: str
    config_path: Path
    key_path: Path
    jars: Path
    home: Path


@dataclass(slots=True)
class Contender:
    """A running contender: its process, the topics, the destination reader."""

    name: str
    setup: Setup
    size: int
    topic: str = ""
    mirror: str = ""
    pid: int = 0
    _stop: Any = None
    _process: Any = None
    _reader: AIOKafkaConsumer | None = None
    _log: Any = None
    _shared: list[Any] = field(default_factory=list)
    _warm: list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    async def start(self) -> None:
        s = self.setup
        self.topic = f"bench.e2e.{self.name}.{self.size}.{uuid.uuid4().hex[:6]}"
        self.mirror = f"{SOURCE}.{self.topic}"
        await create_topic(s.src, self.topic, PARTITIONS)
        ctx = multiprocessing.get_context("spawn")
        self._stop, ready = ctx.Event(), ctx.Event()
        if self.name in ("raw", "txn"):
            await create_topic(s.dst, self.mirror, PARTITIONS)
            if self.name == "txn":
                await create_topic(s.dst, f"{self.mirror}.checkpoints", PARTITIONS)
            target = _passthrough_child if self.name == "raw" else _transactional_child
            self._process = ctx.Process(
                target=target, args=(s.src, s.dst, self.topic, self.mirror, ready, self._stop)
            )
            self._process.start()
            self.pid = self._process.pid
        elif self.name == "bridge":
            assigned, progress = ctx.Value("q", 0), ctx.Value("q", 0)
            # Kept while the child writes them: a freed Value's memory is handed out again.
            self._shared = [assigned, progress]
            self._process = ctx.Process(
                target=_replicator_child,
                args=(
                    str(s.config_path),
                    self.topic,
                    f"bench-e2e-{uuid.uuid4().hex[:6]}",
                    0,
                    progress,
                    assigned,
                    self._stop,
                ),
            )
            self._process.start()
            self.pid = self._process.pid
        else:
            await self._start_mm2()
        # Warm-up: one released event per partition, through, before anything is timed.
        key = SigningKey.load(s.key_path)
        released = [i for i in range(1, 200) if EventPlan.is_released(i)]
        warm = sealed(released[PARTITIONS] + 1, self.size, key, time.time(), None)
        self._warm = [
            (p, k, v, h) for p, (_, k, v, h) in enumerate(warm[i] for i in released[:PARTITIONS])
        ]
        deadline = time.monotonic() + 180
        producer = AIOKafkaProducer(bootstrap_servers=s.src, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for p, k, v, h in self._warm:
                await producer.send_and_wait(self.topic, v, key=k, partition=p, headers=h)
        finally:
            await producer.stop()
        reader = AIOKafkaConsumer(
            bootstrap_servers=s.dst,
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await reader.start()
        self._reader = reader
        while self.mirror not in await reader.topics():
            self._alive(deadline)
            await asyncio.sleep(0.2)
        reader.assign([TopicPartition(self.mirror, p) for p in range(PARTITIONS)])
        seen = 0
        while seen < PARTITIONS:
            self._alive(deadline)
            batches = await reader.getmany(timeout_ms=200)
            seen += sum(len(rs) for rs in batches.values())

    def _alive(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{self.name}: the warm-up events never arrived")
        if isinstance(self._process, subprocess.Popen):
            if self._process.poll() is not None:
                raise RuntimeError(f"MirrorMaker exited with {self._process.returncode}")
        elif self._process is not None and not self._process.is_alive():
            raise RuntimeError(f"{self.name}: the contender's process died")

    async def _start_mm2(self) -> None:
        s = self.setup
        folder = s.home / f"mm2-{self.topic}"
        folder.mkdir()
        properties = folder / "mm2.properties"
        properties.write_text(_mm2_properties(s.src, s.dst, self.topic), encoding="utf-8")
        log4j = folder / "log4j2.properties"
        log4j.write_text(_MM2_LOG4J.format(log=folder / "mm2.log"), encoding="utf-8")
        java = await asyncio.to_thread(find_java, java_home())
        command = [
            str(java),
            "-Xmx512m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{s.jars}/*",
            "org.apache.kafka.connect.mirror.MirrorMaker",
            str(properties),
        ]
        self._log = (folder / "console.log").open("wb")
        self._process = subprocess.Popen(  # noqa: ASYNC220  # returns at once
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.pid = self._process.pid

    async def run(self, rate: float, count: int) -> dict[str, Any]:
        """Publish ``count`` events at ``rate`` (0: max); time them to the destination."""
        assert self._reader is not None
        reader = self._reader
        s = self.setup
        expected = (
            sum(1 for i in range(count) if EventPlan.is_released(i))
            if self.name == "bridge"
            else count
        )
        ctx = multiprocessing.get_context("spawn")
        first_sent, sealed_at = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
        publisher = ctx.Process(
            target=_publisher_child,
            args=(
                s.src,
                self.topic,
                str(s.key_path),
                rate,
                count,
                self.size,
                first_sent,
                sealed_at,
            ),
        )
        load_before = os.getloadavg()[0]
        publisher.start()
        latencies: list[float] = []
        last = 0.0
        budget = count / (rate or 1000) * 3 + 180
        until = time.monotonic() + budget
        try:
            while len(latencies) < expected and time.monotonic() < until:
                self._alive(float("inf"))
                batches = await reader.getmany(timeout_ms=100)
                arrived = time.time()
                for records in batches.values():
                    for r in records:
                        due = _due(r.headers)
                        latencies.append(arrived - due)
                        last = arrived
        finally:
            await asyncio.to_thread(publisher.join, 120)
            if publisher.is_alive():
                publisher.terminate()
        started = first_sent.value
        elapsed = last - started if latencies and started else float("nan")
        latencies.sort()
        result: dict[str, Any] = {
            "contender": self.name,
            "size": self.size,
            "rate": rate or "max",
            "events": count,
            "expected": expected,
            "arrived": len(latencies),
            "seconds": elapsed,
            "throughput": count / elapsed if elapsed and elapsed > 0 else None,
            "load_average": [load_before, os.getloadavg()[0]],
            "peak_rss_mib": peak_rss_mib(self.pid),
        }
        if latencies and rate:
            result.update(
                {
                    f"p{q}_ms": latencies[min(len(latencies) - 1, int(len(latencies) * q / 100))]
                    * 1000
                    for q in (50, 90, 99)
                }
            )
            result["max_ms"] = latencies[-1] * 1000
        return result

    async def stop(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.stop()
        if isinstance(self._process, subprocess.Popen):
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait, 10)
            if self._log is not None:
                self._log.close()
        elif self._process is not None:
            self._stop.set()
            await asyncio.to_thread(self._process.join, 60)
            if self._process.is_alive():
                self._process.terminate()
                await asyncio.to_thread(self._process.join, 10)
        await _delete_topics(self.setup.src, self.topic)
        await _delete_topics(self.setup.dst, self.topic)


def _due(headers: Sequence[tuple[str, bytes]]) -> float:
    for name, value in headers:
        if name == CE_TIME:
            return datetime.fromisoformat(value.decode()).timestamp()
    raise RuntimeError("a mirrored record without its ce_time header")


async def _delete_topics(bootstrap: str, topic: str) -> None:
    """Delete every topic whose name holds ``topic`` (the run's own, its mirror, checkpoints
    and forwarded-events state; never a shared one): 16 KB runs would fill the disk otherwise."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [n for n in await admin.list_topics() if topic in n]
        if doomed:
            with contextlib.suppress(Exception):
                await admin.delete_topics(doomed)
    finally:
        await admin.close()


# --- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    reps: int
    events: int
    rates: tuple[float, ...]
    """Offered rates for the latency sweep at 1 KB; 0 is as fast as the publisher can."""
    sizes: tuple[int, ...]
    """Event sizes for the throughput sweep (at max rate)."""
    contenders: tuple[str, ...] = CONTENDERS


def plan_for(*, quick: bool, reps: int | None, events: int | None) -> Plan:
    if quick:
        return Plan(
            reps=reps or 1,
            events=events or 3000,
            rates=(500.0, 2000.0, 0.0),
            sizes=(256, 1024, 16384),
        )
    return Plan(
        reps=reps or 3,
        events=events or 20000,
        rates=(500.0, 2000.0, 5000.0, 0.0),
        sizes=(256, 1024, 16384),
    )


async def _measure(setup: Setup, plan: Plan) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for rep in range(plan.reps):
        for size in plan.sizes:
            rates = plan.rates if size == 1024 else (0.0,)
            for name in plan.contenders:
                contender = Contender(name, setup, size)
                try:
                    await contender.start()
                    for rate in rates:
                        result = await contender.run(rate, plan.events)
                        result["rep"] = rep
                        runs.append(result)
                        _print_run(result)
                except Exception as exc:  # one failing contender must not lose the others
                    print(f"  {name} {size} B: failed: {type(exc).__name__}: {exc}", flush=True)
                    runs.append(
                        {"contender": name, "size": size, "rep": rep, "error": repr(exc)[:300]}
                    )
                finally:
                    await contender.stop()
    return runs


def _print_run(r: dict[str, Any]) -> None:
    rate = "max" if r["rate"] == "max" else f"{r['rate']:,.0f}/s"
    line = (
        f"  rep {r['rep']} {r['contender']:6} {r['size']:>6} B {rate:>8}: "
        f"{r['arrived']}/{r['expected']} in {r['seconds']:6.2f} s"
    )
    if r.get("throughput"):
        line += f"  {r['throughput']:>8,.0f} events/s"
    if "p50_ms" in r:
        line += f"  p50 {r['p50_ms']:7.1f}  p99 {r['p99_ms']:7.1f} ms"
    rss = r.get("peak_rss_mib")
    line += f"  rss {rss:.0f} MiB" if rss else ""
    line += f"  load {r['load_average'][0]:.1f}"
    print(line, flush=True)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios within each repetition (bridge / mm2, bridge / txn, ...), with median and spread."""
    ok = [r for r in runs if "error" not in r and r.get("throughput")]
    by: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in ok:
        by[(r["rep"], r["size"], r["rate"], r["contender"])] = r
    ratios: dict[str, list[float]] = {}
    for (rep, size, rate, name), r in by.items():
        if name != "bridge":
            continue
        for base in ("mm2", "txn", "raw"):
            other = by.get((rep, size, rate, base))
            if other is None:
                continue
            if rate == "max":
                key = f"throughput {size} B max: bridge / {base}"
                ratios.setdefault(key, []).append(r["throughput"] / other["throughput"])
            elif "p99_ms" in r and "p99_ms" in other:
                key = f"p99 {size} B {rate:.0f}/s: bridge / {base}"
                ratios.setdefault(key, []).append(r["p99_ms"] / other["p99_ms"])
    return {
        key: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
        for key, v in sorted(ratios.items())
    }


def measure(plan: Plan) -> dict[str, Any]:
    """Start a federation, run ``plan``, stop it; return every run and the ratios."""
    _quiet()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        home = Path(tmp)
        # Plaintext, as the other benchmarks and the earlier figures: every contender (and
        # MirrorMaker 2, configured without TLS) reaches the nodes the same way.
        with running_federation(
            home / "federation",
            (SOURCE, DESTINATION),
            partitions=PARTITIONS,
            insecure_plaintext=True,
        ) as federation:
            assert federation.spec is not None
            federated = federated_config(federation, home / "signed")
            key_path = federated.config.agency(SOURCE).signing_key
            assert key_path is not None
            setup = Setup(
                src=federation.bootstrap(SOURCE),
                dst=federation.bootstrap(DESTINATION),
                config_path=federated.path,
                key_path=key_path,
                jars=federation.spec.jar_dir,
                home=home,
            )
            started = time.time()
            runs = asyncio.run(_measure(setup, plan))
    return {
        "machine": machine(),
        "kafka": kafka_version(),
        "plan": {
            "reps": plan.reps,
            "events": plan.events,
            "rates": [r or "max" for r in plan.rates],
            "sizes": list(plan.sizes),
            "contenders": list(plan.contenders),
            "partitions": PARTITIONS,
            "sign_batch": SIGN_BATCH,
        },
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "runs": runs,
        "ratios": summarise(runs),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split("\n"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text(encoding="ascii").split("\n")[0]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": " ".join(memory.split()[1:]),
        "load_average": list(os.getloadavg()),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_e2e", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3,000 events, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    parser.add_argument("--events", type=int, help="events per run (default 20,000)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--only", help="comma-separated contenders (default: all)")
    parser.add_argument("--sizes", help="comma-separated event sizes in bytes")
    parser.add_argument("--rates", help="comma-separated offered rates, 0 for max")
    args = parser.parse_args(argv)
    plan = plan_for(quick=args.quick, reps=args.reps, events=args.events)
    if args.only:
        plan = replace(plan, contenders=tuple(args.only.split(",")))
    if args.sizes:
        plan = replace(plan, sizes=tuple(int(x) for x in args.sizes.split(",")))
    if args.rates:
        plan = replace(plan, rates=tuple(float(x) for x in args.rates.split(",")))
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores; Apache Kafka "
        f"{kafka_version()}; {plan.reps} repetitions of {plan.events} events; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    result = measure(plan)
    print("  ratios within a repetition (median [min-max]):")
    for key, r in result["ratios"].items():
        print(f"    {key:44} {r['median']:5.2f} [{r['min']:.2f}-{r['max']:.2f}]")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

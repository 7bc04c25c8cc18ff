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

The pieces the Kafka benchmarks share are in ``bench._clusters`` (the federation),
``bench._passthrough`` and ``bench._contenders`` (the contenders) and ``bench._timing`` (the
events, the publisher and the clock); here are ``Contender``, which ``bench.bench_link`` runs
too, and this benchmark's plan and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench._clusters import (
    PARTITIONS,
    SOURCE,
    Setup,
    announce,
    delete_topics,
    machine,
    peak_rss_mib,
    print_ratios,
    spread,
    two_agencies,
)
from bench._contenders import join, replicator_child, start_mirrormaker, stop
from bench._passthrough import passthrough_child
from bench._timing import SIGN_BATCH, timed, warm_up
from bus.headers import CE_TIME
from bus.local._install import kafka_version
from bus.testing import EventPlan, create_topic

__all__ = ["CONTENDERS", "Contender", "main", "measure"]

CONTENDERS = ("raw", "txn", "bridge", "mm2")


# --- one contender -----------------------------------------------------------------------


@dataclass(slots=True)
class Contender:
    """A running contender (``raw``, ``txn``, ``bridge`` or ``mm2``, in a process of its
    own): its process, the topics, the destination reader."""

    name: str
    setup: Setup
    size: int
    topic: str = ""
    mirror: str = ""
    pid: int = 0
    _stop: Any = None
    _process: Any = None
    _reader: AIOKafkaConsumer | None = None
    _shared: list[Any] = field(default_factory=list)

    async def start(self) -> None:
        """Start the contender on a topic of its own and warm it up."""
        s = self.setup
        self.topic = f"bench.e2e.{self.name}.{self.size}.{uuid.uuid4().hex[:6]}"
        self.mirror = f"{SOURCE}.{self.topic}"
        await create_topic(s.src, self.topic, PARTITIONS)
        ctx = multiprocessing.get_context("spawn")
        self._stop, ready = ctx.Event(), ctx.Event()
        if self.name in ("raw", "txn"):
            await create_topic(s.dst, self.mirror, PARTITIONS)
            transactional = self.name == "txn"
            if transactional:
                await create_topic(s.dst, f"{self.mirror}.checkpoints", PARTITIONS)
            self._process = ctx.Process(
                target=passthrough_child,
                args=(s.src, s.dst, self.topic, self.mirror, ready, self._stop),
                kwargs={"transactional": transactional, "concurrent": transactional},
            )
            self._process.start()
        elif self.name == "bridge":
            assigned, progress = ctx.Value("q", 0), ctx.Value("q", 0)
            # Kept while the child writes them: a freed Value's memory is handed out again.
            self._shared = [assigned, progress]
            self._process = ctx.Process(
                target=replicator_child,
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
        else:
            self._process = await asyncio.to_thread(
                start_mirrormaker, s.home / f"mm2-{self.topic}", s.src, s.dst, self.topic, s.jars
            )
        self.pid = self._process.pid
        deadline = time.monotonic() + 180
        self._reader = await warm_up(
            s.src,
            s.dst,
            self.topic,
            self.mirror,
            partitions=PARTITIONS,
            key_path=s.key_path,
            size=self.size,
            alive=lambda: self._alive(deadline),
        )

    def _alive(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{self.name}: the warm-up events never arrived")
        if isinstance(self._process, subprocess.Popen):
            if self._process.poll() is not None:
                raise RuntimeError(f"MirrorMaker exited with {self._process.returncode}")
        elif self._process is not None and not self._process.is_alive():
            raise RuntimeError(f"{self.name}: the contender's process died")

    async def run(self, rate: float, count: int) -> dict[str, Any]:
        """Publish ``count`` events at ``rate`` (0: max); time them to the destination."""
        assert self._reader is not None
        s = self.setup
        expected = (
            sum(1 for i in range(count) if EventPlan.is_released(i))
            if self.name == "bridge"
            else count
        )
        latencies: list[float] = []
        arrivals = await timed(
            self._reader,
            src=s.src,
            topic=self.topic,
            key_path=s.key_path,
            rate=rate,
            count=count,
            size=self.size,
            partitions=PARTITIONS,
            expected=expected,
            budget_s=count / (rate or 1000) * 3 + 180,
            alive=lambda: self._alive(float("inf")),
            each=lambda arrived, r: latencies.append(arrived - _due(r.headers)),
        )
        elapsed = arrivals.seconds
        latencies.sort()
        result: dict[str, Any] = {
            "contender": self.name,
            "size": self.size,
            "rate": rate or "max",
            "events": count,
            "expected": expected,
            "arrived": arrivals.arrived,
            "seconds": elapsed,
            "throughput": count / elapsed if elapsed and elapsed > 0 else None,
            "load_average": arrivals.load_average,
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
        """Stop the reader and the contender; delete the run's topics."""
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.stop()
        if isinstance(self._process, subprocess.Popen):
            await stop(self._process)
        elif self._process is not None:
            self._stop.set()
            await join(self._process)
        await delete_topics(self.setup.src, self.topic)
        await delete_topics(self.setup.dst, self.topic)


def _due(headers: Sequence[tuple[str, bytes]]) -> float:
    for name, value in headers:
        if name == CE_TIME:
            return datetime.fromisoformat(value.decode()).timestamp()
    raise RuntimeError("a mirrored record without its ce_time header")


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
    return spread(ratios)


def measure(plan: Plan) -> dict[str, Any]:
    """Start a federation, run ``plan``, stop it; return every run and the ratios."""
    with two_agencies("bench-e2e-") as setup:
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
    announce(f"{plan.reps} repetitions of {plan.events} events")
    result = measure(plan)
    print_ratios(result["ratios"], 44)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

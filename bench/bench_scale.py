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
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench._clusters import (
    DESTINATION,
    SOURCE,
    Setup,
    announce,
    delete_topics,
    machine,
    peak_rss_mib,
    two_agencies,
)
from bench._contenders import Bridge, health, start_bridge, stop
from bench._timing import timed, warm_up
from bus.local._install import kafka_version
from bus.testing import EventPlan, create_topic

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


class Configuration:
    """``workers`` ``bus bridge run`` processes of interpol->europol on a topic of its own."""

    def __init__(self, setup: Setup, partitions: int, workers: int) -> None:
        self.setup, self.partitions, self.workers = setup, partitions, workers
        self.topic = f"bench.scale.p{partitions}w{workers}.{uuid.uuid4().hex[:6]}"
        self.mirror = f"{SOURCE}.{self.topic}"
        self.bridges: list[Bridge] = []
        self.reader: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Start the workers, wait until they share every partition, and warm them up."""
        s = self.setup
        await create_topic(s.src, self.topic, self.partitions)
        for n in range(self.workers):
            self.bridges.append(
                start_bridge(
                    s.config_path,
                    SOURCE,
                    [DESTINATION],
                    s.home / f"{self.topic}-{n}.log",
                    topic=self.topic,
                    bridge_id=f"bench-scale-{n}",
                )
            )
        deadline = time.monotonic() + 600
        while True:
            self._alive(deadline)
            assigned = 0
            for bridge in self.bridges:
                status = await asyncio.to_thread(health, bridge.port) or {}
                assigned += len(status.get("partitions") or ())
            if assigned >= self.partitions:
                break
            await asyncio.sleep(0.5)
        self.reader = await warm_up(
            s.src,
            s.dst,
            self.topic,
            self.mirror,
            partitions=self.partitions,
            key_path=s.key_path,
            size=SIZE,
            alive=lambda: self._alive(deadline),
        )

    def _alive(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"p{self.partitions} w{self.workers}: not ready in time")
        for bridge in self.bridges:
            if bridge.process.poll() is not None:
                raise RuntimeError(f"a bridge worker exited with {bridge.process.returncode}")

    async def run(self, count: int) -> dict[str, Any]:
        """Publish ``count`` events as fast as possible; time them to the destination."""
        assert self.reader is not None
        s = self.setup
        expected = sum(1 for i in range(count) if EventPlan.is_released(i))
        arrivals = await timed(
            self.reader,
            src=s.src,
            topic=self.topic,
            key_path=s.key_path,
            rate=0.0,
            count=count,
            size=SIZE,
            partitions=self.partitions,
            expected=expected,
            budget_s=count / 100 + 300,
            alive=lambda: self._alive(float("inf")),
        )
        arrived, elapsed = arrivals.arrived, arrivals.seconds
        rss = [peak_rss_mib(b.process.pid) for b in self.bridges]
        return {
            "partitions": self.partitions,
            "workers": self.workers,
            "events": count,
            "expected": expected,
            "arrived": arrived,
            "seconds": elapsed,
            "throughput": count / elapsed if arrived >= expected and elapsed > 0 else None,
            "load_average": arrivals.load_average,
            "peak_rss_mib": [r for r in rss if r is not None],
        }

    async def stop(self) -> None:
        """Stop the reader and the workers; delete the configuration's topics."""
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader.stop()
        await stop(*(b.process for b in self.bridges), wait_s=60, kill_s=30)
        await delete_topics(self.setup.src, self.topic)
        await delete_topics(self.setup.dst, self.topic)


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
    with two_agencies("bench-scale-", partitions=None) as setup:
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
    announce(f"{plan.reps} repetition(s) of {plan.events} events of {SIZE} B")
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

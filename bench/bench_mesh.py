"""What a mesh of agencies costs on one machine: ``python -m bench.bench_mesh [--agencies N]``.

Starts a local federation of N agencies (default 5; single nodes with 256 MiB heaps, over
mutual TLS), and bridges every ordered pair, N x (N - 1) directions, two ways in turn:

- ``per-direction``: one ``bus bridge run`` process per direction, N x (N - 1) processes;
- ``per-source``: one process per source agency hosting its N - 1 outgoing directions
  (``--to`` repeated), N processes.

For each it measures, from ``/proc``, the resident memory (RSS) of the Kafka nodes and of the
bridge processes, and their CPU time over an idle window and over a window with events flowing
(each agency publishing ``--rate`` events per second, each releasable to every peer). Figures
are printed as a table and returned; nothing is asserted. The nodes, the bridges and the
temporary folder they write in are gone at the end, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench._contenders import Bridge, health, start_bridge, stop
from bus import local
from bus.envelope import seal
from bus.events import template
from bus.testing import Federated, connect, federated_config, running_federation

NAMES = ("interpol", "europol", "ameripol", "afripol", "aseanapol", "gccpol", "aripo", "sica")
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb(pid: int) -> float:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * _PAGE / 2**20


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and its reaped children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / _TICKS


async def _wait_ready(workers: Sequence[Bridge], timeout_s: float = 600.0) -> float:
    """Seconds until every direction of every worker has partitions."""
    started = time.monotonic()
    for worker in workers:
        while True:
            if worker.process.poll() is not None:
                raise RuntimeError(f"a bridge worker exited with {worker.process.returncode}")
            status = await asyncio.to_thread(health, worker.port) or {}
            answers = status.get("directions", [status] if status else [])
            if len(answers) == worker.directions and all(a.get("partitions") for a in answers):
                break
            if time.monotonic() - started > timeout_s:
                raise RuntimeError("bridge workers not ready in time")
            await asyncio.sleep(0.5)
    return time.monotonic() - started


async def _publish(
    bootstrap: str, topic: str, origin: str, peers: list[str], key: Any, rate: float, seconds: float
) -> None:
    producer = AIOKafkaProducer(
        **connect(bootstrap), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        started, futures = time.monotonic(), []
        for i in range(int(rate * seconds)):
            event = template("CYBERCRIME", agency=origin, event_id=str(uuid.uuid4()))
            event["created_at"] = datetime.now(UTC)
            event["expires_at"] = datetime.now(UTC) + timedelta(days=1)
            event["tlp"], event["releasable_to"] = "GREEN", peers
            futures.append(await producer.send(topic, seal(event, key)))
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _window(
    pids: dict[str, list[int]], since: dict[str, float], seconds: float
) -> dict[str, float]:
    """CPU used by each group of processes since ``since``, in % of one core."""
    return {
        group: round(100 * (sum(_cpu_s(p) for p in members) - since[group]) / seconds, 1)
        for group, members in pids.items()
    }


def _cpu_now(pids: dict[str, list[int]]) -> dict[str, float]:
    return {group: sum(_cpu_s(p) for p in members) for group, members in pids.items()}


async def _measure(
    federation: Any, federated: Federated, mode: str, work: Path, rate: float, seconds: float
) -> dict[str, Any]:
    agencies = federation.agencies
    assert federation.spec is not None
    jvms = [pid for _, pid in local.iter_node_pids(federation.spec)]
    # (source, destinations, name in the log file's name) of each worker
    if mode == "per-direction":
        plan = [(s, [d], f"{s}-{d}") for s, d in itertools.permutations(agencies, 2)]
    else:
        plan = [(s, [a for a in agencies if a != s], s) for s in agencies]
    workers: list[Bridge] = []
    try:
        for source, destinations, name in plan:
            log = work / f"{mode}-{name}.log"
            workers.append(start_bridge(federated.path, source, destinations, log))
        ready_s = await _wait_ready(workers)
        pids = {"kafka": jvms, "bridges": [w.process.pid for w in workers]}
        await asyncio.sleep(5)
        since = _cpu_now(pids)
        await asyncio.sleep(seconds)
        idle = _window(pids, since, seconds)
        rss_idle = {g: round(sum(_rss_mb(p) for p in m)) for g, m in pids.items()}
        since, began = _cpu_now(pids), time.monotonic()
        await asyncio.gather(
            *(
                _publish(
                    federation.bootstrap(a),
                    federated.config.topics.events,
                    a,
                    [p for p in agencies if p != a],
                    federated.keys[a],
                    rate,
                    seconds,
                )
                for a in agencies
            )
        )
        busy = _window(pids, since, time.monotonic() - began)
        rss_busy = {g: round(sum(_rss_mb(p) for p in m)) for g, m in pids.items()}
        return {
            "mode": mode,
            "processes": len(workers),
            "directions": len(agencies) * (len(agencies) - 1),
            "ready_s": round(ready_s, 1),
            "rss_mb_idle": rss_idle,
            "rss_mb_busy": rss_busy,
            "bridge_rss_mb_per_process": round(rss_busy["bridges"] / len(workers)),
            "cpu_pct_idle": idle,
            "cpu_pct_busy": busy,
            "offered_per_s": rate * len(agencies),
        }
    finally:
        await stop(*(w.process for w in workers), wait_s=60, kill_s=30)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_mesh", description=__doc__)
    parser.add_argument("--agencies", type=int, default=5, help="2..8 (default 5)")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per agency")
    parser.add_argument("--seconds", type=float, default=30.0, help="each window")
    parser.add_argument("--heap-mb", type=int, default=256)
    parser.add_argument("--modes", default="per-source,per-direction")
    args = parser.parse_args(argv)
    agencies = NAMES[: args.agencies]
    results: list[dict[str, Any]] = []
    # SIGTERM unwinds as Ctrl-C does: the bridges and the nodes stop, the folder goes.
    terminate = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with (
            tempfile.TemporaryDirectory(
                prefix="exchange-bus-bench-mesh-", ignore_cleanup_errors=True
            ) as tmp,
            running_federation(
                Path(tmp) / "federation", agencies, heap_mb=args.heap_mb, partitions=2
            ) as federation,
        ):
            work = Path(tmp)
            federated = federated_config(federation, work / "config")
            for mode in args.modes.split(","):
                result = asyncio.run(
                    _measure(federation, federated, mode, work, args.rate, args.seconds)
                )
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        signal.signal(signal.SIGTERM, terminate)
    print(f"\n{len(agencies)} agencies, {args.heap_mb} MiB heaps, {args.rate:g} events/s each")
    print(
        f"{'mode':<14}{'procs':>6}{'ready s':>9}{'kafka MB':>10}{'bridges MB':>12}"
        f"{'MB/proc':>9}{'CPU% idle k/b':>16}{'CPU% busy k/b':>16}"
    )
    for r in results:
        print(
            f"{r['mode']:<14}{r['processes']:>6}{r['ready_s']:>9}"
            f"{r['rss_mb_busy']['kafka']:>10}{r['rss_mb_busy']['bridges']:>12}"
            f"{r['bridge_rss_mb_per_process']:>9}"
            f"{r['cpu_pct_idle']['kafka']:>8}/{r['cpu_pct_idle']['bridges']:<7}"
            f"{r['cpu_pct_busy']['kafka']:>8}/{r['cpu_pct_busy']['bridges']:<7}"
        )
    return {"agencies": len(agencies), "heap_mb": args.heap_mb, "results": results}


if __name__ == "__main__":
    main()

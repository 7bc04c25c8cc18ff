"""Where one event's latency goes through the bridge, stage by stage.

Run ``python -m bench.probe_latency [--rate R ...] [--events N] [--code TREE ...] [--rounds
K]``. Starts a fresh two-agency federation (plaintext, one KRaft node per agency), a bridge
worker in a process of its own with wall-clock probes patched in (nothing of the bridge's code
changes), a publisher process sending pre-signed events at a fixed rate (``bench.bench_e2e``'s),
and a ``read_committed`` reader on the mirror. For each released event it joins, on its
``ce_id`` header:

- ``due``: when the publisher was due to send it (its ``ce_time``);
- ``fetched``: when the bridge's ``fetch`` returned it, and how long that fetch call waited;
- ``judged``: when its batch was judged;
- ``committed``: when its lane's two transactions had both committed (``Lane.commit``);
- ``step end``: when the fetch loop's step after that ended;
- ``read``: when the reader on the mirror got it.

It prints the median, p90 and p99 of each stage, the round trips by request type (a refused
AddPartitionsToTxn counted apart), the event loop's lag, each log's transaction phases
(``begin_transaction`` + sends, ``commit_transaction``) and the worker's CPU time per source
event. ``--code`` runs the worker of another source tree (its own copy of this module, in a
process of its own; repeatable, the order alternated over ``--rounds``): A/B runs on one
federation. ``PROBE_PROFILE=<file>`` writes a cProfile of each worker to ``<file>.<pid>``.
``--rtt MS`` puts the destination behind a long link of that round trip (``bus.local.Link``;
root only). Figures are printed only, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench._clusters import DESTINATION, PARTITIONS, SOURCE, quiet
from bench._timing import _publisher_child
from bench.bench_e2e import _due
from bus import local
from bus.headers import CE_ID
from bus.testing import EventPlan, create_topic, federated_config, running_federation


def _id(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name == CE_ID:
            return bytes(value).decode()
    return None


def _bridge_child(config_path: str, topic: str, trace: str, ready: Any, stop: Any) -> None:
    """A replicator with probes: per record key, when each stage saw it."""
    quiet()
    from bench._contenders import replicator as _replicator
    from bus.bridge import _lane, _txlog, replicator
    from bus.config import load_config

    times: dict[str, dict[str, float]] = {}
    txs: list[dict[str, Any]] = []
    steps: list[float] = []
    cpu: dict[str, float] = {}
    original_fetch = replicator.fetch  # type: ignore[attr-defined]

    async def fetch(consumer: Any, **kw: Any) -> Any:
        asked = time.time()
        batches = await original_fetch(consumer, **kw)
        now = time.time()
        for records in batches.values():
            for r in records:
                key = _id(r)
                if key is not None:
                    times[key] = {"fetched": now, "fetch_wait": now - asked}
        return batches

    replicator.fetch = fetch  # type: ignore[attr-defined]

    original_judge = replicator.Replicator._judge_all

    async def judge_all(self: Any, records: Any) -> Any:
        verdicts = await original_judge(self, records)
        now = time.time()
        for r in records:
            key = _id(r)
            if key in times:
                times[key]["judged"] = now
        return verdicts

    replicator.Replicator._judge_all = judge_all  # type: ignore[method-assign]

    original_commit = _lane.Lane.commit

    async def lane_commit(self: Any, verdicts: Any, *, next_offset: int) -> bool:
        ok = await original_commit(self, verdicts, next_offset=next_offset)
        now = time.time()
        for v in verdicts:
            key = _id(v.record)
            if key in times:
                times[key]["committed"] = now
        return ok

    _lane.Lane.commit = lane_commit  # type: ignore[method-assign]

    original_step = replicator.Replicator._step

    async def step(self: Any, consumer: Any) -> None:
        await original_step(self, consumer)
        steps.append(time.time())

    replicator.Replicator._step = step  # type: ignore[method-assign]

    from aiokafka.client import AIOKafkaClient

    requests: dict[str, list[float]] = {}
    original_send = AIOKafkaClient.send

    async def client_send(self: Any, node_id: Any, request: Any, *a: Any, **kw: Any) -> Any:
        asked = time.perf_counter()
        response = await original_send(self, node_id, request, *a, **kw)
        name = type(request).__name__.removesuffix("Request")
        if name == "AddPartitionsToTxn" and any(
            e for _, parts in response.errors for _, e in parts
        ):
            name += " (refused, retried)"
        requests.setdefault(name, []).append(time.perf_counter() - asked)
        return response

    AIOKafkaClient.send = client_send
    lags: list[float] = []

    async def loop_lag() -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - asked - 0.005)

    original_tx = _txlog.TxLog.commit

    async def tx_commit(self: Any, records: Any, **kw: Any) -> None:
        producer = self._producer
        began = time.time()
        original_end = producer.commit_transaction
        marks: dict[str, float] = {}

        async def commit_transaction() -> None:
            marks["end_asked"] = time.time()
            await original_end()

        producer.commit_transaction = commit_transaction
        try:
            await original_tx(self, records, **kw)
        finally:
            producer.commit_transaction = original_end
        txs.append(
            {
                "log": "audit" if "audit" in self.transactional_id else "mirror",
                "records": len(records),
                "sends_s": marks.get("end_asked", began) - began,
                "commit_s": time.time() - marks.get("end_asked", began),
            }
        )

    _txlog.TxLog.commit = tx_commit  # type: ignore[method-assign]

    async def work() -> None:
        config = load_config(Path(config_path))
        rep, _ = _replicator(config, topic, f"probe-{uuid.uuid4().hex[:6]}", 0)
        task = asyncio.ensure_future(rep.run())
        lagging = asyncio.ensure_future(loop_lag())
        while len(rep.health()["partitions"]) < PARTITIONS:  # noqa: ASYNC110  # polled
            await asyncio.sleep(0.05)
        ready.set()
        cpu["start"] = time.process_time()
        while not stop.is_set() and not task.done():  # noqa: ASYNC110  # a process's event
            await asyncio.sleep(0.05)
        cpu["end"] = time.process_time()
        rep.stop()
        lagging.cancel()
        await asyncio.wait_for(task, 60)

    profile = os.environ.get("PROBE_PROFILE")
    if profile:
        # cProfile of the whole worker (slows Python code, not the brokers): where its CPU goes.
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(work())
        profiler.disable()
        profiler.dump_stats(f"{profile}.{os.getpid()}")
    else:
        asyncio.run(work())
    Path(trace).write_text(
        json.dumps(
            {
                "times": times,
                "txs": txs,
                "steps": steps,
                "requests": requests,
                "lags": lags,
                "cpu_s": cpu["end"] - cpu["start"],
            }
        ),
        encoding="utf-8",
    )


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q / 100))] if values else float("nan")


class _Flag:
    """A file as an event between processes that share no ``multiprocessing`` context."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self) -> None:
        self.path.touch()

    def is_set(self) -> bool:
        return self.path.exists()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.is_set()


async def _probe(
    src: str, dst: str, config: Path, key: Path, rate: float, count: int, code: Path | None
) -> dict[str, float]:
    topic = f"probe.{uuid.uuid4().hex[:6]}"
    mirror = f"{SOURCE}.{topic}"
    await create_topic(src, topic, PARTITIONS)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:  # the flags and the trace
        folder = Path(tmp)
        trace = folder / "trace.json"
        bridge: Any
        ready: Any
        stop: Any
        if code is None:
            ready, stop = ctx.Event(), ctx.Event()
            bridge = ctx.Process(
                target=_bridge_child, args=(str(config), topic, str(trace), ready, stop)
            )
            bridge.start()
        else:
            # The bridge of another source tree (its own ``bench.probe_latency``), for A/B runs on
            # one federation.
            ready, stop = _Flag(folder / "ready"), _Flag(folder / "stop")
            command = [sys.executable, "-m", "bench.probe_latency", "--child", str(config), topic]
            command += [str(trace), str(folder / "ready"), str(folder / "stop")]
            env = {**os.environ, "PYTHONPATH": str(code)}
            bridge = subprocess.Popen(command, cwd=code, env=env)  # noqa: ASYNC220  # returns at once
        await asyncio.to_thread(ready.wait, 180)
        first_sent = ctx.Value("d", 0.0)
        publisher = ctx.Process(
            target=_publisher_child,
            args=(src, topic, str(key), rate, count, 1024, PARTITIONS, first_sent),
        )
        reader = AIOKafkaConsumer(
            bootstrap_servers=dst,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        publisher.start()
        while mirror not in await reader.topics():  # noqa: ASYNC110  # polled
            await asyncio.sleep(0.1)
        reader.assign([TopicPartition(mirror, p) for p in range(PARTITIONS)])
        expected = sum(1 for i in range(count) if EventPlan.is_released(i))
        read: dict[str, float] = {}
        due: dict[str, float] = {}
        until = time.monotonic() + count / rate * 3 + 120
        while len(read) < expected and time.monotonic() < until:
            for records in (await reader.getmany(timeout_ms=100)).values():
                now = time.time()
                for r in records:
                    got = _id(r)
                    assert got is not None
                    read[got] = now
                    due[got] = _due(r.headers)
        await reader.stop()
        await asyncio.to_thread(publisher.join, 60)
        stop.set()
        if code is None:
            await asyncio.to_thread(bridge.join, 90)
        else:
            await asyncio.to_thread(bridge.wait, 90)
        data = json.loads(trace.read_text(encoding="utf-8"))
        return report(data, read, due, rate)


def report(
    data: dict[str, Any], read: dict[str, float], due: dict[str, float], rate: float
) -> dict[str, float]:
    times = data["times"]
    stages: dict[str, list[float]] = {
        k: []
        for k in (
            "publish->fetched",
            "  of which fetch wait",
            "fetched->judged",
            "judged->committed",
            "committed->step end",
            "committed->read",
            "total (due->read)",
        )
    }
    for key, t in times.items():
        if key not in read or key not in due or "committed" not in t:
            continue
        stages["publish->fetched"].append(t["fetched"] - due[key])
        stages["  of which fetch wait"].append(t["fetch_wait"])
        stages["fetched->judged"].append(t["judged"] - t["fetched"])
        stages["judged->committed"].append(t["committed"] - t["judged"])
        stages["committed->step end"].append(
            min((s for s in data["steps"] if s >= t["committed"]), default=t["committed"])
            - t["committed"]
        )
        stages["committed->read"].append(read[key] - t["committed"])
        stages["total (due->read)"].append(read[key] - due[key])
    print(f"rate {rate:.0f}/s, {len(stages['total (due->read)'])} events joined")
    print(f"  {'stage':28} {'p50':>8} {'p90':>8} {'p99':>8}  ms")
    for name, v in stages.items():
        if v:
            print(
                f"  {name:28} {_pct(v, 50) * 1e3:8.1f} {_pct(v, 90) * 1e3:8.1f} "
                f"{_pct(v, 99) * 1e3:8.1f}"
            )
    _requests(data)
    summary = {f"{name.strip()} p50": _pct(v, 50) * 1e3 for name, v in stages.items() if v}
    total = stages["total (due->read)"]
    summary.update(p90=_pct(total, 90) * 1e3, p99=_pct(total, 99) * 1e3)
    # Process time of the bridge from its partitions assigned to its stop, per source event.
    summary["cpu_us_per_event"] = data["cpu_s"] / max(1, len(times)) * 1e6
    print(f"  bridge CPU per source event: {summary['cpu_us_per_event']:.0f} us")
    for which in ("audit", "mirror"):
        txs = [t for t in data["txs"] if t["log"] == which]
        if txs:
            print(
                f"  tx {which:6} n={len(txs):5} records p50 {_pct([t['records'] for t in txs], 50)}"
                f"  begin+sends p50 {_pct([t['sends_s'] for t in txs], 50) * 1e3:6.1f}"
                f" p99 {_pct([t['sends_s'] for t in txs], 99) * 1e3:6.1f}"
                f"  commit p50 {_pct([t['commit_s'] for t in txs], 50) * 1e3:6.1f}"
                f" p99 {_pct([t['commit_s'] for t in txs], 99) * 1e3:6.1f} ms"
            )
    return summary


def _requests(data: dict[str, Any]) -> None:
    for name, v in sorted(data["requests"].items()):
        if name in ("Fetch", "Produce", "AddPartitionsToTxn", "EndTxn") or "refused" in name:
            print(
                f"  request {name:32} n={len(v):6} p50 {_pct(v, 50) * 1e3:6.1f}"
                f" p90 {_pct(v, 90) * 1e3:6.1f} p99 {_pct(v, 99) * 1e3:6.1f} ms"
            )
    lags = data["lags"]
    print(
        f"  event loop lag (5 ms sleeps)  p50 {_pct(lags, 50) * 1e3:6.1f}"
        f" p90 {_pct(lags, 90) * 1e3:6.1f} p99 {_pct(lags, 99) * 1e3:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_latency", description=__doc__)
    parser.add_argument("--rate", type=float, action="append", help="events/s (repeatable)")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument(
        "--code",
        type=Path,
        action="append",
        help="a source tree whose bridge to probe (repeatable: A/B runs on one federation, "
        "alternated); default this one, in process",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repetitions (alternated)")
    parser.add_argument(
        "--rtt",
        type=float,
        default=0.0,
        help="put the destination behind a long link of this round trip, ms (root only)",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    if args.child:
        config, topic, trace, ready, stop = args.child
        _bridge_child(config, topic, trace, _Flag(Path(ready)), _Flag(Path(stop)))
        return
    codes: list[Path | None] = list(args.code or [None])
    rows: list[tuple[str, int, float, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="probe-latency-") as tmp:
        home = Path(tmp)
        with running_federation(
            home / "federation",
            (SOURCE, DESTINATION),
            partitions=PARTITIONS,
            insecure_plaintext=True,
            remote=(DESTINATION,) if args.rtt else (),
        ) as federation:
            if args.rtt:
                federation.links[DESTINATION].shape(local.LinkConditions(rtt_ms=args.rtt))
            federated = federated_config(federation, home / "signed")
            key = federated.config.agency(SOURCE).signing_key
            assert key is not None
            for round_ in range(args.rounds):
                for rate in args.rate or [500.0, 2000.0]:
                    for code in codes if round_ % 2 == 0 else codes[::-1]:
                        label = code.name if code is not None else "this tree"
                        print(f"--- round {round_} {label}", flush=True)
                        load = os.getloadavg()[0]
                        summary = asyncio.run(
                            _probe(
                                federation.bootstrap(SOURCE),
                                federation.bootstrap(DESTINATION),
                                federated.path,
                                key,
                                rate,
                                args.events,
                                code,
                            )
                        )
                        rows.append((label, round_, rate, load, summary))
    print("summary (ms): code, round, rate, load, p50 of each stage, total p90 / p99")
    for label, round_, rate, load, summary in rows:
        stages = "  ".join(f"{k.removesuffix(' p50')} {v:.0f}" for k, v in summary.items())
        print(f"  {label:12} {round_} {rate:6.0f}/s load {load:5.1f}  {stages}", flush=True)


if __name__ == "__main__":
    main()

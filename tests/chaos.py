"""A seeded chaos soak of the bridge: ``make chaos RUNS=N [SEED=S]`` (outside ``make test``).

One federation (interpol and europol, one node each, over mutual TLS) serves every run; each
run has topics of its own, a bridge worker per direction (interpol->europol and europol->interpol)
and events flowing both ways at a steady rate, while the faults its seed chose strike one after
another:

- ``kill-bridge``: SIGKILL of a direction's worker, restarted after a moment (as a supervisor
  would);
- ``pause-broker``: SIGSTOP of an agency's node for longer than a consumer session lasts (10 s),
  then SIGCONT: group members expire, commits time out with their outcome unknown;
- ``restart-broker``: an agency's node stopped and started again;
- ``rebalance``: a second worker of a direction joins its consumer group, takes partitions, and
  leaves again (SIGTERM);
- ``partition``: the link to an agency cut and healed, when the federation runs its nodes behind
  long links (``running_federation(remote=...)``, ``Federation.links``); where there is no such
  harness the fault is printed as skipped, so that a seed keeps its schedule everywhere.

When the traffic and the faults are over and every worker runs, the run checks, with readers of
its own (no consumer group):

- every mirror, ``read_committed``: each released event exactly once, nothing else;
- every mirror, ``read_uncommitted``: what aborted transactions left there holds only released
  events (so a committed reader never sees an aborted write); their number is printed;
- every audit trail: exactly one decision per published event, the right one, and each chain
  unbroken and signed (``bus audit verify`` over a copy of the run's records).

The run's seed decides the faults (kind, target, moment, duration); the same seed gives the same
schedule: ``make chaos RUNS=1 SEED=<the failing run's seed>`` replays it. Prints each run's
schedule and outcome, then how many runs passed; the exit status is 1 if one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bus import local
from bus.envelope import peek, seal
from bus.signing import SigningKey
from bus.testing import (
    EventPlan,
    Federated,
    Federation,
    connect,
    consume_all,
    create_topic,
    federated_config,
    grant_bridge,
    running_federation,
    unique_topic,
)
from tests.bridge import (
    BridgeProcess,
    audit_by_event_id,
    audit_values,
    copy_records,
    stop_all,
    verify_audit,
)

AGENCIES: Final = ("interpol", "europol")
DIRECTIONS: Final = (("interpol", "europol"), ("europol", "interpol"))
KINDS: Final = ("kill-bridge", "pause-broker", "restart-broker", "rebalance", "partition")
REMOTE: Final = "europol"
"""The agency behind a long link, where the harness makes one: the link partition faults cut."""
PARTITIONS: Final = 3
RATE: Final = 50.0
"""Events per second published at each source while the faults strike."""
TRAFFIC_S: Final = 30.0
"""The traffic's least duration; it goes on until the last fault is over."""
SESSION_TIMEOUT_S: Final = 10.0
"""The bridge consumer's session timeout (aiokafka's default): a pause outlasts it."""
OPERATION_TIMEOUT_S: Final = 8.0
"""The workers' --operation-timeout: a pause outlasts it too, so commits end unknown."""
CATCH_UP_S: Final = 600.0
PUBLISH_TIMEOUT_MS: Final = 600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One fault of a run's schedule: at ``at`` seconds into the traffic (or as soon as the one
    before it is over), of ``kind``, against ``target`` (a direction or an agency), lasting
    ``seconds``."""

    at: float
    kind: str
    target: str
    seconds: float

    def __str__(self) -> str:
        return f"t+{self.at:4.1f}s {self.kind:<14} {self.target:<18} {self.seconds:4.1f}s"


def schedule(seed: int) -> list[Fault]:
    """The faults of the run with ``seed``: two to four, each kind as likely, in time order."""
    rng = random.Random(seed)
    faults = []
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(KINDS)
        at = round(rng.uniform(1.0, TRAFFIC_S - 5.0), 1)
        source, destination = rng.choice(DIRECTIONS)
        direction, agency = f"{source}->{destination}", rng.choice(AGENCIES)
        target, seconds = {
            "kill-bridge": (direction, rng.uniform(0.5, 3.0)),
            "pause-broker": (agency, rng.uniform(SESSION_TIMEOUT_S + 1, SESSION_TIMEOUT_S + 6)),
            "restart-broker": (agency, rng.uniform(1.0, 6.0)),
            "rebalance": (direction, rng.uniform(3.0, 8.0)),
            "partition": (REMOTE, rng.uniform(5.0, 15.0)),
        }[kind]
        faults.append(Fault(at=at, kind=kind, target=target, seconds=round(seconds, 1)))
    return sorted(faults, key=lambda f: f.at)


@dataclass(slots=True)
class Run:
    """What one run started, and what it found."""

    seed: int
    federation: Federation
    federated: Federated
    log_dir: Path
    topics: dict[str, str]
    workers: dict[str, BridgeProcess]
    extras: list[BridgeProcess]
    notes: list[str]
    problems: list[str]

    def worker(self, direction: str, name: str) -> BridgeProcess:
        source, destination = direction.split("->")
        return BridgeProcess(
            self.federated,
            source=source,
            destination=destination,
            topics=[self.topics[source]],
            log_dir=self.log_dir,
            name=name,
            options=["--operation-timeout", str(OPERATION_TIMEOUT_S)],
        )


# --- the faults ----------------------------------------------------------------------------


async def strike(run: Run, fault: Fault) -> None:
    """Inflict ``fault`` and undo it (restart, resume, heal, leave) before returning."""
    spec = run.federation.spec
    assert spec is not None
    if fault.kind == "kill-bridge":
        worker = run.workers[fault.target]
        worker.kill()
        try:
            await asyncio.sleep(fault.seconds)
        finally:
            worker.start()
    elif fault.kind == "pause-broker":
        pids = [pid for node, pid in local.iter_node_pids(spec) if node.agency == fault.target]
        if not pids:
            run.notes.append(f"{fault}: no running node of {fault.target}; skipped")
            return
        with _paused(pids[0]):
            await asyncio.sleep(fault.seconds)
    elif fault.kind == "restart-broker":
        await asyncio.to_thread(local.down, spec, only=[fault.target])
        try:
            await asyncio.sleep(fault.seconds)
        finally:
            await local.up(spec)
    elif fault.kind == "rebalance":
        extra = run.worker(fault.target, f"extra-{len(run.extras) + 1}")
        run.extras.append(extra)
        extra.start()
        with contextlib.suppress(AssertionError):  # a slow join is still a rebalance
            await extra.wait_assigned(timeout_s=fault.seconds + 30)
        await asyncio.sleep(fault.seconds)
        await extra.terminate()
    elif fault.kind == "partition":
        link = run.federation.links.get(fault.target)
        if link is None:
            run.notes.append(f"{fault}: no long-link harness here; skipped")
            return
        await asyncio.to_thread(link.partition)
        try:
            await asyncio.sleep(fault.seconds)
        finally:
            await asyncio.to_thread(link.heal)
    else:  # pragma: no cover - KINDS lists every kind handled above
        raise ValueError(f"unknown fault kind {fault.kind!r}")


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block; SIGCONT whatever happens, so no node stays frozen."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def strike_all(
    run: Run, faults: Sequence[Fault], started: float, over: asyncio.Event
) -> None:
    """Each fault at its moment, or as soon as the one before is over; then sets ``over``."""
    for fault in faults:
        delay = fault.at - (time.monotonic() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        print(f"  {time.monotonic() - started:5.1f}s  {fault.kind} {fault.target}", flush=True)
        await strike(run, fault)
    over.set()


# --- the traffic --------------------------------------------------------------------------


async def publish(
    bootstrap: str, topic: str, plan: EventPlan, key: SigningKey, faults_over: asyncio.Event
) -> None:
    """``plan``'s events at ``RATE`` per second, as ``bus.testing.publish_plan`` makes them, for
    ``TRAFFIC_S`` seconds and on until ``faults_over``, so that every fault strikes while events
    flow (a restart on a busy host can take a minute). Its producer waits out the faults (a
    paused or restarting node) rather than giving up after its usual 40 s: the soak tests the
    bridge, not the publisher's patience. Idempotent, so a retried send is never stored twice."""
    producer = AIOKafkaProducer(
        **connect(bootstrap),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=PUBLISH_TIMEOUT_MS,
    )
    await producer.start()
    try:
        futures = []
        started = time.monotonic()
        for i in itertools.count():
            if not i < RATE * TRAFFIC_S and faults_over.is_set():
                break
            event = plan.event(i)
            plan.ids.append(event["event_id"])
            (plan.released if plan.is_released(i) else plan.denied).add(event["event_id"])
            value = seal(event, key)
            futures.append(await producer.send(topic, value, key=event["correlation_id"].encode()))
            ahead = (i + 1) / RATE - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --- the checks ----------------------------------------------------------------------------


async def read_uncommitted(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic`` up to its high watermarks, aborted transactions' included."""
    consumer = AIOKafkaConsumer(
        topic,
        **connect(bootstrap),
        group_id=None,
        isolation_level="read_uncommitted",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        while behind := [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*behind, timeout_ms=500)
            values += [r.value for part in batch.values() for r in part if r.value is not None]
    finally:
        await consumer.stop()
    return values


async def check(run: Run, plans: dict[str, EventPlan]) -> None:
    """Every mirror and audit trail of the run, exactly (problems go to ``run.problems``)."""
    federation, federated = run.federation, run.federated
    for source, destination in DIRECTIONS:
        plan, topic = plans[source], run.topics[source]
        name, mirror = f"{source}->{destination}", f"{source}.{topic}"
        committed = await consume_all(
            federation.bootstrap(destination),
            mirror,
            expected=len(plan.released),
            timeout_s=CATCH_UP_S,
        )
        counts = Counter(peek(r.value).event["event_id"] for r in committed if r.value)
        missing = plan.released - set(counts)
        extra = set(counts) - plan.released
        twice = {event_id: n for event_id, n in counts.items() if n > 1}
        if missing or extra or twice:
            run.problems.append(
                f"{name} mirror: {len(missing)} released events missing, {len(extra)} never "
                f"released present, {len(twice)} present more than once"
            )
        everything = await read_uncommitted(federation.bootstrap(destination), mirror)
        aborted = len(everything) - len(committed)
        seen = Counter(peek(v).event["event_id"] for v in everything)
        strays = set(seen) - plan.released
        if not counts <= seen or strays:
            run.problems.append(
                f"{name} mirror: read_uncommitted found {len(everything)} records against "
                f"{len(committed)} committed, {len(strays)} of events never released"
            )
        run.notes.append(f"{name}: {len(committed)} mirrored, {aborted} aborted records")

        decisions = await audit_by_event_id(
            federation.bootstrap(source),
            federated.config.topics.audit,
            topic,
            expected=len(plan.ids),
        )
        wrong = [
            event_id
            for event_id in plan.ids
            if decisions.get(event_id) != ["FORWARDED" if event_id in plan.released else "DENIED"]
        ]
        if wrong or len(decisions) != len(plan.ids):
            run.problems.append(
                f"{name} audit: {len(wrong)} of {len(plan.ids)} events without exactly their "
                f"one decision, {len(decisions)} events decided"
            )
        values = await audit_values(
            federation.bootstrap(source),
            federated.config.topics.audit,
            topic,
            expected=len(plan.ids),
        )
        copy = await copy_records(federation.bootstrap(source), values)
        status, lines = await asyncio.to_thread(verify_audit, federated, source, copy)
        if status != 0 or lines[-1].get("breaks") != 0:
            run.problems.append(f"{name} audit chain: bus audit verify says {lines}")


# --- a run ---------------------------------------------------------------------------------


async def run_once(federation: Federation, seed: int, work: Path) -> Run:
    """One run with ``seed``: its own topics, workers, traffic, faults and checks."""
    faults = schedule(seed)
    log_dir = work / f"run-{seed}"
    log_dir.mkdir(parents=True, exist_ok=True)
    federated = federated_config(federation, log_dir / "config")
    run = Run(
        seed=seed,
        federation=federation,
        federated=federated,
        log_dir=log_dir,
        topics={},
        workers={},
        extras=[],
        notes=[],
        problems=[],
    )
    print(f"run seed {seed}: faults", flush=True)
    for fault in faults:
        print(f"  {fault}", flush=True)
    spec = federation.spec
    assert spec is not None
    try:
        await local.up(spec)  # harmless when every node runs; restarts one a fault left down
        for source, destination in DIRECTIONS:
            topic = run.topics[source] = unique_topic(f"chaos-{source}")
            await create_topic(federation.bootstrap(source), topic, partitions=PARTITIONS)
            await grant_bridge(federation.config, source, destination, [topic])
        for source, destination in DIRECTIONS:
            direction = f"{source}->{destination}"
            run.workers[direction] = run.worker(direction, source)
            run.workers[direction].start()
        for worker in run.workers.values():
            await worker.wait_assigned(timeout_s=300)  # a loaded host: groups form slowly
        plans = {  # count unused: the traffic goes on until the faults are over
            source: EventPlan(origin=source, destination=destination, count=0)
            for source, destination in DIRECTIONS
        }
        over = asyncio.Event()
        started = time.monotonic()
        # One fails, all stop: a fault is undone (node resumed or restarted) when cancelled.
        async with asyncio.TaskGroup() as traffic:
            for source, _ in DIRECTIONS:
                traffic.create_task(
                    publish(
                        federation.bootstrap(source),
                        run.topics[source],
                        plans[source],
                        federated.keys[source],
                        over,
                    )
                )
            traffic.create_task(strike_all(run, faults, started, over))
        run.notes.append(f"traffic: {time.monotonic() - started:.0f} s")
        for direction, worker in run.workers.items():
            assert worker.process is not None
            if worker.process.poll() is not None:  # it died by itself: note it, restart it
                run.notes.append(f"{direction}: worker exited with {worker.process.returncode}")
                worker.start()
        await check(run, plans)
    except Exception as exc:  # the run failed to run: a problem of the run, with its schedule
        errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        run.problems += [f"{type(e).__name__}: {e}" for e in errors]
        traceback.print_exception(exc)
    finally:
        stop_all([*run.workers.values(), *run.extras])
    return run


async def soak(federation: Federation, seeds: Sequence[int], work: Path) -> int:
    """Every run in turn; prints each outcome and the tally; the number of failed runs."""
    failed = []
    for i, seed in enumerate(seeds, 1):
        began = time.monotonic()
        run = await run_once(federation, seed, work)
        took = time.monotonic() - began
        for note in run.notes:
            print(f"  {note}")
        if run.problems:
            failed.append(seed)
            print(f"run {i}/{len(seeds)} seed {seed}: FAILED after {took:.0f} s")
            for problem in run.problems:
                print(f"  {problem}")
            print(f"  logs: {run.log_dir}; replay: make chaos RUNS=1 SEED={seed}", flush=True)
        else:
            print(f"run {i}/{len(seeds)} seed {seed}: passed in {took:.0f} s", flush=True)
    print(f"chaos: {len(seeds) - len(failed)}/{len(seeds)} runs passed", end="")
    print(f"; failed seeds: {' '.join(map(str, failed))}" if failed else "")
    return len(failed)


def _federation(home: Path) -> contextlib.AbstractContextManager[Federation]:
    """The soak's federation; europol behind a long link where this machine can make one."""
    reason = local.link_unavailable()
    if reason is None:
        return running_federation(home, AGENCIES, heap_mb=384, remote=[REMOTE])
    print(f"partition faults will be skipped: {reason}")
    return running_federation(home, AGENCIES, heap_mb=384)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds: SIGCONT, workers, nodes stopped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="how many runs (default 3)")
    parser.add_argument(
        "--seed", type=int, default=None, help="the first run's seed (then +1 each run)"
    )
    parser.add_argument("--work", type=Path, default=None, help="folder for state and logs")
    args = parser.parse_args(argv)
    base = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    seeds = [base + i for i in range(args.runs)]
    work = args.work or Path(tempfile.mkdtemp(prefix="exchange-bus-chaos-"))
    print(f"chaos: {args.runs} runs, seeds {seeds[0]}..{seeds[-1]}, state and logs in {work}")
    # The clients' complaints while a node is down are the faults working, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _federation(work / "federation") as federation:
            failed = asyncio.run(soak(federation, seeds, work))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        print(f"chaos: state and logs of the failed runs kept in {work}")
        return 1
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)  # nothing to look into: every run passed
    return 0


if __name__ == "__main__":
    sys.exit(main())

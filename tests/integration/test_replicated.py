"""Replicated clusters (``bus local up --brokers 3``): every agency a KRaft quorum of three nodes,
replication factor 3 and ``min.insync.replicas`` 2. A broker of the source and then one of the
destination dies by SIGKILL while events flow through a bridge, and each released event is on
the mirror once, each decision in the audit trail once, counted by event id with independent
``read_committed`` readers.

Which broker dies is drawn from the seed (``BUS_TEST_SEED``): the leader of a partition the
bridge reads or writes, or the transaction coordinator of one of its lanes' logs.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bus import local
from bus.bridge._checkpoint import transactional_id
from bus.local._processes import exit_status
from bus.testing import (
    EventPlan,
    Federated,
    Federation,
    connect,
    consume_all,
    count_by_event_id,
    create_topic,
    federated_config,
    grant_bridge,
    publish_plan,
    running_federation,
    unique_topic,
)
from tests.bridge import BridgeProcess, audit_by_event_id, stop_all
from tests.kafka import external_config, state_dir_marker

pytestmark = pytest.mark.integration

SOURCE, DESTINATION = "interpol", "europol"
BROKERS = 3
PARTITIONS = 3


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Two agencies of three nodes each, for this module's tests (small heaps)."""
    if external_config() is not None:
        pytest.skip("the tests kill brokers: only clusters the tests start themselves")
    home = tmp_path_factory.mktemp(f"{state_dir_marker()}-replicated")
    with running_federation(home, (SOURCE, DESTINATION), heap_mb=256, brokers=BROKERS) as f:
        yield f


@pytest.fixture
def federated(replicated: Federation, tmp_path: Path) -> Federated:
    return federated_config(replicated, tmp_path / "config")


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


def _spec(federation: Federation) -> local.FederationSpec:
    assert federation.spec is not None
    return federation.spec


async def test_status_shows_every_node_of_every_cluster_and_all_topics_are_replicated(
    replicated: Federation,
) -> None:
    spec = _spec(replicated)
    nodes = await local.status(spec)
    assert [s.node.name for s in nodes] == [
        f"{agency}-{i}" for agency in (SOURCE, DESTINATION) for i in (1, 2, 3)
    ]
    assert all(s.reachable and s.pid is not None for s in nodes)
    for agency in (SOURCE, DESTINATION):
        ids = {s.cluster_id for s in nodes if s.node.agency == agency}
        assert len(ids) == 1, ids
        assert replicated.config.agency(agency).bootstrap_servers == spec.bootstrap_servers(agency)
    assert nodes[0].cluster_id != nodes[3].cluster_id  # two clusters, not one of six
    admin = AIOKafkaAdminClient(**connect(replicated.bootstrap(SOURCE)))
    await admin.start()
    try:
        names = ["intel.events", "bus.audit", "bus.quarantine"]
        for topic in await admin.describe_topics(names):
            assert topic["error_code"] == 0, topic["topic"]
            for partition in topic["partitions"]:
                assert len(partition["replicas"]) == len(partition["isr"]) == 3, topic["topic"]
    finally:
        await admin.close()


async def _victim(
    federation: Federation, agency: str, feed: str, rng: random.Random
) -> tuple[local.Node, str]:
    """A node of ``agency``'s cluster that matters to the bridge of ``feed`` now, drawn with
    ``rng``: the leader of a partition the bridge reads (the source) or writes (the mirror), or
    the transaction coordinator of a lane's log there (``audit`` or ``mirror``); and why it."""
    partition = rng.randrange(PARTITIONS)
    kind = rng.choice(["leader", "coordinator"])
    topic, log = (feed, "audit") if agency == SOURCE else (f"{SOURCE}.{feed}", "mirror")
    admin = AIOKafkaAdminClient(**connect(federation.bootstrap(agency)))
    await admin.start()
    try:
        if kind == "leader":
            [described] = await admin.describe_topics([topic])
            [chosen] = [p for p in described["partitions"] if p["partition"] == partition]
            broker = int(chosen["leader"])
            why = f"leader of {topic}/{partition}"
        else:
            tx_id = transactional_id(SOURCE, DESTINATION, feed, partition, log)
            broker = await admin.find_coordinator(tx_id, 1)
            why = f"transaction coordinator of {tx_id}"
    finally:
        await admin.close()
    [node] = [n for n in _spec(federation).cluster(agency) if n.node_id == broker]
    return node, why


async def _kill(federation: Federation, node: local.Node) -> None:
    """SIGKILL the node's JVM: no shutdown of any kind, no leadership handed over."""
    [pid] = [pid for n, pid in local.iter_node_pids(_spec(federation)) if n == node]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while exit_status(node, pid) is None:  # collected, so the node is known to be gone
        assert time.monotonic() < deadline, f"{node.name} (pid {pid}) survived SIGKILL"
        await asyncio.sleep(0.1)


def _cpu_s(pid: int) -> float:
    """The CPU time (user and system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _usage(pid: int, cpu_before: float, events: int) -> str:
    """A worker's peak resident memory, and its CPU time per event since ``cpu_before``."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    cpu_s = _cpu_s(pid) - cpu_before
    return (
        f"bridge worker: peak RSS {peak:.0f} MiB; CPU {cpu_s:.1f} s for {events} events "
        f"judged with two brokers killed ({1000 * cpu_s / events:.2f} ms an event)"
    )


async def _replicas(federation: Federation, agency: str, topics: list[str]) -> set[int]:
    """How many replicas the partitions of ``topics`` have (each topic must exist)."""
    admin = AIOKafkaAdminClient(**connect(federation.bootstrap(agency)))
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    assert [t["error_code"] for t in described] == [0] * len(topics), described
    return {len(p["replicas"]) for t in described for p in t["partitions"]}


@pytest.mark.slow  # 55-140 s on 2 shared cores (the restart of a JVM, two faults' timeouts)
async def test_a_broker_killed_at_the_source_then_at_the_destination_loses_and_repeats_nothing(
    replicated: Federation,
    federated: Federated,
    bridges: list[BridgeProcess],
    tmp_path: Path,
    seed: int,
) -> None:
    spec = _spec(replicated)
    rng = random.Random(seed)
    source, destination = replicated.bootstrap(SOURCE), replicated.bootstrap(DESTINATION)
    topic = unique_topic("feed")
    mirror = f"{SOURCE}.{topic}"
    await create_topic(source, topic, partitions=PARTITIONS)
    await grant_bridge(replicated.config, SOURCE, DESTINATION, [topic])
    bridge = BridgeProcess(
        federated, source=SOURCE, destination=DESTINATION, topics=[topic], log_dir=tmp_path
    )
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned(timeout_s=120)
    # What the bridge created by itself, and the group and transaction logs it uses, are
    # replicated as the cluster's defaults say.
    internal = ["__consumer_offsets", "__transaction_state"]
    written = [mirror, f"bus.checkpoints.{mirror}", f"bus.checkpoints.forwarded.{mirror}"]
    assert await _replicas(replicated, DESTINATION, [*written, internal[1]]) == {3}
    audited = [topic, f"bus.checkpoints.audit.{DESTINATION}.{topic}"]
    assert await _replicas(replicated, SOURCE, [*audited, *internal]) == {3}

    plans = [EventPlan(origin=SOURCE, destination=DESTINATION, count=1200) for _ in range(2)]
    faults: list[str] = []
    down: local.Node | None = None
    started = time.monotonic()
    assert bridge.process is not None
    cpu_before = _cpu_s(bridge.process.pid)
    print(f"\nbridge assigned; seed {seed}")

    def note(what: str) -> None:
        faults.append(what)
        print(f"{time.monotonic() - started:6.1f} s  {what} (seed {seed})")

    try:
        for plan, agency in zip(plans, (SOURCE, DESTINATION), strict=True):
            publishing = asyncio.create_task(
                publish_plan(source, topic, plan, federated.keys[SOURCE], rate=150)
            )
            try:
                await asyncio.sleep(rng.uniform(1.0, 4.0))  # the bridge is moving events
                victim, why = await _victim(replicated, agency, topic, rng)
                await _kill(replicated, victim)
                down = victim
                note(f"SIGKILL {victim.name}, {why}")
            finally:
                await publishing  # acks=all: two of three replicas are enough
            note(f"{plan.count} events published")
            if agency == SOURCE:
                await local.up(spec)  # the source's node comes back; the destination's stays down
                down = None
                note(f"{victim.name} restarted")

        def alive() -> None:
            assert bridge.process is not None
            assert bridge.process.poll() is None, bridge.tail()

        released = plans[0].released | plans[1].released
        ids = plans[0].ids + plans[1].ids
        try:
            counts = await count_by_event_id(
                destination, mirror, expected=len(released), check=alive, timeout_s=240
            )
        except TimeoutError as exc:
            raise AssertionError(f"{faults}: {exc}\n{bridge.tail()}") from None
        note("every released event is on the mirror")
        duplicates = {event_id: n for event_id, n in counts.items() if n > 1}
        assert duplicates == {}, faults
        assert set(counts) == released, faults
        audit = await audit_by_event_id(
            source, federated.config.topics.audit, topic, expected=len(ids), check=alive
        )
        assert set(audit) == set(ids), faults
        for event_id, decisions in audit.items():
            expected = "FORWARDED" if event_id in released else "DENIED"
            assert decisions == [expected], (event_id, faults)
        # Nothing of the feed was lost at the source either: every record is still there.
        assert len(await consume_all(source, topic)) == len(ids)
        alive()  # the bridge rode out both faults: nothing escaped
        print(_usage(bridge.process.pid, cpu_before, len(ids)))  # sizing, docs/deploy.md
    finally:
        if down is not None:
            await local.up(spec)  # leave the module's clusters whole

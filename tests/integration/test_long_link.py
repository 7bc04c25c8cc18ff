"""The bridge across a long link: delay, jitter, loss and a partition change no count.

The destination cluster runs in a network namespace of its own behind a long link
(``bus.local.Link``: a wire that delays, jitters and drops packets); the source, the bridge and
the counting readers stay in this one, so every write of the bridge to the destination, every
commit of its transactions and every read of the mirror crosses the link. Counts are taken by
event id with an independent ``read_committed`` reader, on the mirror and in the audit trail.
Needs root (namespaces and TUN devices); skipped, saying why, where that is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus import local
from bus.local._link import unavailable
from bus.testing import (
    EventPlan,
    Federated,
    Federation,
    count_by_event_id,
    create_topic,
    federated_config,
    publish_plan,
    running_federation,
    unique_topic,
)
from tests.bridge import BridgeProcess, audit_by_event_id, stop_all
from tests.kafka import state_dir_marker

_WHY_NOT = unavailable()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or ""),
]

SOURCE, DESTINATION = "interpol", "europol"
PARTITIONS = 3
LONG = local.LinkConditions(rtt_ms=25, jitter_ms=5, loss_percent=1)


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Two agencies; the destination behind a long link (which adds nothing until shaped)."""
    with running_federation(
        tmp_path_factory.mktemp(f"{state_dir_marker()}-link"),
        (SOURCE, DESTINATION),
        partitions=PARTITIONS,
        remote=(DESTINATION,),
    ) as federation:
        yield federation


@pytest.fixture
def federated(far: Federation, tmp_path: Path) -> Federated:
    return federated_config(far, tmp_path / "config")


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


@pytest.fixture
def link(far: Federation) -> Iterator[local.Link]:
    """The destination's link, shaped as ``LONG``; plain again (and healed) afterwards."""
    link = far.links[DESTINATION]
    link.shape(LONG)
    yield link
    link.shape(local.LinkConditions())


async def _start_bridge(
    far: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> tuple[str, BridgeProcess]:
    topic = unique_topic("far")
    await create_topic(far.bootstrap(SOURCE), topic, partitions=PARTITIONS)
    bridge = BridgeProcess(
        federated, source=SOURCE, destination=DESTINATION, topics=[topic], log_dir=tmp_path
    )
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned(timeout_s=120)
    return topic, bridge


async def _assert_exactly_once(
    far: Federation, federated: Federated, topic: str, plan: EventPlan, bridge: BridgeProcess
) -> None:
    """Each released event once on the mirror (read across the link), nothing else; one
    decision per event in the source's audit trail, the right one."""

    def alive() -> None:
        assert bridge.process is not None
        assert bridge.process.poll() is None, bridge.tail()

    counts = await count_by_event_id(
        far.bootstrap(DESTINATION),
        f"{SOURCE}.{topic}",
        expected=len(plan.released),
        check=alive,
        timeout_s=180,
    )
    assert {event_id: n for event_id, n in counts.items() if n > 1} == {}
    assert set(counts) == plan.released
    audit = await audit_by_event_id(
        far.bootstrap(SOURCE), federated.config.topics.audit, topic, expected=len(plan.ids)
    )
    assert set(audit) == set(plan.ids)
    for event_id, decisions in audit.items():
        assert decisions == ["FORWARDED" if event_id in plan.released else "DENIED"], event_id


async def test_the_destination_is_reached_only_across_the_link(far: Federation) -> None:
    link = far.links[DESTINATION]
    assert far.spec is not None
    port = far.spec.nodes()[1].broker_port
    assert far.bootstrap(DESTINATION) == f"{link.peer_address}:{port}"
    before = (await asyncio.to_thread(link.stats))["out"]["passed"]
    await create_topic(far.bootstrap(DESTINATION), unique_topic("probe"))
    assert (await asyncio.to_thread(link.stats))["out"]["passed"] > before


async def test_delay_jitter_and_loss_change_no_count(
    far: Federation,
    federated: Federated,
    link: local.Link,
    bridges: list[BridgeProcess],
    tmp_path: Path,
) -> None:
    topic, bridge = await _start_bridge(far, federated, bridges, tmp_path)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=1000)
    await publish_plan(far.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE])
    await _assert_exactly_once(far, federated, topic, plan, bridge)
    stats = await asyncio.to_thread(link.stats)
    # The link did lose packets both ways while the bridge worked through it.
    assert stats["out"]["lost"] > 0
    assert stats["in"]["lost"] > 0
    assert await bridge.terminate() == 0


async def test_a_partition_then_heal_changes_no_count(
    far: Federation,
    federated: Federated,
    link: local.Link,
    bridges: list[BridgeProcess],
    tmp_path: Path,
) -> None:
    topic, bridge = await _start_bridge(far, federated, bridges, tmp_path)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=1500)
    publishing = asyncio.create_task(
        publish_plan(far.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=150)
    )
    try:
        await asyncio.sleep(1.5)
        lost_before = (await asyncio.to_thread(link.stats))["out"]["lost"]
        await asyncio.to_thread(link.partition)
        # Cut for at least 5 s, and until the bridge was seen trying to cross (a loaded host
        # may take a while to reach its next write); events keep coming at the source.
        cut = asyncio.get_running_loop().time()
        lost_during = 0
        while (elapsed := asyncio.get_running_loop().time() - cut) < 5.0 or (
            lost_during == 0 and elapsed < 60.0
        ):
            await asyncio.sleep(0.5)
            lost_during = (await asyncio.to_thread(link.stats))["out"]["lost"] - lost_before
        await asyncio.to_thread(link.heal)
    finally:
        await publishing
    # The bridge kept trying to reach the destination during the partition.
    assert lost_during > 0
    await _assert_exactly_once(far, federated, topic, plan, bridge)
    assert await bridge.terminate() == 0

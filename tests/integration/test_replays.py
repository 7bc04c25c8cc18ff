"""Replays and revisions on real clusters: each (event id, revision) crosses a direction once,
across a SIGKILL of the bridge; rollbacks are denied, conflicts quarantined; a subscriber group
reading two feeds that carry the same event handles it once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bus.audit import decode_audit_record
from bus.config import Config
from bus.envelope import peek, seal
from bus.events import template
from bus.quarantine import read_quarantined
from bus.signing import SigningKey
from bus.subscriber import Delivery, Rejection, Subscriber, open_subscriber
from bus.testing import (
    Federated,
    Federation,
    consume_all,
    create_topic,
    federated_config,
    grant_bridge,
    produce,
    unique_topic,
)
from tests.bridge import BridgeProcess, stop_all

pytestmark = pytest.mark.integration

SOURCE, DESTINATION = "interpol", "europol"


@pytest.fixture
def federated(federation: Federation, tmp_path: Path) -> Federated:
    return federated_config(federation, tmp_path / "config")


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


def _event(**fields: Any) -> dict[str, Any]:
    """An interpol event releasable to europol, valid now."""
    event = template("CYBERCRIME", agency=SOURCE, event_id=str(uuid.uuid4()))
    event["created_at"] = datetime.now(UTC)
    event["expires_at"] = datetime.now(UTC) + timedelta(days=1)
    event["tlp"] = "GREEN"
    event["releasable_to"] = [DESTINATION]
    event.update(fields)
    return event


async def _mirrored(federation: Federation, topic: str, expected: int) -> Counter[tuple[str, int]]:
    """How often each (event id, revision) is on the mirror (read_committed)."""
    records = await consume_all(
        federation.bootstrap(DESTINATION), f"{SOURCE}.{topic}", expected=expected
    )
    return Counter(
        (e["event_id"], e["revision"])
        for e in (peek(r.value).event for r in records if r.value is not None)
    )


async def _decisions(
    federation: Federation, federated: Federated, topic: str, expected: int
) -> list[tuple[str, int, int, str, str]]:
    """(event id, source partition and offset, decision, rule) of the audit records about
    ``topic``."""
    records = await consume_all(
        federation.bootstrap(SOURCE),
        federated.config.topics.audit,
        expected=expected,
        where=lambda r: (
            r.value is not None and decode_audit_record(r.value)["source_topic"] == topic
        ),
    )
    audits = [decode_audit_record(r.value) for r in records if r.value is not None]
    return sorted(
        (a["event_id"], a["source_partition"], a["source_offset"], a["decision"], a["rule"])
        for a in audits
    )


async def _metric(bridge: BridgeProcess, name: str, expected: float, **labels: str) -> float:
    """The metric once it reached ``expected`` (counted after both commits), or as it is
    after 10 s."""
    value = await bridge.metric(name, **labels)
    for _ in range(50):
        if value >= expected:
            break
        await asyncio.sleep(0.2)
        value = await bridge.metric(name, **labels)
    return value


async def test_each_revision_crosses_once_across_a_sigkill_rollbacks_denied_conflicts_quarantined(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    key = federated.keys[SOURCE]
    bootstrap = federation.bootstrap(SOURCE)
    topic = unique_topic("replay")
    await create_topic(bootstrap, topic, partitions=3)
    await grant_bridge(federation.config, SOURCE, DESTINATION, [topic])
    bridge = BridgeProcess(
        federated,
        source=SOURCE,
        destination=DESTINATION,
        topics=[topic],
        log_dir=tmp_path,
    )
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()

    event = _event(revision=2)
    signed = seal(event, key)
    eid = event["event_id"]
    # Revision 2 first, alone, so that it is the one forwarded; then, on every partition, the
    # same bytes again (replays), revision 1 (a rollback) and another body as revision 2.
    await produce(bootstrap, topic, [signed], partition=0)
    assert await _mirrored(federation, topic, 1) == Counter({(eid, 2): 1})
    older = seal({**event, "revision": 1}, key)
    conflicting = seal({**event, "title": "another body, same id and revision"}, key)
    await produce(bootstrap, topic, [signed, older], partition=1)
    await produce(bootstrap, topic, [signed, conflicting], partition=2)
    await produce(bootstrap, topic, [signed], partition=0)
    # 1 forwarded + 3 replays + 1 rollback audited; the conflict is quarantined.
    before = await _decisions(federation, federated, topic, 5)
    assert Counter((d, rule) for *_, d, rule in before) == Counter(
        {("FORWARDED", "allowed"): 1, ("DENIED", "replay"): 3, ("DENIED", "rollback"): 1}
    )
    assert await _metric(bridge, "bus_bridge_denied_total", 3, rule="replay") == 3
    assert await _metric(bridge, "bus_bridge_denied_total", 1, rule="rollback") == 1
    conflicts = await _metric(bridge, "bus_bridge_quarantined_total", 1, reason="revision-conflict")
    assert conflicts == 1

    # SIGKILL: what was forwarded is known again from the destination after the restart.
    bridge.kill()
    bridge.start()
    await bridge.wait_assigned()
    later = _event()
    await produce(bootstrap, topic, [signed, conflicting], partition=1)
    await produce(bootstrap, topic, [seal(later, key)], partition=2)
    mirrored = await _mirrored(federation, topic, 2)
    assert mirrored == Counter({(eid, 2): 1, (later["event_id"], 1): 1})
    after = await _decisions(federation, federated, topic, 7)
    assert Counter((d, rule) for *_, d, rule in after) == Counter(
        {("FORWARDED", "allowed"): 2, ("DENIED", "replay"): 4, ("DENIED", "rollback"): 1}
    )
    assert len(set(after)) == len(after)  # one decision per source record, none twice
    assert await _metric(bridge, "bus_bridge_denied_total", 1, rule="replay") == 1
    quarantined = [
        q
        for q in map(
            read_quarantined,
            await consume_all(
                bootstrap,
                federated.config.topics.quarantine,
                expected=2,
                where=lambda r: read_quarantined(r).source_topic == topic,
            ),
        )
        if q.source_topic == topic
    ]
    assert sorted((q.reason, q.source_partition) for q in quarantined) == [
        ("revision-conflict", 1),
        ("revision-conflict", 2),
    ]
    assert all(q.value == conflicting for q in quarantined)
    conflicts = await _metric(bridge, "bus_bridge_quarantined_total", 1, reason="revision-conflict")
    assert conflicts == 1
    assert await _metric(bridge, "bus_bridge_replay_entries", 2) == 2
    assert await bridge.terminate() == 0


async def _drain(subscriber: Subscriber, into: list[Delivery]) -> None:
    async for delivery in subscriber:
        into.append(delivery)


async def test_a_group_reading_two_feeds_that_carry_one_event_handles_it_once(
    signed_federation: Config,
) -> None:
    """The same event reaches the agency by two routes (here two topics); the group handles it
    once, skips an older revision, and quarantines another body under the same revision."""
    agency = "interpol"
    bootstrap = ",".join(signed_federation.agency(agency).bootstrap_servers)
    direct, onward = unique_topic("route-direct"), unique_topic("route-onward")
    for topic in (direct, onward):
        await create_topic(bootstrap, topic, partitions=1)
    key = SigningKey.load(signed_federation.agency(agency).signing_key)  # type: ignore[arg-type]
    event = {**_event(), "revision": 2}
    other = _event()
    signed = seal(event, key)
    conflicting = seal({**event, "title": "another body"}, key)
    await produce(bootstrap, direct, [signed, seal(other, key)])
    await produce(
        bootstrap, onward, [signed, seal({**event, "revision": 1}, key), conflicting, signed]
    )
    rejections: list[Rejection] = []
    registry = CollectorRegistry()
    delivered: list[Delivery] = []
    async with open_subscriber(
        signed_federation,
        agency,
        group_id=f"test-{uuid.uuid4().hex[:12]}",
        topics=[direct, onward],
        from_beginning=True,
        on_rejected=rejections.append,
        registry=registry,
    ) as subscriber:
        async with asyncio.timeout(60):
            async for delivery in subscriber:
                delivered.append(delivery)
                if len(delivered) == 2:
                    break
        # Whatever else comes within a few seconds would be a second delivery.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_drain(subscriber, delivered), 4)
    assert sorted((d.event_id, d.event["revision"]) for d in delivered) == sorted(
        [(event["event_id"], 2), (other["event_id"], 1)]
    )
    assert [(r.reason, r.topic) for r in rejections] == [("revision-conflict", onward)]
    assert rejections[0].quarantined is not None

    def consumed(topic: str, outcome: str) -> float:
        labels = {"agency": agency, "topic": topic, "outcome": outcome}
        return registry.get_sample_value("bus_consumed_total", labels) or 0.0

    # The event's copy that came second (by either route) and the later one on the onward
    # route are duplicates; revision 1 came after revision 2: a rollback.
    assert consumed(direct, "duplicate") + consumed(onward, "duplicate") == 2
    assert consumed(onward, "rollback") == 1

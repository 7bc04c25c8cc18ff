"""No record stops a consumer or wedges a lane, and no checkpoint is trusted blindly: against
real clusters, with a running bridge, a subscriber and ``bus tail``.

- every compression codec Kafka supports is read by the subscriber, ``bus tail`` and the bridge;
- a record whose source headers alone approach the size limit, and one whose header name is not
  UTF-8, are quarantined (the first as a dead letter) while the events around them cross;
- checkpoints written raw with a plain producer (one not JSON, one ahead of the source) raise
  the alarm and stop their lanes, while the other partition keeps moving.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from bus import events
from bus.bridge._checkpoint import checkpoint_key, checkpoint_topic
from bus.cli import main
from bus.envelope import peek
from bus.events import template
from bus.publisher import COMPRESSION_TYPES, open_publisher
from bus.quarantine import read_quarantined
from bus.subscriber import Rejection, open_subscriber
from bus.testing import (
    Federated,
    Federation,
    connect,
    consume_all,
    create_topic,
    federated_config,
    unique_topic,
)
from tests.bridge import BridgeProcess, stop_all
from tests.hostile import send_with_raw_header_names

pytestmark = pytest.mark.integration

SOURCE, DESTINATION = "interpol", "europol"
LIMIT = 1_048_576
"""The local federation's record size limit (aiokafka's and the topics' default)."""


@pytest.fixture
def federated(federation: Federation, tmp_path: Path) -> Federated:
    return federated_config(federation, tmp_path / "config")


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


def _released_event(i: int) -> dict[str, Any]:
    event = template("CYBERCRIME", agency=SOURCE, event_id=str(uuid.uuid4()))
    event["created_at"] = datetime.now(UTC)
    event["expires_at"] = datetime.now(UTC) + timedelta(days=1)
    event["correlation_id"] = f"case-{i}"
    event["tlp"] = "GREEN"
    event["releasable_to"] = [DESTINATION]
    return event


def _bridge(federated: Federated, topic: str, tmp_path: Path) -> BridgeProcess:
    return BridgeProcess(
        federated, source=SOURCE, destination=DESTINATION, topics=[topic], log_dir=tmp_path
    )


async def _mirrored_ids(federation: Federation, topic: str, expected: int) -> list[str]:
    records = await consume_all(
        federation.bootstrap(DESTINATION), f"{SOURCE}.{topic}", expected=expected
    )
    return [str(peek(r.value).event["event_id"]) for r in records if r.value is not None]


async def _wait_mirrored(
    federation: Federation, topic: str, expected: int, bridge: BridgeProcess
) -> list[str]:
    for _ in range(90):
        ids = await _mirrored_ids(federation, topic, expected)
        if len(ids) >= expected:
            return ids
        assert bridge.process is not None
        assert bridge.process.poll() is None, bridge.tail()
        await asyncio.sleep(1)
    raise AssertionError(f"the bridge did not move {expected} events: {bridge.tail()}")


def _bus(path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


async def test_every_codec_is_read_by_the_subscriber_bus_tail_and_the_bridge(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    topic = unique_topic("codecs")
    await create_topic(federation.bootstrap(SOURCE), topic, partitions=2)
    published: dict[str, list[str]] = {}
    for codec in COMPRESSION_TYPES:
        batch = [_released_event(i) for i in range(10)]
        async with open_publisher(
            federated.config, SOURCE, topic=topic, compression=codec, linger_ms=20
        ) as publisher:
            await publisher.publish_many(batch)
        published[codec] = [e["event_id"] for e in batch]
    every = {event_id for ids in published.values() for event_id in ids}
    assert len(every) == 10 * len(COMPRESSION_TYPES)

    rejected: list[Rejection] = []
    delivered: list[str] = []
    async with open_subscriber(
        federated.config,
        SOURCE,
        group_id=None,
        topics=[topic],
        from_beginning=True,
        on_rejected=rejected.append,
    ) as subscriber:
        async with asyncio.timeout(60):
            async for delivery in subscriber:
                delivered.append(delivery.event_id)
                if len(delivered) == len(every):
                    break
    assert rejected == []
    assert sorted(delivered) == sorted(every)

    code, out, err = await asyncio.to_thread(
        _bus,
        federated.path,
        "tail",
        "--agency",
        SOURCE,
        "--topic",
        topic,
        "--from-beginning",
        "--count",
        str(len(every)),
    )
    assert code == 0, err
    assert "rejected" not in err
    assert sorted(events.from_json(line)["event_id"] for line in out.splitlines()) == sorted(every)

    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    mirrored = await _wait_mirrored(federation, topic, len(every), bridge)
    assert sorted(mirrored) == sorted(every)
    assert await bridge.metric("bus_bridge_quarantined_total") == 0


async def test_records_that_would_wedge_a_lane_are_quarantined_and_the_lane_moves_on(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """Source headers alone near the size limit: the quarantine copy with its reason headers
    would exceed it and fail every transaction; it goes as a dead letter instead. A header name
    that is not UTF-8 stops the Kafka client; it is skipped by offset. Both in the bridge and in
    a subscriber group, while the events around them cross."""
    bootstrap = federation.bootstrap(SOURCE)
    topic = unique_topic("wedge")
    await create_topic(bootstrap, topic, partitions=1)
    # 1,040 headers of 1,000 bytes: ~1,048,400 bytes as aiokafka counts, just under the limit.
    big_headers = [(f"h{i:04d}", b"x" * 1000) for i in range(1040)]
    before = [_released_event(i) for i in range(5)]
    after = [_released_event(i) for i in range(5, 10)]
    async with open_publisher(federated.config, SOURCE, topic=topic) as publisher:
        await publisher.publish_many(before)
    producer = AIOKafkaProducer(**connect(bootstrap), acks="all")
    await producer.start()
    try:
        big = await producer.send_and_wait(topic, b"garbage", key=b"k", headers=big_headers)
        unreadable = await send_with_raw_header_names(
            producer, topic, 0, value=b"garbage", headers=[(b"\xff\xfe-not-utf8", b"x")]
        )
    finally:
        await producer.stop()
    async with open_publisher(federated.config, SOURCE, topic=topic) as publisher:
        await publisher.publish_many(after)
    good = {e["event_id"] for e in before + after}

    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    mirrored = await _wait_mirrored(federation, topic, len(good), bridge)
    assert sorted(mirrored) == sorted(good)
    assert await bridge.metric("bus_bridge_quarantined_total", reason="bad-marker") == 1
    assert await bridge.metric("bus_bridge_quarantined_total", reason="unreadable") == 1

    rejected: list[Rejection] = []
    delivered: list[str] = []
    group = unique_topic("group")
    async with open_subscriber(
        federated.config,
        SOURCE,
        group_id=group,
        topics=[topic],
        from_beginning=True,
        on_rejected=rejected.append,
    ) as subscriber:
        async with asyncio.timeout(60):
            async for delivery in subscriber:
                delivered.append(delivery.event_id)
                if len(delivered) == len(good):
                    break
    assert sorted(delivered) == sorted(good)
    assert [(r.offset, r.reason) for r in rejected] == [
        (big.offset, "bad-marker"),
        (unreadable, "unreadable"),
    ]
    assert all(r.quarantined is not None for r in rejected)

    copies = [
        read_quarantined(r)
        for r in await consume_all(
            bootstrap,
            federated.config.topics.quarantine,
            expected=4,
            where=lambda r: dict(r.headers).get("bus_source_topic") == topic.encode(),
        )
        if dict(r.headers).get("bus_source_topic") == topic.encode()
    ]
    by_offset: dict[int, list[Any]] = {}
    for q in copies:
        by_offset.setdefault(q.source_offset, []).append(q)
    assert sorted(by_offset) == [big.offset, unreadable]
    assert len(by_offset[big.offset]) == 2  # the bridge's and the subscriber's
    for q in by_offset[big.offset]:
        assert (q.key, q.value, q.original_headers) == (b"", None, ())
        assert q.headers_omitted == len(big_headers)
        assert q.value_omitted == len(b"garbage")
    assert {q.consumer for q in by_offset[big.offset]} == {f"bridge-{bridge.starts}", group}
    assert [q.reason for q in by_offset[unreadable]] == ["unreadable", "unreadable"]


async def test_raw_checkpoints_that_make_no_sense_stop_their_lanes_and_the_others_go_on(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """Written with a plain producer while the bridge is down: partition 1's checkpoint is not
    JSON, partition 2's is ahead of its source's end. On restart both raise the alarm and stop;
    partition 0 moves everything; nothing of partitions 1 and 2 is skipped or moved."""
    source = federation.bootstrap(SOURCE)
    topic = unique_topic("checkpoints")
    await create_topic(source, topic, partitions=3)

    async def publish(count: int) -> dict[str, int]:
        batch = [_released_event(i) for i in range(count)]
        async with open_publisher(federated.config, SOURCE, topic=topic) as publisher:
            landed = await publisher.publish_many(batch)
        return {p.event_id: p.partition for p in landed}

    first = await publish(30)
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    await _wait_mirrored(federation, topic, len(first), bridge)
    assert await bridge.terminate() == 0

    producer = AIOKafkaProducer(**connect(federation.bootstrap(DESTINATION)), acks="all")
    await producer.start()
    try:
        where = checkpoint_topic(SOURCE, topic)
        await producer.send_and_wait(
            where, b"not a checkpoint", key=checkpoint_key(SOURCE, topic, 1), partition=1
        )
        ahead = {
            "next_offset": 1_000_000,
            "direction": f"{SOURCE}->{DESTINATION}",
            "bridge_id": "forged",
            "written_at": datetime.now(UTC).isoformat(),
        }
        await producer.send_and_wait(
            where, json.dumps(ahead).encode(), key=checkpoint_key(SOURCE, topic, 2), partition=2
        )
    finally:
        await producer.stop()

    second = await publish(60)
    assert {1, 2} <= set(second.values())
    bridge.start()
    on_zero = [e for e, p in second.items() if p == 0]
    mirrored = await _wait_mirrored(federation, topic, len(first) + len(on_zero), bridge)
    await asyncio.sleep(3)  # time enough for anything wrongly moved to show
    mirrored = await _mirrored_ids(federation, topic, len(first) + len(on_zero))
    assert sorted(mirrored) == sorted([*first, *on_zero])

    labels = {"topic": topic}
    assert await bridge.metric("bus_bridge_checkpoint_alarms_total", partition="1", **labels) == 1
    assert (
        await bridge.metric(
            "bus_bridge_checkpoint_alarms_total", partition="1", reason="undecodable", **labels
        )
        == 1
    )
    assert (
        await bridge.metric(
            "bus_bridge_checkpoint_alarms_total",
            partition="2",
            reason="ahead-of-source",
            **labels,
        )
        == 1
    )
    assert await bridge.metric("bus_bridge_checkpoint_alarms_total", partition="0", **labels) == 0
    assert (
        await bridge.metric("bus_bridge_lane_blocked", partition="1", reason="checkpoint", **labels)
        == 1
    )
    health = await bridge.health()
    assert health is not None
    assert health["healthy"] is False
    assert health["stopped"] == {f"{topic}/1": "undecodable", f"{topic}/2": "ahead-of-source"}
    assert health["partitions"] == [f"{topic}/0"]
    assert bridge.process is not None
    assert bridge.process.poll() is None
    log = bridge.tail(200)
    assert log.count("CHECKPOINT ALARM (undecodable)") == 1
    assert "not a checkpoint" not in log  # the forged value is never echoed

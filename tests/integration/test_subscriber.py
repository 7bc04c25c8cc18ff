"""The subscriber against real Kafka: delivery, order, quarantine, commits, crashes."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from bus import envelope
from bus.config import Config
from bus.publisher import open_publisher
from bus.quarantine import QuarantinedRecord, read_quarantined
from bus.signing import SigningKey
from bus.subscriber import Delivery, Rejection, Subscriber, open_subscriber, run_subscriber
from bus.testing import (
    connect,
    consume_all,
    create_topic,
    grant_applications,
    produce,
    unique_topic,
)
from tests.signed import make_event

pytestmark = pytest.mark.integration

AGENCY = "interpol"


def _bootstrap(config: Config) -> str:
    return ",".join(config.agency(AGENCY).bootstrap_servers)


def _group() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def _take(subscriber: Subscriber, count: int, timeout_s: float = 60.0) -> list[Delivery]:
    """The next ``count`` deliveries; each is marked handled when the next one is asked for."""
    taken: list[Delivery] = []
    async with asyncio.timeout(timeout_s):
        async for delivery in subscriber:
            taken.append(delivery)
            if len(taken) == count:
                subscriber.done(delivery)
                break
    return taken


async def _committed(config: Config, group: str, topic: str, partitions: int) -> list[int | None]:
    consumer = AIOKafkaConsumer(**connect(_bootstrap(config)), group_id=group)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


async def _quarantined(config: Config, topic: str, expected: int) -> list[QuarantinedRecord]:
    """The quarantine records whose source is ``topic`` (the quarantine topic is shared):
    once ``expected`` are there, all there are."""
    records = await consume_all(
        _bootstrap(config),
        config.topics.quarantine,
        expected=expected,
        where=lambda r: read_quarantined(r).source_topic == topic,
    )
    return [read_quarantined(r) for r in records]


async def test_ten_thousand_events_are_all_delivered_in_order_per_key(
    signed_federation: Config,
) -> None:
    topic = unique_topic("sub-10k")
    await create_topic(_bootstrap(signed_federation), topic, partitions=3)
    batch = [make_event(AGENCY, correlation_id=f"case-{i % 40}") for i in range(10_000)]
    async with open_publisher(signed_federation, AGENCY, topic=topic) as publisher:
        await publisher.publish_many(batch)
    registry = CollectorRegistry()
    async with open_subscriber(
        signed_federation,
        AGENCY,
        group_id=_group(),
        topics=[topic],
        from_beginning=True,
        registry=registry,
    ) as subscriber:
        got = await _take(subscriber, len(batch))
    by_case: dict[str, list[str]] = {}
    for delivery in got:
        assert delivery.key == delivery.event["correlation_id"].encode()
        by_case.setdefault(delivery.event["correlation_id"], []).append(delivery.event_id)
    for case, ids in by_case.items():
        assert ids == [e["event_id"] for e in batch if e["correlation_id"] == case]
    assert sorted(d.event_id for d in got) == sorted(e["event_id"] for e in batch)
    labels = {"agency": AGENCY, "topic": topic, "outcome": "delivered"}
    assert registry.get_sample_value("bus_consumed_total", labels) == len(batch)


def _bad_records(config: Config) -> list[tuple[bytes | None, str]]:
    """Garbage and forged values (as a raw producer writes them), with the expected reason."""
    interpol_key = SigningKey.load(config.agency(AGENCY).signing_key)  # type: ignore[arg-type]
    stranger = SigningKey.generate()
    good = envelope.seal(make_event(AGENCY), interpol_key)
    tampered = bytearray(good)
    tampered[40] ^= 0x01  # inside the signed event bytes
    return [
        (b"not avro at all", "bad-marker"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\xc3\x01" + bytes(8) + b"\x02\x02", "unknown-fingerprint"),
        (None, "truncated"),
        (bytes(tampered), "bad-signature"),
        (envelope.seal(make_event(AGENCY), stranger), "unknown-key"),
        (envelope.seal(make_event("europol"), interpol_key), "key-agency-mismatch"),
    ]


async def test_garbage_and_forged_records_are_quarantined_and_valid_events_still_delivered(
    signed_federation: Config,
) -> None:
    bootstrap = _bootstrap(signed_federation)
    topic = unique_topic("sub-bad")
    await create_topic(bootstrap, topic, partitions=1)
    key = SigningKey.load(signed_federation.agency(AGENCY).signing_key)  # type: ignore[arg-type]
    bad = _bad_records(signed_federation)
    valid = [make_event(AGENCY) for _ in range(len(bad) + 1)]
    # valid, bad, valid, bad, ..., valid: every bad record sits between two good ones.
    raw = AIOKafkaProducer(**connect(bootstrap), acks="all", enable_idempotence=True)
    await raw.start()
    try:
        for index, event in enumerate(valid):
            await raw.send_and_wait(topic, envelope.seal(event, key), key=b"k")
            if index < len(bad):
                value, _ = bad[index]
                await raw.send_and_wait(topic, value, key=b"k", headers=[("origin-hdr", b"x")])
    finally:
        await raw.stop()
    rejections: list[Rejection] = []
    registry = CollectorRegistry()
    group = _group()
    async with open_subscriber(
        signed_federation,
        AGENCY,
        group_id=group,
        topics=[topic],
        from_beginning=True,
        on_rejected=rejections.append,
        registry=registry,
    ) as subscriber:
        got = await _take(subscriber, len(valid))
    assert [d.event_id for d in got] == [e["event_id"] for e in valid]
    assert [r.reason for r in rejections] == [reason for _, reason in bad]
    assert all(r.quarantined is not None for r in rejections)
    assert await _committed(signed_federation, group, topic, 1) == [len(valid) + len(bad)]

    quarantined = sorted(
        await _quarantined(signed_federation, topic, len(bad)), key=lambda q: q.source_offset
    )
    assert [(q.source_offset, q.reason) for q in quarantined] == [
        (2 * i + 1, reason) for i, (_, reason) in enumerate(bad)
    ]
    for q, (value, _) in zip(quarantined, bad, strict=True):
        assert q.value == value
        assert q.key == b"k"
        assert q.source_partition == 0
        assert q.consumer == group
        assert ("origin-hdr", b"x") in q.original_headers
        assert q.error
    sample = registry.get_sample_value(
        "bus_quarantined_total", {"agency": AGENCY, "topic": topic, "reason": "truncated"}
    )
    assert sample == 2


async def test_an_oversized_record_is_quarantined_without_its_value_and_the_reader_goes_on(
    signed_federation: Config,
) -> None:
    bootstrap = _bootstrap(signed_federation)
    topic = unique_topic("sub-big")
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "3000000"})]
        )
    finally:
        await admin.close()
    await grant_applications(bootstrap, topic)
    key = SigningKey.load(signed_federation.agency(AGENCY).signing_key)  # type: ignore[arg-type]
    after = make_event(AGENCY)
    big = b"\xc3\x01" + bytes(2_000_000)
    raw = AIOKafkaProducer(**connect(bootstrap), max_request_size=3_000_000)
    await raw.start()
    try:
        await raw.send_and_wait(topic, big)
        await raw.send_and_wait(topic, envelope.seal(after, key))
    finally:
        await raw.stop()
    rejections: list[Rejection] = []
    async with open_subscriber(
        signed_federation,
        AGENCY,
        group_id=_group(),
        topics=[topic],
        from_beginning=True,
        on_rejected=rejections.append,
    ) as subscriber:
        [delivery] = await _take(subscriber, 1)
    assert delivery.event_id == after["event_id"]
    assert [r.reason for r in rejections] == ["oversized"]
    [quarantined] = await _quarantined(signed_federation, topic, 1)
    assert (quarantined.value, quarantined.value_omitted) == (None, len(big))


async def test_a_handler_that_raises_does_not_commit_its_event_and_a_restart_delivers_it(
    signed_federation: Config,
) -> None:
    topic = unique_topic("sub-raise")
    await create_topic(_bootstrap(signed_federation), topic, partitions=1)
    batch = [make_event(AGENCY, correlation_id="one-case") for _ in range(6)]
    async with open_publisher(signed_federation, AGENCY, topic=topic) as publisher:
        await publisher.publish_many(batch)
    group = _group()
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        if delivery.event_id == batch[3]["event_id"]:
            raise RuntimeError("handler failed")
        handled.append(delivery.event_id)

    with pytest.raises(RuntimeError, match="handler failed"):
        await run_subscriber(
            signed_federation, AGENCY, handler, group_id=group, topics=[topic], from_beginning=True
        )
    assert handled == [e["event_id"] for e in batch[:3]]
    assert await _committed(signed_federation, group, topic, 1) == [3]

    async with open_subscriber(
        signed_federation, AGENCY, group_id=group, topics=[topic]
    ) as subscriber:
        again = await _take(subscriber, 3)
    assert [d.event_id for d in again] == [e["event_id"] for e in batch[3:]]


async def test_duplicates_are_skipped_with_dedup_and_a_groupless_reader_commits_nothing(
    signed_federation: Config,
) -> None:
    bootstrap = _bootstrap(signed_federation)
    topic = unique_topic("sub-dedup")
    await create_topic(bootstrap, topic, partitions=1)
    key = SigningKey.load(signed_federation.agency(AGENCY).signing_key)  # type: ignore[arg-type]
    first, second = make_event(AGENCY), make_event(AGENCY)
    revised = {**first, "revision": 2}
    values = [envelope.seal(e, key) for e in (first, first, second, first, revised)]
    values.insert(2, b"junk")
    await produce(bootstrap, topic, values)
    rejections: list[Rejection] = []
    registry = CollectorRegistry()
    async with open_subscriber(
        signed_federation,
        AGENCY,
        group_id=None,
        topics=[topic],
        from_beginning=True,
        dedup_capacity=10,
        on_rejected=rejections.append,
        registry=registry,
    ) as subscriber:
        got = await _take(subscriber, 3)
    assert [(d.event_id, d.event["revision"]) for d in got] == [
        (first["event_id"], 1),
        (second["event_id"], 1),
        (first["event_id"], 2),
    ]
    assert [(r.offset, r.reason, r.quarantined) for r in rejections] == [(2, "bad-marker", None)]
    labels = {"agency": AGENCY, "topic": topic, "outcome": "duplicate"}
    assert registry.get_sample_value("bus_consumed_total", labels) == 2


async def test_a_subscriber_of_a_mirrored_topic_delivers_only_the_topics_origins_released_events(
    signed_federation: Config,
) -> None:
    """On europol's cluster, ``interpol.<events>`` is interpol's mirrored feed: records written
    raw into it that europol or ameripol signed, or that interpol did not release to europol,
    are quarantined with typed reasons; with ``require_release=False`` the first two pass."""
    events_topic = unique_topic("sub-events")
    config = replace(
        signed_federation, topics=replace(signed_federation.topics, events=events_topic)
    )
    topic = config.topics.mirror_of("interpol")
    bootstrap = ",".join(config.agency("europol").bootstrap_servers)
    await create_topic(bootstrap, topic, partitions=1)
    keys = {
        name: SigningKey.load(config.agency(name).signing_key)  # type: ignore[arg-type]
        for name in ("interpol", "europol", "ameripol")
    }

    def signed(agency: str, **fields: Any) -> bytes:
        event = make_event(agency, **{"releasable_to": ["europol"], **fields})
        return envelope.seal(event, keys[agency])

    valid = [make_event("interpol", releasable_to=["europol"]) for _ in range(2)]
    records = [
        (signed("europol"), "origin-mismatch"),
        (envelope.seal(valid[0], keys["interpol"]), None),
        (signed("interpol", releasable_to=["ameripol"]), "not-releasable"),
        (signed("interpol", handling_codes=[]), "event-rejected"),
        (signed("ameripol"), "origin-mismatch"),
        (envelope.seal(valid[1], keys["interpol"]), None),
    ]
    await produce(bootstrap, topic, [value for value, _ in records], key=b"k")
    expected = [(offset, reason) for offset, (_, reason) in enumerate(records) if reason]

    rejections: list[Rejection] = []
    group = _group()
    async with open_subscriber(
        config,
        "europol",
        group_id=group,
        topics=[topic],
        from_beginning=True,
        on_rejected=rejections.append,
    ) as subscriber:
        got = await _take(subscriber, len(valid))
    assert [d.event_id for d in got] == [e["event_id"] for e in valid]
    assert [(r.offset, r.reason) for r in rejections] == expected
    assert all(r.quarantined is not None for r in rejections)
    found = await consume_all(
        bootstrap,
        config.topics.quarantine,
        expected=len(expected),
        where=lambda r: read_quarantined(r).source_topic == topic,
    )
    quarantined: list[QuarantinedRecord] = [read_quarantined(r) for r in found]
    assert sorted((q.source_offset, q.reason) for q in quarantined) == expected

    # Without the receiving checks (a feed with onward-forwarded events), only the invalid
    # event is refused.
    unchecked: list[Rejection] = []
    async with open_subscriber(
        config,
        "europol",
        group_id=None,
        topics=[topic],
        from_beginning=True,
        require_release=False,
        on_rejected=unchecked.append,
    ) as subscriber:
        everything = await _take(subscriber, len(records) - 1)
    assert [d.offset for d in everything] == [0, 1, 2, 4, 5]
    assert [(r.offset, r.reason) for r in unchecked] == [(3, "event-rejected")]


async def test_a_subscriber_killed_at_random_moments_loses_nothing(
    signed_federation: Config, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    topic = unique_topic("sub-kill")
    await create_topic(_bootstrap(signed_federation), topic, partitions=3)
    batch = [make_event(AGENCY, correlation_id=f"case-{i % 7}") for i in range(1500)]
    async with open_publisher(signed_federation, AGENCY, topic=topic) as publisher:
        await publisher.publish_many(batch)
    group, out = _group(), tmp_path / "handled.txt"
    command = [
        sys.executable,
        "-m",
        "tests.integration.subscriber_child",
        str(signed_federation.path),
        AGENCY,
        topic,
        group,
        str(out),
        str(len(batch)),
        "0.001",
    ]

    def lines() -> int:
        return len(out.read_text().split()) if out.exists() else 0

    for kill in range(3):
        child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL)
        try:
            threshold = lines() + rng.randrange(50, 300)
            async with asyncio.timeout(60):
                while lines() < threshold:
                    assert child.returncode is None, f"child exited early (seed {seed})"
                    await asyncio.sleep(0.01)
            child.send_signal(signal.SIGKILL)
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
        assert child.returncode == -signal.SIGKILL, f"kill {kill}: seed {seed}"
    final = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL)
    async with asyncio.timeout(120):
        assert await final.wait() == 0

    handled = Counter(out.read_text().split())
    missing = {e["event_id"] for e in batch} - set(handled)
    assert not missing, f"{len(missing)} events never handled (seed {seed})"
    # Everything is committed in the end: a restart would re-deliver nothing. Every record is
    # one of the events, all handled: the last handled record of a partition is its last one.
    committed = await _committed(signed_federation, group, topic, 3)
    records = await consume_all(_bootstrap(signed_federation), topic, expected=len(batch))
    after_last = {r.partition: r.offset + 1 for r in records}
    assert committed == [after_last.get(p) for p in range(3)], f"seed {seed}"


async def test_a_second_member_joining_mid_stream_rebalances_without_losing_events(
    signed_federation: Config,
) -> None:
    topic = unique_topic("sub-rebalance")
    await create_topic(_bootstrap(signed_federation), topic, partitions=4)
    batch = [make_event(AGENCY, correlation_id=f"case-{i % 16}") for i in range(1200)]
    async with open_publisher(signed_federation, AGENCY, topic=topic) as publisher:
        await publisher.publish_many(batch)
    group, expected = _group(), {e["event_id"] for e in batch}
    handled: Counter[str] = Counter()
    after_handled: dict[int, int] = {}  # partition: the offset after its last handled record
    options = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6000}

    halfway, everything = asyncio.Event(), asyncio.Event()

    async def member() -> None:
        async with open_subscriber(
            signed_federation,
            AGENCY,
            group_id=group,
            topics=[topic],
            from_beginning=True,
            consumer_options=options,
            max_records=50,
        ) as subscriber:
            async for delivery in subscriber:
                handled[delivery.event_id] += 1
                await asyncio.sleep(0.002)
                # Handled: the loop marks it done on asking for the next (no await between).
                after = max(after_handled.get(delivery.partition, 0), delivery.offset + 1)
                after_handled[delivery.partition] = after
                if len(handled) >= 200:
                    halfway.set()
                if expected <= set(handled):
                    everything.set()

    async with asyncio.timeout(90), asyncio.TaskGroup() as members:
        first = members.create_task(member())
        await halfway.wait()
        second = members.create_task(member())
        await everything.wait()
        first.cancel()
        second.cancel()
    assert first.cancelled()
    assert second.cancelled()
    assert expected <= set(handled)
    # One member may stop while the other still holds handled-but-uncommitted offsets for a
    # moment; once both closed, everything handled is committed and nothing is left behind:
    # the group's offsets are exactly those after the last handled record of each partition.
    committed = await _committed(signed_federation, group, topic, 4)
    assert committed == [after_handled.get(p) for p in range(4)]
    records = await consume_all(_bootstrap(signed_federation), topic, expected=len(batch))
    after_last = {r.partition: r.offset + 1 for r in records}
    assert after_handled == after_last

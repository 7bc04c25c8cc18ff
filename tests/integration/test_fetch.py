"""``bus._fetch.fetch`` against real Kafka: no record stops a consumer, none is lost."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bus._fetch import Unreadable, fetch
from bus.testing import Federation, connect, create_topic, unique_topic
from tests.hostile import send_with_raw_header_names

pytestmark = pytest.mark.integration


async def _first_error(consumer: AIOKafkaConsumer, tp: TopicPartition) -> Exception | None:
    for _ in range(20):
        try:
            await consumer.getmany(tp, timeout_ms=2000)
        except Exception as exc:
            return exc
    return None


async def test_a_header_name_that_is_not_utf8_is_skipped_by_offset_and_nothing_else_is_lost(
    federation: Federation,
) -> None:
    """Good records before and after the bad one, on its partition and on another, all
    arrive once and in order; the bad one comes back as an ``Unreadable`` at its offset."""
    bootstrap = federation.bootstrap("interpol")
    topic = unique_topic("unreadable")
    await create_topic(bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(**connect(bootstrap), linger_ms=0)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"a{i}".encode(), partition=0)
            await producer.send_and_wait(topic, f"b{i}".encode(), partition=1)
        bad = await send_with_raw_header_names(
            producer, topic, 0, value=b"bad", headers=[(b"\xff\xfe-not-utf8", b"x")]
        )
        for i in range(3, 6):
            await producer.send_and_wait(topic, f"a{i}".encode(), partition=0)
            await producer.send_and_wait(topic, f"b{i}".encode(), partition=1)
    finally:
        await producer.stop()

    # The plain client is wedged by it: the same error at the same place, again and again.
    consumer = AIOKafkaConsumer(**connect(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(tps)
    try:
        for _ in range(2):
            assert isinstance(await _first_error(consumer, tps[0]), UnicodeDecodeError)
        consumer.seek(tps[0], 0)

        seen: dict[int, list[object]] = {0: [], 1: []}
        for _ in range(50):
            batches = await fetch(consumer, timeout_ms=500, max_records=100)
            for tp, records in batches.items():
                seen[tp.partition].extend(records)
            if len(seen[0]) == 7 and len(seen[1]) == 6:
                break
    finally:
        await consumer.stop()

    assert [r.value for r in seen[1]] == [f"b{i}".encode() for i in range(6)]  # type: ignore[attr-defined]
    values = [r.value for r in seen[0]]  # type: ignore[attr-defined]
    assert values == [b"a0", b"a1", b"a2", None, b"a3", b"a4", b"a5"]
    stand_in = seen[0][3]
    assert isinstance(stand_in, Unreadable)
    assert (stand_in.topic, stand_in.partition, stand_in.offset) == (topic, 0, bad)
    assert stand_in.error.reason == "unreadable"
    assert f"{topic}/0@{bad}" in str(stand_in.error)
    assert [r.offset for r in seen[0]] == sorted({r.offset for r in seen[0]})  # type: ignore[attr-defined]

"""The subscriber's loop with a stand-in consumer: which Kafka errors it rides out, which end
it, and that a record nothing can read is quarantined, never raised (real Kafka:
tests/integration/test_subscriber.py and test_lanes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import CollectorRegistry

import bus.subscriber as subscriber_module
from bus._fetch import Unreadable
from bus._kafka import is_transient
from bus.errors import TransportError, UnreadableRecord
from bus.subscriber import Rejection, Subscriber
from bus.trust import KeyResolver

TP = TopicPartition("intel.events", 0)


@dataclass(frozen=True)
class _Record:
    value: bytes | None
    offset: int
    topic: str = "intel.events"
    partition: int = 0
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class _Consumer:
    """Answers ``getmany`` from a script: a dict of records, or an error to raise."""

    def __init__(self, script: list[dict[TopicPartition, list[Any]] | Exception]) -> None:
        self.script = script
        self.position_of = 0

    def paused(self) -> set[TopicPartition]:
        return set()

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def subscription(self) -> set[str]:
        return {TP.topic}

    async def position(self, tp: TopicPartition) -> int:
        return self.position_of

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_of = offset

    async def getmany(self, *partitions: TopicPartition, **options: Any) -> Any:
        if not self.script:
            await asyncio.sleep(0.01)  # nothing more: a real poll waits too
            return {}
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def commit(self, offsets: Any = None) -> None:
        pass

    async def stop(self) -> None:
        pass


def _subscriber(consumer: _Consumer, on_rejected: Callable[[Rejection], None]) -> Subscriber:
    return Subscriber(
        cast(AIOKafkaConsumer, consumer),  # the stand-in has what the subscriber uses
        agency="interpol",
        group_id=None,
        trust=cast(KeyResolver, object()),  # no record here gets as far as verifying
        quarantine=None,
        dedup_capacity=0,
        on_rejected=on_rejected,
        max_records=10,
        commit_interval_s=5.0,
        registry=CollectorRegistry(),
    )


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriber_module, "_BACKOFF_S", 0.0)


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError(),
        NotLeaderForPartitionError(),
        KafkaTimeoutError(),
    ],
)
async def test_transient_kafka_errors_are_retried_and_nothing_is_skipped(
    error: KafkaError,
) -> None:
    unreadable = Unreadable(
        topic=TP.topic, partition=0, offset=3, error=UnreadableRecord("intel.events/0@3: ...")
    )
    consumer = _Consumer([error, error, {TP: [_Record(value=None, offset=2), unreadable]}])
    rejected: list[Rejection] = []
    subscriber = _subscriber(consumer, rejected.append)
    registry = subscriber._metrics.registry
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await subscriber.__anext__()
    assert [(r.offset, r.reason) for r in rejected] == [(2, "truncated"), (3, "unreadable")]
    labels = {"agency": "interpol", "stage": "fetch"}
    assert registry.get_sample_value("bus_subscriber_retries_total", labels) == 2


@pytest.mark.parametrize(
    "error",
    [TopicAuthorizationFailedError(), UnknownTopicOrPartitionError()],
)
async def test_errors_an_operator_must_fix_end_the_iteration_with_a_transport_error(
    error: KafkaError,
) -> None:
    subscriber = _subscriber(_Consumer([error]), lambda r: None)
    with pytest.raises(TransportError, match=r"reading intel\.events"):
        await subscriber.__anext__()


def test_what_counts_as_transient() -> None:
    assert is_transient(KafkaConnectionError())
    assert is_transient(TimeoutError())
    wrapped = TransportError("x")
    wrapped.__cause__ = NotLeaderForPartitionError()
    assert is_transient(wrapped)
    assert not is_transient(TopicAuthorizationFailedError())
    assert not is_transient(UnknownTopicOrPartitionError())
    assert not is_transient(TransportError("no cause"))

"""How the publisher settles what the producer answered, without a broker: a producer that
acknowledges, refuses or drops each record as told (the broker's side is in the integration
tests)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka.errors import NotEnoughReplicasError
from aiokafka.structs import RecordMetadata
from prometheus_client import CollectorRegistry

from bus.errors import PublishError
from bus.publisher import Published, Publisher
from bus.signing import SigningKey
from tests.signed import make_event

KEY = SigningKey.generate()


class _Producer:
    """Answers the n-th record with ``answers[n]``: "ok", "refuse" or "cancel"."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.offset = 0

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[Any] = loop.create_future()
        answer = self.answers.pop(0)
        if answer == "ok":
            loop.call_soon(ack.set_result, RecordMetadata(topic, 0, None, self.offset, -1, None, 0))
        elif answer == "refuse":
            loop.call_soon(ack.set_exception, NotEnoughReplicasError())
        else:
            loop.call_soon(ack.cancel)
        self.offset += 1
        return ack

    async def stop(self) -> None:
        pass


def _publisher(producer: _Producer, registry: CollectorRegistry) -> Publisher:
    return Publisher(
        cast(Any, producer),
        agency="interpol",
        topic="intel.events",
        signer=KEY,
        max_in_flight=2,
        registry=registry,
        linger_ms=0,
    )


def _count(registry: CollectorRegistry, outcome: str) -> float | None:
    return registry.get_sample_value(
        "bus_published_total",
        {"agency": "interpol", "topic": "intel.events", "outcome": outcome},
    )


async def test_publish_many_returns_where_each_event_landed_in_order() -> None:
    registry = CollectorRegistry()
    events = [make_event("interpol") for _ in range(5)]
    published = await _publisher(_Producer(*["ok"] * 5), registry).publish_many(events)
    assert published == [
        Published(event_id=e["event_id"], topic="intel.events", partition=0, offset=i)
        for i, e in enumerate(events)
    ]
    assert _count(registry, "ok") == 5


async def test_publish_many_names_the_refused_and_dropped_events_and_counts_them() -> None:
    registry = CollectorRegistry()
    events = [make_event("interpol") for _ in range(4)]
    publisher = _publisher(_Producer("ok", "refuse", "ok", "cancel"), registry)
    with pytest.raises(PublishError, match="2 of 4 events were not taken") as raised:
        await publisher.publish_many(events)
    assert events[1]["event_id"] in str(raised.value)  # the first one refused is named
    assert "NotEnoughReplicasError" in str(raised.value)
    assert _count(registry, "ok") == 2
    assert _count(registry, "error") == 2


@pytest.mark.parametrize(("answer", "says"), [("refuse", "did not take"), ("cancel", "cancelled")])
async def test_publish_raises_when_the_cluster_did_not_take_the_event(
    answer: str, says: str
) -> None:
    registry = CollectorRegistry()
    publisher = _publisher(_Producer(answer), registry)
    batches = asyncio.create_task(publisher.run_batches())
    event = make_event("interpol")
    try:
        with pytest.raises(PublishError, match=says) as raised:
            await publisher.publish(event)
        assert event["event_id"] in str(raised.value)
    finally:
        await publisher.aclose()
        await batches
    assert _count(registry, "error") == 1

"""The publisher against real Kafka, checked with an independent aiokafka consumer."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from bus import envelope, headers
from bus.config import Config
from bus.errors import ConfigError, EventError
from bus.publisher import open_publisher
from bus.testing import consume_all, create_topic, unique_topic
from bus.trust import TrustStore
from tests.signed import make_event

pytestmark = pytest.mark.integration


def _bootstrap(config: Config, agency: str) -> str:
    return ",".join(config.agency(agency).bootstrap_servers)


async def test_publish_returns_where_the_event_landed_and_an_independent_reader_verifies_it(
    signed_federation: Config,
) -> None:
    bootstrap = _bootstrap(signed_federation, "interpol")
    topic = unique_topic("pub")
    await create_topic(bootstrap, topic, partitions=3)
    event = make_event("interpol", correlation_id="case-42")
    async with open_publisher(signed_federation, "interpol", topic=topic) as publisher:
        published = await publisher.publish(event)
    assert (published.topic, published.event_id) == (topic, event["event_id"])

    records = await consume_all(bootstrap, topic, expected=1)
    assert len(records) == 1
    record = records[0]
    assert (record.partition, record.offset) == (published.partition, published.offset)
    assert record.key == b"case-42"
    trust = TrustStore.load(signed_federation.agency("interpol").trust_store)  # type: ignore[arg-type]
    verified = envelope.open_(record.value, trust)
    assert verified.event["event_id"] == event["event_id"]
    got = dict(record.headers)
    assert got[headers.CE_SPECVERSION] == b"1.0"
    assert got[headers.CE_ID] == event["event_id"].encode()
    assert got[headers.CE_TYPE] == headers.EVENT_TYPE.encode()
    assert got[headers.CE_SOURCE] == b"/agencies/interpol/units/operations-centre"
    assert got[headers.CE_TIME] == b"2026-03-01T09:30:00.000000Z"
    assert got[headers.CONTENT_TYPE] == b"application/avro"


async def test_publish_many_keeps_one_case_on_one_partition_in_order_and_counts_metrics(
    signed_federation: Config,
) -> None:
    bootstrap = _bootstrap(signed_federation, "interpol")
    topic = unique_topic("pub-many")
    await create_topic(bootstrap, topic, partitions=3)
    batch = [make_event("interpol", correlation_id=f"case-{i % 5}") for i in range(300)]
    registry = CollectorRegistry()
    async with open_publisher(
        signed_federation,
        "interpol",
        topic=topic,
        compression="gzip",
        max_in_flight=16,
        registry=registry,
    ) as publisher:
        published = await publisher.publish_many(batch)
    assert [p.event_id for p in published] == [e["event_id"] for e in batch]
    by_case: dict[str, set[int]] = {}
    for event, where in zip(batch, published, strict=True):
        by_case.setdefault(event["correlation_id"], set()).add(where.partition)
    assert all(len(partitions) == 1 for partitions in by_case.values())

    records = await consume_all(bootstrap, topic, expected=len(batch))
    ids_by_key: dict[bytes, list[str]] = {}
    for record in records:
        ids_by_key.setdefault(record.key, []).append(dict(record.headers)[headers.CE_ID].decode())
    for case in by_case:
        expected = [e["event_id"] for e in batch if e["correlation_id"] == case]
        assert ids_by_key[case.encode()] == expected
    labels = {"agency": "interpol", "topic": topic}
    assert registry.get_sample_value("bus_published_total", {**labels, "outcome": "ok"}) == 300
    assert registry.get_sample_value("bus_publish_latency_seconds_count", labels) == 300


async def test_an_event_of_another_agency_or_an_invalid_event_is_refused_before_sending(
    signed_federation: Config,
) -> None:
    bootstrap = _bootstrap(signed_federation, "interpol")
    topic = unique_topic("pub-refused")
    await create_topic(bootstrap, topic)
    async with open_publisher(signed_federation, "interpol", topic=topic) as publisher:
        with pytest.raises(EventError, match=r"origin\.agency"):
            await publisher.publish(make_event("europol"))
        with pytest.raises(EventError, match="title"):
            await publisher.publish(make_event("interpol", title=" "))
        with pytest.raises(EventError, match=r"origin\.agency"):
            await publisher.publish_many([make_event("interpol"), make_event("europol")])
    records = await consume_all(bootstrap, topic)
    assert len(records) == 1  # the valid event before the refused one in the batch


async def test_a_closed_publisher_cannot_be_used_again(signed_federation: Config) -> None:
    async with open_publisher(signed_federation, "interpol") as publisher:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await publisher.publish(make_event("interpol"))


async def test_wrong_publisher_options_are_configuration_errors(
    signed_federation: Config,
) -> None:
    with pytest.raises(ConfigError, match="compression 'brotli'"):
        async with open_publisher(signed_federation, "interpol", compression="brotli"):
            pass
    with pytest.raises(ConfigError, match="no agency 'nobody'"):
        async with open_publisher(signed_federation, "nobody"):
            pass

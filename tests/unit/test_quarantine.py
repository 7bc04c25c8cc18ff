"""The quarantine writer, with a stand-in producer (the real one: integration)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from bus import headers as h
from bus.errors import BadSignature, OversizedRecord, PublishError, TruncatedRecord
from bus.quarantine import Quarantine


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    topic: str = "intel.events"
    partition: int = 1
    offset: int = 41
    timestamp: int = 1_772_357_400_000
    key: bytes | None = b"case-7"
    value: bytes | None = b"\xc3\x01garbage"
    headers: tuple[tuple[str, bytes], ...] = (("ce_id", b"abc"),)


@dataclass(frozen=True, slots=True)
class _Metadata:
    topic: str
    partition: int
    offset: int


@dataclass
class _Producer:
    """Records what is sent and acknowledges it (or fails with ``error``)."""

    error: Exception | None = None
    max_value: int | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, topic: str, value: bytes | None, **kwargs: Any) -> asyncio.Future[Any]:
        if self.max_value is not None and len(value or b"") > self.max_value:
            raise MessageSizeTooLargeError()
        self.sent.append({"topic": topic, "value": value, **kwargs})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            future.set_exception(self.error)
        else:
            future.set_result(_Metadata(topic, 0, len(self.sent) - 1))
        return future


async def test_put_writes_the_original_bytes_with_reason_headers_and_counts_it() -> None:
    producer, registry = _Producer(), CollectorRegistry()
    quarantine = Quarantine(
        producer,
        topic="bus.quarantine",
        agency="interpol",
        consumer="indexer",
        registry=registry,
    )
    record = _Record()
    where = await quarantine.put(record, BadSignature("signature does not match"))
    assert (where.topic, where.offset, where.reason) == ("bus.quarantine", 0, "bad-signature")
    assert (where.source_topic, where.source_partition, where.source_offset) == (
        "intel.events",
        1,
        41,
    )
    [sent] = producer.sent
    assert sent["value"] == record.value
    assert sent["key"] == record.key
    assert sent["timestamp_ms"] == record.timestamp
    assert sent["headers"][0] == ("ce_id", b"abc")
    assert h.header_value(sent["headers"], h.REASON) == b"bad-signature"
    labels = {"agency": "interpol", "topic": "intel.events", "reason": "bad-signature"}
    assert registry.get_sample_value("bus_quarantined_total", labels) == 1


async def test_a_record_without_key_and_value_still_gets_a_quarantine_record() -> None:
    producer = _Producer()
    quarantine = Quarantine(producer, topic="q", agency="interpol")
    await quarantine.put(_Record(key=None, value=None), TruncatedRecord("no value"))
    assert producer.sent[0]["key"] == b""


async def test_a_value_too_large_to_copy_is_left_out_and_its_size_recorded() -> None:
    producer = _Producer(max_value=100)
    quarantine = Quarantine(producer, topic="q", agency="interpol")
    record = _Record(value=b"\xc3\x01" + bytes(500))
    await quarantine.put(record, OversizedRecord("record is 502 bytes"))
    [sent] = producer.sent
    assert sent["value"] is None
    assert sent["key"] == record.key
    assert h.header_value(sent["headers"], h.VALUE_OMITTED) == b"502"
    assert h.header_value(sent["headers"], h.REASON) == b"oversized"


async def test_a_refused_quarantine_write_is_a_publish_error_naming_the_source_record() -> None:
    producer = _Producer(error=KafkaTimeoutError())
    quarantine = Quarantine(producer, topic="q", agency="interpol")
    with pytest.raises(PublishError, match=r"intel\.events/1@41"):
        await quarantine.put(_Record(), TruncatedRecord("short"))

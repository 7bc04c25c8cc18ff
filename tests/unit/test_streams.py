"""The gate of users' own consumers (``bus.streams``) and the Faust helpers' pieces, without a
broker (the examples against real Kafka: tests/integration/test_streams.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from prometheus_client import CollectorRegistry

from bus import faust_streams, streams
from bus.config import AgencySettings, Config
from bus.envelope import VerifiedEvent, seal
from bus.errors import PublishError, RecordRejected
from bus.faust_streams import VerifiedStreams, _MessageRecord, create_app, faust_settings
from bus.quarantine import Quarantined
from bus.signing import SigningKey
from bus.streams import EventGate, Judged
from bus.subscriber import Rejection
from bus.trust import TrustedKey, TrustStore
from bus.verifier import RecordVerifier
from tests.signed import make_event

KEY = SigningKey.generate()
TRUST = TrustStore(
    [
        TrustedKey(
            agency="interpol",
            public_key=KEY.public_key,
            not_before=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=400),
        )
    ]
)
MIRROR = "interpol.intel.events"
SETTINGS = AgencySettings(name="europol", bootstrap_servers=("127.0.0.1:9092",))


@dataclass(frozen=True)
class Record:
    value: Any
    topic: str = MIRROR
    partition: int = 0
    offset: int = 5
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"k"
    headers: tuple[tuple[str, bytes], ...] = (("h", b"v"),)


class _Quarantine:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.put_records: list[tuple[Any, RecordRejected]] = []

    async def put(self, record: Any, error: RecordRejected) -> Quarantined:
        if self.failures:
            raise self.failures.pop(0)
        self.put_records.append((record, error))
        return Quarantined(
            reason=error.reason,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            topic="bus.quarantine",
            partition=0,
            offset=0,
        )


def _gate(
    quarantine: _Quarantine, rejections: list[Rejection] | None = None
) -> tuple[EventGate, CollectorRegistry]:
    registry = CollectorRegistry()
    verifier = RecordVerifier(
        agency="europol", trust=TRUST, mirrors={MIRROR: "interpol"}, dedup_capacity=10
    )
    gate = EventGate(
        verifier,
        settings=SETTINGS,
        quarantine_topic="bus.quarantine",
        consumer="indexer",
        registry=registry,
        on_rejected=None if rejections is None else rejections.append,
    )
    gate._quarantine = quarantine  # type: ignore[assignment]  # a stand-in: no producer
    return gate, registry


def _value(**fields: Any) -> bytes:
    return seal(make_event("interpol", **{"releasable_to": ["europol"], **fields}), KEY)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "_BACKOFF_S", 0.0)
    monkeypatch.setattr(faust_streams, "_BACKOFF_S", 0.0)


@pytest.mark.parametrize("value", [None, b"", b"not avro at all", b"\xc3\x01" + bytes(12)])
def test_the_deserializer_never_raises_and_keeps_the_original_bytes(value: bytes | None) -> None:
    gate, _ = _gate(_Quarantine())
    judged = gate.deserializer(value)
    assert judged.value == value
    assert isinstance(judged.opened, RecordRejected)


async def test_a_deserialized_record_gets_the_release_checks_and_is_quarantined_raw() -> None:
    quarantine, rejections = _Quarantine(), list[Rejection]()
    gate, registry = _gate(quarantine, rejections)
    value = _value(releasable_to=["ameripol"])
    judged = gate.deserializer(value)
    assert isinstance(judged.opened, VerifiedEvent)  # not a verdict: the topic is unknown
    assert await gate.admit(Record(value=judged)) is None
    [(written, error)] = quarantine.put_records
    assert (written.value, written.key, written.headers) == (value, b"k", (("h", b"v"),))
    assert error.reason == "not-releasable"
    [rejection] = rejections
    assert rejection.reason == "not-releasable"
    assert rejection.error.startswith(f"{MIRROR}/0@5: ")
    labels = {"agency": "europol", "topic": MIRROR, "outcome": "rejected"}
    assert registry.get_sample_value("bus_consumed_total", labels) == 1


async def test_a_verified_event_is_delivered_once_and_its_handled_copy_skipped() -> None:
    quarantine = _Quarantine()
    gate, registry = _gate(quarantine)
    value = _value()
    delivery = await gate.admit(Record(value=Judged(value, gate.verifier.open(value))))
    assert delivery is not None
    assert (delivery.topic, delivery.offset, delivery.key) == (MIRROR, 5, b"k")
    gate.done(delivery)
    assert await gate.admit(Record(value=value, offset=6)) is None  # raw bytes work too
    assert quarantine.put_records == []
    for outcome in ("delivered", "duplicate"):
        labels = {"agency": "europol", "topic": MIRROR, "outcome": outcome}
        assert registry.get_sample_value("bus_consumed_total", labels) == 1


async def test_transient_quarantine_failures_are_retried_and_counted() -> None:
    transient = PublishError("could not quarantine")
    transient.__cause__ = KafkaTimeoutError()
    quarantine = _Quarantine([transient, transient])
    gate, registry = _gate(quarantine)
    assert await gate.admit(Record(value=b"garbage")) is None
    assert [e.reason for _, e in quarantine.put_records] == ["bad-marker"]
    labels = {"agency": "europol", "stage": "quarantine"}
    assert registry.get_sample_value("bus_subscriber_retries_total", labels) == 2


async def test_a_quarantine_failure_an_operator_must_fix_raises() -> None:
    denied = PublishError("could not quarantine")
    denied.__cause__ = TopicAuthorizationFailedError()
    gate, _ = _gate(_Quarantine([denied]))
    with pytest.raises(PublishError):
        await gate.admit(Record(value=b"garbage"))


def test_faust_settings_reach_the_agencys_cluster_without_creating_topics() -> None:
    config = Config(path=None, agencies={"europol": SETTINGS})
    settings = faust_settings(config, "europol")
    assert settings["broker"] == ["kafka://127.0.0.1:9092"]
    assert settings["topic_disable_leader"] is True
    assert settings["topic_allow_declare"] is False
    assert "broker_credentials" not in settings  # no [tls]: plaintext


@pytest.mark.parametrize("headers", [[("a", b"1")], {"a": b"1"}])
def test_a_faust_message_is_a_source_record_in_milliseconds(headers: Any) -> None:
    message = SimpleNamespace(
        topic=MIRROR,
        partition=2,
        offset=9,
        timestamp=1_700_000_000.123,
        key=b"k",
        value=b"v",
        headers=headers,
    )
    record = _MessageRecord(message)
    assert (record.topic, record.partition, record.offset) == (MIRROR, 2, 9)
    assert record.timestamp == 1_700_000_000_123
    assert record.headers == (("a", b"1"),)


def _feeds(quarantine: _Quarantine) -> VerifiedStreams:
    config = Config(path=None, agencies={"europol": SETTINGS})
    app = create_app(config, "europol", "indexer", web_enabled=False)
    feeds = VerifiedStreams(
        app, config, "europol", trust=TRUST, registry=CollectorRegistry(), dedup_capacity=10
    )
    feeds.gate._quarantine = quarantine  # type: ignore[assignment]  # a stand-in: no producer
    return feeds


class _Stream:
    """What ``verified`` uses of a Faust stream: ``events()``, and when it asks for the next."""

    def __init__(self, values: list[bytes | None]) -> None:
        self.values = values
        self.asked = 0

    async def events(self) -> Any:
        for offset, value in enumerate(self.values):
            self.asked += 1
            message = SimpleNamespace(
                topic=MIRROR,
                partition=0,
                offset=offset,
                timestamp=1_700_000_000.0,
                key=b"k",
                value=value,
                headers=[],
            )
            yield SimpleNamespace(message=message, value=value)


async def test_verified_yields_verified_events_and_asks_for_the_next_after_quarantining() -> None:
    denied = PublishError("could not quarantine")
    denied.__cause__ = TopicAuthorizationFailedError()
    quarantine = _Quarantine([denied])  # not transient: retried all the same, never acked
    feeds = _feeds(quarantine)
    first = _value()
    stream = _Stream([first, b"garbage", first, _value()])
    got = []
    async for delivery in feeds.verified(stream):
        got.append((delivery.offset, stream.asked))
    assert got == [(0, 1), (3, 4)]  # the copy of the first is a duplicate: skipped
    assert [(r.offset, e.reason) for r, e in quarantine.put_records] == [(1, "bad-marker")]
    await feeds.on_stop()


def test_create_app_uses_the_consumer_that_reads_committed_records_only() -> None:
    """(That it reads only committed records: the integration test's aborted transaction.)"""
    config = Config(path=None, agencies={"europol": SETTINGS})
    app = create_app(config, "europol", "indexer", web_enabled=False)
    assert app._new_transport().Consumer is faust_streams._Consumer

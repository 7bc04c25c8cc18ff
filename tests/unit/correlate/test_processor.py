"""The correlator's judging and settings, without a broker: what it indexes and what it refuses."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from bus.codec import default_store
from bus.config import AgencySettings, Config, TlsSettings, TopicSettings
from bus.correlate._identifiers import Identifier
from bus.correlate.processor import Correlator, CorrelatorSettings, _entry
from bus.envelope import VerifiedEvent, seal
from bus.errors import (
    BadMarker,
    ConfigError,
    EventRejected,
    NotReleasable,
    OriginMismatch,
    TruncatedRecord,
    UnexpectedFailure,
    UnreadableRecord,
)
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore
from tests.signed import make_event

INTERPOL = SigningKey.generate()
EUROPOL = SigningKey.generate()
TRUST = TrustStore(
    [
        TrustedKey(
            agency=name,
            public_key=key.public_key,
            not_before=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=400),
        )
        for name, key in (("interpol", INTERPOL), ("europol", EUROPOL))
    ]
)


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = "interpol.intel.events"
    partition: int = 0
    offset: int = 7
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"k"
    headers: tuple[tuple[str, bytes], ...] = ()
    error: UnreadableRecord | None = None


def _config(tls: bool = False) -> Config:
    def settings(name: str, port: int) -> AgencySettings:
        if not tls:
            return AgencySettings(name=name, bootstrap_servers=(f"127.0.0.1:{port}",))
        app = TlsSettings(ca_file=Path("ca"), cert_file=Path("app"), key_file=Path("app.key"))
        own = TlsSettings(ca_file=Path("ca"), cert_file=Path("c"), key_file=Path("c.key"))
        return AgencySettings(
            name=name,
            bootstrap_servers=(f"127.0.0.1:{port}",),
            tls=app,
            identities={f"correlator.{name}": own} if name == "europol" else {},
        )

    agencies = {n: settings(n, p) for n, p in (("interpol", 1), ("europol", 2), ("ameripol", 3))}
    return Config(path=None, agencies=agencies, topics=TopicSettings())


def _correlator() -> Correlator:
    settings = CorrelatorSettings.from_config(_config(), "europol")
    return Correlator(settings, trust=TRUST, registry=CollectorRegistry())


def test_settings_read_the_own_feed_and_every_peers_mirror() -> None:
    settings = CorrelatorSettings.from_config(_config(), "europol")
    assert settings.inputs == ("intel.events", "ameripol.intel.events", "interpol.intel.events")
    assert settings.mirrors["interpol.intel.events"] == "interpol"
    assert settings.app_id == "bus-correlate.europol"
    assert settings.state_topic == "bus-correlate.europol.state"
    other = CorrelatorSettings.from_config(_config(), "europol", topic="cases")
    assert other.inputs == ("cases", "ameripol.cases", "interpol.cases")
    assert other.app_id == "bus-correlate.europol.cases"


def test_settings_refuse_a_mirror_as_the_own_feed() -> None:
    with pytest.raises(ConfigError, match="mirrored feed"):
        CorrelatorSettings.from_config(_config(), "europol", topic="interpol.intel.events")


def test_over_tls_the_correlator_uses_its_own_identity() -> None:
    settings = CorrelatorSettings.from_config(_config(tls=True), "europol")
    assert settings.agency.tls is not None
    assert settings.agency.tls.cert_file == Path("c")
    with pytest.raises(ConfigError, match=r"correlator\.interpol"):
        CorrelatorSettings.from_config(_config(tls=True), "interpol")


def test_a_released_peer_event_on_its_mirror_is_indexed_with_its_identifiers() -> None:
    event = make_event(
        "interpol",
        releasable_to=["europol"],
        subjects=[{"kind": "VESSEL", "value": "IMO 9074729", "attributes": {}}],
    )
    record = Record(seal(event, INTERPOL))
    verdict = _correlator()._judge(record)
    assert isinstance(verdict, VerifiedEvent)
    entry = _entry(verdict, record)
    assert entry.identifiers == (Identifier("IMO", "9074729"),)
    assert (entry.origin, entry.topic, entry.offset) == ("interpol", record.topic, 7)
    assert entry.expires_at == int(event["expires_at"].timestamp() * 1_000_000)


def test_the_own_feed_carries_the_agencys_own_events_only() -> None:
    own = make_event("europol")
    assert isinstance(
        _correlator()._judge(Record(seal(own, EUROPOL), topic="intel.events")), VerifiedEvent
    )
    foreign = make_event("interpol", releasable_to=["europol"])
    verdict = _correlator()._judge(Record(seal(foreign, INTERPOL), topic="intel.events"))
    assert isinstance(verdict, OriginMismatch)


def test_a_peer_event_not_released_to_the_agency_is_refused() -> None:
    event = make_event("interpol", releasable_to=["ameripol"])
    assert isinstance(_correlator()._judge(Record(seal(event, INTERPOL))), NotReleasable)


def test_an_event_on_another_peers_mirror_is_refused() -> None:
    event = make_event("interpol", releasable_to=["europol"])
    verdict = _correlator()._judge(Record(seal(event, INTERPOL), topic="ameripol.intel.events"))
    assert isinstance(verdict, OriginMismatch)


@pytest.mark.parametrize(
    ("record", "error"),
    [
        (Record(None), TruncatedRecord),
        (Record(b"garbage"), BadMarker),
        (Record(None, error=UnreadableRecord("bad header")), UnreadableRecord),
    ],
)
def test_bad_records_are_refused_with_their_reason(record: Record, error: type) -> None:
    assert isinstance(_correlator()._judge(record), error)


def test_an_event_breaking_the_model_is_refused() -> None:
    event = make_event("interpol", releasable_to=["europol"], correlation_id=" ")
    # Sealing validates; bypass it as a hostile publisher would.
    from tests.hostile import encode_event, signed

    value = signed(encode_event(event), INTERPOL)
    assert isinstance(_correlator()._judge(Record(value)), EventRejected)


def test_nothing_raised_while_judging_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("bus.verifier.envelope.open_", broken)
    verdict = _correlator()._judge(Record(b"anything"))
    assert isinstance(verdict, UnexpectedFailure)


def test_health_is_unhealthy_before_a_session_started() -> None:
    correlator = _correlator()
    status = correlator.health()
    assert status["healthy"] is False
    assert status["tables"] == {"events": 0, "identifiers": 0, "pairs": 0}


class _Producer:
    """Records what one transaction would commit (a fake: the integration test has Kafka)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.offsets: dict[Any, int] = {}
        self.committed = 0

    async def begin_transaction(self) -> None:
        self.sent.clear()

    async def send(self, topic: str, value: bytes | None, *, key: bytes, **_: Any) -> Any:
        self.sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self.offsets = dict(offsets)

    async def commit_transaction(self) -> None:
        self.committed += 1


class _Quarantine:
    def __init__(self) -> None:
        self.put_records: list[tuple[Any, str]] = []

    async def put(self, record: Any, error: Any) -> None:
        self.put_records.append((record.offset, error.reason))


async def test_a_batch_commits_hits_state_quarantine_and_offsets_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    correlator = _correlator()
    subjects = [{"kind": "PHONE_NUMBER", "value": "+44 20 7946 0958", "attributes": {}}]
    theirs = make_event("interpol", releasable_to=["europol"], subjects=subjects, expires_at=None)
    ours = make_event(
        "europol", subjects=[dict(subjects[0], value="0044 20 7946-0958")], expires_at=None
    )
    records = [
        Record(seal(theirs, INTERPOL), offset=3),
        Record(b"garbage", topic="intel.events", offset=4),
        Record(seal(ours, EUROPOL), topic="intel.events", offset=5),
    ]
    producer, quarantine = _Producer(), _Quarantine()
    await correlator._transaction(cast(Any, producer), cast(Any, quarantine), records, [])
    assert producer.committed == 1
    assert quarantine.put_records == [(4, "bad-marker")]
    hits = [value for topic, _, value in producer.sent if topic == "bus.correlations"]
    assert len(hits) == 1
    assert hits[0] is not None
    hit = default_store().decode(hits[0], "bus.correlate.CorrelationHit")
    assert (hit["identifier_kind"], hit["identifier"]) == ("PHONE", "+442079460958")
    assert {hit["first"]["event_id"], hit["second"]["event_id"]} == {
        theirs["event_id"],
        ours["event_id"],
    }
    state = {key for topic, key, _ in producer.sent if topic == "bus-correlate.europol.state"}
    assert state == {
        f"event:{theirs['event_id']}".encode(),
        f"event:{ours['event_id']}".encode(),
        f"pair:{hit['hit_id']}".encode(),
    }
    assert {(tp.topic, offset) for tp, offset in producer.offsets.items()} == {
        ("interpol.intel.events", 4),
        ("intel.events", 6),
    }

    def broken(event: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("bus.correlate.processor.identifiers", broken)
    again = make_event("europol")
    await correlator._transaction(
        cast(Any, producer),
        cast(Any, quarantine),
        [Record(seal(again, EUROPOL), topic="intel.events", offset=6)],
        [],
    )
    assert quarantine.put_records[-1] == (6, "internal-error")
    assert producer.committed == 2

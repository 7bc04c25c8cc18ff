"""The record verifier without a broker: replays and revisions, the async path's quarantine
step, topic-independent opening, and its construction from a configuration."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus._revisions import Repeat
from bus.config import AgencySettings, Config
from bus.envelope import VerifiedEvent, seal
from bus.errors import ConfigError, NotReleasable, RecordRejected, UnexpectedFailure
from bus.quarantine import Quarantined
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore
from bus.verifier import Outcome, RecordVerifier
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


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = MIRROR
    partition: int = 0
    offset: int = 3
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"k"
    headers: tuple[tuple[str, bytes], ...] = ()


class _Quarantine:
    """Takes what ``Quarantine.put`` would write."""

    def __init__(self) -> None:
        self.put_records: list[tuple[Any, RecordRejected]] = []

    async def put(self, record: Any, error: RecordRejected) -> Quarantined:
        self.put_records.append((record, error))
        return Quarantined(
            reason=error.reason,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            topic="bus.quarantine",
            partition=0,
            offset=len(self.put_records) - 1,
        )


def _verifier(**options: Any) -> RecordVerifier:
    return RecordVerifier(agency="europol", trust=TRUST, mirrors={MIRROR: "interpol"}, **options)


def _value(**fields: Any) -> bytes:
    return seal(make_event("interpol", **{"releasable_to": ["europol"], **fields}), KEY)


def _verified(record: Record, verifier: RecordVerifier) -> VerifiedEvent:
    verified = verifier.judge(record)
    assert isinstance(verified, VerifiedEvent)
    return verified


def test_without_dedup_every_arrival_is_new_and_remembering_is_a_no_op() -> None:
    verifier = _verifier()
    record = Record(value=_value())
    verified = _verified(record, verifier)
    verifier.remember(verified)
    assert verifier.repeat(record, verified) is Repeat.NEW


def test_a_handled_event_comes_back_as_a_replay_and_an_older_revision_as_a_rollback() -> None:
    verifier = _verifier(dedup_capacity=10)
    event = make_event("interpol", releasable_to=["europol"], revision=2)
    second = Record(value=seal(event, KEY))
    first = Record(value=seal({**event, "revision": 1}, KEY))
    verifier.remember(_verified(second, verifier))
    assert verifier.repeat(second, _verified(second, verifier)) is Repeat.REPLAY
    assert verifier.repeat(first, _verified(first, verifier)) is Repeat.ROLLBACK


def test_the_same_revision_with_other_bytes_is_a_revision_conflict() -> None:
    verifier = _verifier(dedup_capacity=10)
    event = make_event("interpol", releasable_to=["europol"])
    handled = Record(value=seal(event, KEY))
    verifier.remember(_verified(handled, verifier))
    other = Record(value=seal({**event, "title": "another body"}, KEY), offset=9)
    error = verifier.repeat(other, _verified(other, verifier))
    assert isinstance(error, RecordRejected)
    assert error.reason == "revision-conflict"
    assert str(error).startswith(f"{MIRROR}/0@9: ")


async def test_admit_quarantines_a_rejected_record_before_it_returns() -> None:
    quarantine = _Quarantine()
    record = Record(value=b"not avro at all")
    admission = await _verifier().admit(record, quarantine)  # type: ignore[arg-type]  # a stand-in
    assert admission.outcome is Outcome.REJECTED
    assert admission.error is not None
    assert admission.error.reason == "bad-marker"
    assert quarantine.put_records == [(record, admission.error)]
    assert admission.quarantined is not None
    assert admission.quarantined.source_offset == 3


async def test_admit_skips_a_replay_without_quarantining_it() -> None:
    verifier, quarantine = _verifier(dedup_capacity=10), _Quarantine()
    record = Record(value=_value())
    first = await verifier.admit(record, quarantine)  # type: ignore[arg-type]  # a stand-in
    assert first.outcome is Outcome.DELIVERED
    assert first.verified is not None
    verifier.remember(first.verified)
    again = await verifier.admit(record, quarantine)  # type: ignore[arg-type]  # a stand-in
    assert again.outcome is Outcome.DUPLICATE
    assert quarantine.put_records == []


async def test_admit_quarantines_a_revision_conflict() -> None:
    verifier, quarantine = _verifier(dedup_capacity=10), _Quarantine()
    event = make_event("interpol", releasable_to=["europol"])
    verifier.remember(_verified(Record(value=seal(event, KEY)), verifier))
    other = Record(value=seal({**event, "title": "another body"}, KEY))
    admission = await verifier.admit(other, quarantine)  # type: ignore[arg-type]  # a stand-in
    assert admission.outcome is Outcome.REJECTED
    assert [e.reason for _, e in quarantine.put_records] == ["revision-conflict"]


def test_what_was_opened_already_still_gets_the_topics_release_checks() -> None:
    verifier = _verifier()
    value = _value(releasable_to=["ameripol"])
    opened = verifier.open(value)
    assert isinstance(opened, VerifiedEvent)  # opening alone does not know the topic
    assert isinstance(verifier.judge(Record(value=value), opened=opened), NotReleasable)
    unmirrored = Record(value=value, topic="intel.events")
    assert verifier.judge(unmirrored, opened=opened) is opened


def test_a_rejection_from_opening_is_the_verdict() -> None:
    verifier = _verifier()
    opened = verifier.open(None)
    assert isinstance(opened, RecordRejected)
    assert verifier.judge(Record(value=None), opened=opened) is opened


def test_mirrors_may_be_a_function_of_the_topic() -> None:
    verifier = RecordVerifier(
        agency="europol",
        trust=TRUST,
        mirrors=lambda topic: "interpol" if topic.startswith("interpol.") else None,
    )
    assert verifier.mirror_source("interpol.anything") == "interpol"
    assert verifier.mirror_source("intel.events") is None
    rejected = verifier.judge(Record(value=_value(releasable_to=[]), topic="interpol.x"))
    assert isinstance(rejected, NotReleasable)


def test_an_unexpected_failure_in_the_release_checks_is_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def exploding(topic: str) -> str | None:
        raise LookupError("SECRET")

    verifier = RecordVerifier(agency="europol", trust=TRUST, mirrors=exploding)
    with caplog.at_level(logging.ERROR, logger="bus.verifier"):
        error = verifier.judge(Record(value=_value()))
    assert isinstance(error, UnexpectedFailure)
    assert "checking the release of" in str(error)
    assert "the verifier's log" in str(error)
    assert "SECRET" not in str(error)
    [logged] = caplog.records
    assert logged.exc_info is not None
    assert logged.exc_info[0] is LookupError


def _config(tmp_path: Path, *, trust_store: Path | None) -> Config:
    return Config(
        path=None,
        agencies={
            name: AgencySettings(
                name=name, bootstrap_servers=("127.0.0.1:9092",), trust_store=trust_store
            )
            for name in ("interpol", "europol")
        },
    )


def test_for_agency_needs_a_trust_store_and_sane_clock_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trust_store is not set"):
        RecordVerifier.for_agency(_config(tmp_path, trust_store=None), "europol")
    config = _config(tmp_path, trust_store=tmp_path / "trust.toml")
    with pytest.raises(ConfigError, match="max_clock_skew_s"):
        RecordVerifier.for_agency(config, "europol", trust=TRUST, max_clock_skew_s=-1)
    with pytest.raises(ConfigError, match="dedup_capacity"):
        RecordVerifier.for_agency(config, "europol", trust=TRUST, dedup_capacity=-1)


def test_for_agency_applies_the_release_checks_on_every_mirror_of_the_configuration(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, trust_store=None)
    checked = RecordVerifier.for_agency(config, "europol", trust=TRUST)
    assert checked.mirror_source("interpol.campaign") == "interpol"
    assert checked.mirror_source("europol.intel.events") is None
    unchecked = RecordVerifier.for_agency(config, "europol", trust=TRUST, require_release=False)
    assert unchecked.mirror_source("interpol.campaign") is None

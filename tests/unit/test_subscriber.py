"""The subscriber's judgement of one record, without a broker: verified, validated, the
receiving side's checks on a mirrored topic, and nothing unexpected escapes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from bus.config import AgencySettings, Config
from bus.envelope import seal
from bus.errors import UnreadableRecord
from bus.signing import SigningKey
from bus.subscriber import Delivery, Rejection, Subscriber, mirrors_of
from bus.trust import KeyResolver, TrustedKey, TrustStore
from tests.hostile import encode_event, signed
from tests.signed import make_event

MIRROR = "interpol.intel.events"
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
    topic: str = MIRROR
    partition: int = 0
    offset: int = 7
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"k"
    headers: tuple[tuple[str, bytes], ...] = ()
    error: UnreadableRecord | None = None


def _subscriber(
    rejections: list[Rejection], *, mirrors: dict[str, str], trust: KeyResolver = TRUST
) -> Subscriber:
    """europol's group-less subscriber: no consumer is touched by judging a record."""
    return Subscriber(
        cast(Any, None),
        agency="europol",
        group_id=None,
        trust=trust,
        quarantine=None,
        mirrors=mirrors,
        dedup_capacity=0,
        on_rejected=rejections.append,
        max_records=10,
        commit_interval_s=5.0,
        registry=CollectorRegistry(),
    )


async def _accept(
    record: Record, *, mirrors: dict[str, str] | None = None, trust: KeyResolver = TRUST
) -> Delivery | Rejection:
    rejections: list[Rejection] = []
    subscriber = _subscriber(
        rejections, mirrors={MIRROR: "interpol"} if mirrors is None else mirrors, trust=trust
    )
    delivery = await subscriber._accept(record)  # the unit under test
    if delivery is not None:
        assert rejections == []
        return delivery
    [rejection] = rejections
    return rejection


def _signed(agency: str, **fields: Any) -> bytes:
    event = make_event(agency, **{"releasable_to": ["europol"], **fields})
    return seal(event, INTERPOL if agency == "interpol" else EUROPOL)


async def test_an_event_of_the_topics_agency_releasable_to_the_subscriber_is_delivered() -> None:
    assert isinstance(await _accept(Record(value=_signed("interpol"))), Delivery)


# (what the row pins, the record, the subscriber's mirrors or None for the default, reason)
CASES: list[tuple[str, Record, dict[str, str] | None, str]] = [
    (
        "an event of another origin on a mirrored topic",
        Record(value=_signed("europol")),
        None,
        "origin-mismatch",
    ),
    (
        "an event not releasable to the subscriber's agency",
        Record(value=_signed("interpol", releasable_to=["fbi"])),
        None,
        "not-releasable",
    ),
    (
        "an event releasable to nobody",
        Record(value=_signed("interpol", releasable_to=[])),
        None,
        "not-releasable",
    ),
    (
        "an event with no handling code",
        Record(value=_signed("interpol", handling_codes=[])),
        None,
        "event-rejected",
    ),
    (
        "an event with a negative revision, on a topic that is not mirrored",
        Record(value=_signed("interpol", revision=-3), topic="intel.events"),
        None,
        "event-rejected",
    ),
    (
        "H3 without its conditions, with the release checks off",
        Record(value=_signed("interpol", handling_codes=["H3"], handling_conditions=None)),
        {},
        "event-rejected",
    ),
    (
        "an event that expires before it was created",
        Record(value=_signed("interpol", expires_at=datetime(2026, 3, 1, tzinfo=UTC))),
        None,
        "event-rejected",
    ),
    (
        "an event whose event_id is not a UUID (the bridge refuses it too)",
        Record(
            value=signed(
                encode_event(make_event("interpol", event_id="not-a-uuid")), INTERPOL
            ),  # seal() refuses such an id; a raw encoder does not
            topic="intel.events",
        ),
        None,
        "event-rejected",
    ),
    ("a record without a value", Record(value=None), None, "truncated"),
    (
        "a stand-in for a record the Kafka client could not read",
        Record(value=None, error=UnreadableRecord(f"{MIRROR}/0@7: cannot read it")),
        None,
        "unreadable",
    ),
]


@pytest.mark.parametrize(
    ("record", "mirrors", "reason"), [pytest.param(r, m, x, id=d) for d, r, m, x in CASES]
)
async def test_a_record_that_may_not_be_delivered_is_rejected_with_its_reason(
    record: Record, mirrors: dict[str, str] | None, reason: str
) -> None:
    rejection = await _accept(record, mirrors=mirrors)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
    assert rejection.error.startswith(f"{record.topic}/0@7: ")
    assert rejection.quarantined is None  # this subscriber does not quarantine


async def test_the_receiving_checks_name_the_agencies_and_not_the_contents() -> None:
    rejection = await _accept(Record(value=_signed("europol", title="SECRET title")))
    assert isinstance(rejection, Rejection)
    assert "signed by europol" in rejection.error
    assert "interpol's mirrored feed" in rejection.error
    assert "SECRET" not in rejection.error


@pytest.mark.parametrize(
    "record",
    [
        Record(value=_signed("europol")),
        Record(value=_signed("interpol", releasable_to=["fbi"])),
    ],
    ids=["other origin", "not releasable"],
)
async def test_without_the_release_checks_a_mirrored_topic_delivers_any_verified_event(
    record: Record,
) -> None:
    assert isinstance(await _accept(record, mirrors={}), Delivery)


async def test_an_unmirrored_topic_is_not_checked_for_origin_or_release() -> None:
    record = Record(value=_signed("europol", releasable_to=[]), topic="intel.events")
    assert isinstance(await _accept(record), Delivery)


class _Exploding:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def get(self, key_id: str) -> TrustedKey:
        raise self.exc


async def test_anything_unexpected_while_judging_rejects_the_record_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="bus.subscriber"):
        rejection = await _accept(
            Record(value=_signed("interpol")), trust=_Exploding(LookupError("SECRET input"))
        )
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "internal-error"
    assert "LookupError" in rejection.error
    assert "verifying" in rejection.error
    assert "SECRET" not in rejection.error
    [logged] = caplog.records
    assert logged.exc_info is not None
    assert logged.exc_info[0] is LookupError


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt()])
async def test_cancellation_and_keyboard_interrupt_escape_judging(exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        await _accept(Record(value=_signed("interpol")), trust=_Exploding(exc))


def _federation(*agencies: str) -> Config:
    return Config(
        path=None,
        agencies={
            name: AgencySettings(name=name, bootstrap_servers=("127.0.0.1:9092",))
            for name in agencies
        },
    )


def test_any_topic_prefixed_with_another_agency_is_a_mirror_of_that_agency() -> None:
    """A bridge mirrors any topic T of A as A.T, so the receiving checks hold on every one."""
    config = _federation("interpol", "europol", "ameripol")
    topics = [
        "interpol.intel.events",
        "interpol.campaign.1f2e3d",
        "ameripol.cases",
        "europol.intel.events",  # europol's own prefix: no bridge writes into its own cluster
        "intel.events",
        "fbi.intel.events",  # not an agency of the configuration
        "interpol.",
    ]
    assert mirrors_of(config, "europol", topics) == {
        "interpol.intel.events": "interpol",
        "interpol.campaign.1f2e3d": "interpol",
        "ameripol.cases": "ameripol",
    }


async def test_the_receiving_checks_hold_on_a_mirror_of_a_topic_other_than_the_events() -> None:
    topic = "interpol.campaign.1f2e3d"
    mirrors = mirrors_of(_federation("interpol", "europol"), "europol", [topic])
    rejection = await _accept(Record(value=_signed("europol"), topic=topic), mirrors=mirrors)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "origin-mismatch"
    record = Record(value=_signed("interpol", releasable_to=["fbi"]), topic=topic)
    rejection = await _accept(record, mirrors=mirrors)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "not-releasable"

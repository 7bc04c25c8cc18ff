"""The hostile-record catalogue itself (``tests.hostile``): what the campaign relies on.

Whether each case is refused as it says is the campaign's business
(``tests/integration/test_hostile_campaign.py``, against real Kafka); this checks the
catalogue is what it claims to be.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus import errors
from bus.envelope import open_
from bus.policy import Rule
from bus.signing import SigningKey
from bus.testing import KEY_START
from bus.trust import TrustedKey, TrustStore
from tests.hostile import (
    ASSUMED_NAMES,
    HostileCase,
    HostileKeys,
    Kind,
    Target,
    catalogue,
    encode_event,
    frame,
)
from tests.signed import make_event

AGENCIES = ("interpol", "europol", "ameripol")


@pytest.fixture(scope="module")
def keys() -> HostileKeys:
    return HostileKeys(
        agencies={a: SigningKey.generate() for a in AGENCIES},
        source="interpol",
        destination="europol",
        third="ameripol",
        now=datetime.now(UTC),
    )


@pytest.fixture(scope="module")
def cases(keys: HostileKeys) -> list[HostileCase]:
    return catalogue(keys)


def _reasons() -> set[str]:
    found = set()
    for name in errors.__all__:
        kind = getattr(errors, name)
        if isinstance(kind, type) and issubclass(kind, errors.RecordRejected):
            found.add(kind.reason)
    return found


def test_at_least_forty_distinct_cases_go_into_the_source_topic(
    cases: list[HostileCase],
) -> None:
    names = [c.name for c in cases if c.target is Target.SOURCE]
    assert len(set(names)) == len(names) >= 40


def test_every_point_of_the_issue_that_a_record_can_exercise_has_a_case(
    cases: list[HostileCase],
) -> None:
    # Point 4 is about checkpoint records, not source records; 10's JSON nesting is not a record.
    assert {c.point for c in cases} >= {1, 2, 3, 5, 6, 7, 8, 9}


def test_every_expected_reason_and_rule_is_defined_or_listed_as_assumed(
    cases: list[HostileCase],
) -> None:
    reasons, rules = _reasons() | ASSUMED_NAMES, {str(r) for r in Rule} | ASSUMED_NAMES
    for case in cases:
        for planted in case.records:
            for outcome in (planted.bridge, planted.subscriber, planted.at_mirror_subscriber):
                if outcome.kind is Kind.QUARANTINED:
                    assert outcome.code in reasons, (case.name, outcome)
                elif outcome.kind is Kind.DENIED:
                    assert outcome.code in rules, (case.name, outcome)


def test_raw_header_names_are_long_enough_for_the_raw_writer(cases: list[HostileCase]) -> None:
    for case in cases:
        for planted in case.records:
            for name, _ in planted.record.headers:
                if isinstance(name, bytes):
                    assert len(name) >= 8, case.name
                    assert case.compression is None, case.name


def test_the_hand_framing_is_the_envelope_s(keys: HostileKeys) -> None:
    key = keys.agencies["interpol"]
    event = make_event("interpol")
    event_bytes = encode_event(event)
    value = frame(event_bytes, key.key_id, key.sign(event_bytes))
    trust = TrustStore(
        [TrustedKey(agency="interpol", public_key=key.public_key, not_before=KEY_START)]
    )
    assert open_(value, trust).event["event_id"] == event["event_id"]


def test_the_keys_of_bad_standing_are_what_their_names_say(keys: HostileKeys) -> None:
    extras = {k.key_id: k for k in keys.trusted_extras()}
    assert extras[keys.revoked.key_id].revoked_at is not None
    assert extras[keys.not_yet_valid.key_id].not_before > keys.now
    expired = extras[keys.expired.key_id].not_after
    assert expired is not None
    assert expired < keys.now
    assert keys.stranger.key_id not in extras

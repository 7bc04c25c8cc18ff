"""Judging a source record: forward, deny or quarantine, and the audit record of a decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.audit import decode_audit_record
from bus.bridge._hops import PATH
from bus.bridge._verdict import Outcome, Verdict, judge
from bus.envelope import seal
from bus.policy import load_policy
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore
from tests.signed import make_event
from tests.unit.bridge.fakes import Record

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy(Path(__file__).parents[3] / "deploy" / "policy" / "local.toml")
INTERPOL = SigningKey.generate()
EUROPOL = SigningKey.generate()
TRUST = TrustStore(
    [
        TrustedKey(
            agency="interpol", public_key=INTERPOL.public_key, not_before=NOW - timedelta(days=400)
        ),
        TrustedKey(
            agency="europol", public_key=EUROPOL.public_key, not_before=NOW - timedelta(days=400)
        ),
    ]
)


def _judge(record: Record) -> Verdict:
    return judge(
        record,
        trust=TRUST,
        policy=POLICY,
        source="interpol",
        destination="europol",
        bridge_id="interpol->europol@test",
        now=NOW,
        max_size=1 << 20,
    )


def test_a_released_event_is_forwarded_and_audited_as_forwarded() -> None:
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    verdict = _judge(Record(value=seal(event, INTERPOL)))
    assert verdict.outcome is Outcome.FORWARD
    assert verdict.audit_value is not None
    audit = decode_audit_record(verdict.audit_value)
    assert (audit["decision"], audit["rule"], audit["event_id"]) == (
        "FORWARDED",
        "allowed",
        event["event_id"],
    )
    assert (audit["source_partition"], audit["source_offset"]) == (2, 41)
    assert verdict.audit_key == event["event_id"].encode()


def test_an_event_not_releasable_is_denied_and_audited_with_the_rule() -> None:
    event = make_event("interpol", releasable_to=[], tlp="GREEN")
    verdict = _judge(Record(value=seal(event, INTERPOL)))
    assert verdict.outcome is Outcome.DENY
    assert verdict.decision is not None
    assert verdict.decision.rule == "releasable-to"
    assert verdict.audit_value is not None
    assert decode_audit_record(verdict.audit_value)["decision"] == "DENIED"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "truncated"),
        (b"", "truncated"),
        (b"not avro at all", "bad-marker"),
    ],
)
def test_bytes_that_are_not_an_event_are_quarantined(value: bytes | None, reason: str) -> None:
    verdict = _judge(Record(value=value))
    assert verdict.outcome is Outcome.QUARANTINE
    assert verdict.error is not None
    assert verdict.error.reason == reason
    assert verdict.audit_value is None


def test_origin_spoofing_is_quarantined_never_decided() -> None:
    """Europol's key signing an event that claims INTERPOL as its origin."""
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    verdict = _judge(Record(value=seal(event, EUROPOL)))
    assert verdict.outcome is Outcome.QUARANTINE
    assert verdict.error is not None
    assert verdict.error.reason == "key-agency-mismatch"


def test_a_flipped_byte_is_quarantined() -> None:
    value = bytearray(seal(make_event("interpol", releasable_to=["europol"]), INTERPOL))
    value[len(value) // 2] ^= 0x01
    verdict = _judge(Record(value=bytes(value)))
    assert verdict.outcome is Outcome.QUARANTINE


def test_an_event_that_already_passed_the_destination_is_denied_by_the_hop_path() -> None:
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    record = Record(value=seal(event, INTERPOL), headers=((PATH, b"europol,interpol"),))
    verdict = _judge(record)
    assert verdict.decision is not None
    assert verdict.decision.rule == "loop-path"

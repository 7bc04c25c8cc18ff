"""Judging a source record: forward, deny or quarantine, and the audit record of a decision;
verified events are validated, the policy sees verified facts only, and nothing escapes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus.audit import decode_audit_record
from bus.bridge._hops import PATH
from bus.bridge._verdict import Outcome, Verdict, judge
from bus.envelope import seal
from bus.errors import UnexpectedFailure, UnreadableRecord
from bus.policy import Decision, Policy, ReleaseRequest, Rule, load_policy
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


def test_a_publisher_supplied_hop_path_is_ignored_by_the_loop_rule() -> None:
    """bus_path is unsigned: a forged one neither denies (loop-path) nor survives; the path
    the policy sees is derived from the signed origin."""
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    record = Record(value=seal(event, INTERPOL), headers=((PATH, b"europol,interpol"),))
    verdict = _judge(record)
    assert verdict.outcome is Outcome.FORWARD
    assert verdict.event == event


class _Rules:
    """A policy that records the requests it is asked about, and allows them all."""

    def __init__(self) -> None:
        self.requests: list[ReleaseRequest] = []

    def decide(self, request: ReleaseRequest) -> Decision:
        self.requests.append(request)
        return Decision(allowed=True, rule=Rule.ALLOWED, reason="test")


def test_the_policy_sees_the_path_derived_from_the_signed_origin() -> None:
    rules = _Rules()
    event = make_event("europol", releasable_to=["europol", "fbi"], tlp="GREEN")
    record = Record(value=seal(event, EUROPOL), headers=((PATH, b"fbi,nsa"),))
    verdict = judge(
        record,
        trust=TRUST,
        policy=rules,
        source="interpol",
        destination="fbi",
        bridge_id="b",
        now=NOW,
        max_size=1 << 20,
    )
    assert verdict.outcome is Outcome.FORWARD
    assert [r.path for r in rules.requests] == [("europol", "interpol")]


# (what the row pins, fields that break the event model, the field the message names)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no handling code", {"handling_codes": []}, "handling_codes"),
    ("a handling code twice", {"handling_codes": ["H0", "H0"]}, "handling_codes"),
    ("a negative revision", {"revision": -1}, "revision"),
    ("revision zero", {"revision": 0}, "revision"),
    (
        "expires_at before created_at",
        {"expires_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC)},
        "expires_at",
    ),
    ("H3 without its conditions", {"handling_codes": ["H3"]}, "handling_conditions"),
    (
        "H3 with blank conditions",
        {"handling_codes": ["H3"], "handling_conditions": "  "},
        "handling_conditions",
    ),
    ("an empty title", {"title": " "}, "title"),
    ("an empty correlation id", {"correlation_id": ""}, "correlation_id"),
    ("a recipient that is not an agency id", {"releasable_to": ["Europol"]}, "releasable_to"),
]


@pytest.mark.parametrize(("fields", "field"), [pytest.param(f, n, id=d) for d, f, n in INVALID])
def test_a_verified_event_that_breaks_the_event_model_is_quarantined(
    fields: dict[str, Any], field: str
) -> None:
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    event.update(fields)
    if "handling_codes" in fields and "handling_conditions" not in fields:
        event["handling_conditions"] = None
    verdict = _judge(Record(value=seal(event, INTERPOL)))
    assert verdict.outcome is Outcome.QUARANTINE
    assert verdict.error is not None
    assert verdict.error.reason == "event-rejected"
    assert field in str(verdict.error)
    assert "intel.events/2@41" in str(verdict.error)
    assert verdict.audit_value is None


def _h3_event() -> dict[str, Any]:
    return make_event(
        "interpol",
        releasable_to=["europol"],
        tlp="GREEN",
        handling_codes=["H1", "H3"],
        handling_conditions="Not to be used in court.",
    )


def test_an_h3_event_is_denied_unless_the_direction_releases_h3() -> None:
    verdict = _judge(Record(value=seal(_h3_event(), INTERPOL)))
    assert verdict.outcome is Outcome.DENY
    assert verdict.decision is not None
    assert verdict.decision.rule == "handling-h3"


def test_an_h3_event_crosses_a_direction_that_releases_h3() -> None:
    direction = POLICY.direction("interpol", "europol")
    assert direction is not None
    policy = Policy(
        agencies=POLICY.agencies,
        directions={("interpol", "europol"): dataclasses.replace(direction, release_h3=True)},
    )
    verdict = judge(
        Record(value=seal(_h3_event(), INTERPOL)),
        trust=TRUST,
        policy=policy,
        source="interpol",
        destination="europol",
        bridge_id="b",
        now=NOW,
        max_size=1 << 20,
    )
    assert verdict.outcome is Outcome.FORWARD


@dataclass(frozen=True)
class _Unreadable:
    """What bus._fetch hands out for a record the Kafka client could not read."""

    error: UnreadableRecord
    topic: str = "intel.events"
    partition: int = 2
    offset: int = 41
    timestamp: int = -1
    key: None = None
    value: None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def test_an_unreadable_stand_in_is_quarantined_with_its_own_error_not_as_truncated() -> None:
    error = UnreadableRecord("intel.events/2@41: the Kafka client cannot read this record")
    verdict = _judge(_Unreadable(error=error))  # type: ignore[arg-type]  # a SourceRecord
    assert verdict.outcome is Outcome.QUARANTINE
    assert verdict.error is error
    assert verdict.error.reason == "unreadable"


class _Exploding:
    """A key resolver or policy that raises what it is given, with a message quoting input."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def get(self, key_id: str) -> TrustedKey:
        raise self.exc

    def decide(self, request: ReleaseRequest) -> Decision:
        raise self.exc


@pytest.mark.parametrize(
    ("broken", "stage"), [("trust", "verifying"), ("policy", "deciding")], ids=["trust", "policy"]
)
def test_anything_unexpected_while_judging_quarantines_the_record_and_is_logged_once(
    broken: str, stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    exploding = _Exploding(ZeroDivisionError("SECRET payload text"))
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    with caplog.at_level(logging.ERROR, logger="bus.bridge"):
        verdict = judge(
            Record(value=seal(event, INTERPOL)),
            trust=exploding if broken == "trust" else TRUST,
            policy=exploding if broken == "policy" else POLICY,
            source="interpol",
            destination="europol",
            bridge_id="b",
            now=NOW,
            max_size=1 << 20,
        )
    assert verdict.outcome is Outcome.QUARANTINE
    assert isinstance(verdict.error, UnexpectedFailure)
    assert verdict.error.reason == "internal-error"
    message = str(verdict.error)
    assert "ZeroDivisionError" in message
    assert stage in message
    assert "intel.events/2@41" in message
    assert "SECRET" not in message
    [logged] = caplog.records
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ZeroDivisionError


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt()])
def test_cancellation_and_keyboard_interrupt_are_never_caught(exc: BaseException) -> None:
    event = make_event("interpol", releasable_to=["europol"], tlp="GREEN")
    with pytest.raises(type(exc)):
        judge(
            Record(value=seal(event, INTERPOL)),
            trust=_Exploding(exc),
            policy=POLICY,
            source="interpol",
            destination="europol",
            bridge_id="b",
            now=NOW,
            max_size=1 << 20,
        )

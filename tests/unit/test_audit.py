"""Audit records: built from a decision, single-object encoded, and readable back."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.audit import (
    AUDIT_RECORD,
    DENIED,
    FORWARDED,
    MAX_REASON_LENGTH,
    SourcePosition,
    audit_key,
    audit_record,
    decode_audit_record,
    encode_audit,
    encode_audit_record,
)
from bus.codec import MARKER, default_store, schema_dir
from bus.errors import BadMarker, EventError, UnknownFingerprint
from bus.policy import Decision, Direction, Policy, ReleaseRequest, Rule

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POSITION = SourcePosition(topic="intel.events", partition=3, offset=1234)
EVENT_ID = "0b8e6c1e-4a52-4c3e-9b1a-7d0c7e5f2a10"
POLICY = Policy(
    agencies=frozenset({"interpol", "europol"}),
    directions={
        ("interpol", "europol"): Direction(
            source="interpol",
            destination="europol",
            crime_areas=frozenset({"CYBERCRIME"}),
            tlp=frozenset({"GREEN"}),
        )
    },
)


def _request(**changes: Any) -> ReleaseRequest:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "origin": "interpol",
        "source": "interpol",
        "destination": "europol",
        "crime_area": "CYBERCRIME",
        "tlp": "GREEN",
        "releasable_to": frozenset({"europol"}),
        "handling_codes": frozenset({"H0"}),
        "onward_release_consent": False,
        "expires_at": None,
        "now": NOW,
    }
    fields.update(changes)
    return ReleaseRequest(**fields)


def test_forwarded_record_round_trips() -> None:
    """An allowed decision becomes a FORWARDED record that decodes to the same fields."""
    request = _request()
    decision = POLICY.decide(request)
    record = audit_record(decision, request, position=POSITION, bridge_id="interpol->europol/0")
    value = encode_audit_record(record)
    assert value.startswith(MARKER)
    assert value[2:10] == default_store().latest(AUDIT_RECORD).fingerprint
    decoded = decode_audit_record(value)
    assert decoded["decision"] == FORWARDED
    assert decoded["rule"] == "allowed"
    assert str(decoded["event_id"]) == EVENT_ID
    assert decoded["decided_at"] == NOW
    assert (decoded["source_topic"], decoded["source_partition"], decoded["source_offset"]) == (
        "intel.events",
        3,
        1234,
    )
    assert (decoded["origin"], decoded["source"], decoded["destination"]) == (
        "interpol",
        "interpol",
        "europol",
    )
    assert decoded["bridge_id"] == "interpol->europol/0"


def test_denied_record_names_rule_and_reason() -> None:
    """A denial records DENIED, the rule that decided and its reason."""
    request = _request(tlp="RED")
    decision = POLICY.decide(request)
    decoded = decode_audit_record(
        encode_audit_record(audit_record(decision, request, position=POSITION, bridge_id="b"))
    )
    assert decoded["decision"] == DENIED
    assert decoded["rule"] == "tlp"
    assert decoded["reason"] == decision.reason


def test_decided_at_can_be_given() -> None:
    """decided_at defaults to the request's now, and an explicit instant wins."""
    later = NOW + timedelta(minutes=1)
    decision = Decision(allowed=False, rule=Rule.EXPIRED, reason="expired")
    record = audit_record(decision, _request(), position=POSITION, bridge_id="b", decided_at=later)
    assert decode_audit_record(encode_audit_record(record))["decided_at"] == later


def test_key_is_the_event_id() -> None:
    """Records are keyed by event id, so one event's decisions stay in one partition."""
    record = audit_record(POLICY.decide(_request()), _request(), position=POSITION, bridge_id="b")
    assert audit_key(record) == EVENT_ID.encode()


@pytest.mark.parametrize(
    ("changes", "bridge_id", "message"),
    [
        ({"event_id": "not-a-uuid"}, "b", "intel.events/3@1234: event_id is not a UUID"),
        ({}, "", "bridge_id"),
    ],
)
def test_bad_inputs_are_event_errors(changes: dict[str, Any], bridge_id: str, message: str) -> None:
    """A record that would not identify its event or its bridge is refused, naming where."""
    request = _request(**changes)
    decision = Decision(allowed=False, rule=Rule.TLP, reason="r")
    with pytest.raises(EventError, match=message):
        audit_record(decision, request, position=POSITION, bridge_id=bridge_id)


def test_position_is_checked() -> None:
    """Negative partitions or offsets are programming errors."""
    with pytest.raises(ValueError, match="must not be negative"):
        SourcePosition(topic="intel.events", partition=-1, offset=0)


def test_decode_refuses_other_records() -> None:
    """Only AuditRecord values decode; garbage and other schemas are wire errors."""
    with pytest.raises(BadMarker):
        decode_audit_record(b"{}0123456789")
    other = default_store().encode(
        "bus.intel.SignedEvent", {"event": b"x", "key_id": "k", "signature": b"s"}
    )
    with pytest.raises(UnknownFingerprint, match=r"expected a bus\.audit\.AuditRecord"):
        decode_audit_record(other)


def test_schema_documents_every_field() -> None:
    """Every field of the audit schema carries a doc, and the decision enum has a default."""
    schema = json.loads((schema_dir() / "AuditRecord.v1.avsc").read_text(encoding="utf-8"))
    assert schema["namespace"] == "bus.audit"
    names = [f["name"] for f in schema["fields"]]
    assert names == [
        "event_id",
        "origin",
        "source",
        "destination",
        "decision",
        "rule",
        "reason",
        "decided_at",
        "source_topic",
        "source_partition",
        "source_offset",
        "bridge_id",
    ]
    assert all(f.get("doc") for f in schema["fields"])
    decision = next(f for f in schema["fields"] if f["name"] == "decision")
    assert decision["type"]["default"] == "DENIED"


def test_an_audit_record_stays_small_whatever_the_event_lists() -> None:
    """A reason that quotes 20,000 agencies of releasable_to and a 100 KB hop path (unsigned)
    is cut with a marker, so the audit record stays a few KiB."""
    agencies = frozenset(f"agency-{i:05d}" for i in range(20_000))
    for request in (
        _request(releasable_to=agencies),
        _request(path=(*(f"hop{i}" for i in range(20_000)), "europol")),
    ):
        decision = POLICY.decide(request)
        assert len(decision.reason) > 100_000
        value = encode_audit_record(
            audit_record(decision, request, position=POSITION, bridge_id="b")
        )
        assert len(value) < 2048
        reason = decode_audit_record(value)["reason"]
        assert len(reason) == MAX_REASON_LENGTH
        assert reason.endswith(f"...[{len(decision.reason)} chars, cut]")


@settings(max_examples=200)
@given(
    allowed=st.booleans(),
    rule=st.sampled_from(list(Rule)),
    reason=st.text(max_size=300),
    agencies=st.lists(st.text(min_size=1, max_size=70), min_size=3, max_size=3),
    upper=st.booleans(),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    micros=st.integers(0, 2**62),
    bridge_id=st.text(min_size=1, max_size=80),
)
def test_encode_audit_writes_the_bytes_of_the_dict_path(
    allowed: bool,
    rule: Rule,
    reason: str,
    agencies: list[str],
    upper: bool,
    partition: int,
    offset: int,
    micros: int,
    bridge_id: str,
) -> None:
    """encode_audit's key and value are byte for byte audit_key and encode_audit_record of
    audit_record with the same fields, also for a remembered decision and a non-canonical id."""
    origin, source, destination = agencies
    decision = Decision(allowed=allowed, rule=rule, reason=reason)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros % (2**50))
    position = SourcePosition(topic="intel.events", partition=partition, offset=offset)
    request = dataclasses.replace(_request(), origin=origin, source=source, destination=destination)
    record = audit_record(
        decision, request, position=position, bridge_id=bridge_id, decided_at=moment
    )
    for _ in range(2):
        key, value = encode_audit(
            decision,
            event_id=EVENT_ID.upper() if upper else EVENT_ID,
            origin=origin,
            source=source,
            destination=destination,
            position=position,
            bridge_id=bridge_id,
            decided_at=moment,
        )
        assert key == audit_key(record)
        assert value == encode_audit_record(record)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_id": "not-a-uuid"}, "event_id is not a UUID"),
        ({"bridge_id": ""}, "bridge_id must not be empty"),
        ({"decided_at": datetime(2025, 6, 1)}, "timezone-aware"),
    ],
)
def test_encode_audit_refuses_what_audit_record_refuses(
    changes: dict[str, Any], message: str
) -> None:
    """The hot path keeps audit_record's checks: a UUID, a bridge id, an aware time."""
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "origin": "interpol",
        "source": "interpol",
        "destination": "europol",
        "position": POSITION,
        "bridge_id": "b",
        "decided_at": NOW,
    }
    fields.update(changes)
    with pytest.raises(EventError, match=message):
        encode_audit(Decision(allowed=True, rule=Rule.ALLOWED, reason="ok"), **fields)


def test_encode_audit_goes_through_the_dict_for_another_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store whose AuditRecord is not the hand-written layout gets the dict path's bytes."""
    monkeypatch.setattr("bus.audit._writer", lambda store: None)
    decision = POLICY.decide(_request())
    record = audit_record(decision, _request(), position=POSITION, bridge_id="b", decided_at=NOW)
    key, value = encode_audit(
        decision,
        event_id=EVENT_ID,
        origin="interpol",
        source="interpol",
        destination="europol",
        position=POSITION,
        bridge_id="b",
        decided_at=NOW,
    )
    assert (key, value) == (audit_key(record), encode_audit_record(record))


def test_encode_audit_bounds_the_reason_and_origin_as_audit_record_does() -> None:
    """The hand-written path keeps the audit record small too: a 100 KB reason is cut."""
    request = _request(releasable_to=frozenset(f"agency-{i:05d}" for i in range(20_000)))
    decision = POLICY.decide(request)
    assert len(decision.reason) > 100_000
    _key, value = encode_audit(
        decision,
        event_id=request.event_id,
        origin="x" * 10_000,
        source=request.source,
        destination=request.destination,
        position=POSITION,
        bridge_id="b",
        decided_at=NOW,
    )
    assert len(value) < 2048
    record = decode_audit_record(value)
    assert record["reason"].endswith(f"...[{len(decision.reason)} chars, cut]")
    assert len(record["reason"]) == MAX_REASON_LENGTH
    assert len(record["origin"]) < 10_000

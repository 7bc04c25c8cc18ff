"""The JSON form of events (``bus._event_json`` through ``bus.events``): conventions and errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bus import events
from bus.errors import EventError

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _json(**changes: Any) -> dict[str, Any]:
    value = events.to_jsonable(events.template("CYBERCRIME", now=NOW))
    value.update(changes)
    return value


def test_json_form_conventions() -> None:
    value = _json()
    assert value["created_at"] == "2026-03-01T09:30:00.000000Z"
    assert value["tlp"] == "GREEN"
    assert isinstance(value["payload"]["data"], str)
    assert list(value)[:3] == ["event_id", "revision", "origin"]


def test_offsets_are_converted_to_utc_and_defaults_filled() -> None:
    value = _json(created_at="2026-03-01T10:30:00+01:00")
    for name in ("revision", "tlp", "references", "payload", "handling_conditions"):
        del value[name]
    event = events.from_jsonable(value)
    assert event["created_at"] == NOW
    assert event["tlp"] == "RED"
    assert event["payload"] is None
    assert event["revision"] == 1


def test_left_out_handling_codes_read_as_h2() -> None:
    """H2 (no further dissemination without the origin's consent), not H0: decision 0004."""
    value = _json()
    del value["handling_codes"]
    assert events.from_jsonable(value)["handling_codes"] == ["H2"]


def test_uuid_is_canonicalised() -> None:
    event = events.from_jsonable(_json(event_id="0B7E4C8E-9F1D-4C8A-8D2E-3F0C6A1B2C3D"))
    assert event["event_id"] == "0b7e4c8e-9f1d-4c8a-8d2e-3f0c6a1b2c3d"


def _without(name: str) -> dict[str, Any]:
    value = _json()
    del value[name]
    return value


def _subject(**changes: Any) -> dict[str, Any]:
    return _json(
        subjects=[{"kind": "PERSON", "value": "x"}, {"kind": "URL", "value": "y", **changes}]
    )


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (_without("title"), "title: missing"),
        (_without("created_at"), "created_at: missing"),
        (_json(origin={"agency": "interpol", "unit": "u"}), "origin.originator_ref: missing"),
        (_json(revision="1"), "revision: must be an integer"),
        (_json(revision=2**31), "revision: must be an integer"),
        (_json(revision=True), "revision: must be an integer"),
        (_json(onward_release_consent="yes"), "onward_release_consent: must be true or false"),
        (_json(tlp="PURPLE"), "tlp: 'PURPLE' is not one of"),
        (_json(tlp="red"), "tlp: 'red' is not one of"),
        (_json(handling_codes=["H4"]), r"handling_codes\[0\]: 'H4'"),
        (_subject(kind="SHIP"), r"subjects\[1\].kind: 'SHIP'"),
        (_subject(attributes={"a": 1}), r"subjects\[1\].attributes.a: must be a string"),
        (_subject(extra=1), r"subjects\[1\].extra: unknown field"),
        (_json(event_id="nope"), "event_id: 'nope' is not a UUID"),
        (_json(event_id="0b7e4c8e9f1d4c8a8d2e3f0c6a1b2c3d"), "event_id"),
        (_json(event_id=12), "event_id"),
        (_json(created_at="2026-03-01T09:30:00"), "created_at: .* offset"),
        (_json(created_at="2026-03-01"), "created_at"),
        (_json(created_at=1700000000), "created_at: must be an RFC 3339"),
        (_json(occurred_at="soon"), "occurred_at"),
        (_json(payload={"content_type": "a", "data": "***"}), "payload.data: is not valid base64"),
        (_json(payload="x"), "payload: must be an object"),
        (_json(releasable_to="europol"), "releasable_to: must be an array"),
        (_json(releasable_to=["Europol"]), r"releasable_to\[0\]: 'Europol'"),
        (_json(origin={"agency": "INTERPOL", "unit": "u", "originator_ref": "r"}), "origin.agency"),
        (_json(handling_codes=["H3"], handling_conditions=None), "handling_conditions"),
        (_json(handling_codes=[]), "handling_codes"),
        (_json(handling_codes=["H1", "H1"]), "twice"),
        (_json(title="  "), "title: must not be empty"),
        (_json(expires_at="2026-03-01T09:00:00Z"), "expires_at: must be later"),
        (_json(colour="red"), "colour: unknown field"),
    ],
)
def test_invalid_json_names_the_field(value: dict[str, Any], path: str) -> None:
    with pytest.raises(EventError, match=path):
        events.from_jsonable(value)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", b"\xff\xfe"])
def test_not_an_event_object(text: str | bytes) -> None:
    with pytest.raises(EventError):
        events.from_json(text)


def test_long_values_are_not_echoed() -> None:
    secret = "S" * 500
    with pytest.raises(EventError) as caught:
        events.from_jsonable(_json(tlp=secret))
    assert secret not in str(caught.value)
    assert len(str(caught.value)) < 200


def test_to_json_is_valid_json_text() -> None:
    text = events.to_json(events.template("OTHER", now=NOW), indent=None)
    assert "\n" not in text
    assert json.loads(text)["crime_area"] == "OTHER"


def test_deeply_nested_json_is_an_event_error_naming_where() -> None:
    """100,000 nested lists: an EventError with the line and column, not a RecursionError."""
    text = "[" * 100_000 + "]" * 100_000
    for given in (text, text.encode()):
        with pytest.raises(EventError, match="more than 100 levels deep at line 1 column 101"):
            events.from_json(given)


def test_deep_nesting_is_located_on_its_line() -> None:
    """Brackets inside strings do not count; the line and column are those of the deep one."""
    text = '{"title": "[[[[", "subjects":\n' + "[" * 100_000
    with pytest.raises(EventError, match="at line 2 column 100") as caught:
        events.from_json(text)
    assert caught.value.__cause__ is None

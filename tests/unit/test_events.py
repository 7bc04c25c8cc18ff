"""``bus.events``: the model's vocabularies come from the schema; the rules it cannot express."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bus import events, policy
from bus.errors import EventError

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _newest_enums() -> dict[str, list[str]]:
    """The enums of the newest IntelligenceEvent file, read as plain JSON (no fastavro)."""
    newest = max(
        SCHEMAS.glob("IntelligenceEvent.v*.avsc"),
        key=lambda path: int(path.name.split(".v")[1].split(".")[0]),
    )
    found: dict[str, list[str]] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum":
                found[node["name"]] = node["symbols"]
            node = list(node.values())
        if isinstance(node, list):
            for child in node:
                collect(child)

    collect(json.loads(newest.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize(
    ("vocabulary", "enum"),
    [
        (events.CRIME_AREAS, "CrimeArea"),
        (events.INFO_KINDS, "InfoKind"),
        (events.HANDLING_CODES, "HandlingCode"),
        (events.TLP_LEVELS, "Tlp"),
        (events.SOURCE_RELIABILITIES, "SourceReliability"),
        (events.INFO_ACCURACIES, "InfoAccuracy"),
        (events.PRIORITIES, "Priority"),
        (events.SUBJECT_KINDS, "SubjectKind"),
    ],
)
def test_vocabularies_are_the_schema_enums(vocabulary: tuple[str, ...], enum: str) -> None:
    """Each vocabulary is its enum's symbols in schemas/, in schema order."""
    assert list(vocabulary) == _newest_enums()[enum]


def test_policy_speaks_the_event_vocabulary() -> None:
    """The policy's sets are the model's, and what may leave is a subset of TLP."""
    assert frozenset(events.CRIME_AREAS) == policy.CRIME_AREAS
    assert frozenset(events.TLP_LEVELS) == policy.TLP_LEVELS
    assert frozenset(events.HANDLING_CODES) == policy.HANDLING_CODES
    assert {"CLEAR", "GREEN", "AMBER"} == policy.RELEASABLE_TLP
    assert policy.RELEASABLE_TLP < policy.TLP_LEVELS


def test_unknown_enum_is_an_event_error() -> None:
    """Asking for an enum the schema does not have names it."""
    with pytest.raises(EventError, match="'Colour'"):
        events.enum_symbols("Colour")
    with pytest.raises(EventError, match="'Origin'"):
        events.enum_symbols("Origin")  # a record, not an enum


def test_validate_accepts_a_template_and_names_the_broken_rule() -> None:
    """validate() checks the model's own rules on an in-memory event."""
    event = events.template("CYBERCRIME", now=NOW)
    events.validate(event)
    with pytest.raises(EventError, match=r"^expires_at: must be later"):
        events.validate({**event, "expires_at": NOW})
    with pytest.raises(EventError, match=r"^created_at: needs a timezone"):
        events.validate({**event, "created_at": datetime(2026, 3, 1), "expires_at": None})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event_id": "not-a-uuid"}, "^event_id: 'not-a-uuid' is not a UUID"),
        ({"event_id": "0F8C3DE2-5B9A-4C1E-9D7F-2A6B8E4C1D03"}, "^event_id: .* canonical"),
        ({"event_id": "{0f8c3de2-5b9a-4c1e-9d7f-2a6b8e4c1d03}"}, "^event_id: "),
        ({"event_id": "0f8c3de2-5b9a-4c1e-9d7f-2a6b8e4c1d03\n"}, "^event_id: "),
        ({"event_id": None}, "^event_id: "),
        ({"revision": True}, "^revision: "),
        ({"revision": 1.5}, "^revision: "),
        ({"origin": {"agency": 7}}, "^origin.agency: "),
        ({"origin": "interpol"}, "^origin.agency: "),
        ({"crime_area": "JAYWALKING"}, "^crime_area: 'JAYWALKING' is not one of"),
        ({"tlp": "PURPLE"}, "^tlp: "),
        ({"releasable_to": "europol"}, "^releasable_to: must be a list"),
        ({"releasable_to": [b"europol"]}, r"^releasable_to\[0\]: "),
        ({"handling_codes": ["H9"]}, r"^handling_codes\[0\]: 'H9' is not one of"),
        ({"handling_codes": "H0"}, "^handling_codes: must be a list"),
        ({"onward_release_consent": "yes"}, "^onward_release_consent: "),
        ({"expires_at": "tomorrow"}, "^expires_at: must be a time or null"),
        ({"created_at": None}, "^created_at: must be a time"),
        ({"title": None}, "^title: must be text"),
    ],
)
def test_validate_checks_what_the_schema_promises_and_the_receivers_rely_on(
    fields: dict[str, Any], message: str
) -> None:
    """What the bridge's policy and audit record need (a UUID id, the policy's fields with
    their types) is refused by validate() too, so bridge and subscriber refuse the same."""
    event = events.template("CYBERCRIME", now=NOW)
    with pytest.raises(EventError, match=message):
        events.validate({**event, **fields})


def test_validate_takes_a_uuid_object_and_leaves_defaulted_fields_out() -> None:
    """Before sealing, the id may be a uuid.UUID and defaulted fields may be missing."""
    event = events.template("CYBERCRIME", now=NOW)
    events.validate({**event, "event_id": uuid.UUID(event["event_id"])})
    for name in ("revision", "handling_codes", "releasable_to", "onward_release_consent"):
        events.validate({k: v for k, v in event.items() if k != name})

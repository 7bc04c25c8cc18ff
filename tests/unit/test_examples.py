"""``bus._examples`` through ``events.template``: one valid example per crime area."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus import events
from bus.errors import EventError

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
EVENT_ID = "0b7e4c8e-9f1d-4c8a-8d2e-3f0c6a1b2c3d"


@pytest.mark.parametrize("area", events.CRIME_AREAS)
def test_templates_are_valid_and_round_trip(area: str) -> None:
    """Every crime area of the schema has an example that passes the schema and the model."""
    event = events.template(area, now=NOW)
    assert event["crime_area"] == area
    assert events.from_json(events.to_json(event)) == event


def test_unknown_area_template() -> None:
    """An area that is no CrimeArea symbol is an EventError naming crime_area."""
    with pytest.raises(EventError, match="crime_area"):
        events.template("PIRACY")


def test_template_is_stamped_with_now_and_the_agency() -> None:
    """The example's times follow ``now``, its origin is the agency, and it goes to the peer."""
    event = events.template("CYBERCRIME", agency="europol", now=NOW, event_id=EVENT_ID)
    assert event["event_id"] == EVENT_ID
    assert event["created_at"] == NOW
    assert event["origin"]["agency"] == "europol"
    assert event["releasable_to"] == ["interpol"]

"""``bus._time``: the one RFC 3339 formatter and parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import pytest

from bus._time import format_time, parse_time

PARIS = timezone(timedelta(hours=1))


def test_format_is_utc_with_z_and_fixed_microseconds_by_default() -> None:
    """Headers and the JSON form: six digits always, converted to UTC."""
    assert format_time(datetime(2026, 3, 1, 10, 30, tzinfo=PARIS)) == "2026-03-01T09:30:00.000000Z"


def test_format_auto_writes_microseconds_only_when_there_are_some() -> None:
    """Trust stores and CLI lines: the short form when the time is whole seconds."""
    assert format_time(datetime(2026, 3, 1, 9, 30, tzinfo=UTC), timespec="auto") == (
        "2026-03-01T09:30:00Z"
    )
    moment = datetime(2026, 3, 1, 9, 30, 0, 5, tzinfo=UTC)
    assert format_time(moment, timespec="auto") == "2026-03-01T09:30:00.000005Z"


@pytest.mark.parametrize("timespec", ["microseconds", "auto"])
def test_format_refuses_a_naive_time(timespec: Literal["microseconds", "auto"]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 3, 1), timespec=timespec)


def test_parse_keeps_the_offset_and_round_trips() -> None:
    """Any offset is read as given; formatting brings it back to UTC."""
    moment = parse_time("2026-03-01T10:30:00+01:00")
    assert moment.utcoffset() == timedelta(hours=1)
    assert format_time(moment) == "2026-03-01T09:30:00.000000Z"
    assert parse_time("2026-03-01T09:30:00Z") == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "is not an RFC 3339 time"),
        ("2026-13-01T00:00:00Z", "is not an RFC 3339 time"),
        ("2026-03-01T09:30:00", r"has no UTC offset \(add Z or \+00:00\)"),
    ],
)
def test_parse_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(text)

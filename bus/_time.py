"""RFC 3339 times: the one formatter and the one parser of the package.

Every time the bus writes as text (CloudEvents ``ce_time``, quarantine headers, the JSON form
of events, trust stores, the CLI's JSON lines) is RFC 3339 in UTC with a ``Z``. Every time it
reads as text must carry its offset: a time without one means something different on each
machine, so it is refused rather than guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

__all__ = ["format_time", "parse_time"]


def format_time(
    moment: datetime, *, timespec: Literal["microseconds", "auto"] = "microseconds"
) -> str:
    """``moment`` in RFC 3339, UTC, with a ``Z``.

    ``timespec="microseconds"`` always writes six digits (``2026-03-01T09:30:00.000000Z``), a
    fixed width for headers and the JSON form; ``"auto"`` writes them only when there are some
    (``2026-03-01T09:30:00Z``), for files and lines that people read. Raises ``ValueError`` for
    a naive datetime, which has no place on a shared timeline.
    """
    if moment.utcoffset() is None:
        raise ValueError("an RFC 3339 time needs a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """The timezone-aware datetime of an RFC 3339 time with its offset (``Z``, ``+01:00``...).

    The result keeps the offset it was given. Raises ``ValueError`` saying what is wrong, as the
    rest of a sentence that starts with the value: ``is not an RFC 3339 time``, or ``has no UTC
    offset (add Z or +00:00)``.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not an RFC 3339 time") from None
    if moment.utcoffset() is None:
        raise ValueError("has no UTC offset (add Z or +00:00)")
    return moment

"""Bounded quotations: every string that quotes input in a reason, a header or a log line.

Anyone who can write to a topic chooses the bytes of a record, its headers and, through a
signed event, strings such as a title or a list of agencies. Wherever the bus repeats such a
string (an audit reason, the ``bus_error`` header of a quarantine record, an error message, a
log line), it goes through ``bounded``, so that no input can make a record grow past its
topic's size limit or flood a log. The cut is visible: a marker says how long the whole was.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_QUOTE", "bounded"]

MAX_QUOTE: Final = 200
"""The default length, in characters, of a quoted string."""


def bounded(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and a marker saying how
    long it was, ``limit`` characters in all (the marker alone when ``limit`` is tiny)."""
    if limit < 0:
        raise ValueError(f"limit {limit}: must not be negative")
    if len(text) <= limit:
        return text
    marker = f"...[{len(text)} chars, cut]"
    if len(marker) >= limit:
        return marker[:limit]
    return text[: limit - len(marker)] + marker

"""Hop headers: which clusters a mirrored record has been on, and which bridges moved it.

Each bridge copies the record's headers as they are and appends two of its own:

- ``bus_path``: the agencies whose clusters the record has been on, oldest first, comma
  separated. It replaces any earlier ``bus_path`` (the last one is authoritative), so one
  record carries exactly one.
- ``bus_hop``: one per hop, ``<source>-><destination> <bridge id>``, for operators.

Headers are unsigned routing hints. The policy's loop rule reads ``bus_path`` as defence in
depth; what keeps events from looping is structural (bridges never consume mirrored topics)
and the signed ``origin`` (an event never returns to its origin).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["HOP", "PATH", "forwarded_headers", "path_of"]

PATH: Final = "bus_path"
HOP: Final = "bus_hop"


def path_of(headers: Iterable[tuple[str, bytes]] | None) -> tuple[str, ...]:
    """The agencies a record has been on, from its last ``bus_path`` header (empty if none)."""
    value: bytes | None = None
    for name, raw in headers or ():
        if name == PATH:
            value = raw
    if not value:
        return ()
    text = value.decode("utf-8", errors="replace")
    return tuple(part.strip() for part in text.split(",") if part.strip())


def forwarded_headers(
    headers: Iterable[tuple[str, bytes]] | None,
    *,
    source: str,
    destination: str,
    bridge_id: str,
) -> list[tuple[str, bytes]]:
    """The headers of the mirrored copy: the original ones, the new path and this hop."""
    original = list(headers or ())
    path = path_of(original)
    if not path or path[-1] != source:
        path = (*path, source)
    kept = [(name, value) for name, value in original if name != PATH]
    return [
        *kept,
        (PATH, ",".join(path).encode()),
        (HOP, f"{source}->{destination} {bridge_id}".encode()),
    ]

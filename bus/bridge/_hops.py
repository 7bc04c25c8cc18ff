"""What a mirrored record carries besides its value: a key and headers rebuilt from the
verified event, and the bridge's own hop headers.

A record's key, headers and timestamp are unsigned: anyone who can write to the source topic
chooses them. So nothing of them crosses. The mirrored record is rebuilt from what was verified:

- the key: ``bus.headers.event_key`` of the event (its correlation id, else its event id), as
  a publisher keys it;
- the CloudEvents headers (``ce_*``, ``content-type``): ``bus.headers.event_headers`` of the
  event;
- ``bus_path``: the agencies whose clusters the event has been on, oldest first, comma
  separated, derived from verified facts only: the event's signed origin, then the source
  agency if it is another (``verified_path``). A ``bus_path`` on the source record is ignored;
- ``bus_hop``: this hop only, ``<source>-><destination> <bridge id>``, for operators.

Every other header is dropped, and the Kafka timestamp is left to the producer (the time the
bridge writes the copy): see ``docs/bridge.md``.

The policy's loop rule reads the same ``verified_path``, never a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bus.headers import event_headers

__all__ = ["HOP", "PATH", "mirrored_headers", "verified_path"]

PATH: Final = "bus_path"
HOP: Final = "bus_hop"


def verified_path(*, origin: str, source: str) -> tuple[str, ...]:
    """The agencies a verified event has been on before this hop: its signed origin, then the
    source agency when the event reached it from the origin (onward forwarding)."""
    return (origin,) if origin == source else (origin, source)


def mirrored_headers(
    event: Mapping[str, Any], *, source: str, destination: str, bridge_id: str
) -> list[tuple[str, bytes]]:
    """The headers of the mirrored copy of the verified ``event``: its CloudEvents headers,
    regenerated, then the verified path and this hop."""
    path = verified_path(origin=event["origin"]["agency"], source=source)
    return [
        *event_headers(event),
        (PATH, ",".join(path).encode()),
        (HOP, f"{source}->{destination} {bridge_id}".encode()),
    ]

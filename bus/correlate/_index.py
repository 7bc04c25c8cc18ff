"""The correlator's state: which events are indexed, under which identifiers, which pairs hit.

Pure: no Kafka, no clock (times are given). ``CorrelationIndex.offer(entry, now_us)`` takes the
summary of a verified event (``EventEntry``: its id, revision, origin, area, times, where it
was read and its normalised identifiers) and answers what it changes:

- a revision at or below the one indexed is ``DUPLICATE`` or ``ROLLBACK``: nothing changes;
- an event already expired at ``now_us`` is ``EXPIRED``: it is not indexed, and an older
  revision of it that was indexed is dropped (``Offer.dropped``);
- otherwise it is ``INDEXED``: its identifiers replace those of its older revision (the older
  revision's identifiers no longer match), and every event of another origin that is indexed
  under one of its identifiers, has not expired and was not paired with it before gives one
  ``Hit`` (the first shared identifier, in key order).

Every change is also returned as changelog records (``Offer.changes``: ``(key, value)``,
value ``None`` to delete), which ``load`` reads back after a restart: the state is exactly the
changelog's. Keys: ``event:<event_id>`` (the ``EventEntry`` as JSON) and ``pair:<hit_id>``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from bus.correlate._identifiers import Identifier

__all__ = [
    "CorrelationIndex",
    "EventEntry",
    "Hit",
    "Offer",
    "Outcome",
    "hit_datum",
    "pair_id",
]

EVENT_PREFIX: Final = "event:"
PAIR_PREFIX: Final = "pair:"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventEntry:
    """What the correlator keeps of one revision of one event (no contents but identifiers)."""

    event_id: str
    revision: int
    origin: str
    crime_area: str
    created_at: int
    """Microseconds since the epoch, as in the schemas."""
    occurred_at: int | None
    expires_at: int | None
    topic: str
    partition: int
    offset: int
    identifiers: tuple[Identifier, ...]
    """Sorted, unique."""

    def expired(self, now_us: int) -> bool:
        return self.expires_at is not None and now_us >= self.expires_at

    def to_json(self) -> bytes:
        data = {  # by hand: dataclasses.asdict deep-copies, a third of the cost per event
            "event_id": self.event_id,
            "revision": self.revision,
            "origin": self.origin,
            "crime_area": self.crime_area,
            "created_at": self.created_at,
            "occurred_at": self.occurred_at,
            "expires_at": self.expires_at,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "identifiers": [[i.kind, i.value] for i in self.identifiers],
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> EventEntry:
        """Read a changelog value; ``ValueError`` if it is not one (the topic is the
        correlator's own, but it is read like any input)."""
        try:
            data = json.loads(raw)
            identifiers = tuple(Identifier(str(k), str(v)) for k, v in data.pop("identifiers"))
            entry = cls(**data, identifiers=identifiers)
        except (TypeError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a correlator changelog entry: {exc}") from exc
        for name, kind in (("event_id", str), ("revision", int), ("origin", str)):
            if not isinstance(getattr(entry, name), kind):
                raise ValueError(  # noqa: TRY004  # callers catch ValueError: not an entry
                    f"not a correlator changelog entry: {name} is not {kind.__name__}"
                )
        return entry


class Outcome(enum.Enum):
    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    ROLLBACK = "rollback"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """Two events of different origins that share ``identifier``."""

    hit_id: str
    identifier: Identifier
    first: EventEntry
    """Indexed before ``second``."""
    second: EventEntry


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    outcome: Outcome
    hits: tuple[Hit, ...] = ()
    changes: tuple[tuple[str, bytes | None], ...] = ()
    dropped: bool = False
    """An older revision was indexed and is no more (the event expired)."""


def pair_id(a: str, b: str) -> str:
    """The key of the pair of events ``a`` and ``b``, whatever their order."""
    return "+".join(sorted((a, b)))


@dataclass(slots=True)
class CorrelationIndex:
    """Events by id, event ids by identifier key, pairs already hit (module docs)."""

    events: dict[str, EventEntry] = field(default_factory=dict)
    by_identifier: dict[str, str | set[str]] = field(default_factory=dict)
    """Identifier key -> the event id indexed under it, or a set of them when more than one
    (a set costs ~200 bytes more than a string, and most identifiers name one event)."""
    pairs: set[str] = field(default_factory=set)

    def offer(self, entry: EventEntry, now_us: int) -> Offer:
        current = self.events.get(entry.event_id)
        if current is not None and entry.revision <= current.revision:
            outcome = Outcome.DUPLICATE if entry.revision == current.revision else Outcome.ROLLBACK
            return Offer(outcome=outcome)
        key = EVENT_PREFIX + entry.event_id
        if entry.expired(now_us):
            if current is None:
                return Offer(outcome=Outcome.EXPIRED)
            self._remove(current)
            return Offer(outcome=Outcome.EXPIRED, changes=((key, None),), dropped=True)
        if current is not None:
            self._remove(current)
        hits: list[Hit] = []
        for identifier in entry.identifiers:
            for other_id in sorted(self.ids(identifier.key)):
                other = self.events[other_id]
                hit_id = pair_id(entry.event_id, other_id)
                if other.origin == entry.origin or other.expired(now_us) or hit_id in self.pairs:
                    continue
                self.pairs.add(hit_id)
                hits.append(Hit(hit_id=hit_id, identifier=identifier, first=other, second=entry))
        self._add(entry)
        changes: list[tuple[str, bytes | None]] = [(key, entry.to_json())]
        changes += [(PAIR_PREFIX + hit.hit_id, b"1") for hit in hits]
        return Offer(outcome=Outcome.INDEXED, hits=tuple(hits), changes=tuple(changes))

    def expire(self, now_us: int) -> list[tuple[str, bytes | None]]:
        """Drop every expired event; the changelog deletions that say so. (Pairs stay: a pair
        that hit never hits again.)"""
        gone = [entry for entry in self.events.values() if entry.expired(now_us)]
        for entry in gone:
            self._remove(entry)
        return [(EVENT_PREFIX + entry.event_id, None) for entry in gone]

    def load(self, key: str, value: bytes | None) -> None:
        """Apply one changelog record (in changelog order); ``ValueError`` if it is not one."""
        if key.startswith(PAIR_PREFIX):
            if value is None:
                self.pairs.discard(key[len(PAIR_PREFIX) :])
            else:
                self.pairs.add(key[len(PAIR_PREFIX) :])
            return
        if not key.startswith(EVENT_PREFIX):
            raise ValueError(f"changelog key {key[:80]!r} is neither event: nor pair:")
        event_id = key[len(EVENT_PREFIX) :]
        current = self.events.get(event_id)
        if current is not None:
            self._remove(current)
        if value is not None:
            entry = EventEntry.from_json(value)
            if entry.event_id != event_id:
                raise ValueError(f"changelog key {key!r} holds event {entry.event_id}")
            self._add(entry)

    def sizes(self) -> dict[str, int]:
        """Entries per table: events, identifiers, pairs."""
        return {
            "events": len(self.events),
            "identifiers": len(self.by_identifier),
            "pairs": len(self.pairs),
        }

    def __iter__(self) -> Iterator[EventEntry]:
        return iter(self.events.values())

    def ids(self, key: str) -> set[str]:
        """The event ids indexed under the identifier ``key`` (a copy)."""
        found = self.by_identifier.get(key)
        if found is None:
            return set()
        return {found} if isinstance(found, str) else set(found)

    def _add(self, entry: EventEntry) -> None:
        self.events[entry.event_id] = entry
        for identifier in entry.identifiers:
            key = identifier.key
            found = self.by_identifier.get(key)
            if found is None or found == entry.event_id:
                self.by_identifier[key] = entry.event_id
            elif isinstance(found, str):
                self.by_identifier[key] = {found, entry.event_id}
            else:
                found.add(entry.event_id)

    def _remove(self, entry: EventEntry) -> None:
        del self.events[entry.event_id]
        for identifier in entry.identifiers:
            key = identifier.key
            found = self.by_identifier.get(key)
            if found is None:
                continue
            if isinstance(found, str):
                if found == entry.event_id:
                    del self.by_identifier[key]
                continue
            found.discard(entry.event_id)
            if len(found) == 1:
                self.by_identifier[key] = next(iter(found))


def _side(entry: EventEntry) -> dict[str, Any]:
    return {
        "event_id": entry.event_id,
        "revision": entry.revision,
        "origin": entry.origin,
        "crime_area": entry.crime_area,
        "created_at": entry.created_at,
        "occurred_at": entry.occurred_at,
        "expires_at": entry.expires_at,
        "topic": entry.topic,
        "partition": entry.partition,
        "offset": entry.offset,
    }


def hit_datum(hit: Hit, *, agency: str, detected_at: datetime) -> dict[str, Any]:
    """The ``CorrelationHit`` record of ``hit``, found by ``agency``'s correlator."""
    return {
        "hit_id": hit.hit_id,
        "agency": agency,
        "identifier_kind": hit.identifier.kind,
        "identifier": hit.identifier.value,
        "first": _side(hit.first),
        "second": _side(hit.second),
        "detected_at": detected_at,
    }

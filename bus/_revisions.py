"""Replays and revisions: has this version of this event been seen already?

Pure: no Kafka, no clock (times are given). The bridge (what it forwarded, per direction) and the
subscriber (what it delivered, per group) keep the same bounded ``RevisionIndex``: per event id,
the highest revision seen, the SHA-256 of that revision's signed event bytes, when the event
expires and where it was read. ``classify`` answers for a new arrival:

============  =========================================================================
``NEW``       no entry for the id, or a higher revision: a new version of the event
``REPLAY``    the same revision with the same bytes: seen already
``ROLLBACK``  a lower revision than the one seen: an older version arriving late
``CONFLICT``  the same revision with other bytes: two bodies signed as one version
============  =========================================================================

The index is bounded by count (``capacity`` event ids, least recently used first out) and by
time: an entry is forgotten ``window_s`` after it was entered, and (where expired events are
refused anyway, as at the bridge) once its event has expired.
What it forgets is ``NEW`` again. See ``docs/decisions/0008-replays-and-revisions.md``.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus.errors import EventError

__all__ = ["EventIdentity", "Position", "Repeat", "RevisionIndex", "Seen"]

Position = tuple[str, int, int]
"""Where a record was read: topic, partition, offset."""


class Repeat(enum.Enum):
    """How an arrival relates to what the index has seen of its event."""

    NEW = "new"
    REPLAY = "replay"
    ROLLBACK = "rollback"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventIdentity:
    """What identifies one version of a verified event: all of it from the signed content."""

    event_id: str
    revision: int
    digest: bytes
    """SHA-256 of the signed event bytes (the single-object-encoded ``IntelligenceEvent``)."""
    expires_at: float | None
    """The event's ``expires_at``, seconds since the epoch, if it has one."""

    @classmethod
    def of(cls, event: dict[str, Any], event_bytes: bytes) -> EventIdentity:
        """The identity of a verified ``event`` whose signed bytes are ``event_bytes``;
        ``EventError`` naming the field if the id or revision is not usable."""
        event_id = event.get("event_id")
        revision = event.get("revision", 1)
        if not isinstance(event_id, str) or not event_id:
            raise EventError("event_id: missing or not a string; cannot tell replays apart")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
            raise EventError(f"event {event_id}: revision must be an integer of 1 or more")
        expires = event.get("expires_at")
        return cls(
            event_id=event_id,
            revision=revision,
            digest=hashlib.sha256(event_bytes).digest(),
            expires_at=expires.timestamp() if isinstance(expires, datetime) else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """The highest revision of one event that was seen, and where and when."""

    revision: int
    digest: bytes
    expires_at: float | None
    seen_at: float
    """When it was entered, seconds since the epoch."""
    position: Position | None = None
    """Where the record of this revision was read (None if unknown)."""


class RevisionIndex:
    """Per event id, the highest revision seen; bounded by count and time (module docs)."""

    def __init__(self, *, capacity: int, window_s: float, forget_expired: bool = True) -> None:
        """``forget_expired``: drop an entry once its event expired (right where expired events
        are refused anyway, as at the bridge); else only by count and window."""
        if capacity < 1:
            raise ValueError(f"capacity {capacity}: must be at least 1")
        if window_s <= 0:
            raise ValueError(f"window_s {window_s}: must be positive")
        self.capacity = capacity
        self.window_s = window_s
        self.forget_expired = forget_expired
        self._entries: OrderedDict[str, Seen] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, event_id: str, *, now: float) -> Seen | None:
        """The entry of ``event_id``, or None (also once it expired or left the window)."""
        entry = self._entries.get(event_id)
        if entry is None:
            return None
        if self._stale(entry, now):
            del self._entries[event_id]
            return None
        self._entries.move_to_end(event_id)
        return entry

    def classify(self, identity: EventIdentity, *, now: float) -> tuple[Repeat, Seen | None]:
        """How ``identity`` relates to what was seen of its event, and the entry it met."""
        entry = self.get(identity.event_id, now=now)
        if entry is None or identity.revision > entry.revision:
            return Repeat.NEW, entry
        if identity.revision < entry.revision:
            return Repeat.ROLLBACK, entry
        if identity.digest == entry.digest:
            return Repeat.REPLAY, entry
        return Repeat.CONFLICT, entry

    def remember(
        self, identity: EventIdentity, *, now: float, position: Position | None = None
    ) -> None:
        """Enter ``identity`` as seen at ``now`` (``position``: where its record was read)."""
        self.merge(
            identity.event_id,
            Seen(
                revision=identity.revision,
                digest=identity.digest,
                expires_at=identity.expires_at,
                seen_at=now,
                position=position,
            ),
            now=now,
        )

    def merge(self, event_id: str, entry: Seen, *, now: float) -> None:
        """Enter ``entry`` unless the index holds a higher revision of ``event_id`` already (or
        the same revision, first come first kept); a stale entry is not entered."""
        if self._stale(entry, now):
            return
        current = self._entries.get(event_id)
        if (
            current is not None
            and not self._stale(current, now)
            and current.revision >= entry.revision
        ):
            self._entries.move_to_end(event_id)
            return
        self._entries[event_id] = entry
        self._entries.move_to_end(event_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def _stale(self, entry: Seen, now: float) -> bool:
        expired = self.forget_expired and entry.expires_at is not None and now > entry.expires_at
        return expired or now - entry.seen_at > self.window_s

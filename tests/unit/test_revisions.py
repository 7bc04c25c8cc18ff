"""The replay index: new, replay, rollback and conflict, and its bounds by count and time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bus._revisions import EventIdentity, Repeat, RevisionIndex, Seen
from bus.errors import EventError

T0 = 1_800_000_000.0


def identity(
    event_id: str = "e1", revision: int = 1, body: bytes = b"a", **kw: float
) -> EventIdentity:
    event = {"event_id": event_id, "revision": revision, "expires_at": None}
    if "expires_at" in kw:
        event["expires_at"] = datetime.fromtimestamp(kw["expires_at"], UTC)
    return EventIdentity.of(event, body)


def index(capacity: int = 10, window_s: float = 3600) -> RevisionIndex:
    return RevisionIndex(capacity=capacity, window_s=window_s)


def test_identity_digests_the_signed_event_bytes_and_reads_expiry() -> None:
    first = identity(body=b"event bytes", expires_at=T0)
    assert first.digest == identity(body=b"event bytes").digest != identity(body=b"other").digest
    assert len(first.digest) == 32
    assert first.expires_at == T0


@pytest.mark.parametrize(
    "event",
    [
        {"revision": 1},
        {"event_id": 7, "revision": 1},
        {"event_id": "e", "revision": 0},
        {"event_id": "e", "revision": True},
        {"event_id": "e", "revision": "2"},
    ],
)
def test_an_event_without_a_usable_id_or_revision_is_an_event_error(
    event: dict[str, object],
) -> None:
    with pytest.raises(EventError):
        EventIdentity.of(event, b"x")


def test_the_four_outcomes() -> None:
    seen = index()
    assert seen.classify(identity(revision=2), now=T0)[0] is Repeat.NEW
    seen.remember(identity(revision=2), now=T0, position=("t", 0, 5))
    assert seen.classify(identity(revision=2), now=T0)[0] is Repeat.REPLAY
    assert seen.classify(identity(revision=1), now=T0)[0] is Repeat.ROLLBACK
    assert seen.classify(identity(revision=2, body=b"forged"), now=T0)[0] is Repeat.CONFLICT
    repeat, entry = seen.classify(identity(revision=3), now=T0)
    assert repeat is Repeat.NEW
    assert entry is not None
    assert entry.position == ("t", 0, 5)
    assert seen.classify(identity("e2"), now=T0) == (Repeat.NEW, None)


def test_a_merge_never_lowers_a_revision_and_keeps_the_first_of_a_revision() -> None:
    seen = index()
    seen.remember(identity(revision=3), now=T0, position=("t", 0, 1))
    for revision, position in ((2, ("t", 1, 1)), (3, ("t", 2, 2))):
        seen.merge(
            "e1",
            Seen(
                revision=revision, digest=b"x" * 32, expires_at=None, seen_at=T0, position=position
            ),
            now=T0,
        )
    entry = seen.get("e1", now=T0)
    assert entry is not None
    assert (entry.revision, entry.position) == (3, ("t", 0, 1))


def test_capacity_evicts_the_least_recently_used_event() -> None:
    seen = index(capacity=2)
    seen.remember(identity("a"), now=T0)
    seen.remember(identity("b"), now=T0)
    assert seen.get("a", now=T0) is not None  # a is now the most recently used
    seen.remember(identity("c"), now=T0)
    assert len(seen) == 2
    assert seen.get("b", now=T0) is None
    assert seen.classify(identity("b"), now=T0)[0] is Repeat.NEW


def test_an_expired_event_and_an_entry_past_the_window_are_forgotten() -> None:
    seen = index(window_s=100)
    seen.remember(identity("short", expires_at=T0 + 10), now=T0)
    seen.remember(identity("long"), now=T0)
    assert seen.classify(identity("short", expires_at=T0 + 10), now=T0 + 10)[0] is Repeat.REPLAY
    assert seen.classify(identity("short", expires_at=T0 + 10), now=T0 + 11)[0] is Repeat.NEW
    assert seen.classify(identity("long"), now=T0 + 100)[0] is Repeat.REPLAY
    assert seen.classify(identity("long"), now=T0 + 101)[0] is Repeat.NEW
    assert len(seen) == 0


def test_a_stale_entry_is_not_entered() -> None:
    seen = index(window_s=100)
    old = Seen(revision=1, digest=b"x" * 32, expires_at=None, seen_at=T0 - 200)
    seen.merge("e1", old, now=T0)
    assert len(seen) == 0
    gone = Seen(revision=1, digest=b"x" * 32, expires_at=T0 - 1, seen_at=T0)
    seen.merge("e1", gone, now=T0)
    assert len(seen) == 0


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RevisionIndex(capacity=0, window_s=1)
    with pytest.raises(ValueError, match="window_s"):
        RevisionIndex(capacity=1, window_s=0)


def test_an_index_that_keeps_expired_events_forgets_them_only_by_the_window() -> None:
    seen = RevisionIndex(capacity=10, window_s=100, forget_expired=False)
    seen.remember(identity("short", expires_at=T0 + 10), now=T0)
    assert seen.classify(identity("short", expires_at=T0 + 10), now=T0 + 50)[0] is Repeat.REPLAY
    assert seen.classify(identity("short", expires_at=T0 + 10), now=T0 + 101)[0] is Repeat.NEW

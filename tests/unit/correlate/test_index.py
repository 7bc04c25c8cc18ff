"""The correlator's index: one hit per pair of origins' events, revisions, expiry, restore."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from bus.codec import default_store
from bus.correlate._identifiers import Identifier
from bus.correlate._index import (
    CorrelationIndex,
    EventEntry,
    Outcome,
    hit_datum,
    pair_id,
)

NOW = 1_800_000_000_000_000
IMO = Identifier("IMO", "9074729")
IP = Identifier("IP_ADDRESS", "192.0.2.1")
PHONE = Identifier("PHONE", "+442079460958")


def entry(
    origin: str,
    *ids: Identifier,
    event_id: str | None = None,
    revision: int = 1,
    expires_at: int | None = None,
) -> EventEntry:
    return EventEntry(
        event_id=event_id or str(uuid.uuid4()),
        revision=revision,
        origin=origin,
        crime_area="MARITIME_PIRACY",
        created_at=NOW - 1000,
        occurred_at=None,
        expires_at=expires_at,
        topic="intel.events" if origin == "europol" else f"{origin}.intel.events",
        partition=0,
        offset=7,
        identifiers=tuple(sorted(ids)),
    )


def replay(index: CorrelationIndex, changes: list[tuple[str, bytes | None]]) -> CorrelationIndex:
    restored = CorrelationIndex()
    for key, value in changes:
        restored.load(key, value)
    return restored


def test_events_of_two_origins_sharing_an_identifier_hit_once() -> None:
    index = CorrelationIndex()
    a, b = entry("interpol", IMO, IP), entry("europol", IMO, IP)
    assert index.offer(a, NOW).hits == ()
    offer = index.offer(b, NOW)
    assert offer.outcome is Outcome.INDEXED
    assert [(h.hit_id, h.identifier, h.first, h.second) for h in offer.hits] == [
        (pair_id(a.event_id, b.event_id), IMO, a, b)
    ]
    again = index.offer(entry("europol", IMO, IP, event_id=b.event_id, revision=2), NOW)
    assert again.hits == ()


def test_events_of_one_origin_never_hit() -> None:
    index = CorrelationIndex()
    index.offer(entry("interpol", IMO), NOW)
    assert index.offer(entry("interpol", IMO), NOW).hits == ()


def test_a_third_origin_hits_each_earlier_event() -> None:
    index = CorrelationIndex()
    a, b, c = entry("interpol", IMO), entry("europol", IMO), entry("ameripol", IMO)
    index.offer(a, NOW)
    index.offer(b, NOW)
    assert {h.hit_id for h in index.offer(c, NOW).hits} == {
        pair_id(a.event_id, c.event_id),
        pair_id(b.event_id, c.event_id),
    }


def test_a_repeated_or_older_revision_changes_nothing() -> None:
    index = CorrelationIndex()
    a = entry("interpol", IMO, revision=2)
    index.offer(a, NOW)
    assert index.offer(a, NOW).outcome is Outcome.DUPLICATE
    older = entry("interpol", IP, event_id=a.event_id, revision=1)
    assert index.offer(older, NOW).outcome is Outcome.ROLLBACK
    assert index.offer(entry("europol", IP), NOW).hits == ()


def test_a_revision_supersedes_the_identifiers_of_the_one_before() -> None:
    index = CorrelationIndex()
    a = entry("interpol", IMO)
    index.offer(a, NOW)
    revised = entry("interpol", PHONE, event_id=a.event_id, revision=2)
    assert index.offer(revised, NOW).outcome is Outcome.INDEXED
    assert index.offer(entry("europol", IMO), NOW).hits == ()
    hits = index.offer(entry("europol", PHONE), NOW).hits
    assert [h.first.revision for h in hits] == [2]


def test_expired_events_are_neither_indexed_nor_matched() -> None:
    index = CorrelationIndex()
    soon = entry("interpol", IMO, expires_at=NOW + 10)
    index.offer(soon, NOW)
    assert index.offer(entry("europol", IMO), NOW + 10).hits == ()
    late = entry("interpol", IP, expires_at=NOW - 1)
    assert index.offer(late, NOW).outcome is Outcome.EXPIRED
    assert late.event_id not in index.events


def test_an_expired_revision_drops_the_one_indexed() -> None:
    index = CorrelationIndex()
    a = entry("interpol", IMO)
    index.offer(a, NOW)
    expired = entry("interpol", IMO, event_id=a.event_id, revision=2, expires_at=NOW - 1)
    offer = index.offer(expired, NOW)
    assert offer.dropped
    assert offer.changes == ((f"event:{a.event_id}", None),)
    assert index.offer(entry("europol", IMO), NOW).hits == ()


def test_expire_drops_expired_events_and_says_so() -> None:
    index = CorrelationIndex()
    a = entry("interpol", IMO, expires_at=NOW + 5)
    b = entry("europol", IP)
    index.offer(a, NOW)
    index.offer(b, NOW)
    assert index.expire(NOW + 5) == [(f"event:{a.event_id}", None)]
    assert set(index.events) == {b.event_id}
    assert index.sizes() == {"events": 1, "identifiers": 1, "pairs": 0}


def test_the_changelog_restores_the_same_index() -> None:
    index = CorrelationIndex()
    changes: list[tuple[str, bytes | None]] = []
    a, b = entry("interpol", IMO, PHONE), entry("europol", IMO)
    for item in (a, b, entry("interpol", IP, event_id=a.event_id, revision=2)):
        changes += index.offer(item, NOW).changes
    restored = replay(index, changes)
    assert restored.events == index.events
    assert restored.by_identifier == index.by_identifier
    assert restored.pairs == index.pairs == {pair_id(a.event_id, b.event_id)}
    # The pair that hit never hits again, also after a restore.
    assert restored.offer(entry("europol", IMO, event_id=b.event_id, revision=5), NOW).hits == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("other:x", b"1"),
        ("event:abc", b"not json"),
        ("event:abc", b'{"event_id": 1}'),
        ("event:abc", entry("interpol", IMO, event_id="def").to_json()),
    ],
)
def test_a_bad_changelog_entry_is_a_value_error(key: str, value: bytes) -> None:
    with pytest.raises(ValueError, match="changelog"):
        CorrelationIndex().load(key, value)


def test_a_pair_tombstone_forgets_the_pair() -> None:
    index = CorrelationIndex()
    index.load("pair:a+b", b"1")
    index.load("pair:a+b", None)
    assert index.pairs == set()


def test_a_hit_is_a_correlation_hit_record() -> None:
    index = CorrelationIndex()
    a = entry("interpol", IMO, expires_at=NOW + 10**9)
    b = entry("europol", IMO)
    index.offer(a, NOW)
    (hit,) = index.offer(b, NOW).hits
    detected = datetime(2027, 1, 2, tzinfo=UTC)
    store = default_store()
    encoded = store.encode(
        "bus.correlate.CorrelationHit", hit_datum(hit, agency="europol", detected_at=detected)
    )
    decoded = store.decode(encoded, "bus.correlate.CorrelationHit")
    assert decoded["hit_id"] == pair_id(a.event_id, b.event_id)
    assert (decoded["identifier_kind"], decoded["identifier"]) == ("IMO", "9074729")
    assert decoded["first"]["event_id"] == a.event_id
    assert decoded["first"]["origin"] == "interpol"
    assert decoded["first"]["expires_at"] == datetime.fromtimestamp((NOW + 10**9) / 1e6, UTC)
    assert decoded["second"]["topic"] == "intel.events"
    assert decoded["detected_at"] == detected

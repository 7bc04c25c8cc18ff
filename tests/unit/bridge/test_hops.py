"""Hop headers: a mirrored record's headers are regenerated from the verified event, with a
path derived from verified facts and this hop only."""

from __future__ import annotations

from bus import headers as h
from bus.bridge._hops import HOP, PATH, mirrored_headers, verified_path
from tests.signed import make_event


def test_the_path_of_an_agencys_own_event_is_its_origin() -> None:
    assert verified_path(origin="interpol", source="interpol") == ("interpol",)


def test_the_path_of_an_onward_forwarded_event_is_its_origin_then_the_source() -> None:
    assert verified_path(origin="ameripol", source="interpol") == ("ameripol", "interpol")


def test_mirrored_headers_are_the_events_cloudevents_headers_then_path_and_hop() -> None:
    event = make_event("ameripol")
    headers = mirrored_headers(event, source="interpol", destination="europol", bridge_id="b1")
    assert headers == [
        *h.event_headers(event),
        (PATH, b"ameripol,interpol"),
        (HOP, b"interpol->europol b1"),
    ]
    assert [name for name, _ in headers] == [
        h.CE_SPECVERSION,
        h.CE_ID,
        h.CE_SOURCE,
        h.CE_TYPE,
        h.CE_TIME,
        h.CONTENT_TYPE,
        PATH,
        HOP,
    ]

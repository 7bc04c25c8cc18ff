"""The demo's pure parts: its traffic, its forgeries, and what it reads from /metrics."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

import pytest

from bus.correlate._identifiers import identifiers
from bus.demo import (
    AREAS,
    FORGERY_KINDS,
    SHARED_IDENTIFIERS,
    BridgeCounts,
    Correlations,
    DirectionSummary,
    Summary,
    Traffic,
    hit_line,
    parse_metrics,
    progress_line,
    quantile,
    render,
    render_hits,
    view,
)
from bus.demo._hits import _unreadable
from bus.envelope import open_
from bus.errors import RecordRejected
from bus.events import validate
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore

AGENCIES = ("interpol", "europol", "ameripol")
KEYS = {a: SigningKey.generate() for a in AGENCIES}
TRUST = TrustStore(
    [
        TrustedKey(agency=a, public_key=k.public_key, not_before=datetime(2020, 1, 1, tzinfo=UTC))
        for a, k in KEYS.items()
    ]
)


def test_traffic_is_valid_and_varied_over_areas_tlp_releasability_and_shared_identifiers() -> None:
    traffic = Traffic(AGENCIES, seed=1)
    events = [traffic.event(AGENCIES[i % 3]) for i in range(600)]
    for event in events:
        validate(event)
    assert set(AREAS) <= {e["crime_area"] for e in events}
    assert {e["tlp"] for e in events} == {"CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"}
    assert {"H0", "H1", "H2", "H3"} <= {c for e in events for c in e["handling_codes"]}
    assert {len(e["releasable_to"]) for e in events} == {0, 1, 2}
    assert {e["onward_release_consent"] for e in events} == {True, False}
    assert any(e["expires_at"] < datetime.now(UTC) for e in events)
    # An identifier shows up in events of more than one agency.
    holders: dict[str, set[str]] = {}
    for e in events:
        for s in e["subjects"]:
            holders.setdefault(s["value"], set()).add(e["origin"]["agency"])
    assert any(len(agencies) > 1 for agencies in holders.values())


def test_traffic_needs_two_agencies() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Traffic(["interpol"])


def test_every_forgery_is_rejected_with_the_reason_of_its_kind() -> None:
    traffic = Traffic(AGENCIES, seed=2)
    reasons = {}
    for _ in FORGERY_KINDS:
        forged = traffic.forgery("interpol", KEYS["interpol"])
        with pytest.raises(RecordRejected) as caught:
            open_(forged.value, TRUST)
        reasons[forged.kind] = caught.value.reason
    assert reasons == {
        "bad-signature": "bad-signature",
        "unknown-key": "unknown-key",
        "spoofed-origin": "key-agency-mismatch",
        "tampered": "bad-signature",
    }


_METRICS = """\
# TYPE bus_bridge_forwarded_total counter
bus_bridge_forwarded_total{source="interpol",destination="europol",topic="m"} 7.0
bus_bridge_forwarded_total{source="europol",destination="interpol",topic="m"} 99.0
# TYPE bus_bridge_denied_total counter
bus_bridge_denied_total{source="interpol",destination="europol",rule="tlp"} 3.0
bus_bridge_denied_total{source="interpol",destination="europol",rule="releasable-to"} 2.0
# TYPE bus_bridge_quarantined_total counter
bus_bridge_quarantined_total{source="interpol",destination="europol",reason="bad-signature"} 1.0
# TYPE bus_bridge_end_to_end_latency_seconds histogram
bus_bridge_end_to_end_latency_seconds_bucket{source="interpol",destination="europol",le="0.1"} 2.0
bus_bridge_end_to_end_latency_seconds_bucket{source="interpol",destination="europol",le="0.5"} 6.0
bus_bridge_end_to_end_latency_seconds_bucket{source="interpol",destination="europol",le="+Inf"} 7.0
# TYPE bus_bridge_source_lag gauge
bus_bridge_source_lag{source="interpol",destination="europol",topic="e",partition="0"} 4.0
bus_bridge_source_lag{source="interpol",destination="europol",topic="e",partition="1"} 1.0
"""


def test_parse_metrics_reads_one_direction() -> None:
    counts = parse_metrics(_METRICS, source="interpol", destination="europol")
    assert counts.forwarded == 7
    assert counts.denied == {"tlp": 3, "releasable-to": 2}
    assert counts.quarantined == {"bad-signature": 1}
    assert counts.lag == 5
    assert counts.processed == 13
    assert counts.latency_buckets == {0.1: 2, 0.5: 6, math.inf: 7}


def test_growth_since_the_start_and_a_counter_that_restarted_counts_from_zero() -> None:
    start = BridgeCounts(forwarded=10, denied={"tlp": 5}, quarantined={"unknown-key": 2}, lag=9)
    now = BridgeCounts(forwarded=4, denied={"tlp": 8, "expired": 1}, quarantined={}, lag=1)
    grown = now.since(start)
    assert grown.forwarded == 4  # 4 < 10: the bridge restarted
    assert grown.denied == {"tlp": 3, "expired": 1}
    assert grown.quarantined == {}
    assert grown.lag == 1


def test_quantile_interpolates_inside_a_bucket_like_histogram_quantile() -> None:
    buckets = {0.1: 50, 0.5: 100, math.inf: 100}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.3)
    assert quantile(0.99, {0.1: 0, 0.5: 0, math.inf: 4}) == pytest.approx(0.5)
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {math.inf: 0}) is None


def test_the_view_and_the_summary_show_every_direction() -> None:
    bridge = parse_metrics(_METRICS, source="interpol", destination="europol")
    d = DirectionSummary(
        source="interpol",
        destination="europol",
        published=12,
        forged=1,
        expected_forwarded=7,
        bridge=bridge,
    )
    summary = Summary(directions=(d,), forged={"interpol": {"tampered": 1}}, publishing=False)
    assert summary.settled
    assert summary.as_dict()["directions"][0]["denied"] == {"releasable-to": 2, "tlp": 3}
    assert "interpol->europol: published 12+1 forwarded 7" in progress_line(summary)
    assert render(summary).row_count == 1
    assert Counter(k for k in summary.as_dict()) == Counter(
        ["elapsed_s", "settled", "directions", "forged", "correlations"]
    )


def _keys(kind: str, value: str, attributes: dict[str, str]) -> frozenset[str]:
    subject = {"kind": kind, "value": value, "attributes": attributes}
    return frozenset(i.key for i in identifiers({"subjects": [subject]}))


def test_every_form_of_a_shared_identifier_normalises_to_the_same_keys() -> None:
    correlatable = 0
    for shared in SHARED_IDENTIFIERS.values():
        for kind, forms, attributes in shared:
            keys = {
                _keys(kind, form, {n: f[i % len(f)] for n, f in attributes.items()})
                for form in forms
                for i in range(3)
            }
            assert len(keys) == 1, (kind, forms, keys)
            correlatable += bool(next(iter(keys)))
    assert correlatable >= 12  # most of them are identifiers the correlator indexes


def test_agencies_write_one_shared_identifier_in_different_forms() -> None:
    traffic = Traffic(AGENCIES, seed=3)
    forms: dict[str, set[tuple[str, str]]] = {}  # key -> (origin, the value as written)
    for i in range(900):
        event = traffic.event(AGENCIES[i % 3])
        for s in event["subjects"]:
            written = " ".join([s["value"], *s["attributes"].values()])
            for key in _keys(s["kind"], s["value"], s["attributes"]):
                forms.setdefault(key, set()).add((event["origin"]["agency"], written))
    varied = {
        key
        for key, seen in forms.items()
        if len({o for o, _ in seen}) > 1 and len({w for _, w in seen}) > 1
    }
    assert {"IMO:9074729", "PHONE:+442079460958", "IP_ADDRESS:2001:db8:4f::17"} <= varied
    # Agencies share only the shared identifiers: the examples' own are made unique per event.
    shared = {
        key
        for pool in SHARED_IDENTIFIERS.values()
        for kind, forms, attributes in pool
        for key in _keys(kind, forms[0], {n: f[0] for n, f in attributes.items()})
    }
    assert {key for key, seen in forms.items() if len({o for o, _ in seen}) > 1} <= shared


def _hit(identifier: str, first: tuple[str, str], second: tuple[str, str]) -> dict[str, object]:
    return {
        "identifier_kind": identifier.split(":", 1)[0],
        "identifier": identifier.split(":", 1)[1],
        "first": {"origin": first[0], "event_id": first[1]},
        "second": {"origin": second[0], "event_id": second[1]},
    }


def test_the_hits_view_shows_each_agencys_hits_or_that_no_correlator_was_seen() -> None:
    line = hit_line(
        _hit("IMO:9074729", ("interpol", "11111111-aaaa"), ("europol", "22222222-bbbb"))
    )
    assert (line.kind, line.identifier) == ("IMO", "9074729")
    assert (line.first_origin, line.second_event_id) == ("interpol", "22222222-bbbb")
    running = Correlations(agency="europol", seen=True, read=40, hits=3, latest=(line,))
    idle = Correlations(agency="ameripol", seen=True)
    absent = Correlations(agency="interpol")
    failing = Correlations(agency="interpol", error="cannot read bus.correlations")
    assert running.status == "correlator running: read +40 records"
    assert "idle" in idle.status
    assert absent.status.startswith("no correlator seen")
    assert "bus correlate run --agency interpol" in absent.status
    assert failing.status == "cannot read: cannot read bus.correlations"
    summary = Summary(directions=(), correlations=(running, idle, absent), publishing=False)
    assert summary.as_dict()["correlations"][0] == {
        "agency": "europol",
        "correlator_seen": True,
        "correlator_read": 40,
        "hits": 3,
        "latest": [line.as_dict()],
        "unreadable": 0,
        "error": None,
    }
    table = render_hits(summary)
    assert table.row_count == 3
    cells = [list(c.cells) for c in table.columns]
    assert cells[0] == ["europol", "ameripol", "interpol"]
    assert cells[2] == ["3", "0", "-"]  # no correlator: not a silent 0
    assert cells[3][0] == "IMO 9074729: interpol 11111111 ~ europol 22222222"
    assert cells[3][2] == "-"
    progress = progress_line(summary)
    assert "europol: 3 hits" in progress
    assert "interpol: no correlator seen" in progress
    assert "unreadable" in progress_line(Summary(directions=(), correlations=(failing,)))
    unreadable = Correlations(agency="europol", seen=True, hits=1, unreadable=2)
    assert list(
        render_hits(Summary(directions=(), correlations=(unreadable,))).columns[2].cells
    ) == ["1\n(2 unreadable)"]
    assert len(view(summary).renderables) == 2


def test_an_unreadable_correlations_topic_says_why() -> None:
    assert "not authorised: europol-app may read it" in _unreadable("europol", 29)
    assert _unreadable("europol", 5).endswith("Kafka error code 5")

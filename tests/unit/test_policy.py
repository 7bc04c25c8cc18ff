"""The release policy: one table row per rule, and invariants that hold for every request."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.errors import EventError
from bus.policy import (
    CRIME_AREAS,
    HANDLING_CODES,
    RELEASABLE_TLP,
    TLP_LEVELS,
    Direction,
    Policy,
    ReleaseRequest,
    Rule,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
AGREED = frozenset(CRIME_AREAS - {"OTHER"})


def _direction(source: str, destination: str, **changes: Any) -> Direction:
    fields: dict[str, Any] = {
        "source": source,
        "destination": destination,
        "crime_areas": AGREED,
        "tlp": RELEASABLE_TLP,
        "onward_forwarding": False,
    }
    fields.update(changes)
    return Direction(**fields)


def _policy(*directions: Direction) -> Policy:
    agencies = frozenset({"interpol", "europol", "fbi"})
    return Policy(agencies=agencies, directions={(d.source, d.destination): d for d in directions})


POLICY = _policy(
    _direction("interpol", "europol"),
    _direction("europol", "interpol"),
    _direction("europol", "fbi", onward_forwarding=True),
    _direction(
        "interpol",
        "fbi",
        tlp=frozenset({"CLEAR", "GREEN"}),
        crime_areas={"CYBERCRIME"},
        release_h3=True,
    ),
    _direction("fbi", "europol", handling_codes=frozenset({"H0", "H1"})),
)


def _request(**changes: Any) -> ReleaseRequest:
    """A request that every rule allows (interpol's own event to europol), with ``changes``."""
    fields: dict[str, Any] = {
        "event_id": "0b8e6c1e-4a52-4c3e-9b1a-7d0c7e5f2a10",
        "origin": "interpol",
        "source": "interpol",
        "destination": "europol",
        "crime_area": "MARITIME_PIRACY",
        "tlp": "GREEN",
        "releasable_to": frozenset({"europol"}),
        "handling_codes": frozenset({"H0"}),
        "onward_release_consent": False,
        "expires_at": None,
        "path": (),
        "now": NOW,
    }
    fields.update(changes)
    return ReleaseRequest(**fields)


# (what the row pins, changes to the allowed request, expected rule)
CASES: list[tuple[str, dict[str, Any], Rule]] = [
    ("own GREEN event in the agreement crosses", {}, Rule.ALLOWED),
    ("CLEAR crosses", {"tlp": "CLEAR"}, Rule.ALLOWED),
    ("AMBER crosses to a recipient listed by name", {"tlp": "AMBER"}, Rule.ALLOWED),
    ("H2 of the source's own crosses without consent", {"handling_codes": {"H2"}}, Rule.ALLOWED),
    (
        "event not yet expired crosses",
        {"expires_at": NOW + timedelta(seconds=1)},
        Rule.ALLOWED,
    ),
    ("event expiring this very instant still crosses", {"expires_at": NOW}, Rule.ALLOWED),
    ("no direction in the policy: default deny", {"destination": "nsa"}, Rule.NO_AGREEMENT),
    (
        "reverse of a one-way agreement is denied",
        {"source": "fbi", "origin": "fbi", "destination": "interpol"},
        Rule.NO_AGREEMENT,
    ),
    (
        "event never returns to its origin",
        {
            "origin": "europol",
            "source": "interpol",
            "destination": "europol",
            "releasable_to": {"europol", "interpol"},
        },
        Rule.LOOP_ORIGIN,
    ),
    (
        "event never goes to an agency it already passed",
        {
            "origin": "fbi",
            "source": "europol",
            "destination": "interpol",
            "path": ("fbi", "interpol", "europol"),
            "releasable_to": {"interpol", "europol"},
        },
        Rule.LOOP_PATH,
    ),
    ("expired event does not cross", {"expires_at": NOW - timedelta(microseconds=1)}, Rule.EXPIRED),
    ("destination not in releasable_to", {"releasable_to": {"fbi"}}, Rule.RELEASABLE_TO),
    ("empty releasable_to keeps the event home", {"releasable_to": set()}, Rule.RELEASABLE_TO),
    ("agency ids compare exactly", {"releasable_to": {"Europol"}}, Rule.RELEASABLE_TO),
    ("RED never leaves", {"tlp": "RED"}, Rule.TLP),
    ("AMBER_STRICT never leaves", {"tlp": "AMBER_STRICT"}, Rule.TLP),
    ("unknown TLP is denied", {"tlp": "PURPLE"}, Rule.TLP),
    (
        "TLP outside the direction's list is denied",
        {
            "destination": "fbi",
            "tlp": "AMBER",
            "crime_area": "CYBERCRIME",
            "releasable_to": {"fbi"},
        },
        Rule.TLP,
    ),
    ("crime area outside the agreement", {"crime_area": "OTHER"}, Rule.CRIME_AREA),
    (
        "crime area outside a narrower agreement",
        {"destination": "fbi", "releasable_to": {"fbi"}},
        Rule.CRIME_AREA,
    ),
    (
        "handling code the direction does not accept",
        {
            "origin": "fbi",
            "source": "fbi",
            "destination": "europol",
            "handling_codes": {"H0", "H3"},
        },
        Rule.HANDLING,
    ),
    ("H3 is not released by machine by default", {"handling_codes": {"H3"}}, Rule.HANDLING_H3),
    (
        "H3 among other codes is not released by machine by default",
        {"handling_codes": {"H0", "H2", "H3"}},
        Rule.HANDLING_H3,
    ),
    (
        "H3 crosses a direction whose policy says release_h3",
        {
            "destination": "fbi",
            "crime_area": "CYBERCRIME",
            "releasable_to": {"fbi"},
            "handling_codes": {"H3"},
        },
        Rule.ALLOWED,
    ),
    (
        "handling.allowed is named before handling-h3",
        {
            "origin": "fbi",
            "source": "fbi",
            "destination": "europol",
            "handling_codes": {"H2", "H3"},
        },
        Rule.HANDLING,
    ),
    (
        "handling-h3 is named before onward forwarding",
        {"origin": "fbi", "releasable_to": {"europol"}, "handling_codes": {"H3"}},
        Rule.HANDLING_H3,
    ),
    (
        "third agency's event is not forwarded onward by default",
        {
            "origin": "europol",
            "source": "interpol",
            "destination": "fbi",
            "crime_area": "CYBERCRIME",
            "releasable_to": {"interpol", "fbi"},
        },
        Rule.ONWARD_FORWARDING,
    ),
    (
        "third agency's event crosses where onward forwarding is allowed",
        {
            "origin": "interpol",
            "source": "europol",
            "destination": "fbi",
            "releasable_to": {"europol", "fbi"},
            "path": ("interpol",),
        },
        Rule.ALLOWED,
    ),
    (
        "H2 from a mirror needs the origin's consent",
        {
            "origin": "interpol",
            "source": "europol",
            "destination": "fbi",
            "releasable_to": {"europol", "fbi"},
            "handling_codes": {"H1", "H2"},
        },
        Rule.HANDLING_H2_ONWARD,
    ),
    (
        "H2 from a mirror crosses with the origin's consent",
        {
            "origin": "interpol",
            "source": "europol",
            "destination": "fbi",
            "releasable_to": {"europol", "fbi"},
            "handling_codes": {"H2"},
            "onward_release_consent": True,
        },
        Rule.ALLOWED,
    ),
    # Several rules fail: the first in the documented order decides.
    (
        "loop is named before the markings",
        {"origin": "europol", "tlp": "RED", "releasable_to": set()},
        Rule.LOOP_ORIGIN,
    ),
    (
        "expiry is named before the markings",
        {"expires_at": NOW - timedelta(days=1), "tlp": "RED"},
        Rule.EXPIRED,
    ),
    ("releasable-to before tlp", {"tlp": "RED", "releasable_to": set()}, Rule.RELEASABLE_TO),
    ("tlp before crime area", {"tlp": "RED", "crime_area": "OTHER"}, Rule.TLP),
]


@pytest.mark.parametrize(("changes", "rule"), [pytest.param(c, r, id=d) for d, c, r in CASES])
def test_rule_table(changes: dict[str, Any], rule: Rule) -> None:
    """Each row: the rule that decides, and allowed exactly when that rule is 'allowed'."""
    for key in ("releasable_to", "handling_codes"):
        if key in changes:
            changes = {**changes, key: frozenset(changes[key])}
    decision = POLICY.decide(_request(**changes))
    assert decision.rule == rule, decision.reason
    assert decision.allowed is (rule is Rule.ALLOWED)
    assert decision.reason


def test_reasons_name_what_decided() -> None:
    """Reasons name the agency, label or area at fault, in words an operator reads."""
    assert "europol" in POLICY.decide(_request(releasable_to=frozenset())).reason
    assert "RED" in POLICY.decide(_request(tlp="RED")).reason
    assert "OTHER" in POLICY.decide(_request(crime_area="OTHER")).reason
    assert "default deny" in POLICY.decide(_request(destination="nsa")).reason


def test_rule_names_are_stable() -> None:
    """Rule names are part of the audit trail and metrics: renaming one is a breaking change."""
    assert [r.value for r in Rule] == [
        "no-agreement",
        "loop-origin",
        "loop-path",
        "expired",
        "releasable-to",
        "tlp",
        "crime-area",
        "handling",
        "handling-h3",
        "onward-forwarding",
        "handling-h2-onward",
        "allowed",
        "replay",
        "rollback",
    ]


def test_direction_refuses_never_releasable_tlp() -> None:
    """A Direction built in code cannot list RED or AMBER_STRICT either."""
    with pytest.raises(ValueError, match="RED"):
        _direction("interpol", "europol", tlp=frozenset({"GREEN", "RED"}))


def test_request_needs_aware_times() -> None:
    """Naive datetimes are refused: expiry must compare instants, not wall clocks."""
    with pytest.raises(ValueError, match="timezone-aware"):
        _request(now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="expires_at"):
        _request(expires_at=datetime(2025, 1, 1))


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "revision": 1,
        "origin": {"agency": "interpol", "unit": "maritime", "originator_ref": "IP-1"},
        "crime_area": "MARITIME_PIRACY",
        "info_kind": "OPERATIONAL",
        "handling_codes": ["H0", "H2"],
        "handling_conditions": None,
        "onward_release_consent": True,
        "tlp": "AMBER",
        "releasable_to": ["europol"],
        "created_at": NOW,
        "occurred_at": None,
        "expires_at": NOW + timedelta(days=1),
        "title": "t",
        "summary": "s",
    }
    event.update(changes)
    return event


def test_request_from_event() -> None:
    """from_event copies the facts the policy needs from the decoded event."""
    event = _event()
    request = ReleaseRequest.from_event(
        event, source="interpol", destination="europol", path=["interpol"], now=NOW
    )
    assert request.event_id == event["event_id"]
    assert request.origin == "interpol"
    assert request.releasable_to == {"europol"}
    assert request.handling_codes == {"H0", "H2"}
    assert request.onward_release_consent is True
    assert request.expires_at == event["expires_at"]
    assert request.path == ("interpol",)
    assert POLICY.decide(request).allowed


def test_request_from_event_names_missing_field() -> None:
    """An event without a field the policy needs is an EventError naming the field and id."""
    event = _event()
    del event["tlp"]
    with pytest.raises(EventError, match=r"'tlp'.*") as info:
        ReleaseRequest.from_event(event, source="interpol", destination="europol", now=NOW)
    assert event["event_id"] in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("releasable_to", "europol", "releasable_to must be a list of strings"),
        ("releasable_to", 7, "releasable_to must be a list of strings"),
        ("handling_codes", [1], "handling_codes must be a list of strings"),
        ("onward_release_consent", "false", "onward_release_consent must be true or false"),
        ("expires_at", 1_700_000_000, "expires_at must be a datetime or None"),
        ("tlp", None, "tlp must be a string"),
        ("origin", None, "origin must be a record with an agency"),
        ("expires_at", datetime(2025, 1, 1), "expires_at must be timezone-aware"),
    ],
)
def test_request_from_event_refuses_mistyped_fields(field: str, value: Any, message: str) -> None:
    """Mistyped facts are EventErrors, never silently coerced (a string is not a list of ids)."""
    with pytest.raises(EventError, match=message):
        ReleaseRequest.from_event(
            _event(**{field: value}), source="interpol", destination="europol", now=NOW
        )


# --- invariants -------------------------------------------------------------------------------

AGENCIES = ["interpol", "europol", "fbi"]
agency = st.sampled_from(AGENCIES)
times = st.integers(min_value=-3, max_value=3).map(lambda days: NOW + timedelta(days=days))


def _maybe_with(
    draw: st.DrawFn, values: frozenset[str], universe: frozenset[str]
) -> frozenset[str]:
    """A subset of ``universe`` that contains ``values`` half of the time (so some cases pass)."""
    subset = draw(st.frozensets(st.sampled_from(sorted(universe))))
    return subset | values if draw(st.booleans()) else subset


@st.composite
def cases(draw: st.DrawFn) -> tuple[Policy, ReleaseRequest]:
    """A policy and a request, built so that every rule sometimes passes and sometimes fails."""
    source = draw(agency)
    destination = draw(st.sampled_from([a for a in AGENCIES if a != source]))
    crime_area = draw(st.sampled_from(sorted(CRIME_AREAS)))
    tlp = draw(st.sampled_from(sorted(TLP_LEVELS)))
    handling = draw(st.frozensets(st.sampled_from(sorted(HANDLING_CODES)), max_size=2))
    request = ReleaseRequest(
        event_id=str(draw(st.uuids())),
        origin=draw(st.just(source) | agency),
        source=source,
        destination=destination,
        crime_area=crime_area,
        tlp=tlp,
        releasable_to=_maybe_with(draw, frozenset({destination}), frozenset(AGENCIES)),
        handling_codes=handling,
        onward_release_consent=draw(st.booleans()),
        expires_at=draw(st.none() | times),
        path=tuple(draw(st.lists(agency, max_size=1))),
        now=NOW,
    )
    directions = {}
    if draw(st.sampled_from([True, True, True, False])):
        directions[(source, destination)] = Direction(
            source=source,
            destination=destination,
            crime_areas=_maybe_with(draw, frozenset({crime_area}), CRIME_AREAS),
            tlp=_maybe_with(draw, frozenset({tlp}) & RELEASABLE_TLP, RELEASABLE_TLP),
            handling_codes=_maybe_with(draw, handling, HANDLING_CODES),
            onward_forwarding=draw(st.booleans()),
            release_h3=draw(st.booleans()),
        )
    return Policy(agencies=frozenset(AGENCIES), directions=directions), request


@settings(max_examples=200)
@given(case=cases())
def test_invariants_of_every_allowed_release(case: tuple[Policy, ReleaseRequest]) -> None:
    """Whatever the policy, an allowed event satisfies every hard rule of the exchange."""
    policy, request = case
    decision = policy.decide(request)
    assert decision.allowed is (decision.rule is Rule.ALLOWED)
    assert decision.reason
    if not decision.allowed:
        return
    direction = policy.direction(request.source, request.destination)
    assert direction is not None
    assert request.tlp not in {"RED", "AMBER_STRICT"}
    assert request.tlp in direction.tlp
    assert request.destination in request.releasable_to
    assert request.destination != request.origin
    assert request.destination not in request.path
    assert request.destination != request.source
    assert request.expires_at is None or request.expires_at >= request.now
    assert request.crime_area in direction.crime_areas
    assert request.handling_codes <= direction.handling_codes
    assert "H3" not in request.handling_codes or direction.release_h3
    if request.origin != request.source:
        assert direction.onward_forwarding
        assert "H2" not in request.handling_codes or request.onward_release_consent


@given(case=cases())
def test_empty_policy_denies_everything(case: tuple[Policy, ReleaseRequest]) -> None:
    """Default deny: with no direction, nothing crosses."""
    decision = Policy(agencies=frozenset(AGENCIES)).decide(case[1])
    assert not decision.allowed
    assert decision.rule is Rule.NO_AGREEMENT


@given(case=cases(), tlp=st.sampled_from(["RED", "AMBER_STRICT"]))
def test_red_and_amber_strict_never_cross(case: tuple[Policy, ReleaseRequest], tlp: str) -> None:
    """No RED or AMBER_STRICT event is ever allowed, whatever else it says."""
    policy, request = case
    assert not policy.decide(dataclasses.replace(request, tlp=tlp)).allowed


@given(case=cases())
def test_nothing_crosses_without_destination_in_releasable_to(
    case: tuple[Policy, ReleaseRequest],
) -> None:
    """Nothing crosses without the destination in releasable_to."""
    policy, request = case
    request = dataclasses.replace(
        request, releasable_to=request.releasable_to - {request.destination}
    )
    assert not policy.decide(request).allowed


@given(case=cases())
def test_an_allowed_release_becomes_denied_when_any_fact_gets_worse(
    case: tuple[Policy, ReleaseRequest],
) -> None:
    """Monotonic: expiring, looping or tightening the TLP of an allowed event denies it."""
    policy, request = case
    if not policy.decide(request).allowed:
        return
    worse = [
        dataclasses.replace(request, expires_at=NOW - timedelta(seconds=1)),
        dataclasses.replace(request, path=(*request.path, request.destination)),
        dataclasses.replace(request, origin=request.destination),
        dataclasses.replace(request, tlp="RED"),
        dataclasses.replace(request, releasable_to=frozenset()),
    ]
    for request in worse:
        assert not policy.decide(request).allowed


@given(case=cases())
def test_decisions_are_deterministic(case: tuple[Policy, ReleaseRequest]) -> None:
    """The same request gets the same decision: the policy has no hidden state."""
    policy, request = case
    assert policy.decide(request) == policy.decide(request)


def _event_of(request: ReleaseRequest) -> dict[str, Any]:
    """The decoded event (as fastavro reads it) that ``from_event`` turns into ``request``."""
    return {
        "event_id": request.event_id,
        "origin": {"agency": request.origin},
        "crime_area": request.crime_area,
        "tlp": request.tlp,
        "releasable_to": sorted(request.releasable_to),
        "handling_codes": sorted(request.handling_codes),
        "onward_release_consent": request.onward_release_consent,
        "expires_at": request.expires_at,
    }


@settings(max_examples=300)
@given(case=cases(), later=st.sampled_from([timedelta(0), timedelta(days=400)]))
def test_decide_event_gives_decide_s_answer_memoised_or_not(
    case: tuple[Policy, ReleaseRequest], later: timedelta
) -> None:
    """decide_event equals decide(from_event(...)) on the first call and on remembered ones,
    also when the same markings come back later (expiry is judged per call, in its place)."""
    policy, request = case
    event = _event_of(request)
    for now in (request.now, request.now + later, request.now):
        expected = policy.decide(dataclasses.replace(request, now=now))
        got = policy.decide_event(
            event,
            source=request.source,
            destination=request.destination,
            path=request.path,
            now=now,
        )
        assert got == expected


def test_decide_event_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo keeps at most MEMO_SIZE decisions, whatever the variety of markings."""
    monkeypatch.setattr("bus.policy.MEMO_SIZE", 8)
    policy = _policy(_direction("interpol", "europol"))
    for i in range(50):
        event = {**_event(), "releasable_to": ["europol", f"agency{i}"]}
        policy.decide_event(event, source="interpol", destination="europol", now=NOW)
    assert len(policy._memo) == 8


def test_decide_event_names_a_missing_field() -> None:
    """An event without a field the policy needs is refused as from_event refuses it."""
    event = {"event_id": "x", "origin": {"agency": "interpol"}, "tlp": "GREEN"}
    with pytest.raises(EventError, match="crime_area"):
        POLICY.decide_event(event, source="interpol", destination="europol", now=NOW)

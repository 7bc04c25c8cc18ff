"""Release policy: may this event cross from one agency to another?

The decision is pure: no Kafka, no files, no clock. A caller builds a :class:`ReleaseRequest`
from the decoded (and verified) event, the direction it serves, the hop path and the current
time, and asks :meth:`Policy.decide`. The answer is a
:class:`Decision` that names the rule that decided and a reason an operator understands. Policy
files (TOML, ``docs/policy.md``) are read by :func:`load_policy`, which lives with its validation
in ``bus._policy_file`` and is re-exported here.

The bridge asks :meth:`Policy.decide_event` instead, with the decoded event: the same answer,
remembered by the event's markings (a bounded memo), so that the many events that share their
markings cost a lookup rather than a request and the rules.

Default deny: an event crosses only when a policy exists for the direction and every rule
passes. The rules are evaluated in this fixed order; the first that fails decides:

=====================  ===================================================================
rule                   denies when
=====================  ===================================================================
``no-agreement``       the policy has no ``[[direction]]`` from the source to the destination
``loop-origin``        the destination is the event's (signed) origin agency
``loop-path``          the destination is in the hop path: the event already passed there
``expired``            ``expires_at`` is set and ``now`` is after it
``releasable-to``      the destination is not listed in the event's ``releasable_to``
``tlp``                the TLP is AMBER_STRICT or RED (never leave the agency), is not in
                       the direction's ``tlp`` list, or is AMBER and the destination is not
                       listed by name in ``releasable_to``
``crime-area``         the crime area is not in the direction's agreement
``handling``           the event carries a handling code the direction does not accept
``handling-h3``        the event carries H3 and the direction does not say ``release_h3``
``onward-forwarding``  the event came from a third agency (origin is not the source) and
                       the direction does not allow onward forwarding
``handling-h2-onward`` the event came from a third agency, carries H2, and the origin did
                       not consent to onward release
``allowed``            (every rule passed: the event crosses)
=====================  ===================================================================

Two more rules are named here but decided by the bridge right after the policy, because they
need what it forwarded before: ``replay`` (this revision of the event was forwarded already)
and ``rollback`` (a higher revision was). ``Policy.decide`` never returns them.

Routing rules come first so that an event that would loop is reported as a loop, whatever its
markings; then expiry; then the origin's own markings; then the direction's agreement.

``loop-origin`` reads the signed ``origin.agency``. ``loop-path`` reads the request's ``path``,
which a bridge derives from verified facts only (the signed origin, then the source agency),
never from a record's unsigned hop headers: it is defence in depth. Loops are prevented
structurally, because a bridge never consumes a mirrored topic.

H3 ("conditions apply", with the conditions as free text) is never released by a machine unless
the direction says so explicitly (``release_h3``): no program can check free-text conditions.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Protocol

from bus import events
from bus.errors import EventError

__all__ = [
    "CRIME_AREAS",
    "HANDLING_CODES",
    "MEMO_SIZE",
    "RELEASABLE_TLP",
    "TLP_LEVELS",
    "Decision",
    "Direction",
    "Policy",
    "ReleasePolicy",
    "ReleaseRequest",
    "Rule",
    "load_policy",
    "parse_policy",
]

# The vocabularies are the event model's, read from the schema; only what may leave is policy.
#: Crime-area symbols of the event model.
CRIME_AREAS: Final = frozenset(events.CRIME_AREAS)
#: TLP 2.0 levels of the event model.
TLP_LEVELS: Final = frozenset(events.TLP_LEVELS)
#: The only TLP levels that may ever leave the originating agency.
RELEASABLE_TLP: Final = frozenset({"CLEAR", "GREEN", "AMBER"})
#: Europol handling codes of the event model.
HANDLING_CODES: Final = frozenset(events.HANDLING_CODES)
#: Most decisions :meth:`Policy.decide_event` remembers (by markings; module ``Policy``).
MEMO_SIZE: Final = 4096


class Rule(StrEnum):
    """The stable name of the rule that decided; used in audit records, metrics and the CLI."""

    NO_AGREEMENT = "no-agreement"
    LOOP_ORIGIN = "loop-origin"
    LOOP_PATH = "loop-path"
    EXPIRED = "expired"
    RELEASABLE_TO = "releasable-to"
    TLP = "tlp"
    CRIME_AREA = "crime-area"
    HANDLING = "handling"
    HANDLING_H3 = "handling-h3"
    ONWARD_FORWARDING = "onward-forwarding"
    HANDLING_H2_ONWARD = "handling-h2-onward"
    ALLOWED = "allowed"
    # Decided by the bridge after the policy, from what it forwarded before (never by
    # ``Policy.decide``, which has no state): docs/decisions/0008-replays-and-revisions.md.
    REPLAY = "replay"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The answer of the policy: ``allowed``, the ``rule`` that decided, and why in words.

    ``reason`` names agencies, labels and times only, never payload contents.
    """

    allowed: bool
    rule: Rule
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseRequest:
    """The facts the policy needs to decide whether one event may cross one direction.

    ``source`` is the agency whose cluster the bridge reads, ``destination`` the one it writes
    to. ``path`` lists the agencies the event already passed (oldest first; may be empty): a
    bridge derives it from verified facts, never from unsigned headers. ``now`` and
    ``expires_at`` are timezone-aware.
    """

    event_id: str
    origin: str
    source: str
    destination: str
    crime_area: str
    tlp: str
    releasable_to: frozenset[str]
    handling_codes: frozenset[str]
    onward_release_consent: bool
    expires_at: datetime | None
    path: tuple[str, ...] = ()
    now: datetime

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("ReleaseRequest.now must be timezone-aware")
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError(f"event {self.event_id}: expires_at must be timezone-aware")

    @classmethod
    def from_event(
        cls,
        event: Mapping[str, Any],
        *,
        source: str,
        destination: str,
        path: Iterable[str] = (),
        now: datetime,
    ) -> ReleaseRequest:
        """The request for ``event`` (the dict fastavro reads) crossing source -> destination.

        Raises :class:`~bus.errors.EventError` naming the field when the event lacks one the
        policy needs.
        """
        event_id = str(event.get("event_id", "<no event_id>"))
        where = f"event {event_id}"
        try:
            return cls(
                event_id=event_id,
                origin=_text(event["origin"]["agency"], where, "origin.agency"),
                source=source,
                destination=destination,
                crime_area=_text(event["crime_area"], where, "crime_area"),
                tlp=_text(event["tlp"], where, "tlp"),
                releasable_to=_names(event["releasable_to"], where, "releasable_to"),
                handling_codes=_names(event["handling_codes"], where, "handling_codes"),
                onward_release_consent=_flag(
                    event["onward_release_consent"], where, "onward_release_consent"
                ),
                expires_at=_moment(event["expires_at"], where, "expires_at"),
                path=tuple(path),
                now=now,
            )
        except KeyError as exc:
            raise EventError(f"{where}: missing field {exc} needed by the release policy") from exc
        except TypeError as exc:
            raise EventError(f"{where}: origin must be a record with an agency ({exc})") from exc
        except ValueError as exc:
            raise EventError(str(exc)) from exc


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise EventError(f"{where}: {name} must be a string, not {type(value).__name__}")
    return value


def _names(value: Any, where: str, name: str) -> frozenset[str]:
    # A bare string would otherwise become a set of its characters.
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Iterable)
        or not all(isinstance(v, str) for v in value)
    ):
        raise EventError(f"{where}: {name} must be a list of strings")
    return frozenset(value)


def _flag(value: Any, where: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise EventError(f"{where}: {name} must be true or false, not {type(value).__name__}")
    return value


def _moment(value: Any, where: str, name: str) -> datetime | None:
    if value is not None and not isinstance(value, datetime):
        raise EventError(f"{where}: {name} must be a datetime or None, not {type(value).__name__}")
    return value


class ReleasePolicy(Protocol):
    """What a bridge needs from a policy: a decision per event and direction."""

    def decide(self, request: ReleaseRequest) -> Decision:
        """Decide whether ``request``'s event may cross its direction."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Direction:
    """The agreement for one direction (``source`` -> ``destination``) of the exchange.

    ``tlp`` never contains AMBER_STRICT or RED; ``handling_codes`` lists the handling codes an
    event may carry to cross (all four by default); an event with H3 crosses only if
    ``release_h3`` is set too (off by default: H3's conditions are free text no machine checks).
    """

    source: str
    destination: str
    crime_areas: frozenset[str]
    tlp: frozenset[str]
    handling_codes: frozenset[str] = HANDLING_CODES
    onward_forwarding: bool = False
    release_h3: bool = False

    def __post_init__(self) -> None:
        if self.source == self.destination:
            raise ValueError(f"direction {self.name}: source and destination are the same")
        forbidden = self.tlp - RELEASABLE_TLP
        if forbidden:
            raise ValueError(
                f"direction {self.source}->{self.destination}: TLP "
                f"{', '.join(sorted(forbidden))} can never be released"
            )

    @property
    def name(self) -> str:
        """``source->destination``."""
        return f"{self.source}->{self.destination}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The release policy of the federation: its agencies and one agreement per direction.

    Build it with :func:`load_policy` (validates a file) or directly in code.
    """

    agencies: frozenset[str]
    directions: Mapping[tuple[str, str], Direction] = field(default_factory=dict)
    _memo: _Memo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A read-only copy: the policy must not change under a running bridge.
        object.__setattr__(self, "directions", MappingProxyType(dict(self.directions)))
        object.__setattr__(self, "_memo", _Memo(MEMO_SIZE))
        for (source, destination), direction in self.directions.items():
            if (direction.source, direction.destination) != (source, destination):
                raise ValueError(
                    f"direction {direction.name} is filed under {source}->{destination}"
                )

    def direction(self, source: str, destination: str) -> Direction | None:
        """The agreement for ``source -> destination``, or None when there is none (deny)."""
        return self.directions.get((source, destination))

    def decide(self, request: ReleaseRequest) -> Decision:
        """Decide whether the event may cross; the first failing rule (module docs) decides."""
        r = request
        dest = r.destination
        direction = self.directions.get((r.source, dest))
        if direction is None:
            return _deny(
                Rule.NO_AGREEMENT,
                f"no agreement for {r.source}->{dest} in the policy: default deny",
            )
        if dest == r.origin:
            return _deny(Rule.LOOP_ORIGIN, f"{dest} is the event's origin: it never returns there")
        if dest in r.path:
            return _deny(
                Rule.LOOP_PATH,
                f"the event already passed {dest} (hop path {' > '.join(r.path)})",
            )
        if r.expires_at is not None and r.now > r.expires_at:
            return _expired(r.expires_at, r.now)
        if dest not in r.releasable_to:
            listed = ", ".join(sorted(r.releasable_to)) or "nobody"
            return _deny(
                Rule.RELEASABLE_TO,
                f"{dest} is not in the event's releasable_to (releasable to: {listed})",
            )
        if r.tlp not in RELEASABLE_TLP:
            return _deny(Rule.TLP, f"TLP:{r.tlp} never leaves the originating agency")
        if r.tlp not in direction.tlp:
            allowed = ", ".join(sorted(direction.tlp))
            return _deny(
                Rule.TLP,
                f"TLP:{r.tlp} is not allowed for {direction.name} (allowed: {allowed})",
            )
        # Redundant with releasable-to today; kept so that AMBER stays bound to recipients
        # listed by name should releasable-to ever be relaxed (e.g. by a wildcard).
        if r.tlp == "AMBER" and dest not in r.releasable_to:
            return _deny(Rule.TLP, f"TLP:AMBER goes only to listed recipients; {dest} is not")
        if r.crime_area not in direction.crime_areas:
            return _deny(
                Rule.CRIME_AREA,
                f"crime area {r.crime_area} is not in the {direction.name} agreement",
            )
        refused = r.handling_codes - direction.handling_codes
        if refused:
            return _deny(
                Rule.HANDLING,
                f"handling code {', '.join(sorted(refused))} is not accepted for {direction.name}",
            )
        if "H3" in r.handling_codes and not direction.release_h3:
            return _deny(
                Rule.HANDLING_H3,
                f"H3: {direction.name} does not release H3 events by machine "
                "(its conditions need a person; the policy's release_h3 is not set)",
            )
        if r.origin != r.source:
            if not direction.onward_forwarding:
                return _deny(
                    Rule.ONWARD_FORWARDING,
                    f"the event came from a third agency ({r.origin}) and {direction.name} "
                    "does not allow onward forwarding",
                )
            if "H2" in r.handling_codes and not r.onward_release_consent:
                return _deny(
                    Rule.HANDLING_H2_ONWARD,
                    f"H2: {r.origin} did not consent to onward release beyond {r.source}",
                )
        return Decision(
            allowed=True,
            rule=Rule.ALLOWED,
            reason=f"every rule of {direction.name} passed",
        )

    def decide_event(
        self,
        event: Mapping[str, Any],
        *,
        source: str,
        destination: str,
        path: tuple[str, ...] = (),
        now: datetime,
    ) -> Decision:
        """``decide(ReleaseRequest.from_event(event, ...))``, remembered by markings.

        The same decision as ``decide`` for every event, but an event whose markings (origin,
        crime area, TLP, ``releasable_to``, handling codes, onward consent) and direction and
        path were decided before costs a dictionary lookup instead of a request and the rules.
        Only ``expires_at`` differs per event and is checked each time, in its place in the
        order: after the routing rules, before the markings. At most ``MEMO_SIZE`` decisions
        are remembered (the oldest go first); safe to call from several threads.
        ``EventError`` as ``from_event`` raises it.
        """
        try:
            expires_at = event["expires_at"]
            key: Hashable = (
                source,
                destination,
                path,
                event["origin"]["agency"],
                event["crime_area"],
                event["tlp"],
                _listed(event["releasable_to"]),
                _listed(event["handling_codes"]),
                event["onward_release_consent"],
            )
            decision = self._memo.get(key)
        except (KeyError, TypeError):  # not as decoded: from_event names the field
            expires_at = decision = key = None
        if decision is None or not (
            expires_at is None
            or (type(expires_at) is datetime and expires_at.utcoffset() is not None)
        ):
            request = ReleaseRequest.from_event(
                event, source=source, destination=destination, path=path, now=now
            )
            expires_at = request.expires_at
            decision = self.decide(replace(request, expires_at=None))
            if key is not None:
                self._memo.put(key, decision)
        if expires_at is not None and now > expires_at and decision.rule not in _BEFORE_EXPIRY:
            return _expired(expires_at, now)
        return decision


_BEFORE_EXPIRY: Final = frozenset({Rule.NO_AGREEMENT, Rule.LOOP_ORIGIN, Rule.LOOP_PATH})


def _listed(value: Any) -> tuple[Any, ...]:
    # Only lists (as decoded) make a memo key; anything else goes through from_event's checks.
    if type(value) is not list:
        raise TypeError("not a list")
    return tuple(value)


class _Memo:
    """A bounded map of markings to decisions: the oldest entry goes when it is full."""

    __slots__ = ("_capacity", "_entries", "_lock")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: dict[Hashable, Decision] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Decision | None:
        return self._entries.get(key)

    def put(self, key: Hashable, decision: Decision) -> None:
        with self._lock:
            if key not in self._entries and len(self._entries) >= self._capacity:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = decision

    def __len__(self) -> int:
        return len(self._entries)


def _expired(expires_at: datetime, now: datetime) -> Decision:
    return _deny(
        Rule.EXPIRED, f"the event expired at {expires_at.isoformat()} (now {now.isoformat()})"
    )


def _deny(rule: Rule, reason: str) -> Decision:
    return Decision(allowed=False, rule=rule, reason=reason)


# The file format builds the Policy and Direction defined above, so it is imported last; it is
# re-exported here because a policy file is how every user gets a Policy. Its functions claim this
# public module as their home (as httpx does), so that docs and tracebacks point users here.
from bus._policy_file import load_policy, parse_policy  # noqa: E402

load_policy.__module__ = parse_policy.__module__ = __name__

"""Release policy: may this event cross from one agency to another?

The decision is pure: no Kafka, no files, no clock. A bridge builds a :class:`ReleaseRequest`
from the decoded (and verified) event, the direction it serves, the hop path from the record's
headers and the current time, and asks :meth:`Policy.decide`. The answer is a
:class:`Decision` that names the rule that decided and a reason an operator understands.

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
``onward-forwarding``  the event came from a third agency (origin is not the source) and
                       the direction does not allow onward forwarding
``handling-h2-onward`` the event came from a third agency, carries H2, and the origin did
                       not consent to onward release
``allowed``            (every rule passed: the event crosses)
=====================  ===================================================================

Routing rules come first so that an event that would loop is reported as a loop, whatever its
markings; then expiry; then the origin's own markings; then the direction's agreement.

``loop-origin`` reads the signed ``origin.agency``. ``loop-path`` reads the hop headers, which are
unsigned routing hints: it is defence in depth only. Loops are prevented structurally, because a
bridge never consumes a mirrored topic.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

from bus.errors import EventError, PolicyError
from bus.events import CRIME_AREAS as EVENT_CRIME_AREAS
from bus.trust import AGENCY_ID

__all__ = [
    "CRIME_AREAS",
    "HANDLING_CODES",
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

#: Crime-area symbols of the event model.
CRIME_AREAS: Final = frozenset(EVENT_CRIME_AREAS)
#: TLP 2.0 levels of the event model.
TLP_LEVELS: Final = frozenset({"CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"})
#: The only TLP levels that may ever leave the originating agency.
RELEASABLE_TLP: Final = frozenset({"CLEAR", "GREEN", "AMBER"})
#: Europol handling codes of the event model.
HANDLING_CODES: Final = frozenset({"H0", "H1", "H2", "H3"})

_FORMAT_VERSION = 1


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
    ONWARD_FORWARDING = "onward-forwarding"
    HANDLING_H2_ONWARD = "handling-h2-onward"
    ALLOWED = "allowed"


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
    to. ``path`` lists the agencies the event already passed, from the bridge's hop headers
    (oldest first; may be empty). ``now`` and ``expires_at`` are timezone-aware.
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
    event may carry to cross (all four by default).
    """

    source: str
    destination: str
    crime_areas: frozenset[str]
    tlp: frozenset[str]
    handling_codes: frozenset[str] = HANDLING_CODES
    onward_forwarding: bool = False

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

    def __post_init__(self) -> None:
        # A read-only copy: the policy must not change under a running bridge.
        object.__setattr__(self, "directions", MappingProxyType(dict(self.directions)))
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
            return _deny(
                Rule.EXPIRED,
                f"the event expired at {r.expires_at.isoformat()} (now {r.now.isoformat()})",
            )
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


def _deny(rule: Rule, reason: str) -> Decision:
    return Decision(allowed=False, rule=rule, reason=reason)


# --- policy files -------------------------------------------------------------------------------

_TOP_KEYS: Final = frozenset({"version", "agencies", "direction"})
_DIRECTION_KEYS: Final = frozenset(
    {"from", "to", "crime_areas", "tlp", "onward_forwarding", "handling"}
)
_HANDLING_KEYS: Final = frozenset({"allowed"})


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path`` (TOML, format in ``docs/policy.md``).

    Raises :class:`~bus.errors.PolicyError` naming the file and the entry at fault.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: the policy file is not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    return parse_policy(data, source=str(path))


def parse_policy(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """Validate a parsed policy document; ``source`` names it in errors (usually the file)."""
    _no_unknown_keys(data, _TOP_KEYS, f"{source}: top level")
    version = data.get("version", _FORMAT_VERSION)
    if version != _FORMAT_VERSION:
        raise PolicyError(f"{source}: version {version!r} is not supported (expected 1)")
    agencies = _agencies(data, source)
    entries = data.get("direction", [])
    if not isinstance(entries, list):
        raise PolicyError(f"{source}: 'direction' must be an array of tables ([[direction]])")
    directions: dict[tuple[str, str], Direction] = {}
    for number, entry in enumerate(entries, start=1):
        direction = _direction(entry, number, agencies, source)
        key = (direction.source, direction.destination)
        if key in directions:
            raise PolicyError(
                f"{source}: [[direction]] #{number} ({direction.name}): duplicates an earlier "
                "entry for the same direction; merge them into one"
            )
        directions[key] = direction
    return Policy(agencies=agencies, directions=directions)


def _agencies(data: Mapping[str, Any], source: str) -> frozenset[str]:
    agencies = data.get("agencies")
    if agencies is None:
        raise PolicyError(f"{source}: missing 'agencies' (the list of agency ids)")
    if not isinstance(agencies, list) or not all(isinstance(a, str) for a in agencies):
        raise PolicyError(f"{source}: 'agencies' must be a list of agency ids")
    for agency in agencies:
        if not AGENCY_ID.match(agency):
            raise PolicyError(
                f"{source}: agencies: {agency!r} is not an agency id "
                "(lowercase letters, digits, '-' or '_', starting with a letter)"
            )
    _no_duplicates(agencies, f"{source}: agencies")
    return frozenset(agencies)


def _direction(entry: Any, number: int, agencies: frozenset[str], source: str) -> Direction:
    where = f"{source}: [[direction]] #{number}"
    if not isinstance(entry, dict):
        raise PolicyError(f"{where}: must be a table")
    frm, to = entry.get("from"), entry.get("to")
    if isinstance(frm, str) and isinstance(to, str):
        where = f"{where} ({frm}->{to})"
    frm = _agency_ref(frm, "from", agencies, where)
    to = _agency_ref(to, "to", agencies, where)
    _no_unknown_keys(entry, _DIRECTION_KEYS, where)
    if frm == to:
        raise PolicyError(f"{where}: contradiction: 'from' and 'to' are the same agency")
    crime_areas = _symbols(entry, "crime_areas", CRIME_AREAS, where, "crime area")
    tlp = _symbols(entry, "tlp", TLP_LEVELS, where, "TLP level")
    never = tlp - RELEASABLE_TLP
    if never:
        raise PolicyError(
            f"{where}: contradiction: tlp lists {', '.join(sorted(never))}, which never "
            "leaves the originating agency; remove it"
        )
    onward = entry.get("onward_forwarding", False)
    if not isinstance(onward, bool):
        raise PolicyError(f"{where}: 'onward_forwarding' must be true or false")
    handling = entry.get("handling", {})
    if not isinstance(handling, dict):
        raise PolicyError(f"{where}: 'handling' must be a table, e.g. {{ allowed = [\"H0\"] }}")
    _no_unknown_keys(handling, _HANDLING_KEYS, f"{where}: handling")
    codes = (
        _symbols(handling, "allowed", HANDLING_CODES, f"{where}: handling", "handling code")
        if "allowed" in handling
        else HANDLING_CODES
    )
    return Direction(
        source=frm,
        destination=to,
        crime_areas=crime_areas,
        tlp=tlp,
        handling_codes=codes,
        onward_forwarding=onward,
    )


def _agency_ref(value: Any, key: str, agencies: frozenset[str], where: str) -> str:
    if value is None:
        raise PolicyError(f"{where}: missing '{key}'")
    if not isinstance(value, str):
        raise PolicyError(f"{where}: '{key}' must be an agency id (a string)")
    if value not in agencies:
        known = ", ".join(sorted(agencies))
        raise PolicyError(f"{where}: unknown agency {value!r} in '{key}'; expected one of {known}")
    return value


def _symbols(
    table: Mapping[str, Any], key: str, known: Collection[str], where: str, what: str
) -> frozenset[str]:
    values = table.get(key)
    if values is None:
        raise PolicyError(f"{where}: missing '{key}' (a list of {what}s)")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"{where}: '{key}' must be a list of strings")
    expected = ", ".join(sorted(known))
    for value in values:
        if value not in known:
            raise PolicyError(f"{where}: unknown {what} {value!r}; expected one of {expected}")
    _no_duplicates(values, f"{where}: {key}")
    if not values:
        raise PolicyError(
            f"{where}: '{key}' is empty, so this direction would release nothing; "
            "remove the entry instead (no entry means deny)"
        )
    return frozenset(values)


def _no_unknown_keys(table: Mapping[str, Any], known: Collection[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(known))}"
        )


def _no_duplicates(values: list[str], where: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise PolicyError(f"{where}: {value!r} is listed twice")
        seen.add(value)

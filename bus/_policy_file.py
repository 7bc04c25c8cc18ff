"""Policy files: the TOML form of a :class:`~bus.policy.Policy`, validated on load.

The format is documented in ``docs/policy.md``. Validation is strict, because a policy decides
what leaves an agency: unknown keys, unknown agencies or symbols, duplicates, empty lists and
contradictions (a direction from an agency to itself, a TLP level that never leaves) are errors
that name the file and the ``[[direction]]`` entry, never silently ignored.

The decision itself lives in :mod:`bus.policy`, which re-exports :func:`load_policy` and
:func:`parse_policy`; import them from there.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

from bus.errors import PolicyError
from bus.policy import CRIME_AREAS, HANDLING_CODES, RELEASABLE_TLP, TLP_LEVELS, Direction, Policy
from bus.trust import AGENCY_ID

__all__ = ["load_policy", "parse_policy"]

_FORMAT_VERSION: Final = 1

_TOP_KEYS: Final = frozenset({"version", "agencies", "direction"})
_DIRECTION_KEYS: Final = frozenset(
    {"from", "to", "crime_areas", "tlp", "onward_forwarding", "release_h3", "handling"}
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
    release_h3 = entry.get("release_h3", False)
    if not isinstance(release_h3, bool):
        raise PolicyError(f"{where}: 'release_h3' must be true or false")
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
        release_h3=release_h3,
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

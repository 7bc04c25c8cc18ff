"""The trust store: which public keys speak for which agency, and when.

A trust store is a TOML file (``trust.toml``) with one ``[[keys]]`` table per key::

    [[keys]]
    agency = "interpol"                              # lowercase agency id
    key_id = "ed25519:3f6c0e..."                     # must match the key (checked on load)
    not_before = "2026-01-01T00:00:00Z"              # RFC 3339, with an offset
    not_after = "2027-01-01T00:00:00Z"               # optional: no end
    revoked_at = "2026-06-01T12:00:00Z"              # optional: not revoked
    public_key = '''
    -----BEGIN PUBLIC KEY-----
    ...
    -----END PUBLIC KEY-----
    '''
    # or, instead of public_key: public_key_file = "interpol.pub.pem" (relative to this file)

Timestamps may also be TOML offset date-times. An event verifies with a key only if the key is
in the store, belongs to the agency named in the event's ``origin.agency``, was valid at the
event's ``created_at`` (``not_before <= created_at < not_after``) and is not revoked. A revoked
key fails for every event, whatever its ``created_at``: whoever holds a compromised key can write
any ``created_at``. Keys rotate by overlapping windows: both keys verify during the overlap.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bus._time import format_time as _format_time
from bus._time import parse_time
from bus.errors import ConfigError, KeyAgencyMismatch, KeyNotValid, KeyRevoked, UnknownKey
from bus.signing import PublicKey

__all__ = ["AGENCY_ID", "KeyResolver", "TrustedKey", "TrustStore", "append_key", "format_time"]

AGENCY_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
"""What an agency id looks like: lowercase letters, digits, ``-`` and ``_``, starting a letter."""

_FIELDS = frozenset(
    {"agency", "key_id", "public_key", "public_key_file", "not_before", "not_after", "revoked_at"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedKey:
    """One public key of one agency, with its validity window and revocation."""

    agency: str
    public_key: PublicKey
    not_before: datetime
    not_after: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def key_id(self) -> str:
        """Id of the public key."""
        return self.public_key.key_id

    def check(self, agency: str, created_at: datetime) -> None:
        """Raise unless this key may sign an event of ``agency`` created at ``created_at``.

        ``KeyRevoked``, ``KeyAgencyMismatch`` or ``KeyNotValid``, each naming the key id.
        """
        if self.revoked_at is not None:
            raise KeyRevoked(
                f"key {self.key_id} of {self.agency} was revoked at "
                f"{format_time(self.revoked_at)}; no event signed with it is accepted"
            )
        if agency != self.agency:
            # The origin came off the wire: named only when it is an agency id at all.
            origin = (
                repr(agency)
                if AGENCY_ID.match(agency)
                else f"not an agency id ({len(agency)} characters)"
            )
            raise KeyAgencyMismatch(
                f"key {self.key_id} belongs to {self.agency!r} but the event's origin is "
                f"{origin}: a key can only sign for its own agency"
            )
        if created_at < self.not_before or (
            self.not_after is not None and created_at >= self.not_after
        ):
            end = format_time(self.not_after) if self.not_after else "open end"
            raise KeyNotValid(
                f"key {self.key_id} of {self.agency} is valid from "
                f"{format_time(self.not_before)} to {end}, but the event was created at "
                f"{format_time(created_at)}"
            )


class KeyResolver(Protocol):
    """Finds the trusted key for a key id (what ``envelope.open_`` needs)."""

    def get(self, key_id: str) -> TrustedKey:
        """The key with this id; ``UnknownKey`` if there is none."""
        ...


class TrustStore:
    """The keys of a trust store, by key id. Immutable; safe to share between threads."""

    __slots__ = ("_keys", "source")

    def __init__(self, keys: Iterable[TrustedKey], *, source: str = "trust store") -> None:
        self.source = source
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ConfigError(f"{source}: key {key.key_id} is listed twice")
            self._keys[key.key_id] = key

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        """Read a ``trust.toml``; ``ConfigError`` naming the file and the entry if it is wrong."""
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the trust store: {exc.strerror}") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        unknown = set(document) - {"keys"}
        if unknown:
            raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; only [[keys]]")
        entries = document.get("keys", [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: 'keys' must be an array of tables ([[keys]])")
        return cls(
            (_entry(path, index, entry) for index, entry in enumerate(entries)),
            source=str(path),
        )

    def get(self, key_id: str) -> TrustedKey:
        """The key with this id; ``UnknownKey`` if the store does not list it."""
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKey(
                f"key {_printable(key_id)} is not in {self.source}; add the agency's public "
                "key to the trust store if it should be trusted"
            )
        return key

    def for_agency(self, agency: str) -> tuple[TrustedKey, ...]:
        """Every key of ``agency``."""
        return tuple(key for key in self._keys.values() if key.agency == agency)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys


def _printable(text: str) -> str:
    # Key ids come off the wire: bound and escape them before they reach a log line.
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def _entry(path: Path, index: int, entry: Any) -> TrustedKey:
    where = f"{path}: keys[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)}")
    agency = entry.get("agency")
    if not isinstance(agency, str) or not AGENCY_ID.match(agency):
        raise ConfigError(f"{where}: 'agency' must be a lowercase agency id like \"interpol\"")
    where = f"{where} ({agency})"
    if ("public_key" in entry) == ("public_key_file" in entry):
        raise ConfigError(f"{where}: give exactly one of 'public_key' (PEM) or 'public_key_file'")
    if "public_key" in entry:
        pem = entry["public_key"]
        if not isinstance(pem, str):
            raise ConfigError(f"{where}: 'public_key' must be a PEM string")
        public_key = PublicKey.from_pem(pem, source=where)
    else:
        file = entry["public_key_file"]
        if not isinstance(file, str):
            raise ConfigError(f"{where}: 'public_key_file' must be a path")
        public_key = PublicKey.load(path.parent / file)
    key_id = entry.get("key_id")
    if key_id is not None and key_id != public_key.key_id:
        raise ConfigError(
            f"{where}: key_id {key_id!r} does not match the public key, whose id is "
            f"{public_key.key_id!r}"
        )
    not_before = _time(where, entry, "not_before")
    if not_before is None:
        raise ConfigError(f"{where}: 'not_before' is missing (an RFC 3339 time with offset)")
    not_after = _time(where, entry, "not_after")
    if not_after is not None and not_after <= not_before:
        raise ConfigError(f"{where}: 'not_after' must be later than 'not_before'")
    return TrustedKey(
        agency=agency,
        public_key=public_key,
        not_before=not_before,
        not_after=not_after,
        revoked_at=_time(where, entry, "revoked_at"),
    )


def _time(where: str, entry: Mapping[str, Any], name: str) -> datetime | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_time(value)
        except ValueError as exc:
            raise ConfigError(
                f"{where}: '{name}' = {value!r} {exc}; write it like 2026-01-01T00:00:00Z"
            ) from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{where}: '{name}' needs a date, a time and an offset (e.g. Z)")
    return value


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds only when there are some."""
    return _format_time(moment, timespec="auto")


def append_key(path: str | Path, key: TrustedKey, *, dry_run: bool = False) -> None:
    """Add ``key`` to the trust store file at ``path`` (created if missing).

    The existing file is loaded first, so a broken file or a duplicate key id raises
    ``ConfigError`` and nothing is written. ``dry_run`` does the checks only.
    """
    path = Path(path)
    existing = TrustStore.load(path) if path.exists() else TrustStore(())
    TrustStore([*existing, key], source=str(path))  # rejects a duplicate key id
    if dry_run:
        return
    lines = [
        "",
        "[[keys]]",
        f'agency = "{key.agency}"',
        f'key_id = "{key.key_id}"',
        f'not_before = "{format_time(key.not_before)}"',
    ]
    if key.not_after is not None:
        lines.append(f'not_after = "{format_time(key.not_after)}"')
    if key.revoked_at is not None:
        lines.append(f'revoked_at = "{format_time(key.revoked_at)}"')
    lines.append(f'public_key = """\n{key.public_key.to_pem().decode("ascii")}"""')
    header = "" if path.exists() else "# Exchange Bus trust store (format: bus/trust.py).\n"
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(header + "\n".join(lines) + "\n")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the trust store: {exc.strerror}") from exc

"""The trust store: which public keys speak for which agency, and when.

A trust store is a TOML file (``trust.toml``) with one ``[[keys]]`` table per key::

    [[keys]]
    agency = "interpol"                              # lowercase agency id
    key_id = "ed25519:3f6c0e..."                     # must match the key (checked on load)
    not_before = "2026-01-01T00:00:00Z"              # RFC 3339, with an offset
    not_after = "2027-01-01T00:00:00Z"               # optional: no end
    revoked_at = "2026-06-01T12:00:00Z"              # optional: not revoked
    role = "bridge"                                  # optional: "publisher" (default) or "bridge"
    public_key = '''
    -----BEGIN PUBLIC KEY-----
    ...
    -----END PUBLIC KEY-----
    '''
    # or, instead of public_key: public_key_file = "interpol.pub.pem" (relative to this file)

``role`` says what the key signs: ``publisher`` keys sign events; a ``bridge`` key signs the
audit chain of one bridge direction of its agency (``bus.audit_chain``) and never verifies an
event. Stores without ``role`` read as before (every key a publisher key).

Timestamps may also be TOML offset date-times. An event verifies with a key only if the key is
in the store, belongs to the agency named in the event's ``origin.agency``, was valid at the
event's ``created_at`` (``not_before <= created_at < not_after``), is valid by the receiver's own
clock too (``not_before <= now < not_after + grace``) and is not revoked. A revoked key fails for
every event, whatever its ``created_at``: whoever holds a compromised key can write any
``created_at``. For the same reason the receiver's clock judges as well: an expired key's holder
could backdate ``created_at`` into the key's window, so past ``not_after`` plus the grace
(:data:`DEFAULT_GRACE`, for records already in flight) nothing signed with it is accepted. Keys
rotate by overlapping windows: both keys verify during the overlap, and events signed with the
old key shortly before its end still cross within the grace.

The file holds public keys only, but whoever can change it decides whom the receiver trusts:
:meth:`TrustStore.load` refuses a file that group or others may write, and :func:`append_key`
writes it atomically (a temporary file in the same folder, fsync, rename) with mode 0644.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from bus._time import format_time as _format_time
from bus._time import parse_time
from bus.errors import ConfigError, KeyAgencyMismatch, KeyNotValid, KeyRevoked, UnknownKey
from bus.signing import PublicKey

__all__ = [
    "AGENCY_ID",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_SKEW",
    "KeyResolver",
    "TrustedKey",
    "ROLES",
    "TrustStore",
    "append_key",
    "update_key",
    "format_time",
]

AGENCY_ID: Final = re.compile(r"\A[a-z][a-z0-9_-]{0,62}\Z")
"""What an agency id looks like: lowercase letters, digits, ``-`` and ``_``, starting with a
letter, at most 63 characters. Anchored with ``\\A`` and ``\\Z`` (never ``$``, which also matches
before a trailing newline), so ``match``, ``fullmatch`` and ``search`` all test the whole id."""

DEFAULT_GRACE: Final = timedelta(hours=1)
"""How long after a key's ``not_after``, by the receiver's clock, events signed with it (and
dated inside its window) are still accepted. It lets records already in flight cross a rotation:
a receiver that lags, restarts or waits out a short outage still reads the last events signed
with the old key. ``not_after`` is the planned end of a key; a compromised key is revoked
(``revoked_at``), which is immediate and has no grace."""

DEFAULT_MAX_SKEW: Final = timedelta(minutes=5)
"""How far ahead of the receiver's clock an event's ``created_at`` may be. Clocks synchronised
by NTP agree within a second; five minutes is Kerberos's long-standing tolerance, enough for a
host whose clock drifted, small enough that a pre-dated event cannot stay "fresh" for long."""

ROLES: Final = ("publisher", "bridge")
"""What a key may sign: events (``publisher``) or a bridge's audit chain (``bridge``)."""

_FIELDS = frozenset(
    {
        "agency",
        "key_id",
        "public_key",
        "public_key_file",
        "not_before",
        "not_after",
        "revoked_at",
        "role",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedKey:
    """One public key of one agency, with its validity window and revocation."""

    agency: str
    public_key: PublicKey
    not_before: datetime
    not_after: datetime | None = None
    revoked_at: datetime | None = None
    role: str = "publisher"

    @property
    def key_id(self) -> str:
        """Id of the public key."""
        return self.public_key.key_id

    def check(
        self,
        agency: str,
        created_at: datetime,
        *,
        now: datetime | None = None,
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        """Raise unless this key may sign an event of ``agency`` created at ``created_at``.

        ``now`` is the receiver's clock: the key must also be valid then, its end extended by
        ``grace``. ``None`` judges by the event's ``created_at`` only, for tools that look at
        old records; receivers go through ``envelope.open_``, which always passes a ``now``.
        ``KeyRevoked``, ``KeyAgencyMismatch`` or ``KeyNotValid``, each naming the key id.
        """
        if self.revoked_at is not None and (now is None or now >= self.revoked_at):
            raise KeyRevoked(
                f"key {self.key_id} of {self.agency} was revoked at "
                f"{format_time(self.revoked_at)}; no event signed with it is accepted"
            )
        if self.role != "publisher":
            raise KeyNotValid(
                f"key {self.key_id} of {self.agency} is a {self.role} key (it signs a bridge's "
                "audit chain); it never signs events"
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
            raise KeyNotValid(
                f"key {self.key_id} of {self.agency} is valid {self._window()}, but the event "
                f"was created at {format_time(created_at)} (by the event's clock)"
            )
        if now is None:
            return
        if now < self.not_before:
            raise KeyNotValid(
                f"key {self.key_id} of {self.agency} is valid {self._window()}, but it is "
                f"{format_time(now)} by the receiver's clock: not valid yet"
            )
        if self.not_after is not None and now >= self.not_after + grace:
            raise KeyNotValid(
                f"key {self.key_id} of {self.agency} is valid {self._window()}, and it is "
                f"{format_time(now)} by the receiver's clock, past the end and its grace of "
                f"{_duration(grace)}: the key has expired; events must be signed with its "
                "successor"
            )

    def _window(self) -> str:
        end = format_time(self.not_after) if self.not_after else "open end"
        return f"from {format_time(self.not_before)} to {end}"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{span.total_seconds():g} s"


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
        """Read a ``trust.toml``; ``ConfigError`` naming the file and the entry if it is wrong.

        Also refused: a file (or a ``public_key_file`` it names) that group or others may write.
        """
        path = Path(path)
        return cls._parse(path, _read_checked(path, "trust store"))

    @classmethod
    def _parse(cls, path: Path, text: str) -> TrustStore:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
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


def _read_checked(path: Path, what: str) -> str:
    """The text of ``path``, refused if group or others may write it (checked on the open file)."""
    try:
        with path.open("rb") as file:
            _refuse_writable(path, os.fstat(file.fileno()).st_mode, what)
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the {what} is not UTF-8 text: {exc}") from exc


def _refuse_writable(path: Path, mode: int, what: str) -> None:
    # Whoever can change a trust store decides whom the receiver trusts. Windows has no such
    # bits: there the folder's ACLs are the operator's to set.
    if os.name == "posix" and mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path}: the {what} is writable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}), so anyone in them could add a key this receiver "
            f"would trust; run: chmod go-w {path}"
        )


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
    if not isinstance(agency, str) or not AGENCY_ID.fullmatch(agency):
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
        key_path = path.parent / file
        with contextlib.suppress(FileNotFoundError):  # PublicKey.load says it is missing
            _refuse_writable(key_path, key_path.stat().st_mode, "public key file")
        public_key = PublicKey.load(key_path)
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
    role = entry.get("role", "publisher")
    if role not in ROLES:
        raise ConfigError(f"{where}: 'role' must be one of {', '.join(ROLES)}")
    return TrustedKey(
        agency=agency,
        public_key=public_key,
        not_before=not_before,
        not_after=not_after,
        revoked_at=_time(where, entry, "revoked_at"),
        role=role,
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
    ``ConfigError`` and nothing is written. ``dry_run`` does the checks only. The new file
    replaces the old one atomically (temporary file in the same folder, fsync, rename): a crash
    leaves the old store or the new one, never half of one. A new store gets mode 0644 (public
    keys only); an existing one keeps its mode.
    """
    path = Path(path)
    if path.exists():
        text = _read_checked(path, "trust store")
        existing = TrustStore._parse(path, text)
        mode = stat.S_IMODE(path.stat().st_mode)
    else:
        text = "# Exchange Bus trust store (format: bus/trust.py).\n"
        existing = TrustStore(())
        mode = 0o644
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
    if key.role != "publisher":
        lines.append(f'role = "{key.role}"')
    lines.append(f'public_key = """\n{key.public_key.to_pem().decode("ascii")}"""')
    if text and not text.endswith("\n"):
        text += "\n"
    _replace(path, (text + "\n".join(lines) + "\n").encode("utf-8"), mode)


def update_key(
    path: str | Path,
    key_id: str,
    *,
    not_after: datetime | None = None,
    revoked_at: datetime | None = None,
) -> TrustedKey:
    """Set ``not_after`` and/or ``revoked_at`` of the key ``key_id`` in the trust store at
    ``path``; the updated key.

    Only that key's ``[[keys]]`` table changes (its other lines, the comments and the other
    keys stay as they are), and the result is loaded before it replaces the file, atomically
    like :func:`append_key`. ``ConfigError`` if the key is not in the store, or the result
    would not load (say ``not_after`` before ``not_before``): then nothing is written.
    """
    path = Path(path)
    text = _read_checked(path, "trust store")
    TrustStore._parse(path, text)  # a broken store is reported as it is, before any change
    changes = {
        name: value
        for name, value in (("not_after", not_after), ("revoked_at", revoked_at))
        if value is not None
    }
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == "[[keys]]"]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        block = lines[start:end]
        found = TrustStore._parse(path, "".join(block))
        if key_id not in found:
            continue
        kept = [
            line
            for line in block[1:]
            if not any(line.startswith((f"{name} ", f"{name}=")) for name in changes)
        ]
        new = [f'{name} = "{format_time(value)}"\n' for name, value in changes.items()]
        result = "".join([*lines[:start], block[0], *new, *kept, *lines[end:]])
        store = TrustStore._parse(path, result)
        _replace(path, result.encode("utf-8"), stat.S_IMODE(path.stat().st_mode))
        return store.get(key_id)
    raise ConfigError(f"{path}: no key {_printable(key_id)} in the trust store; see bus keys list")


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``: temp file, fsync, rename, fsync dir."""
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the trust store: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise ConfigError(f"{path}: cannot write the trust store: {exc.strerror}") from exc
        raise
    # The rename is durable once the folder is: best effort, some filesystems refuse.
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

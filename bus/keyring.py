"""Signing keys on disk: create an agency's key pair and trust it.

:func:`generate_agency_key` writes, in one folder:

- ``<agency>.key.pem``: the private key, PKCS#8 PEM, readable by the owner only (0600);
- ``<agency>.pub.pem``: the public key, SPKI PEM (0644);
- ``trust.toml``: the trust store (``bus.trust``), with the public key appended (created if
  missing).

Existing key files are never overwritten. ``bus keys generate`` and ``bus local up`` both use it.

Over a key's life:

- :func:`rotate_agency_key` gives the agency a new key, valid from now, and ends the old ones
  after an overlap (their ``not_after``): events signed with an old key keep verifying until
  then, plus the receivers' grace (``bus.trust.DEFAULT_GRACE``). The new key takes the name
  ``<agency>.key.pem`` (what the configuration's ``signing_key`` points to); the old one is kept
  as ``<agency>.<key-id-hex-prefix>.key.pem``. Publishers pick the new key up when they restart:
  start them again within the overlap.
- :func:`revoke_key` revokes a key from a given time (a compromised key: no grace).
- :func:`generate_bridge_key` creates the key a bridge direction signs its audit chain with
  (``bridge.<source>-<destination>.key.pem``, role ``bridge`` of the source agency).

Receivers that use ``bus._reloading.ReloadingTrustStore`` (the bridge, ``open_subscriber``)
see each change within seconds, without a restart.

A new key is valid from a day in the past unless told otherwise (:data:`BACKDATE`). An event's
``created_at`` is set when the event is written, which can be before its key existed (an event
templated first, then signed with a key generated since) or on a machine whose clock runs a
little behind; with a key valid from "now" such events would fail as ``key-not-valid``.
Backdating a new key grants nothing to anyone else: only its holder can sign with it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from bus.errors import ConfigError
from bus.signing import SigningKey
from bus.trust import AGENCY_ID, TrustedKey, TrustStore, append_key, format_time, update_key

__all__ = [
    "BACKDATE",
    "DEFAULT_OVERLAP",
    "TRUST_FILE",
    "bridge_key_path",
    "generate_agency_key",
    "generate_bridge_key",
    "revoke_key",
    "rotate_agency_key",
]

BACKDATE: Final = timedelta(days=1)
"""How far before its creation a new key's validity starts when ``not_before`` is not given."""

DEFAULT_OVERLAP: Final = timedelta(days=7)
"""How long old keys stay valid after a rotation unless told otherwise."""

TRUST_FILE: Final = "trust.toml"
"""Name of the trust store that :func:`generate_agency_key` appends to, in the key folder."""


def generate_agency_key(
    agency: str,
    directory: str | Path,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> SigningKey:
    """Create a signing key for ``agency`` in ``directory`` and add it to the trust store there.

    ``not_before`` defaults to now minus :data:`BACKDATE`; ``not_after`` to no end. Both need a
    UTC offset. The folder is created (owner-only) if missing. Raises ``ConfigError`` naming the
    file when a key file of ``agency`` exists already, the trust store is broken, or a file
    cannot be written; in every case nothing is left half-written.
    """
    if not AGENCY_ID.fullmatch(agency):
        raise ConfigError(f"agency {agency!r}: use a lowercase agency id like interpol")
    for name, moment in (("not_before", not_before), ("not_after", not_after)):
        if moment is not None and moment.tzinfo is None:
            raise ConfigError(f"{name} {moment.isoformat()}: give a time with a UTC offset")
    start = not_before or datetime.now(UTC).replace(microsecond=0) - BACKDATE
    if not_after is not None and not_after <= start:
        raise ConfigError(
            f"not_after {format_time(not_after)} is not later than not_before {format_time(start)}"
        )
    directory = Path(directory)
    key = SigningKey.generate()
    trusted = TrustedKey(
        agency=agency, public_key=key.public_key, not_before=start, not_after=not_after
    )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot create the directory: {exc.strerror}") from exc
    private_path = directory / f"{agency}.key.pem"
    public_path = directory / f"{agency}.pub.pem"
    trust_path = directory / TRUST_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(
                f"{path} exists and a key is never overwritten; remove it, or write the new "
                "key to another folder"
            )
    # Check the trust store before writing anything, so a broken one leaves no stray keys.
    append_key(trust_path, trusted, dry_run=True)
    written: list[Path] = []
    try:
        _write_new(private_path, key.to_pem(), 0o600)
        written.append(private_path)
        _write_new(public_path, key.public_key.to_pem(), 0o644)
        written.append(public_path)
        append_key(trust_path, trusted)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: a file that appeared since the check above is not overwritten either.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} exists and a key is never overwritten; remove it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def rotate_agency_key(
    agency: str,
    directory: str | Path,
    *,
    overlap: timedelta = DEFAULT_OVERLAP,
    now: datetime | None = None,
) -> tuple[SigningKey, list[TrustedKey]]:
    """Give ``agency`` a new signing key valid from ``now`` and end its current keys at
    ``now + overlap``; the new key and the old keys as they are now trusted.

    In ``directory``: the old ``<agency>.key.pem``/``.pub.pem`` are renamed to
    ``<agency>.<key-id-prefix>.key.pem``/``.pub.pem``, the new key takes their names, and the
    trust store gets the new key and the old keys' ``not_after`` (a key that already ends
    sooner keeps its end). ``ConfigError`` if the agency has no key there, or a file cannot be
    written; the trust store is changed last, in one atomic write per key.
    """
    if overlap < timedelta(0):
        raise ConfigError(f"overlap {overlap}: give zero or more")
    directory = Path(directory)
    trust_path = directory / TRUST_FILE
    private_path = directory / f"{agency}.key.pem"
    if not private_path.exists():
        raise ConfigError(
            f"{private_path}: no signing key of {agency} to rotate; create one with "
            f"bus keys generate {agency} --dir {directory}"
        )
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    end = moment + overlap
    current = SigningKey.load(private_path)
    store = TrustStore.load(trust_path)
    old = [
        key
        for key in store.for_agency(agency)
        if key.role == "publisher"
        and key.revoked_at is None
        and (key.not_after is None or key.not_after > end)
    ]
    suffix = current.key_id.split(":")[-1][:12]
    moves = [
        (directory / f"{agency}.{kind}.pem", directory / f"{agency}.{suffix}.{kind}.pem")
        for kind in ("key", "pub")
    ]
    for _, target in moves:
        if target.exists():
            raise ConfigError(f"{target} exists; a key file is never overwritten")
    moved = []
    try:
        for source, target in moves:
            if source.exists():
                os.rename(source, target)
                moved.append((source, target))
        new = generate_agency_key(agency, directory, not_before=moment)
    except BaseException:
        for source, target in reversed(moved):  # the old key goes back where the config says
            os.rename(target, source)
        raise
    updated = [update_key(trust_path, key.key_id, not_after=end) for key in old]
    return new, updated


def revoke_key(directory_or_store: str | Path, key_id: str, *, at: datetime) -> TrustedKey:
    """Revoke ``key_id`` in the trust store (a ``trust.toml``, or the folder holding one) from
    ``at`` on: no event signed with it verifies once a receiver's clock passes ``at``."""
    if at.tzinfo is None:
        raise ConfigError(f"revocation time {at.isoformat()}: give a time with a UTC offset")
    path = Path(directory_or_store)
    if path.is_dir():
        path = path / TRUST_FILE
    return update_key(path, key_id, revoked_at=at)


def bridge_key_path(directory: str | Path, source: str, destination: str) -> Path:
    """Where the private key of the ``source -> destination`` bridge's audit chain is."""
    return Path(directory) / f"bridge.{source}-{destination}.key.pem"


def generate_bridge_key(source: str, destination: str, directory: str | Path) -> SigningKey:
    """Create the audit key of the ``source -> destination`` bridge in ``directory``
    (``bridge.<source>-<destination>.key.pem``, 0600) and trust it there as a ``bridge`` key of
    ``source``. ``ConfigError`` if it exists already (never overwritten)."""
    for agency in (source, destination):
        if not AGENCY_ID.fullmatch(agency):
            raise ConfigError(f"agency {agency!r}: use a lowercase agency id like interpol")
    directory = Path(directory)
    private_path = bridge_key_path(directory, source, destination)
    if private_path.exists():
        raise ConfigError(f"{private_path} exists and a key is never overwritten")
    key = SigningKey.generate()
    trusted = TrustedKey(
        agency=source,
        public_key=key.public_key,
        not_before=datetime.now(UTC).replace(microsecond=0) - BACKDATE,
        role="bridge",
    )
    trust_path = directory / TRUST_FILE
    append_key(trust_path, trusted, dry_run=True)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_new(private_path, key.to_pem(), 0o600)
    try:
        append_key(trust_path, trusted)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return key

"""Signing keys on disk: create an agency's key pair and trust it.

:func:`generate_agency_key` writes, in one folder:

- ``<agency>.key.pem``: the private key, PKCS#8 PEM, readable by the owner only (0600);
- ``<agency>.pub.pem``: the public key, SPKI PEM (0644);
- ``trust.toml``: the trust store (``bus.trust``), with the public key appended (created if
  missing).

Existing key files are never overwritten. ``bus keys generate`` and ``bus local up`` both use it.

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
from bus.trust import AGENCY_ID, TrustedKey, append_key, format_time

__all__ = ["BACKDATE", "TRUST_FILE", "generate_agency_key"]

BACKDATE: Final = timedelta(days=1)
"""How far before its creation a new key's validity starts when ``not_before`` is not given."""

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

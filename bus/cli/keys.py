"""``bus keys``: Ed25519 signing keys and the trust store."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from bus.cli._common import fail_on_bus_error
from bus.errors import ConfigError
from bus.signing import SigningKey
from bus.trust import AGENCY_ID, TrustedKey, append_key

__all__ = ["keys"]


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(f"{option} {value!r}: give an RFC 3339 time like 2026-01-01T00:00:00Z")
    return moment


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} exists; remove it or choose another --dir") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@click.group()
def keys() -> None:
    """Ed25519 signing keys and the trust store."""


@keys.command()
@click.argument("agency")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for AGENCY.key.pem, AGENCY.pub.pem and trust.toml (created if missing).",
)
@click.option("--not-before", help="Start of validity, RFC 3339 (default: now).")
@click.option("--not-after", help="End of validity, RFC 3339 (default: none).")
@fail_on_bus_error
def generate(agency: str, directory: Path, not_before: str | None, not_after: str | None) -> None:
    """Create a signing key for AGENCY and trust it.

    Writes DIR/AGENCY.key.pem (PKCS#8, owner-only), DIR/AGENCY.pub.pem (SPKI) and adds the
    public key to DIR/trust.toml. Prints the key id. Existing key files are never overwritten.
    """
    if not AGENCY_ID.match(agency):
        raise ConfigError(f"agency {agency!r}: use a lowercase agency id like interpol")
    start = _moment(not_before, "--not-before") or datetime.now(UTC).replace(microsecond=0)
    end = _moment(not_after, "--not-after")
    key = SigningKey.generate()
    trusted = TrustedKey(agency=agency, public_key=key.public_key, not_before=start, not_after=end)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot create the directory: {exc.strerror}") from exc
    private_path = directory / f"{agency}.key.pem"
    public_path = directory / f"{agency}.pub.pem"
    trust_path = directory / "trust.toml"
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} exists; remove it or choose another --dir")
    # Check the trust store before writing anything, so a broken one leaves no stray keys.
    append_key(trust_path, trusted, dry_run=True)
    _write_new(private_path, key.to_pem(), 0o600)
    _write_new(public_path, key.public_key.to_pem(), 0o644)
    append_key(trust_path, trusted)
    click.echo(f"wrote {private_path}, {public_path}; trusted in {trust_path}", err=True)
    click.echo(key.key_id)

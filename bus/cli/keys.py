"""``bus keys``: Ed25519 signing keys and the trust store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from bus.cli._common import fail_on_bus_error
from bus.errors import ConfigError
from bus.keyring import TRUST_FILE, generate_agency_key

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
@click.option(
    "--not-before",
    help="Start of validity, RFC 3339 (default: a day ago, so that events created just before "
    "the key still verify).",
)
@click.option("--not-after", help="End of validity, RFC 3339 (default: none).")
@fail_on_bus_error
def generate(agency: str, directory: Path, not_before: str | None, not_after: str | None) -> None:
    """Create a signing key for AGENCY and trust it.

    Writes DIR/AGENCY.key.pem (PKCS#8, owner-only), DIR/AGENCY.pub.pem (SPKI) and adds the
    public key to DIR/trust.toml. Prints the key id. Existing key files are never overwritten.
    """
    key = generate_agency_key(
        agency,
        directory,
        not_before=_moment(not_before, "--not-before"),
        not_after=_moment(not_after, "--not-after"),
    )
    click.echo(
        f"wrote {directory / f'{agency}.key.pem'}, {directory / f'{agency}.pub.pem'}; "
        f"trusted in {directory / TRUST_FILE}",
        err=True,
    )
    click.echo(key.key_id)

"""``bus keys``: Ed25519 signing keys and the trust store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from bus.cli._common import fail_on_bus_error, rfc3339_time
from bus.keyring import TRUST_FILE, generate_agency_key

__all__ = ["keys"]


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
    callback=rfc3339_time,
    help="Start of validity, RFC 3339 (default: a day ago, so that events created just before "
    "the key still verify).",
)
@click.option(
    "--not-after", callback=rfc3339_time, help="End of validity, RFC 3339 (default: none)."
)
@fail_on_bus_error
def generate(
    agency: str, directory: Path, not_before: datetime | None, not_after: datetime | None
) -> None:
    """Create a signing key for AGENCY and trust it.

    Writes DIR/AGENCY.key.pem (PKCS#8, owner-only), DIR/AGENCY.pub.pem (SPKI) and adds the
    public key to DIR/trust.toml. Prints the key id. Existing key files are never overwritten.
    """
    key = generate_agency_key(
        agency,
        directory,
        not_before=not_before,
        not_after=not_after,
    )
    click.echo(
        f"wrote {directory / f'{agency}.key.pem'}, {directory / f'{agency}.pub.pem'}; "
        f"trusted in {directory / TRUST_FILE}",
        err=True,
    )
    click.echo(key.key_id)

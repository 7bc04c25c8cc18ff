"""``bus keys``: Ed25519 signing keys and the trust store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from bus.cli._common import fail_on_bus_error, rfc3339_time
from bus.keyring import (
    DEFAULT_OVERLAP,
    TRUST_FILE,
    generate_agency_key,
    generate_bridge_key,
    revoke_key,
    rotate_agency_key,
)
from bus.trust import TrustStore, format_time

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


_DIR = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The key folder: AGENCY.key.pem, AGENCY.pub.pem and trust.toml.",
)


@keys.command()
@click.argument("agency")
@_DIR
@click.option(
    "--overlap-hours",
    type=click.FloatRange(min=0),
    default=DEFAULT_OVERLAP.total_seconds() / 3600,
    show_default=True,
    help="How long the old keys stay valid after now (receivers add their grace).",
)
@fail_on_bus_error
def rotate(agency: str, directory: Path, overlap_hours: float) -> None:
    """Give AGENCY a new signing key, valid from now, and end its old keys after an overlap.

    The new key becomes DIR/AGENCY.key.pem (restart the publishers within the overlap); the
    old one is kept as DIR/AGENCY.<id>.key.pem. The bridge and subscribers reading
    DIR/trust.toml pick the change up without a restart. Prints the new key id.
    """
    new, old = rotate_agency_key(agency, directory, overlap=timedelta(hours=overlap_hours))
    for key in old:
        end = format_time(key.not_after) if key.not_after else "open end"
        click.echo(f"{key.key_id}: valid until {end}", err=True)
    click.echo(new.key_id)


@keys.command()
@click.argument("key_id")
@_DIR
@click.option(
    "--from",
    "start",
    callback=rfc3339_time,
    help="From when the key is revoked, RFC 3339 (default: now).",
)
@fail_on_bus_error
def revoke(key_id: str, directory: Path, start: datetime | None) -> None:
    """Revoke KEY_ID in DIR/trust.toml: no event signed with it verifies from then on.

    Receivers reading the trust store apply it within seconds, without a restart.
    """
    key = revoke_key(directory, key_id, at=start or datetime.now(UTC))
    assert key.revoked_at is not None
    click.echo(f"{key.key_id} of {key.agency}: revoked from {format_time(key.revoked_at)}")


@keys.command()
@click.argument("direction")
@_DIR
@fail_on_bus_error
def bridge(direction: str, directory: Path) -> None:
    """Create the audit key of the bridge DIRECTION (SOURCE-DESTINATION, e.g. interpol-europol).

    Writes DIR/bridge.SOURCE-DESTINATION.key.pem (owner-only) and trusts its public key in
    DIR/trust.toml as a bridge key of SOURCE: `bus bridge run` signs its audit chain with it,
    `bus audit verify` checks it. Prints the key id.
    """
    source, _, destination = direction.partition("-")
    if not source or not destination:
        raise click.BadParameter("give SOURCE-DESTINATION, e.g. interpol-europol")
    key = generate_bridge_key(source, destination, directory)
    click.echo(key.key_id)


@keys.command("list")
@click.option(
    "--trust",
    "trust_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The trust store (trust.toml).",
)
@fail_on_bus_error
def list_(trust_path: Path) -> None:
    """List the keys of a trust store: agency, role, key id, validity, revocation."""
    for key in TrustStore.load(trust_path):
        end = format_time(key.not_after) if key.not_after else "-"
        revoked = format_time(key.revoked_at) if key.revoked_at else "-"
        click.echo(
            f"{key.agency}\t{key.role}\t{key.key_id}\t{format_time(key.not_before)}\t{end}\t"
            f"{revoked}"
        )

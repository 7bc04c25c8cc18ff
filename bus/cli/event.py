"""``bus event``: example events, signing, verification and inspection of Kafka values.

Exit status of ``bus event verify``: 0 the record verified, 1 the record was rejected (one line
on stderr with the reason code, e.g. ``bad-signature``), 2 any other error (unreadable files,
a broken trust store, a usage error).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import click

from bus import envelope, events
from bus.cli._common import fail_on_bus_error, key_option, rfc3339_time, trust_option
from bus.errors import ConfigError, RecordRejected
from bus.signing import SigningKey
from bus.trust import TrustStore

__all__ = ["event"]

_EXIT_REJECTED = 1


def _read(stream: BinaryIO, limit: int) -> bytes:
    # Read one byte past the limit so that an oversized record is recognised, not truncated.
    return stream.read(limit + 1)


@click.group()
def event() -> None:
    """Example events, and signing, verifying and showing Kafka values."""


@event.command()
@click.option(
    "--area",
    type=click.Choice(events.CRIME_AREAS, case_sensitive=False),
    default="OTHER",
    show_default=True,
    help="Crime area of the example.",
)
@click.option("--agency", default="interpol", show_default=True, help="Origin agency id.")
@fail_on_bus_error
def template(area: str, agency: str) -> None:
    """Print a complete, valid example event as JSON (docs/event-json.md)."""
    click.echo(events.to_json(events.template(area.upper(), agency=agency)))


@event.command()
@key_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the value here instead of to stdout.",
)
@click.argument("event_json", type=click.File("rb"))
@fail_on_bus_error
def sign(key_path: Path, output: Path | None, event_json: BinaryIO) -> None:
    """Sign EVENT_JSON (a file, or - for stdin) and write the Kafka value bytes.

    The value is a single-object-encoded SignedEvent (docs/wire-format.md).
    """
    key = SigningKey.load(key_path)
    value = envelope.seal(events.from_json(event_json.read()), key)
    if output is None:
        stdout = click.get_binary_stream("stdout")
        if stdout.isatty():
            raise ConfigError("the value is binary: redirect stdout or use -o FILE")
        stdout.write(value)
        stdout.flush()
        return
    try:
        output.write_bytes(value)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror}") from exc


@event.command()
@click.argument("value_file", type=click.File("rb"))
@trust_option(required=True, help="Trust store (trust.toml).")
@click.option(
    "--max-size",
    type=click.IntRange(min=1),
    default=envelope.DEFAULT_MAX_SIZE,
    show_default=True,
    help="Largest record accepted, in bytes.",
)
@click.option(
    "--at",
    callback=rfc3339_time,
    default=None,
    metavar="TIME",
    help="Judge the keys as a receiver whose clock reads this RFC 3339 time (default: now), "
    "e.g. to check an old record as it was received.",
)
@fail_on_bus_error
def verify(value_file: BinaryIO, trust_path: Path, max_size: int, at: datetime | None) -> None:
    """Verify a Kafka value (a file, or - for stdin) and print its event as JSON.

    The key must be valid at the event's created_at and, within the grace, by this host's clock
    (or --at). Exit 0 if it verified; 1 with the reason on stderr if the record is rejected; 2
    on other errors.
    """
    trust = TrustStore.load(trust_path)
    value = _read(value_file, max_size)
    try:
        verified = envelope.open_(value, trust, now=at, max_size=max_size)
    except RecordRejected as exc:
        click.echo(f"bus: rejected ({exc.reason}): {exc}", err=True)
        sys.exit(_EXIT_REJECTED)
    click.echo(events.to_json(verified.event))
    click.echo(f"bus: verified: signed by {verified.agency} with key {verified.key_id}", err=True)


@event.command()
@click.argument("value_file", type=click.File("rb"))
@click.option(
    "--max-size",
    type=click.IntRange(min=1),
    default=envelope.DEFAULT_MAX_SIZE,
    show_default=True,
    help="Largest record accepted, in bytes.",
)
@fail_on_bus_error
def show(value_file: BinaryIO, max_size: int) -> None:
    """Decode a Kafka value WITHOUT verifying it and print its event as JSON.

    Nothing is checked but the framing: use ``bus event verify`` before trusting the contents.
    """
    try:
        unverified = envelope.peek(_read(value_file, max_size), max_size=max_size)
    except RecordRejected as exc:
        click.echo(f"bus: rejected ({exc.reason}): {exc}", err=True)
        sys.exit(_EXIT_REJECTED)
    click.echo(
        f"bus: NOT VERIFIED: signature and key {unverified.key_id!r} were not checked",
        err=True,
    )
    click.echo(events.to_json(unverified.event))

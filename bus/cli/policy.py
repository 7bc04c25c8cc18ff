"""``bus policy``: check a release-policy file, and explain why an event would or would not cross.

Exit status of ``bus policy check``: 0 the file is a valid policy, 1 it is not (the error names
the file and the entry), 2 a usage error.

Exit status of ``bus policy explain``: 0 the event would cross, 1 it would not (a policy rule
denies it, or a signed record fails verification), 2 any other error (unreadable or invalid
event, policy or configuration).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click

from bus import envelope, events
from bus.cli._common import (
    config_option,
    fail_on_bus_error,
    load_cli_config,
    policy_option,
    rfc3339_time,
    trust_option,
)
from bus.codec import MARKER
from bus.errors import ConfigError, PolicyError, RecordRejected
from bus.policy import Direction, Policy, ReleaseRequest, load_policy
from bus.trust import TrustStore

__all__ = ["policy"]

_EXIT_NO = 1


@click.group()
def policy() -> None:
    """Check release policies and explain their decisions (docs/policy.md)."""


@policy.command()
@click.argument("policy_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
def check(policy_file: Path) -> None:
    """Validate the policy FILE and summarise what it releases.

    Exit 0 if it is valid, 1 with the error (file and entry) on stderr if it is not.
    """
    try:
        loaded = load_policy(policy_file)
    except PolicyError as exc:
        click.echo(f"bus: invalid policy: {exc}", err=True)
        sys.exit(_EXIT_NO)
    click.echo(
        f"{policy_file}: valid: {len(loaded.agencies)} agencies "
        f"({', '.join(sorted(loaded.agencies))}), {len(loaded.directions)} directions; "
        "anything else is denied"
    )
    for direction in loaded.directions.values():
        click.echo(_summary(direction))


def _summary(direction: Direction) -> str:
    return (
        f"  {direction.name}: crime areas {', '.join(sorted(direction.crime_areas))}; "
        f"TLP {', '.join(sorted(direction.tlp))}; "
        f"handling {', '.join(sorted(direction.handling_codes))}; "
        f"onward forwarding {'allowed' if direction.onward_forwarding else 'denied'}; "
        f"H3 {'released by machine' if direction.release_h3 else 'never released by machine'}"
    )


@policy.command()
@click.option("--to", "destination", required=True, help="Agency the event would go to.")
@click.option(
    "--from",
    "source",
    default=None,
    help="Agency whose cluster the bridge reads (default: the event's origin).",
)
@policy_option
@config_option
@click.option(
    "--path",
    "hops",
    multiple=True,
    metavar="AGENCY",
    help="An agency the event already passed (repeat, oldest first), as in the hop headers.",
)
@click.option(
    "--at",
    callback=rfc3339_time,
    default=None,
    metavar="TIME",
    help="Decide as of this RFC 3339 time (default: now), e.g. to check expiry.",
)
@trust_option(
    help="Trust store: verify a signed record before deciding (otherwise it is only decoded)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as one JSON object.")
@click.argument("event_file", metavar="EVENT", type=click.File("rb"))
@fail_on_bus_error
def explain(
    destination: str,
    source: str | None,
    policy_path: Path | None,
    config_path: Path | None,
    hops: tuple[str, ...],
    at: datetime | None,
    trust_path: Path | None,
    as_json: bool,
    event_file: BinaryIO,
) -> None:
    """Tell whether EVENT would cross to --to, the rule that decided and why.

    EVENT is a file (or - for stdin) holding either the event's JSON form or a signed record
    (the Kafka value bytes, starting with C3 01). Exit 0 if it would cross, 1 if not.
    """
    loaded = _policy(policy_path, config_path)
    event = _event(event_file, trust_path, at)
    origin = str(event["origin"]["agency"])
    request = ReleaseRequest.from_event(
        event,
        source=source or origin,
        destination=destination,
        path=hops,
        now=at or datetime.now(UTC),
    )
    decision = loaded.decide(request)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "event_id": request.event_id,
                    "origin": request.origin,
                    "source": request.source,
                    "destination": request.destination,
                    "allowed": decision.allowed,
                    "rule": str(decision.rule),
                    "reason": decision.reason,
                }
            )
        )
    else:
        verdict = "would cross" if decision.allowed else "would NOT cross"
        click.echo(f"event {request.event_id} (origin {request.origin})")
        click.echo(f"{request.source} -> {request.destination}: {verdict}")
        click.echo(f"rule:   {decision.rule}")
        click.echo(f"reason: {decision.reason}")
    sys.exit(0 if decision.allowed else _EXIT_NO)


def _policy(policy_file: Path | None, config_path: Path | None) -> Policy:
    if policy_file is None:
        config = load_cli_config(config_path)
        policy_file = config.policy_file
        if policy_file is None:
            raise ConfigError(
                f"{config.path or 'configuration'}: no [policy] file configured; pass --policy FILE"
            )
    return load_policy(policy_file)


def _event(event_file: BinaryIO, trust_path: Path | None, at: datetime | None) -> dict[str, Any]:
    data = event_file.read(envelope.DEFAULT_MAX_SIZE + 1)
    if not data.startswith(MARKER):
        return events.from_json(data)
    try:
        if trust_path is None:
            unverified = envelope.peek(data)
            click.echo(
                f"bus: NOT VERIFIED: signature and key {unverified.key_id!r} were not checked "
                "(pass --trust to verify)",
                err=True,
            )
            return unverified.event
        return envelope.open_(data, TrustStore.load(trust_path), now=at).event
    except RecordRejected as exc:
        # The bridge quarantines such a record: it never crosses, whatever the policy says.
        click.echo(f"bus: rejected ({exc.reason}): {exc}; it would NOT cross", err=True)
        sys.exit(_EXIT_NO)

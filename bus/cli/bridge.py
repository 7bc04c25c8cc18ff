"""``bus bridge``: replicate released events from one agency's cluster to another's."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from bus.bridge import BridgeSettings, Replicator
from bus.cli._common import (
    config_option,
    fail_on_bus_error,
    load_cli_config,
    policy_option,
    trust_option,
    worker_datadir,
    worker_trust,
)
from bus.errors import ConfigError
from bus.keyring import bridge_key_path
from bus.policy import load_policy
from bus.signing import SigningKey
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW

__all__ = ["bridge"]


@click.group()
def bridge() -> None:
    """Replicate released events between the agencies' clusters."""


@bridge.command()
@click.option("--from", "source", required=True, help="Agency whose events are moved.")
@click.option(
    "--to",
    "destinations",
    required=True,
    multiple=True,
    help="Agency that receives the mirror (repeatable: one process hosts several directions "
    "of the --from agency).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="Source topic to move (repeatable; default: the events topic). Never a mirror.",
)
@policy_option
@trust_option(help="Trust store (default: the --from agency's trust_store in the configuration).")
@click.option(
    "--audit-key",
    "audit_key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The direction's bridge key, which signs its audit chains (default: "
    "bridge.FROM-TO.key.pem beside the trust store; `bus keys bridge FROM-TO` creates it). "
    "Only with one --to.",
)
@click.option("--bridge-id", default=None, help="Name of this worker (default: host and pid).")
@click.option("--web-host", default="127.0.0.1", show_default=True)
@click.option("--web-port", default=6066, show_default=True, type=int)
@click.option("--verify-threads", default=0, show_default=True, type=int)
@click.option("--max-batch", default=500, show_default=True, type=int)
@click.option(
    "--operation-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds before a write or commit counts as failed (then reopened and retried).",
)
@click.option(
    "--key-grace",
    default=DEFAULT_GRACE.total_seconds(),
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds past a key's end, by this host's clock, that events signed with it still cross.",
)
@click.option(
    "--max-clock-skew",
    default=DEFAULT_MAX_SKEW.total_seconds(),
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds an event's created_at may be ahead of this host's clock.",
)
@click.option(
    "--replay-capacity",
    default=200_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Event ids whose forwarded revision a worker remembers (replays and rollbacks).",
)
@click.option(
    "--replay-window-days",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Days a forwarded revision is remembered (and kept on the destination).",
)
@click.option("--loglevel", default="info", show_default=True)
@config_option
@fail_on_bus_error
def run(
    source: str,
    destinations: tuple[str, ...],
    topics: tuple[str, ...],
    policy_path: Path | None,
    trust_path: Path | None,
    audit_key_path: Path | None,
    bridge_id: str | None,
    web_host: str,
    web_port: int,
    verify_threads: int,
    max_batch: int,
    operation_timeout: float,
    key_grace: float,
    max_clock_skew: float,
    replay_capacity: int,
    replay_window_days: float,
    loglevel: str,
    config_path: Path | None,
) -> None:
    """Run one worker of the SOURCE->DESTINATION bridge until SIGTERM or SIGINT.

    Serves /metrics and /healthz on the web port. Run more workers of the same direction to
    share the partitions. With several --to, the one process runs a worker of each direction
    SOURCE->DESTINATION (each its own clients and consumer group, as if alone), sharing the
    trust store, the web port and the metrics; if one fails, the process exits.
    """
    config = load_cli_config(config_path)
    if len(set(destinations)) != len(destinations):
        raise ConfigError(f"bridge {source}: a --to is given twice: {', '.join(destinations)}")
    if audit_key_path is not None and len(destinations) > 1:
        raise ConfigError(
            f"bridge {source}: --audit-key names one direction's key; with several --to each "
            "direction's key is read from beside the trust store"
        )
    directions = [
        BridgeSettings.from_config(
            config,
            source=source,
            destination=destination,
            topics=topics,
            bridge_id=bridge_id,
            verify_threads=verify_threads,
            max_batch=max_batch,
            operation_timeout_s=operation_timeout,
            key_grace_s=key_grace,
            max_clock_skew_s=max_clock_skew,
            replay_capacity=replay_capacity,
            replay_window_s=replay_window_days * 24 * 3600,
        )
        for destination in destinations
    ]
    settings = directions[0]
    policy_file = policy_path or config.policy_file
    if policy_file is None:
        raise ConfigError(f"{config.path}: no [policy] file configured; pass --policy FILE")
    trust_file, registry, trust = worker_trust(config, source, trust_path)
    # Loaded before the worker starts, so that a bad file fails here with its name.
    policy = load_policy(policy_file)
    replicators = [
        Replicator(
            direction,
            trust=trust,
            policy=policy,
            registry=registry,
            audit_signer=_audit_signer(direction, audit_key_path, trust_file.parent),
        )
        for direction in directions
    ]

    # Faust is imported only here: the rest of the CLI stays quick to start.
    from bus.bridge.app import create_app, run_worker

    datadir = worker_datadir(config, "bridge")
    app = create_app(
        settings,
        replicators,
        registry=registry,
        web_host=web_host,
        web_port=web_port,
        datadir=datadir,
        trust=trust,
    )
    run_worker(app, replicators, loglevel=loglevel)


def _audit_signer(
    settings: BridgeSettings, audit_key_path: Path | None, keys_dir: Path
) -> SigningKey | None:
    """The direction's bridge key: ``audit_key_path``, else the default one beside the trust
    store if it exists; None (with a warning) when there is none."""
    source, destination = settings.source.name, settings.destination.name
    audit_key_file = audit_key_path or bridge_key_path(keys_dir, source, destination)
    if audit_key_path is not None or audit_key_file.exists():
        return SigningKey.load(audit_key_file)
    logging.getLogger("bus.bridge").warning(
        "bridge %s->%s: no bridge key at %s, so its audit chains are written unsigned and "
        "`bus audit verify` will report them; create it with: bus keys bridge %s-%s --dir %s",
        source,
        destination,
        audit_key_file,
        source,
        destination,
        audit_key_file.parent,
    )
    return None

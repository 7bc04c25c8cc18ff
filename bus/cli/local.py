"""``bus local``: the local federation of real Kafka clusters, one per agency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from bus import local as federation
from bus.cli._common import fail_on_bus_error
from bus.config import default_home, default_jar_cache, java_home
from bus.local._install import ensure_jars, find_java, kafka_version

__all__ = ["local"]


def _echo(line: str) -> None:
    click.echo(line, err=True)


def _spec(
    home: Path | None,
    agencies: str | None = None,
    base_port: int | None = None,
    heap_mb: int | None = None,
    partitions: int | None = None,
) -> federation.FederationSpec:
    return federation.load_spec(
        home or default_home(),
        agencies=tuple(a.strip() for a in agencies.split(",") if a.strip()) if agencies else None,
        base_port=base_port,
        heap_mb=heap_mb,
        partitions=partitions,
        java_home=java_home(),
    )


home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State folder of the federation (default: $BUS_HOME, else ~/.local/state/exchange-bus).",
)


@click.group()
def local() -> None:
    """Run real Apache Kafka clusters (KRaft), one per agency, on this machine."""


@local.command()
@fail_on_bus_error
def install() -> None:
    """Check Java and fetch the Apache Kafka jars with Maven (once; they are cached)."""
    java = find_java(java_home())
    lib = ensure_jars(default_jar_cache(kafka_version()), log=_echo)
    click.echo(f"java: {java}")
    click.echo(f"kafka {kafka_version()} jars: {lib}")


@local.command()
@home_option
@click.option(
    "--agencies",
    default=None,
    help="Comma-separated agency ids (default: the last started, else interpol,europol).",
)
@click.option("--base-port", type=int, default=None, help="First port (default 19092).")
@click.option("--heap-mb", type=int, default=None, help="JVM heap of each node (default 512).")
@click.option(
    "--partitions", type=int, default=None, help="Partitions of intel.events (default 6)."
)
@fail_on_bus_error
def up(
    home: Path | None,
    agencies: str | None,
    base_port: int | None,
    heap_mb: int | None,
    partitions: int | None,
) -> None:
    """Start the federation (harmless when it runs) and write its configuration."""
    spec = _spec(home, agencies, base_port, heap_mb, partitions)
    asyncio.run(federation.up(spec, log=_echo))
    click.echo(f"configuration: {spec.config_file}")
    for node in spec.nodes():
        click.echo(f"{node.agency}\t{node.bootstrap}")


@local.command()
@home_option
@fail_on_bus_error
def down(home: Path | None) -> None:
    """Stop every node (SIGTERM, then wait). Data is kept for the next `up`."""
    federation.down(_spec(home), log=_echo)


@local.command()
@home_option
@fail_on_bus_error
def status(home: Path | None) -> None:
    """Show each cluster: process, address, cluster id, topics, memory. Exit 1 if one is down."""
    statuses = asyncio.run(federation.status(_spec(home)))
    for s in statuses:
        state = "running" if s.reachable else ("starting/unreachable" if s.running else "stopped")
        memory = f"{s.rss_mib:.0f} MiB" if s.rss_mib is not None else "-"
        click.echo(
            f"{s.node.agency:<12} {state:<10} pid={s.pid or '-'} {s.node.bootstrap} "
            f"cluster={s.cluster_id or '-'} rss={memory} topics={','.join(s.topics) or '-'}"
        )
    if not all(s.reachable for s in statuses):
        raise SystemExit(1)


@local.command()
@home_option
@click.confirmation_option(prompt="Stop the federation and delete all its data?")
@fail_on_bus_error
def reset(home: Path | None) -> None:
    """Stop the federation and wipe its data, logs, keys and configuration."""
    federation.reset(_spec(home), log=_echo)

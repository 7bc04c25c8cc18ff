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
    insecure_plaintext: bool | None = None,
) -> federation.FederationSpec:
    return federation.load_spec(
        home or default_home(),
        insecure_plaintext=insecure_plaintext,
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
@click.option(
    "--insecure-plaintext",
    is_flag=True,
    default=False,
    help="DEVELOPMENT ONLY: plaintext listeners, no client certificates, no ACLs. "
    "Without it (the default) every listener requires mutual TLS and ACLs apply.",
)
@fail_on_bus_error
def up(
    home: Path | None,
    agencies: str | None,
    base_port: int | None,
    heap_mb: int | None,
    partitions: int | None,
    insecure_plaintext: bool,
) -> None:
    """Start the federation (harmless when it runs) and write its configuration.

    Every listener requires a client certificate of the agency's CA (made here, under
    tls/), and the ACLs of docs/security.md are created; `bus local acls` prints them.
    """
    spec = _spec(home, agencies, base_port, heap_mb, partitions, insecure_plaintext)
    if insecure_plaintext:
        click.secho(
            "WARNING: --insecure-plaintext: no TLS, no authentication, no ACLs. Anyone who "
            "reaches a port can read RED events and write into any topic.",
            fg="red",
            bold=True,
            err=True,
        )
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
        for name, not_after in s.certificates:
            click.echo(f"{'':<12} certificate {name:<36} expires {not_after:%Y-%m-%d %H:%M} UTC")
    if not all(s.reachable for s in statuses):
        raise SystemExit(1)


@local.command()
@home_option
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "commands"]),
    default="table",
    show_default=True,
    help="A table, or the kafka-acls.sh commands that create them on real clusters.",
)
@fail_on_bus_error
def acls(home: Path | None, output: str) -> None:
    """Print the ACLs that `bus local up` creates on each cluster (docs/security.md).

    Everything not listed is denied; the node and the agency's admin are super users.
    """
    spec = _spec(home)
    for node in spec.nodes():
        rules = federation.cluster_acls(spec.agencies, spec.topics)[node.agency]
        click.echo(f"# {node.agency} ({node.bootstrap})")
        if output == "commands":
            for line in federation.kafka_acls_commands(
                node.agency, rules, bootstrap=node.bootstrap
            ):
                click.echo(line)
        else:
            click.echo(f"{'permission':<10} {'principal':<32} {'operation':<16} resource")
            for a in rules:
                pattern = " (prefix)" if a.prefixed else ""
                click.echo(
                    f"{'DENY' if a.deny else 'ALLOW':<10} User:{a.principal:<27} "
                    f"{a.operation:<16} {a.resource}:{a.name}{pattern}"
                )
        click.echo("")


@local.command()
@home_option
@click.confirmation_option(prompt="Stop the federation and delete all its data?")
@fail_on_bus_error
def reset(home: Path | None) -> None:
    """Stop the federation and wipe its data, logs, keys and configuration."""
    federation.reset(_spec(home), log=_echo)

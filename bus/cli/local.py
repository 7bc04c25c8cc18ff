"""``bus local``: the local federation of real Kafka clusters, one per agency."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from bus import local as federation
from bus.cli._common import fail_on_bus_error
from bus.config import default_home, default_jar_cache, java_home
from bus.errors import LocalClusterError
from bus.local._install import ensure_jars, find_java, kafka_version
from bus.local._supervisor import run_supervisor

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
    brokers: int | None = None,
) -> federation.FederationSpec:
    return federation.load_spec(
        home or default_home(),
        insecure_plaintext=insecure_plaintext,
        agencies=tuple(a.strip() for a in agencies.split(",") if a.strip()) if agencies else None,
        base_port=base_port,
        heap_mb=heap_mb,
        partitions=partitions,
        brokers=brokers,
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
    "--brokers",
    type=click.IntRange(1, federation.MAX_BROKERS),
    default=None,
    help="Nodes per agency's cluster (default 1). With 3: a KRaft quorum of 3, replication "
    "factor 3 and min.insync.replicas 2 for every topic. Fixed once the clusters have data.",
)
@click.option("--no-bridges", is_flag=True, help="Start no bridge.")
@click.option("--no-correlators", is_flag=True, help="Start no correlator.")
@click.option("--no-prometheus", is_flag=True, help="Start neither Prometheus nor Alertmanager.")
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
    brokers: int | None,
    no_bridges: bool,
    no_correlators: bool,
    no_prometheus: bool,
    insecure_plaintext: bool,
) -> None:
    """Start the federation (harmless when it runs) and write its configuration.

    The clusters (each node with the Prometheus JMX exporter), then, under a supervisor that
    restarts one that exits, a bridge worker per agency (hosting its directions to every other
    agency), a correlator per agency, Prometheus and Alertmanager (ports after the clusters').
    Returns once every direction replicates, every correlator is healthy and Prometheus answers.
    Every listener requires a client certificate of the agency's CA (made here, under tls/),
    and the ACLs of docs/security.md are created; `bus local acls` prints them.
    """
    started = time.monotonic()
    spec = _spec(home, agencies, base_port, heap_mb, partitions, insecure_plaintext, brokers)
    if insecure_plaintext:
        click.secho(
            "WARNING: --insecure-plaintext: no TLS, no authentication, no ACLs. Anyone who "
            "reaches a port can read RED events and write into any topic.",
            fg="red",
            bold=True,
            err=True,
        )
    asyncio.run(federation.up(spec, log=_echo))
    if not (no_bridges and no_correlators and no_prometheus):
        federation.start_supervised(
            spec,
            log=_echo,
            with_bridges=not no_bridges,
            with_correlators=not no_correlators,
            with_prometheus=not no_prometheus,
        )
    _echo(f"up in {time.monotonic() - started:.1f} s; `bus local status` shows every process")
    click.echo(f"configuration: {spec.config_file}")
    for agency in spec.agencies:
        click.echo(f"{agency}\t{','.join(spec.bootstrap_servers(agency))}")
    if not no_bridges:
        for bridge in federation.bridges(spec):
            click.echo(f"{bridge.name}\t{bridge.url}/metrics")
    if not no_correlators:
        for correlator in federation.correlators(spec):
            click.echo(f"{correlator.name}\t{correlator.url}/metrics")
    if not no_prometheus:
        # Where to look: Prometheus, the console page it serves, Alertmanager.
        for name, url in federation.service_urls(spec).items():
            click.echo(f"{name}\t{url}")


@local.command(hidden=True)
@home_option
@click.option("--no-bridges", is_flag=True, help="Supervise no bridge.")
@click.option("--no-correlators", is_flag=True, help="Supervise no correlator.")
@click.option("--no-prometheus", is_flag=True, help="Supervise no Prometheus, no Alertmanager.")
@fail_on_bus_error
def supervise(
    home: Path | None, no_bridges: bool, no_correlators: bool, no_prometheus: bool
) -> None:
    """Run the supervisor in the foreground (`bus local up` starts it detached)."""
    run_supervisor(
        _spec(home),
        with_bridges=not no_bridges,
        with_correlators=not no_correlators,
        with_prometheus=not no_prometheus,
    )


@local.command()
@home_option
@fail_on_bus_error
def down(home: Path | None) -> None:
    """Stop the bridges and correlators, then Prometheus and Alertmanager (through their
    supervisor), then every node. Data is kept."""
    federation.down(_spec(home), log=_echo)


@local.command()
@home_option
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"processes": [...]}.')
@fail_on_bus_error
def status(home: Path | None, as_json: bool) -> None:
    """Show every process: clusters, bridge workers and each of their directions (health, lag,
    restarts), correlators, the supervisor, Prometheus and Alertmanager (health from
    /-/healthy).

    Exit status 1 if a cluster is not reachable or a supervised process is not healthy.
    """
    rows = asyncio.run(federation.process_status(_spec(home)))
    if as_json:
        click.echo(json.dumps({"processes": [row.as_dict() for row in rows]}, indent=2))
    else:
        click.echo(federation.render_table(rows))
        for row in rows:
            for name, not_after in row.certificates:
                click.echo(f"{row.name:<12} certificate {name:<36} expires {not_after}")
    if not all(row.ok for row in rows):
        raise SystemExit(1)


@local.command()
@home_option
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is appended.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True)
@fail_on_bus_error
def logs(home: Path | None, name: str | None, follow: bool, lines: int) -> None:
    """Show the log of NAME: an agency (its node; AGENCY-N for node N of a larger cluster), a
    bridge worker (bridge.FROM), a correlator (correlator.AGENCY), `supervisor`, `prometheus`
    or `alertmanager`.

    Without NAME, the supervisor's log (bridges and correlators started, exited, restarted).
    """
    files = federation.log_files(_spec(home))
    name = name or "supervisor"
    if name not in files:
        raise LocalClusterError(f"no process named {name!r}; give one of: {', '.join(files)}")
    path = files[name]
    if not path.exists() and not follow:
        raise LocalClusterError(f"{name}: no log yet at {path}; has it been started?")
    try:
        _show_log(path, lines=lines, follow=follow)
    except KeyboardInterrupt:
        sys.exit(130)


def _show_log(path: Path, *, lines: int, follow: bool) -> None:
    position = 0
    if path.exists():
        data = path.read_bytes()
        position = len(data)
        tail = data.decode(errors="replace").splitlines()[-lines:] if lines else []
        for line in tail:
            click.echo(line)
    while follow:
        time.sleep(0.5)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size < position:  # rotated or truncated: start from its beginning
            position = 0
        if size > position:
            with path.open("rb") as log_file:
                log_file.seek(position)
                chunk = log_file.read(size - position)
            position = size
            click.echo(chunk.decode(errors="replace"), nl=False)


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
    for agency in spec.agencies:
        rules = federation.cluster_acls(spec.agencies, spec.topics)[agency]
        bootstrap = ",".join(spec.bootstrap_servers(agency))
        click.echo(f"# {agency} ({bootstrap})")
        if output == "commands":
            for line in federation.kafka_acls_commands(agency, rules, bootstrap=bootstrap):
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

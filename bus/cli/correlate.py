"""``bus correlate``: find identifiers shared by events of different agencies."""

from __future__ import annotations

from pathlib import Path

import click

from bus.cli._common import (
    config_option,
    fail_on_bus_error,
    load_cli_config,
    trust_option,
    worker_datadir,
    worker_trust,
)
from bus.correlate.processor import Correlator, CorrelatorSettings

__all__ = ["correlate"]


@click.group()
def correlate() -> None:
    """Correlate the identifiers of an agency's own and mirrored events."""


@correlate.command()
@click.option("--agency", required=True, help="Agency whose cluster and feeds are correlated.")
@click.option(
    "--topic",
    default=None,
    help="The agency's own feed (default: the events topic); the peers' mirrors of it "
    "(<peer>.<topic>) are read too.",
)
@click.option(
    "--output",
    default="bus.correlations",
    show_default=True,
    help="Topic the hits are written to, on the agency's cluster.",
)
@trust_option(help="Trust store (default: the agency's trust_store in the configuration).")
@click.option("--web-host", default="127.0.0.1", show_default=True)
@click.option("--web-port", default=6068, show_default=True, type=int)
@click.option("--max-batch", default=500, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--operation-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds before a write or commit counts as failed (then the session starts over).",
)
@click.option("--loglevel", default="info", show_default=True)
@config_option
@fail_on_bus_error
def run(
    agency: str,
    topic: str | None,
    output: str,
    trust_path: Path | None,
    web_host: str,
    web_port: int,
    max_batch: int,
    operation_timeout: float,
    loglevel: str,
    config_path: Path | None,
) -> None:
    """Run AGENCY's correlator until SIGTERM or SIGINT.

    Reads the agency's events topic and every peer's mirrored feed on its cluster, from the
    beginning; writes a CorrelationHit to bus.correlations once per pair of events of
    different origins that share an identifier. One worker per agency: a new one takes over
    from the one before (fences it). Serves /metrics and /healthz on the web port.
    """
    config = load_cli_config(config_path)
    settings = CorrelatorSettings.from_config(
        config,
        agency,
        topic=topic,
        output_topic=output,
        max_batch=max_batch,
        operation_timeout_s=operation_timeout,
    )
    _, registry, trust = worker_trust(config, agency, trust_path)
    correlator = Correlator(settings, trust=trust, registry=registry)

    # Faust is imported only here: the rest of the CLI stays quick to start.
    from bus.correlate.app import create_app, run_worker

    datadir = worker_datadir(config, "correlate")
    app = create_app(
        correlator,
        registry=registry,
        web_host=web_host,
        web_port=web_port,
        datadir=datadir,
        trust=trust,
    )
    run_worker(app, correlator, loglevel=loglevel)

"""The correlator as a Faust worker: CLI lifecycle, signals, logging, ``/metrics`` and ``/healthz``.

As for the bridge (``bus.bridge.app``), Faust runs the worker and the web server, and a timer
follows the trust store (``bus._worker``, the scaffolding they share); Faust's own Kafka clients
are not started: the correlator owns its transactional producer and its consumer
(docs/decisions/0015-correlator.md says why Faust's exactly-once mode and tables are not used).
SIGTERM or SIGINT lets the batch in flight commit, then the worker exits.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from prometheus_client import CollectorRegistry

from bus._reloading import ReloadingTrustStore
from bus._worker import HostedService, create_web_app, run_services
from bus.correlate.processor import Correlator

__all__ = ["CorrelatorService", "create_app", "run_worker"]

log = logging.getLogger("bus.correlate")


class CorrelatorService(HostedService):
    """Runs a ``Correlator`` for the lifetime of the Faust worker. Fenced by a newer worker, or
    a bug, it crashes the worker; nothing is lost: the state and the offsets are on the
    cluster."""

    kind = "correlator"
    logger = log


def create_app(
    correlator: Correlator,
    *,
    registry: CollectorRegistry,
    web_host: str = "127.0.0.1",
    web_port: int = 6068,
    datadir: Path,
    trust: ReloadingTrustStore | None = None,
) -> faust.App:
    """The Faust app of ``correlator``, with its web endpoints and the trust store's timer."""
    return create_web_app(
        correlator.settings.app_id,
        registry=registry,
        health=correlator.health,
        web_host=web_host,
        web_port=web_port,
        datadir=datadir,
        trust=trust,
    )


def run_worker(app: faust.App, correlator: Correlator, *, loglevel: str = "info") -> None:
    """Run the worker until SIGTERM/SIGINT (exits the process; status 1 after a crash)."""
    run_services(app, [CorrelatorService(correlator)], loglevel=loglevel)

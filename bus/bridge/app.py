"""The bridge as a Faust worker: CLI lifecycle, signals, logging, and the web server.

Faust runs the worker: it starts the replicator as a service, serves ``/metrics`` (Prometheus
text format) and ``/healthz`` (200 when healthy, else 503) on its web port, and stops the
replicator cleanly on SIGTERM/SIGINT (finish the batch in flight, close the producers, commit).
The replication hot path does not go through Faust streams: measured, a Faust agent moves an
order of magnitude fewer events than a plain aiokafka consume->produce loop (see
docs/decisions/0005-bridge-hot-path.md), so the replicator owns its aiokafka clients.

So Faust's own Kafka clients are not started at all (``bus._worker``, the worker scaffolding
the bridge shares with the correlator).

Stopping is bounded: SIGTERM or SIGINT gives the replicator ``operation_timeout_s`` to finish
(each step of its shutdown shares that deadline), and the process ends at the latest
``stop_bound_s(settings)`` seconds after the signal: exit status 0 when the shutdown was clean,
``EXIT_UNCLEAN_STOP`` when a step ran out of time or the bound was reached.

One worker process may host several directions of one source agency (``bus bridge run --from A
--to B --to C``): one replicator per direction, each with its own clients, consumer group and
transactional ids, as if it ran alone, sharing the process, the trust store, the web server and
one metrics registry (every bridge metric is labelled by direction). ``/healthz`` is healthy
when every direction is; a direction that fails crashes the worker, and its supervisor restarts
them all (docs/decisions/0017-several-directions-per-worker.md).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from bus._reloading import ReloadingTrustStore
from bus._worker import BoundedWorker, HostedService, create_web_app, run_services
from bus.bridge.replicator import Replicator
from bus.bridge.settings import BridgeSettings

__all__ = [
    "EXIT_UNCLEAN_STOP",
    "ReplicatorService",
    "create_app",
    "health",
    "run_worker",
    "stop_bound_s",
]

log = logging.getLogger("bus.bridge")

EXIT_UNCLEAN_STOP = 75
"""Exit status of a worker whose shutdown did not finish cleanly in time (EX_TEMPFAIL): nothing
is lost (the checkpoints are on the destination), the next worker resumes from them."""

_STOP_MARGIN_S = 10.0
"""Beyond the operation timeout: Faust's own services (web server, sensors) and the loop."""


def stop_bound_s(settings: BridgeSettings) -> float:
    """Seconds after SIGTERM/SIGINT by which the worker process has ended, whatever happens."""
    return settings.operation_timeout_s + _STOP_MARGIN_S


def health(replicators: Sequence[Replicator]) -> dict[str, Any]:
    """The worker's ``/healthz`` answer: one direction's own (``Replicator.health``); for
    several, healthy when every one is, ``partitions`` as ``<destination>:<topic>/<partition>``
    and each direction's own answer under ``directions``."""
    if len(replicators) == 1:
        return replicators[0].health()
    answers = [r.health() for r in replicators]
    return {
        "healthy": all(a["healthy"] for a in answers),
        "direction": ",".join(a["direction"] for a in answers),
        "partitions": sorted(
            f"{r.settings.destination.name}:{p}"
            for r, a in zip(replicators, answers, strict=True)
            for p in a["partitions"]
        ),
        "directions": answers,
    }


class ReplicatorService(HostedService):
    """Runs a ``Replicator`` for the lifetime of the Faust worker; a replicator still starting
    (retrying a cluster) has nothing in flight to finish, so a stop cancels it at once."""

    kind = "bridge"
    logger = log
    cancel_while_starting = True


def create_app(
    settings: BridgeSettings,
    replicators: Replicator | Sequence[Replicator],
    *,
    registry: CollectorRegistry,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    datadir: Path,
    trust: ReloadingTrustStore | None = None,
) -> faust.App:
    """The Faust app of a bridge worker, with its replicators and their web endpoints.

    ``replicators``: one direction's, or several directions' of the same source agency sharing
    this process; ``settings`` are the first direction's (the app's id).

    ``trust``: the trust store the replicator verifies with, if it follows its file; a timer
    (Faust's control plane) looks at the file every second, so a rotation or a revocation
    applies without a restart even while no event arrives to look a key up.
    """
    hosted = _sequence(replicators)
    return create_web_app(
        settings.worker_app_id,
        registry=registry,
        health=lambda: health(hosted),
        web_host=web_host,
        web_port=web_port,
        datadir=datadir,
        trust=trust,
        producer_acks=-1,
    )


def run_worker(
    app: faust.App, replicators: Replicator | Sequence[Replicator], *, loglevel: str = "info"
) -> None:
    """Run the Faust worker and the replicators until SIGTERM/SIGINT (exits the process: status
    0 after a clean shutdown of every one, ``EXIT_UNCLEAN_STOP`` otherwise, within
    ``stop_bound_s``)."""
    hosted = _sequence(replicators)
    # The directions stop side by side, so the longest of their bounds.
    worker = functools.partial(
        BoundedWorker,
        name="bridge " + ",".join(r.settings.name for r in hosted),
        log=log,
        bound_s=max(stop_bound_s(r.settings) for r in hosted),
        exit_status=EXIT_UNCLEAN_STOP,
    )
    try:
        run_services(app, [ReplicatorService(r) for r in hosted], loglevel=loglevel, worker=worker)
    except SystemExit as exit_:
        if exit_.code in (0, None) and not all(r.stopped_cleanly for r in hosted):
            raise SystemExit(EXIT_UNCLEAN_STOP) from None
        raise


def _sequence(replicators: Replicator | Sequence[Replicator]) -> tuple[Replicator, ...]:
    hosted = (replicators,) if isinstance(replicators, Replicator) else tuple(replicators)
    if not hosted:
        raise ValueError("a bridge worker needs at least one replicator")
    return hosted

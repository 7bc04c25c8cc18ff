"""The bridge as a Faust worker: CLI lifecycle, signals, logging, and the web server.

Faust runs the worker: it starts the replicator as a service, serves ``/metrics`` (Prometheus
text format) and ``/healthz`` (200 when healthy, else 503) on its web port, and stops the
replicator cleanly on SIGTERM/SIGINT (finish the batch in flight, close the producers, commit).
The replication hot path does not go through Faust streams: measured, a Faust agent moves an
order of magnitude fewer events than a plain aiokafka consume->produce loop (see
docs/decisions/0005-bridge-hot-path.md), so the replicator owns its aiokafka clients.

So Faust's own Kafka clients are not started at all (``_WebOnly``): no consumer, no producer,
no consumer group. A Faust consumer joined a group that nothing used, and its stop waited in
that group's JoinGroup for as long as a SIGKILLed predecessor's session lived (60 s by
Faust's defaults), so a worker restarted after a kill did not exit on SIGTERM for up to a
minute.

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

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import mode
from faust.app.base import BootStrategy
from prometheus_client import CollectorRegistry, generate_latest

from bus import _transient_logs
from bus._reloading import ReloadingTrustStore
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

_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"

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


class _WebOnly(BootStrategy):
    """Faust starts its web server and sensors, never its Kafka consumer or producer."""

    enable_kafka = False


class _BridgeApp(faust.App):
    BootStrategy = _WebOnly


class ReplicatorService(mode.Service):
    """Runs a ``Replicator`` for the lifetime of the Faust worker."""

    def __init__(self, replicator: Replicator, **kwargs: Any) -> None:
        self.replicator = replicator
        self._task: asyncio.Task[None] | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self.add_future(self._task)

    async def _run(self) -> None:
        try:
            await self.replicator.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Nothing is lost (the checkpoint is on the destination), but a worker that cannot
            # replicate must not look alive: crash it so that its supervisor restarts it.
            log.exception("bridge %s failed", self.replicator.settings.name)
            await self.crash(exc)

    async def on_stop(self) -> None:
        task = self._task
        if task is None:
            return
        if not self.replicator.started.is_set():
            task.cancel()  # still starting (retrying a cluster): nothing in flight to finish
        self.replicator.stop()
        # The replicator's shutdown shares one deadline of operation_timeout_s; past it and a
        # little more, it is cancelled (and the worker's watchdog ends the process anyway).
        bound = self.replicator.settings.operation_timeout_s + 2.0
        done, _ = await asyncio.wait({task}, timeout=bound)
        if not done:
            log.error(
                "bridge %s: shutdown did not finish within %.0f s; cancelled",
                self.replicator.settings.name,
                bound,
            )
            self.replicator.stopped_cleanly = False
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)


class _Worker(faust.Worker):
    """A Faust worker whose stop is bounded: a watchdog thread, armed when the stop begins
    (signal or crash), ends the process ``stop_bound_s`` later if it is still running."""

    def __init__(self, *args: Any, replicators: Sequence[Replicator], **kwargs: Any) -> None:
        self._replicators = tuple(replicators)
        self._watchdog: threading.Timer | None = None
        super().__init__(*args, **kwargs)

    @property
    def _name(self) -> str:
        return ",".join(r.settings.name for r in self._replicators)

    async def stop(self) -> None:
        if self._watchdog is None:
            # The directions stop side by side, so the longest of their bounds.
            bound = max(stop_bound_s(r.settings) for r in self._replicators)
            self._watchdog = threading.Timer(bound, self._give_up, args=(bound,))
            self._watchdog.daemon = True
            self._watchdog.start()
        await super().stop()

    def _give_up(self, bound: float) -> None:
        # A thread of its own: it fires even if the event loop is blocked.
        log.error(
            "bridge %s: still running %.0f s after the stop began; exiting with status %d",
            self._name,
            bound,
            EXIT_UNCLEAN_STOP,
        )
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_UNCLEAN_STOP)


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
    # No broker: Faust's Kafka clients are never started (``_WebOnly``); the replicator owns
    # every connection to the clusters.
    app = _BridgeApp(
        settings.worker_app_id,
        web_host=web_host,
        web_port=web_port,
        web_enabled=True,
        autodiscover=False,
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        producer_acks=-1,
        datadir=str(datadir),
    )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # Prometheus' text format; aiohttp wants the charset outside the content type.
        return web.bytes(generate_latest(registry), content_type=_METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        status = health(hosted)
        return web.json(status, status=200 if status["healthy"] else 503)

    if trust is not None:
        reloading = trust

        @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # Faust is untyped
        async def follow_trust_store() -> None:
            # A stat, and a load only after a change: off the loop, it touches the disk.
            await asyncio.to_thread(reloading.refresh)

    return app


def run_worker(
    app: faust.App, replicators: Replicator | Sequence[Replicator], *, loglevel: str = "info"
) -> None:
    """Run the Faust worker and the replicators until SIGTERM/SIGINT (exits the process: status
    0 after a clean shutdown of every one, ``EXIT_UNCLEAN_STOP`` otherwise, within
    ``stop_bound_s``)."""
    hosted = _sequence(replicators)
    # A peer cluster restarting or a coordinator not yet elected: one WARNING, not a flood.
    _transient_logs.install()
    services = [ReplicatorService(r) for r in hosted]
    worker = _Worker(app, *services, replicators=hosted, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        if exit_.code in (0, None) and not all(r.stopped_cleanly for r in hosted):
            raise SystemExit(EXIT_UNCLEAN_STOP) from None
        raise


def _sequence(replicators: Replicator | Sequence[Replicator]) -> tuple[Replicator, ...]:
    hosted = (replicators,) if isinstance(replicators, Replicator) else tuple(replicators)
    if not hosted:
        raise ValueError("a bridge worker needs at least one replicator")
    return hosted

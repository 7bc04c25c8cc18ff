"""The correlator as a Faust worker: CLI lifecycle, signals, logging, ``/metrics`` and ``/healthz``.

As for the bridge (``bus.bridge.app``), Faust runs the worker and the web server, and a timer
follows the trust store; Faust's own Kafka clients are not started: the correlator owns its
transactional producer and its consumer (docs/decisions/0015-correlator.md says why Faust's
exactly-once mode and tables are not used). SIGTERM or SIGINT lets the batch in flight
commit, then the worker exits.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import faust
import mode
from faust.app.base import BootStrategy
from prometheus_client import CollectorRegistry, generate_latest

from bus import _transient_logs
from bus._reloading import ReloadingTrustStore
from bus.correlate.processor import Correlator

__all__ = ["CorrelatorService", "create_app", "run_worker"]

log = logging.getLogger("bus.correlate")

_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


class _WebOnly(BootStrategy):
    """Faust starts its web server and sensors, never its Kafka consumer or producer."""

    enable_kafka = False


class _CorrelatorApp(faust.App):
    BootStrategy = _WebOnly


class CorrelatorService(mode.Service):
    """Runs a ``Correlator`` for the lifetime of the Faust worker."""

    def __init__(self, correlator: Correlator, **kwargs: Any) -> None:
        self.correlator = correlator
        self._task: asyncio.Task[None] | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self.add_future(self._task)

    async def _run(self) -> None:
        try:
            await self.correlator.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Fenced by a newer worker, or a bug: a worker that does not correlate must not
            # look alive. Nothing is lost: the state and the offsets are on the cluster.
            log.exception("correlator %s failed", self.correlator.settings.name)
            self.correlator.stopped_cleanly = False
            await self.crash(exc)

    async def on_stop(self) -> None:
        task = self._task
        if task is None:
            return
        self.correlator.stop()
        bound = self.correlator.settings.operation_timeout_s + 2.0
        done, _ = await asyncio.wait({task}, timeout=bound)
        if not done:
            log.error("correlator: shutdown did not finish within %.0f s; cancelled", bound)
            self.correlator.stopped_cleanly = False
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)


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
    app = _CorrelatorApp(
        correlator.settings.app_id,
        web_host=web_host,
        web_port=web_port,
        web_enabled=True,
        autodiscover=False,
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        datadir=str(datadir),
    )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=_METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        status = correlator.health()
        return web.json(status, status=200 if status["healthy"] else 503)

    if trust is not None:
        reloading = trust

        @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # Faust is untyped
        async def follow_trust_store() -> None:
            await asyncio.to_thread(reloading.refresh)

    return app


def run_worker(app: faust.App, correlator: Correlator, *, loglevel: str = "info") -> None:
    """Run the worker until SIGTERM/SIGINT (exits the process; status 1 after a crash)."""
    _transient_logs.install()
    worker = faust.Worker(app, CorrelatorService(correlator), loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

"""The bridge as a Faust worker: CLI lifecycle, signals, logging, and the web server.

Faust runs the worker: it starts the replicator as a service, serves ``/metrics`` (Prometheus
text format) and ``/healthz`` (200 when healthy, else 503) on its web port, and stops the
replicator cleanly on SIGTERM/SIGINT (finish the batch in flight, close the producers, commit).
The replication hot path does not go through Faust streams: measured, a Faust agent moves an
order of magnitude fewer events than a plain aiokafka consume->produce loop (see
docs/decisions/0005-bridge-hot-path.md), so the replicator owns its aiokafka clients.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import faust
import mode
from prometheus_client import CollectorRegistry, generate_latest

from bus import _transient_logs
from bus._kafka import ssl_context
from bus._reloading import ReloadingTrustStore
from bus.bridge.replicator import Replicator
from bus.bridge.settings import BridgeSettings

__all__ = ["ReplicatorService", "create_app", "run_worker"]

log = logging.getLogger("bus.bridge")

_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


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
        self.replicator.stop()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=60)


def create_app(
    settings: BridgeSettings,
    replicator: Replicator,
    *,
    registry: CollectorRegistry,
    web_host: str = "127.0.0.1",
    web_port: int = 6066,
    datadir: Path,
    trust: ReloadingTrustStore | None = None,
) -> faust.App:
    """The Faust app of one bridge direction, with the replicator and its web endpoints.

    ``trust``: the trust store the replicator verifies with, if it follows its file; a timer
    (Faust's control plane) looks at the file every second, so a rotation or a revocation
    applies without a restart even while no event arrives to look a key up.
    """
    servers = settings.source.bootstrap_servers
    tls: dict[str, Any] = {}
    if settings.source.tls is not None:
        # Faust's own clients (its consumer, producer and leader topic) talk to the source
        # cluster over mutual TLS as the bridge's principal, like the replicator's.
        tls["broker_credentials"] = faust.SSLCredentials(ssl_context(settings.source.tls))
    app = faust.App(
        settings.worker_app_id,
        broker=[f"kafka://{server}" for server in servers],
        **tls,
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
        status = replicator.health()
        return web.json(status, status=200 if status["healthy"] else 503)

    if trust is not None:
        reloading = trust

        @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # Faust is untyped
        async def follow_trust_store() -> None:
            # A stat, and a load only after a change: off the loop, it touches the disk.
            await asyncio.to_thread(reloading.refresh)

    return app


def run_worker(app: faust.App, replicator: Replicator, *, loglevel: str = "info") -> None:
    """Run the Faust worker and the replicator until SIGTERM/SIGINT (exits the process)."""
    # A peer cluster restarting or a coordinator not yet elected: one WARNING, not a flood.
    _transient_logs.install()
    worker = faust.Worker(app, ReplicatorService(replicator), loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

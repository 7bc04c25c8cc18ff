"""The Faust worker around a service of the bus (a bridge's replicators, a correlator).

Faust runs the worker: the CLI lifecycle, signals, logging, and the web server with
``/metrics`` (Prometheus text format) and ``/healthz`` (200 when healthy, else 503); a timer
(Faust's control plane) follows the trust store. The service itself is hosted by a
:class:`HostedService`, which runs it for the lifetime of the worker, crashes the worker when it
fails and stops it, within its ``operation_timeout_s``, when the worker stops.

Faust's own Kafka clients are not started at all (:class:`WebOnlyApp`): no consumer, no
producer, no consumer group; the hosted service owns every connection to the clusters. A Faust
consumer joined a group that nothing used, and its stop waited in that group's JoinGroup for as
long as a SIGKILLed predecessor's session lived (60 s by Faust's defaults), so a worker
restarted after a kill did not exit on SIGTERM for up to a minute.

:class:`BoundedWorker` bounds the stop of the whole process: a watchdog thread ends it with a
given exit status if it still runs some seconds after the stop began.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import faust
import mode
from faust.app.base import BootStrategy
from prometheus_client import CollectorRegistry, generate_latest

from bus import _transient_logs
from bus._reloading import ReloadingTrustStore

__all__ = [
    "BoundedWorker",
    "Hosted",
    "HostedService",
    "WebOnlyApp",
    "create_web_app",
    "run_services",
]

_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"

_CANCEL_GRACE_S = 2.0
"""Beyond the hosted service's ``operation_timeout_s``, before its task is cancelled; and how
long the cancelled task is then waited for."""


class HostedSettings(Protocol):
    """What a worker reads of a hosted service's settings."""

    @property
    def name(self) -> str: ...

    @property
    def operation_timeout_s(self) -> float: ...


class Hosted(Protocol):
    """A service a worker hosts: ``run`` until ``stop``; ``started`` once it runs;
    ``stopped_cleanly`` False once a shutdown step ran out of time (or it failed)."""

    started: asyncio.Event
    stopped_cleanly: bool

    @property
    def settings(self) -> HostedSettings: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class _WebOnly(BootStrategy):
    """Faust starts its web server and sensors, never its Kafka consumer or producer."""

    enable_kafka = False


class WebOnlyApp(faust.App):
    """A Faust app that never starts Faust's own Kafka clients (see the module docs)."""

    BootStrategy = _WebOnly


def create_web_app(
    app_id: str,
    *,
    registry: CollectorRegistry,
    health: Callable[[], dict[str, Any]],
    web_host: str,
    web_port: int,
    datadir: Path,
    trust: ReloadingTrustStore | None = None,
    **settings: Any,
) -> faust.App:
    """A :class:`WebOnlyApp` serving ``registry`` on ``/metrics`` and ``health()`` on
    ``/healthz`` (its ``healthy`` item decides 200 or 503).

    ``trust``: the trust store the service verifies with, if it follows its file; a timer looks
    at the file every second, so a rotation or a revocation applies without a restart even while
    no event arrives to look a key up. ``settings``: more of Faust's app settings.
    """
    app = WebOnlyApp(
        app_id,
        web_host=web_host,
        web_port=web_port,
        web_enabled=True,
        autodiscover=False,
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        datadir=str(datadir),
        **settings,
    )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # Prometheus' text format; aiohttp wants the charset outside the content type.
        return web.bytes(generate_latest(registry), content_type=_METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        status = health()
        return web.json(status, status=200 if status["healthy"] else 503)

    if trust is not None:
        reloading = trust

        @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # Faust is untyped
        async def follow_trust_store() -> None:
            # A stat, and a load only after a change: off the loop, it touches the disk.
            await asyncio.to_thread(reloading.refresh)

    return app


class HostedService(mode.Service):
    """Runs a :class:`Hosted` service for the lifetime of the Faust worker.

    A failure crashes the worker (nothing is lost: what the service must resume from is on the
    clusters; a worker that does not work must not look alive, and its supervisor restarts
    it). Stopping asks the service to stop and gives it ``operation_timeout_s`` and a little
    more, then cancels it. Subclasses name their ``kind`` and ``logger`` (mode's: the
    logger it logs with); with
    ``cancel_while_starting``, a service not yet started (still retrying a cluster, nothing in
    flight to finish) is cancelled at once.
    """

    kind: ClassVar[str] = "service"
    cancel_while_starting: ClassVar[bool] = False

    def __init__(self, hosted: Hosted, **kwargs: Any) -> None:
        self.hosted = hosted
        self._task: asyncio.Task[None] | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self.add_future(self._task)

    async def _run(self) -> None:
        try:
            await self.hosted.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.logger.exception("%s %s failed", self.kind, self.hosted.settings.name)
            self.hosted.stopped_cleanly = False
            await self.crash(exc)

    async def on_stop(self) -> None:
        task = self._task
        if task is None:
            return
        if self.cancel_while_starting and not self.hosted.started.is_set():
            task.cancel()
        self.hosted.stop()
        # The service's shutdown shares one deadline of operation_timeout_s; past it and a
        # little more, it is cancelled.
        bound = self.hosted.settings.operation_timeout_s + _CANCEL_GRACE_S
        done, _ = await asyncio.wait({task}, timeout=bound)
        if not done:
            self.logger.error(
                "%s %s: shutdown did not finish within %.0f s; cancelled",
                self.kind,
                self.hosted.settings.name,
                bound,
            )
            self.hosted.stopped_cleanly = False
            task.cancel()
            await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)


class BoundedWorker(faust.Worker):
    """A Faust worker whose stop is bounded: a watchdog thread, armed when the stop begins
    (signal or crash), ends the process with ``exit_status`` ``bound_s`` seconds later if it
    is still running. ``name`` says whose worker it is in ``log``."""

    def __init__(
        self,
        *args: Any,
        name: str,
        log: logging.Logger,
        bound_s: float,
        exit_status: int,
        **kwargs: Any,
    ) -> None:
        self._name = name
        self._stop_log = log
        self._bound_s = bound_s
        self._exit_status = exit_status
        self._watchdog: threading.Timer | None = None
        super().__init__(*args, **kwargs)

    async def stop(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._bound_s, self._give_up)
            self._watchdog.daemon = True
            self._watchdog.start()
        await super().stop()

    def _give_up(self) -> None:
        # A thread of its own: it fires even if the event loop is blocked.
        self._stop_log.error(
            "%s: still running %.0f s after the stop began; exiting with status %d",
            self._name,
            self._bound_s,
            self._exit_status,
        )
        logging.shutdown()
        sys.stderr.flush()
        os._exit(self._exit_status)


def run_services(
    app: faust.App,
    services: Sequence[mode.Service],
    *,
    loglevel: str,
    worker: Callable[..., faust.Worker] = faust.Worker,
) -> None:
    """Run ``app`` and ``services`` in a Faust ``worker`` until SIGTERM/SIGINT (exits the
    process: ``SystemExit``)."""
    # A peer cluster restarting or a coordinator not yet elected: one WARNING, not a flood.
    _transient_logs.install()
    worker(app, *services, loglevel=loglevel, quiet=True).execute_from_commandline()

"""The supervisor of the local federation's bridges, correlators and services: the process
``bus local supervise`` runs (``_control`` starts and stops it from ``bus local``).

It runs one ``bus bridge run`` per source agency (hosting its directions to every other agency)
and one ``bus correlate run`` per agency as its children, then Prometheus and Alertmanager, and:

- restarts a process that exits, after an exponential backoff (``_backoff``) that starts again
  once it ran a stable while; each restart is logged and counted (``state.json``, and
  ``bus_local_restarts_total{process}`` on its own ``/metrics``);
- on SIGTERM or SIGINT sends SIGTERM to every bridge and correlator, waits up to
  ``BRIDGE_STOP_TIMEOUT_S``, kills what is left with SIGKILL, then stops the services the same
  way and exits;
- asks the kernel to send its children SIGTERM should it die itself (``PR_SET_PDEATHSIG``), so
  a killed supervisor leaves no bridge running unsupervised.

The Kafka nodes are not its children: ``bus local up`` starts them detached, and they run on
their own (docs/decisions/0011-local-supervision.md says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from bus.local._backoff import Backoff, BackoffPolicy
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    BRIDGE_STOP_TIMEOUT_S,
    SupervisedBridge,
    SupervisedCorrelator,
    SupervisedProcess,
    bridge_command,
    bridges,
    correlators,
    read_pid,
    services,
    state_file,
    supervised_dir,
    supervisor_pid_file,
    supervisor_port,
)
from bus.local._supervision import correlator_command as _correlator_command

__all__ = ["Supervisor", "run_supervisor"]

_PR_SET_PDEATHSIG: Final = 1

log = logging.getLogger("bus.local.supervisor")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _die_with_supervisor() -> None:
    """In a bridge, between fork and exec: SIGTERM me when the supervisor dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Keeps every bridge of ``spec``, and ``services``, running until stopped; see the module
    docs.

    ``command`` makes a bridge's command line (default: ``bus bridge run`` for it),
    ``correlator_command`` a correlator's (default: ``bus correlate run``);
    ``with_bridges=False`` runs no bridge, ``with_correlators=False`` no correlator.
    ``services`` (Prometheus, Alertmanager: ``_supervision.services``) are stopped once every
    bridge and correlator has exited.
    """

    def __init__(
        self,
        spec: FederationSpec,
        *,
        policy: BackoffPolicy | None = None,
        registry: CollectorRegistry | None = None,
        command: Callable[[SupervisedBridge], list[str]] | None = None,
        correlator_command: Callable[[SupervisedCorrelator], list[str]] | None = None,
        stop_timeout_s: float = BRIDGE_STOP_TIMEOUT_S,
        with_bridges: bool = True,
        with_correlators: bool = True,
        services: Sequence[SupervisedProcess] = (),
    ) -> None:
        self.spec = spec
        self.stop_timeout_s = stop_timeout_s
        make_command = command or functools.partial(bridge_command, spec)
        make_correlator = correlator_command or functools.partial(_correlator_command, spec)
        self.policy = policy or BackoffPolicy()
        self.bridges = bridges(spec) if with_bridges else []
        self.correlators = correlators(spec) if with_correlators else []
        self.processes = [b.process(make_command(b)) for b in self.bridges] + [
            c.process(make_correlator(c)) for c in self.correlators
        ]
        self.services = list(services)
        self.registry = registry or CollectorRegistry()
        self._restarts = Counter(
            "bus_local_restarts_total",
            "Restarts of a process supervised by `bus local` after it exited.",
            ["process"],
            registry=self.registry,
        )
        self._up = Gauge(
            "bus_local_process_up",
            "1 while a process supervised by `bus local` runs, else 0.",
            ["process"],
            registry=self.registry,
        )
        self._stopping = asyncio.Event()
        self._bridges_stopped = asyncio.Event()
        self._state: dict[str, dict[str, Any]] = {}
        self._started_at = _now()

    def stop(self) -> None:
        """Stop every bridge, then the services (SIGTERM, then SIGKILL after the timeout) and
        return from run()."""
        self._stopping.set()

    async def run(self) -> None:
        """Supervise until :meth:`stop`; returns once every process has exited."""
        supervised_dir(self.spec).mkdir(parents=True, exist_ok=True)
        for process in [*self.processes, *self.services]:
            self._state[process.name] = {
                "kind": process.kind,
                **dict(process.details),
                "port": process.port,
                "log": str(process.log_file),
                "pid": None,
                "state": "starting",
                "restarts": 0,
                "last_exit": None,
                "started_at": None,
            }
            self._restarts.labels(process.name)  # present at 0 from the start
            self._up.labels(process.name).set(0)
        self._write_state()
        log.info(
            "supervising %d processes: %s",
            len(self._state),
            ", ".join(f"{p.name} (port {p.port})" for p in [*self.processes, *self.services]),
        )
        async with asyncio.TaskGroup() as group:
            for service in self.services:
                group.create_task(self._keep(service, self._bridges_stopped))
            # Bridges and correlators first: Prometheus and Alertmanager see them go.
            async with asyncio.TaskGroup() as first:
                for process in self.processes:
                    first.create_task(self._keep(process, self._stopping))
            await self._stopping.wait()
            self._bridges_stopped.set()
        log.info("every process stopped; supervisor exits")

    async def _keep(self, supervised: SupervisedProcess, stopping: asyncio.Event) -> None:
        """Run ``supervised`` until ``stopping``; restart it after a backoff whenever it exits."""
        backoff = Backoff(self.policy)
        name = supervised.name
        state = self._state[name]
        while not stopping.is_set():
            with supervised.log_file.open("ab") as output:
                process = await asyncio.create_subprocess_exec(
                    *supervised.command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.spec.home,
                    preexec_fn=_die_with_supervisor,
                )
            supervised.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
            started = time.monotonic()
            state.update(pid=process.pid, state="running", started_at=_now())
            self._up.labels(name).set(1)
            self._write_state()
            log.info("%s: started (pid %d)", name, process.pid)
            code = await self._wait_or_stop(name, process, stopping)
            ran_s = time.monotonic() - started
            supervised.pid_file.unlink(missing_ok=True)
            self._up.labels(name).set(0)
            state.update(pid=None, last_exit=_exit_text(code))
            if stopping.is_set():
                state["state"] = "stopped"
                self._write_state()
                log.info("%s: stopped (%s)", name, _exit_text(code))
                return
            delay = backoff.after_exit(ran_s)
            state.update(state="backoff", restarts=state["restarts"] + 1)
            self._restarts.labels(name).inc()
            self._write_state()
            log.warning(
                "%s: exited (%s) after %.1f s; restart %d in %.1f s (log: %s)",
                name,
                _exit_text(code),
                ran_s,
                state["restarts"],
                delay,
                supervised.log_file,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
        state["state"] = "stopped"
        self._write_state()

    async def _wait_or_stop(
        self, name: str, process: asyncio.subprocess.Process, stopping: asyncio.Event
    ) -> int:
        """The process's exit status: when it exits by itself, or after stopping it."""
        async with asyncio.TaskGroup() as group:
            exited = group.create_task(process.wait())
            stop = group.create_task(stopping.wait())
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                stop.cancel()
            else:
                log.info("%s: stopping (SIGTERM to pid %d)", name, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout_s)
                except TimeoutError:
                    log.warning(
                        "%s: pid %d ignored SIGTERM for %.1f s; killing it",
                        name,
                        process.pid,
                        self.stop_timeout_s,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
        return exited.result()

    def _write_state(self) -> None:
        state = {
            "supervisor": {
                "pid": os.getpid(),
                "started_at": self._started_at,
                "metrics_port": supervisor_port(self.spec),
                "stopping": self._stopping.is_set(),
            },
            "processes": self._state,
        }
        # Written aside and renamed: a reader never sees half a file.
        path = state_file(self.spec)
        staging = path.with_name(f".{path.name}.new")
        staging.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, path)


def run_supervisor(
    spec: FederationSpec,
    *,
    with_bridges: bool = True,
    with_correlators: bool = True,
    with_prometheus: bool = True,
) -> None:
    """The body of ``bus local supervise``: supervise until SIGTERM or SIGINT (blocking).

    The bridges unless ``with_bridges`` is False, the correlators unless ``with_correlators``
    is False; Prometheus and Alertmanager unless ``with_prometheus`` is False (their files
    prepared by :func:`start_supervisor`).
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    supervised_dir(spec).mkdir(parents=True, exist_ok=True)
    supervisor_pid_file(spec).write_text(f"{os.getpid()}\n", encoding="utf-8")
    supervisor = Supervisor(
        spec,
        with_bridges=with_bridges,
        with_correlators=with_correlators,
        services=services(spec) if with_prometheus else (),
    )
    port = supervisor_port(spec)
    server = None
    try:
        server, _ = start_http_server(port, addr=HOST, registry=supervisor.registry)
    except OSError as exc:
        log.warning("no /metrics: port %d on %s is taken (%s)", port, HOST, exc)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        await supervisor.run()

    try:
        asyncio.run(main())
    finally:
        if server is not None:
            server.shutdown()
        if read_pid(supervisor_pid_file(spec)) == os.getpid():
            supervisor_pid_file(spec).unlink(missing_ok=True)

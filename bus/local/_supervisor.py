"""The supervisor of the local federation's bridges, and how ``bus local`` starts and stops it.

``bus local up`` starts ``bus local supervise --home H`` detached (a session of its own, output
to ``supervised/supervisor.log``, pid in ``supervised/supervisor.pid``) and returns once every
bridge answers ``/healthz`` with partitions assigned. The supervisor runs one ``bus bridge run``
per ordered pair of agencies as its child, and:

- restarts a bridge that exits, after an exponential backoff (``_backoff``) that starts again
  once a bridge ran a stable while; each restart is logged and counted (``state.json``, and
  ``bus_local_restarts_total{process}`` on its own ``/metrics``);
- on SIGTERM or SIGINT sends SIGTERM to every bridge, waits up to ``BRIDGE_STOP_TIMEOUT_S``,
  kills what is left with SIGKILL, then exits;
- asks the kernel to send its bridges SIGTERM should it die itself (``PR_SET_PDEATHSIG``), so
  a killed supervisor leaves no bridge running unsupervised.

The Kafka nodes are not its children: ``bus local up`` starts them detached, as before, and they
run on their own (docs/decisions/0011-local-supervision.md says why). ``stop_supervised``
stops the supervisor, and only by its recorded pid checked against its command line; then any
bridge whose recorded pid still runs (a supervisor killed with SIGKILL left it), the same way.
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
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from bus.errors import LocalClusterError
from bus.local._backoff import Backoff, BackoffPolicy
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    SupervisedBridge,
    bridge_command,
    bridges,
    check_ports,
    is_bridge_process,
    is_supervisor_process,
    read_pid,
    read_state,
    state_file,
    supervised_dir,
    supervisor_command,
    supervisor_log,
    supervisor_pid_file,
    supervisor_port,
)

__all__ = [
    "BRIDGE_STOP_TIMEOUT_S",
    "Supervisor",
    "bridge_health",
    "run_supervisor",
    "start_bridges",
    "start_supervisor",
    "stop_supervised",
    "supervisor_running",
    "wait_bridges",
]

BRIDGE_STOP_TIMEOUT_S: Final = 30.0
"""How long a bridge may take to stop cleanly after SIGTERM before it is killed."""

_SUPERVISOR_STOP_TIMEOUT_S: Final = BRIDGE_STOP_TIMEOUT_S + 15.0
_BRIDGES_TIMEOUT_S: Final = 180.0
_PR_SET_PDEATHSIG: Final = 1

log = logging.getLogger("bus.local.supervisor")

Log = Callable[[str], None]

# Supervisors this process started, kept so that their exit status is collected (no zombies,
# no ResourceWarning): a child's pid is not reused before that, so signalling it is safe.
_launched: dict[int, subprocess.Popen[bytes]] = {}


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


# --- the supervisor process ----------------------------------------------------------------


class Supervisor:
    """Keeps every bridge of ``spec`` running until stopped; see the module docs.

    ``command`` makes a bridge's command line (default: ``bus bridge run`` for it).
    """

    def __init__(
        self,
        spec: FederationSpec,
        *,
        policy: BackoffPolicy | None = None,
        registry: CollectorRegistry | None = None,
        command: Callable[[SupervisedBridge], list[str]] | None = None,
        stop_timeout_s: float = BRIDGE_STOP_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self.stop_timeout_s = stop_timeout_s
        self._command = command or functools.partial(bridge_command, spec)
        self.policy = policy or BackoffPolicy()
        self.bridges = bridges(spec)
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
        self._state: dict[str, dict[str, Any]] = {}
        self._started_at = _now()

    def stop(self) -> None:
        """Stop every bridge (SIGTERM, then SIGKILL after the timeout) and return from run()."""
        self._stopping.set()

    async def run(self) -> None:
        """Supervise until :meth:`stop`; returns once every bridge has exited."""
        supervised_dir(self.spec).mkdir(parents=True, exist_ok=True)
        for bridge in self.bridges:
            self._state[bridge.name] = {
                "kind": "bridge",
                "source": bridge.source,
                "destination": bridge.destination,
                "web_port": bridge.web_port,
                "log": str(bridge.log_file),
                "pid": None,
                "state": "starting",
                "restarts": 0,
                "last_exit": None,
                "started_at": None,
            }
            self._restarts.labels(bridge.name)  # present at 0 from the start
            self._up.labels(bridge.name).set(0)
        self._write_state()
        log.info(
            "supervising %d bridges: %s",
            len(self.bridges),
            ", ".join(f"{b.name} (web port {b.web_port})" for b in self.bridges),
        )
        async with asyncio.TaskGroup() as group:
            for bridge in self.bridges:
                group.create_task(self._keep(bridge))
        log.info("every bridge stopped; supervisor exits")

    async def _keep(self, bridge: SupervisedBridge) -> None:
        """Run ``bridge`` until stopping; restart it after a backoff whenever it exits."""
        backoff = Backoff(self.policy)
        state = self._state[bridge.name]
        while not self._stopping.is_set():
            with bridge.log_file.open("ab") as output:
                process = await asyncio.create_subprocess_exec(
                    *self._command(bridge),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.spec.home,
                    preexec_fn=_die_with_supervisor,
                )
            bridge.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
            started = time.monotonic()
            state.update(pid=process.pid, state="running", started_at=_now())
            self._up.labels(bridge.name).set(1)
            self._write_state()
            log.info("%s: started (pid %d)", bridge.name, process.pid)
            code = await self._wait_or_stop(bridge, process)
            ran_s = time.monotonic() - started
            bridge.pid_file.unlink(missing_ok=True)
            self._up.labels(bridge.name).set(0)
            state.update(pid=None, last_exit=_exit_text(code))
            if self._stopping.is_set():
                state["state"] = "stopped"
                self._write_state()
                log.info("%s: stopped (%s)", bridge.name, _exit_text(code))
                return
            delay = backoff.after_exit(ran_s)
            state.update(state="backoff", restarts=state["restarts"] + 1)
            self._restarts.labels(bridge.name).inc()
            self._write_state()
            log.warning(
                "%s: exited (%s) after %.1f s; restart %d in %.1f s (log: %s)",
                bridge.name,
                _exit_text(code),
                ran_s,
                state["restarts"],
                delay,
                bridge.log_file,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        state["state"] = "stopped"
        self._write_state()

    async def _wait_or_stop(
        self, bridge: SupervisedBridge, process: asyncio.subprocess.Process
    ) -> int:
        """The bridge's exit status: when it exits by itself, or after stopping it."""
        async with asyncio.TaskGroup() as group:
            exited = group.create_task(process.wait())
            stopping = group.create_task(self._stopping.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                stopping.cancel()
            else:
                log.info("%s: stopping (SIGTERM to pid %d)", bridge.name, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout_s)
                except TimeoutError:
                    log.warning(
                        "%s: pid %d ignored SIGTERM for %.1f s; killing it",
                        bridge.name,
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


def run_supervisor(spec: FederationSpec) -> None:
    """The body of ``bus local supervise``: supervise until SIGTERM or SIGINT (blocking)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    supervised_dir(spec).mkdir(parents=True, exist_ok=True)
    supervisor_pid_file(spec).write_text(f"{os.getpid()}\n", encoding="utf-8")
    supervisor = Supervisor(spec)
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


# --- starting and stopping it from `bus local` ---------------------------------------------


def supervisor_running(spec: FederationSpec) -> int | None:
    """The supervisor's pid, if the recorded one still runs as this federation's supervisor."""
    pid = read_pid(supervisor_pid_file(spec))
    if pid is None:
        return None
    child = _launched.get(pid)
    if child is not None:
        return pid if child.poll() is None else None
    return pid if is_supervisor_process(pid, spec) else None


def start_supervisor(spec: FederationSpec, *, log: Log) -> int:
    """Start the supervisor detached unless it runs; its pid. The federation must be up."""
    pid = supervisor_running(spec)
    if pid is not None:
        running = set(read_state(spec).get("processes", {}))
        wanted = {bridge.name for bridge in bridges(spec)}
        if running and running != wanted:
            raise LocalClusterError(
                f"the supervisor (pid {pid}) runs the bridges {', '.join(sorted(running))}, "
                f"not {', '.join(sorted(wanted))}: run `bus local down`, then `bus local up` "
                "with the agencies you want"
            )
        log(f"supervisor: already running (pid {pid})")
        return pid
    check_ports(spec)
    supervised_dir(spec).mkdir(parents=True, exist_ok=True)
    with supervisor_log(spec).open("ab") as output:
        process = subprocess.Popen(
            supervisor_command(spec),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=spec.home,
            start_new_session=True,  # outlives the `bus local up` that started it
            close_fds=True,
        )
    _launched[process.pid] = process
    # Recorded at once (the supervisor records itself too), so that a failing `up` can stop it.
    supervisor_pid_file(spec).write_text(f"{process.pid}\n", encoding="utf-8")
    log(f"supervisor: started (pid {process.pid}), log {supervisor_log(spec)}")
    return process.pid


def bridge_health(bridge: SupervisedBridge, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The bridge's ``/healthz`` answer (also a 503's); None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{bridge.url}/healthz", timeout=timeout_s) as response:
            body: dict[str, Any] = json.load(response)
            return body
    except urllib.error.HTTPError as exc:  # 503: it answered, but is not healthy
        with contextlib.suppress(ValueError):
            unhealthy: dict[str, Any] = json.load(exc)
            return unhealthy
        return None
    except (OSError, ValueError):
        return None


def wait_bridges(spec: FederationSpec, *, log: Log, timeout_s: float = _BRIDGES_TIMEOUT_S) -> float:
    """Wait until every bridge is healthy with partitions assigned; the seconds it took.

    Prints progress every few seconds. ``LocalClusterError`` if the supervisor exits, or the
    bridges are not all replicating within ``timeout_s``, naming the logs to read.
    """
    started = time.monotonic()
    pending = bridges(spec)
    total = len(pending)
    last_report = started
    while pending:
        elapsed = time.monotonic() - started
        if supervisor_running(spec) is None:
            raise LocalClusterError(
                f"the supervisor exited while the bridges were starting; see its log "
                f"({supervisor_log(spec)}): `bus local logs supervisor`"
            )
        if elapsed > timeout_s:
            names = ", ".join(b.name for b in pending)
            raise LocalClusterError(
                f"bridges not replicating after {timeout_s:.0f} s: {names}. The supervisor "
                f"keeps restarting them; see why with `bus local logs {pending[0].name}` "
                f"({pending[0].log_file}), then `bus local down` or wait and check "
                "`bus local status`"
            )
        for bridge in list(pending):
            health = bridge_health(bridge)
            # One worker a direction: it owns every partition of the events topic once ready.
            assigned = len(health.get("partitions") or ()) if health is not None else 0
            if health is not None and health.get("healthy") and assigned >= spec.partitions:
                pending.remove(bridge)
                log(
                    f"{bridge.name}: replicating {assigned} partitions "
                    f"({time.monotonic() - started:.1f} s)"
                )
        if pending and time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            log(
                f"waiting for bridges: {total - len(pending)}/{total} replicating "
                f"({time.monotonic() - started:.0f} s; waiting for "
                f"{', '.join(b.name for b in pending)})"
            )
        if pending:
            time.sleep(0.3)
    return time.monotonic() - started


def start_bridges(spec: FederationSpec, *, log: Log, timeout_s: float = _BRIDGES_TIMEOUT_S) -> None:
    """Start the supervisor of ``spec``'s bridges (unless it runs) and wait until they replicate.

    The clusters must be up (``bus.local.up``). Blocking. On failure the supervisor keeps
    running, restarting the bridges: the error says which log to read.
    """
    start_supervisor(spec, log=log)
    took = wait_bridges(spec, log=log, timeout_s=timeout_s)
    log(f"bridges: all {len(bridges(spec))} replicating ({took:.1f} s)")


def stop_supervised(spec: FederationSpec, *, log: Log) -> None:
    """Stop the supervisor (which stops its bridges), then any bridge left over (blocking)."""
    pid = supervisor_running(spec)
    if pid is not None:
        log(f"supervisor: stopping the bridges (SIGTERM to pid {pid})")
        _terminate(pid, lambda: supervisor_running(spec) == pid, _SUPERVISOR_STOP_TIMEOUT_S, log)
        child = _launched.pop(pid, None)
        if child is not None:
            # The supervisor removes its pid file before it exits, so "not running" above can
            # come a moment before the exit: reap our own child (no zombie, no ResourceWarning).
            child.wait(timeout=_SUPERVISOR_STOP_TIMEOUT_S)
        log("supervisor: stopped")
    supervisor_pid_file(spec).unlink(missing_ok=True)
    for bridge in bridges(spec):
        bridge_pid = read_pid(bridge.pid_file)
        if bridge_pid is not None and is_bridge_process(bridge_pid, spec, bridge):
            # Only after a supervisor that was killed outright (its bridges had SIGTERM).
            log(f"{bridge.name}: still running without its supervisor; stopping pid {bridge_pid}")
            alive = functools.partial(is_bridge_process, bridge_pid, spec, bridge)
            _terminate(bridge_pid, alive, BRIDGE_STOP_TIMEOUT_S, log)
        bridge.pid_file.unlink(missing_ok=True)


def _terminate(pid: int, alive: Callable[[], bool], timeout_s: float, log: Log) -> None:
    """SIGTERM ``pid`` (known to be the right process), wait ``timeout_s``, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive():
        if time.monotonic() >= deadline:
            log(f"pid {pid} ignored SIGTERM for {timeout_s:.0f} s; killing it")
            if alive():  # checked again just before: never a reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.1)

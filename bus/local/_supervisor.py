"""The supervisor of the local federation's bridges and correlators, and how ``bus local``
starts and stops it.

``bus local up`` starts ``bus local supervise --home H`` detached (a session of its own, output
to ``supervised/supervisor.log``, pid in ``supervised/supervisor.pid``) and returns once every
bridge direction answers ``/healthz`` with partitions assigned and every correlator is healthy.
The supervisor runs one ``bus bridge run`` per source agency (hosting its directions to every
other agency) and one ``bus correlate run`` per agency as its children, and:

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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from bus.errors import LocalClusterError
from bus.local import _prometheus
from bus.local._backoff import Backoff, BackoffPolicy
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    SERVICES,
    SupervisedBridge,
    SupervisedCorrelator,
    SupervisedProcess,
    alertmanager_port,
    bridge_command,
    bridge_process,
    bridges,
    check_ports,
    correlator_command,
    correlator_process,
    correlators,
    is_bridge_process,
    is_correlator_process,
    is_supervisor_process,
    jmx_ports,
    prometheus_port,
    read_pid,
    read_state,
    services,
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
    "direction_health",
    "kafka_targets",
    "run_supervisor",
    "register_targets",
    "start_bridges",
    "start_supervised",
    "start_supervisor",
    "wait_services",
    "stop_supervised",
    "supervisor_running",
    "wait_bridges",
    "wait_correlators",
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
        self.processes = [bridge_process(b, make_command(b)) for b in self.bridges] + [
            correlator_process(c, make_correlator(c)) for c in self.correlators
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


def _correlator_command(spec: FederationSpec, correlator: SupervisedCorrelator) -> list[str]:
    return correlator_command(spec, correlator)


def _wanted(
    spec: FederationSpec, *, with_bridges: bool, with_correlators: bool, with_prometheus: bool
) -> set[str]:
    names = {bridge.name for bridge in bridges(spec)} if with_bridges else set()
    names |= {c.name for c in correlators(spec)} if with_correlators else set()
    return names | (set(SERVICES) if with_prometheus else set())


def start_supervisor(
    spec: FederationSpec,
    *,
    log: Log,
    with_bridges: bool = True,
    with_correlators: bool = True,
    with_prometheus: bool = True,
) -> int:
    """Start the supervisor detached unless it runs; its pid. The federation must be up.

    Prepares Prometheus' and Alertmanager's files and registers every process's scrape target
    (:func:`register_targets`) first.
    """
    switches = {
        "with_bridges": with_bridges,
        "with_correlators": with_correlators,
        "with_prometheus": with_prometheus,
    }
    wanted = _wanted(spec, **switches)
    pid = supervisor_running(spec)
    if pid is not None:
        running = set(read_state(spec).get("processes", {}))
        if running and running != wanted:
            raise LocalClusterError(
                f"the supervisor (pid {pid}) runs {', '.join(sorted(running)) or 'nothing'}, "
                f"not {', '.join(sorted(wanted)) or 'nothing'}: run `bus local down`, then "
                "`bus local up` with the agencies and options you want"
            )
        log(f"supervisor: already running (pid {pid})")
        return pid
    check_ports(spec)
    supervised_dir(spec).mkdir(parents=True, exist_ok=True)
    if with_prometheus:
        _prometheus.prepare_prometheus(spec.home)
        _prometheus.prepare_alertmanager(spec.home)
        services(spec)  # the binaries are installed: fail here, with what to do, not in the child
    register_targets(spec, **switches)
    command = supervisor_command(spec, **switches)
    with supervisor_log(spec).open("ab") as output:
        process = subprocess.Popen(
            command,
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


def register_targets(
    spec: FederationSpec,
    *,
    with_bridges: bool = True,
    with_correlators: bool = True,
    with_prometheus: bool = True,
) -> None:
    """Write every process's scrape target for Prometheus' file-based discovery.

    Jobs: ``kafka`` (each node's JMX exporter, :func:`kafka_targets`), ``bridges`` (one target
    per worker, label ``worker``: ``bridge.<source>``; its metrics carry each direction's
    ``source`` and ``destination``), ``correlators`` (label ``worker``:
    ``correlator.<agency>``; its metrics carry ``agency``), ``supervisor``, ``prometheus``,
    ``alertmanager``. What is off gets an empty list, so that a Prometheus never waits for a
    process that was not started.
    """
    home = spec.home

    def target(port: int, **labels: str) -> _prometheus.Target:
        return _prometheus.Target(address=f"{HOST}:{port}", labels=labels)

    jobs: dict[str, list[_prometheus.Target]] = {
        "kafka": kafka_targets(spec),
        "bridges": [target(b.web_port, worker=b.name) for b in bridges(spec)]
        if with_bridges
        else [],
        "correlators": [target(c.web_port, worker=c.name) for c in correlators(spec)]
        if with_correlators
        else [],
        "supervisor": [target(supervisor_port(spec))],
        "prometheus": [target(prometheus_port(spec))] if with_prometheus else [],
        "alertmanager": [target(alertmanager_port(spec))] if with_prometheus else [],
    }
    for job, targets in jobs.items():
        _prometheus.write_targets(home, job, targets)


def kafka_targets(spec: FederationSpec) -> list[_prometheus.Target]:
    """Each node's JMX exporter as a scrape target, labelled with its ``agency`` (and with its
    ``node``, ``<agency>-<id>``, when the clusters have several nodes)."""
    ports = jmx_ports(spec)
    return [
        _prometheus.Target(
            address=f"{node.host}:{ports[node.name]}",
            labels={"agency": node.agency} | ({"node": node.name} if node.brokers > 1 else {}),
        )
        for node in spec.nodes()
    ]


def wait_services(spec: FederationSpec, *, log: Log, timeout_s: float = 60.0) -> None:
    """Wait until Prometheus and Alertmanager answer ``/-/ready`` (blocking).

    ``LocalClusterError`` if the supervisor exits, or they are not ready within ``timeout_s``,
    naming the logs to read.
    """
    urls = {
        "prometheus": f"http://{HOST}:{prometheus_port(spec)}",
        "alertmanager": f"http://{HOST}:{alertmanager_port(spec)}",
    }
    deadline = time.monotonic() + timeout_s
    pending = dict(urls)
    while pending:
        if supervisor_running(spec) is None:
            raise LocalClusterError(
                f"the supervisor exited while Prometheus and Alertmanager were starting; see "
                f"its log ({supervisor_log(spec)}): `bus local logs supervisor`"
            )
        for name, url in list(pending.items()):
            if _prometheus.answers(url, "/-/ready"):
                del pending[name]
                log(f"{name}: ready at {url}")
        if pending and time.monotonic() >= deadline:
            names = ", ".join(pending)
            raise LocalClusterError(
                f"{names} not ready within {timeout_s:.0f} s; see "
                + ", ".join(f"`bus local logs {name}`" for name in pending)
            )
        if pending:
            time.sleep(0.3)


def bridge_health(
    bridge: SupervisedBridge | SupervisedCorrelator, timeout_s: float = 2.0
) -> dict[str, Any] | None:
    """The worker's ``/healthz`` answer (also a 503's); None while it does not answer."""
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


def direction_health(
    bridge: SupervisedBridge, health: dict[str, Any] | None
) -> dict[str, dict[str, Any] | None]:
    """Each direction's own ``/healthz`` answer by its name (None where it has none): a worker of
    one direction answers for it alone, one of several lists them under ``directions``."""
    answers = health.get("directions", [health]) if health is not None else []
    by_name = {
        str(a.get("direction", "")).replace("->", "-"): a for a in answers if isinstance(a, dict)
    }
    return {name: by_name.get(name) for name in bridge.directions}


def _replicating(spec: FederationSpec, answer: dict[str, Any] | None) -> bool:
    # One worker a direction: it owns every partition of the events topic once ready.
    return (
        answer is not None
        and bool(answer.get("healthy"))
        and len(answer.get("partitions") or ()) >= spec.partitions
    )


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
            answers = direction_health(bridge, bridge_health(bridge))
            if all(_replicating(spec, answer) for answer in answers.values()):
                pending.remove(bridge)
                log(
                    f"{bridge.name}: replicating {', '.join(answers)}, {spec.partitions} "
                    f"partitions each ({time.monotonic() - started:.1f} s)"
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


def wait_correlators(
    spec: FederationSpec, *, log: Log, timeout_s: float = _BRIDGES_TIMEOUT_S
) -> None:
    """Wait until every correlator answers ``/healthz`` healthy (blocking); like
    :func:`wait_bridges`, ``LocalClusterError`` if the supervisor exits or on timeout."""
    started = time.monotonic()
    pending = correlators(spec)
    while pending:
        if supervisor_running(spec) is None:
            raise LocalClusterError(
                f"the supervisor exited while the correlators were starting; see its log "
                f"({supervisor_log(spec)}): `bus local logs supervisor`"
            )
        if time.monotonic() - started > timeout_s:
            raise LocalClusterError(
                f"correlators not healthy after {timeout_s:.0f} s: "
                f"{', '.join(c.name for c in pending)}. See why with `bus local logs "
                f"{pending[0].name}`, then `bus local down` or wait and check `bus local status`"
            )
        for correlator in list(pending):
            health = bridge_health(correlator)
            if health is not None and health.get("healthy"):
                pending.remove(correlator)
                log(f"{correlator.name}: correlating ({time.monotonic() - started:.1f} s)")
        if pending:
            time.sleep(0.3)


def start_bridges(spec: FederationSpec, *, log: Log, timeout_s: float = _BRIDGES_TIMEOUT_S) -> None:
    """Start the supervisor of ``spec``'s bridges (unless it runs) and wait until they replicate.

    No Prometheus (:func:`start_supervised` adds it). The clusters must be up
    (``bus.local.up``). Blocking. On failure the supervisor keeps running, restarting the
    bridges: the error says which log to read.
    """
    start_supervised(
        spec, log=log, with_correlators=False, with_prometheus=False, timeout_s=timeout_s
    )


def start_supervised(
    spec: FederationSpec,
    *,
    log: Log,
    with_bridges: bool = True,
    with_correlators: bool = True,
    with_prometheus: bool = True,
    timeout_s: float = _BRIDGES_TIMEOUT_S,
) -> None:
    """Start the supervisor (unless it runs) and wait until what it runs is ready: the bridges
    replicate, the correlators are healthy, Prometheus and Alertmanager answer. Blocking; the
    clusters must be up."""
    start_supervisor(
        spec,
        log=log,
        with_bridges=with_bridges,
        with_correlators=with_correlators,
        with_prometheus=with_prometheus,
    )
    if with_prometheus:
        wait_services(spec, log=log)
    if with_bridges:
        took = wait_bridges(spec, log=log, timeout_s=timeout_s)
        count = sum(len(b.directions) for b in bridges(spec))
        log(f"bridges: all {count} directions replicating ({took:.1f} s)")
    if with_correlators:
        wait_correlators(spec, log=log, timeout_s=timeout_s)


def stop_supervised(spec: FederationSpec, *, log: Log) -> None:
    """Stop the supervisor (which stops its bridges and correlators, then Prometheus and
    Alertmanager), then any of them left over (blocking)."""
    pid = supervisor_running(spec)
    if pid is not None:
        log(f"supervisor: stopping the bridges and correlators (SIGTERM to pid {pid})")
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
    for correlator in correlators(spec):
        found = read_pid(correlator.pid_file)
        if found is not None and is_correlator_process(found, spec, correlator):
            log(f"{correlator.name}: still running without its supervisor; stopping pid {found}")
            alive = functools.partial(is_correlator_process, found, spec, correlator)
            _terminate(found, alive, BRIDGE_STOP_TIMEOUT_S, log)
        correlator.pid_file.unlink(missing_ok=True)
    # The same for Prometheus and Alertmanager (their identity is checked there).
    for name, stop in (
        ("prometheus", _prometheus.stop_prometheus),
        ("alertmanager", _prometheus.stop_alertmanager),
    ):
        if _prometheus.running(spec.home, name) is not None:
            log(f"{name}: still running without its supervisor; stopping it")
        stop(spec.home)


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

"""How ``bus local`` starts the supervisor (``_supervisor``), waits until what it runs is
ready, and stops it and whatever it left running.

``bus local up`` starts ``bus local supervise --home H`` detached (a session of its own, output
to ``supervised/supervisor.log``, pid in ``supervised/supervisor.pid``) and returns once every
bridge direction answers ``/healthz`` with partitions assigned, every correlator is healthy and
Prometheus and Alertmanager are ready. ``stop_supervised`` stops the supervisor, and only by its
recorded pid checked against its command line; then any bridge or correlator whose recorded pid
still runs (a supervisor killed with SIGKILL left it), the same way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Final

from bus.errors import LocalClusterError
from bus.local import _prometheus
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    BRIDGE_STOP_TIMEOUT_S,
    SERVICES,
    SupervisedBridge,
    SupervisedWorker,
    alertmanager_port,
    bridges,
    check_ports,
    correlators,
    is_supervisor_process,
    is_worker_process,
    prometheus_port,
    read_pid,
    read_state,
    services,
    supervised_dir,
    supervisor_command,
    supervisor_log,
    supervisor_pid_file,
    worker_pid,
)
from bus.local._targets import register_targets

__all__ = [
    "bridge_health",
    "direction_health",
    "start_bridges",
    "start_supervised",
    "start_supervisor",
    "stop_supervised",
    "supervisor_running",
    "wait_bridges",
    "wait_correlators",
    "wait_services",
]

_SUPERVISOR_STOP_TIMEOUT_S: Final = BRIDGE_STOP_TIMEOUT_S + 15.0
_BRIDGES_TIMEOUT_S: Final = 180.0

Log = Callable[[str], None]

# Supervisors this process started, kept so that their exit status is collected (no zombies,
# no ResourceWarning): a child's pid is not reused before that, so signalling it is safe.
_launched: dict[int, subprocess.Popen[bytes]] = {}


def supervisor_running(spec: FederationSpec) -> int | None:
    """The supervisor's pid, if the recorded one still runs as this federation's supervisor."""
    pid = read_pid(supervisor_pid_file(spec))
    if pid is None:
        return None
    child = _launched.get(pid)
    if child is not None:
        return pid if child.poll() is None else None
    return pid if is_supervisor_process(pid, spec) else None


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


def _check_supervisor(spec: FederationSpec, starting: str) -> None:
    """``LocalClusterError`` if the supervisor exited while ``starting`` were starting."""
    if supervisor_running(spec) is None:
        raise LocalClusterError(
            f"the supervisor exited while {starting} were starting; see its log "
            f"({supervisor_log(spec)}): `bus local logs supervisor`"
        )


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
        _check_supervisor(spec, "Prometheus and Alertmanager")
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


def bridge_health(bridge: SupervisedWorker, timeout_s: float = 2.0) -> dict[str, Any] | None:
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
        _check_supervisor(spec, "the bridges")
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
        _check_supervisor(spec, "the correlators")
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
    workers: list[SupervisedWorker] = [*bridges(spec), *correlators(spec)]
    for worker in workers:
        found = worker_pid(spec, worker)
        if found is not None:
            # Only after a supervisor that was killed outright (its workers had SIGTERM).
            log(f"{worker.name}: still running without its supervisor; stopping pid {found}")
            alive = functools.partial(is_worker_process, found, spec, worker)
            _terminate(found, alive, BRIDGE_STOP_TIMEOUT_S, log)
        worker.pid_file.unlink(missing_ok=True)
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

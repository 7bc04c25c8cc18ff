"""Prometheus and Alertmanager beside the local federation, and their file-based discovery.

Everything lives under ``<home>/prometheus/``::

    prometheus.yml alerts.yml        copied from deploy/prometheus/ at each start
    consoles/ console_libraries/     the console pages Prometheus serves at /consoles/
    targets/<job>.json               the scrape targets, one file per job (file_sd_configs)
    alertmanager.yml                 deploy/prometheus/alertmanager.yml with the webhook URL
    data/ alertmanager-data/         their storage
    prometheus.pid alertmanager.pid  the processes, known by these pids only
    prometheus.log alertmanager.log  their output

Whoever starts a process that serves metrics registers it with :func:`write_targets`;
Prometheus reads a changed file within seconds, without a restart. A process is stopped only by
the pid recorded in its pid file, and only while ``/proc/PID/cmdline`` still names this home's
configuration, so one checkout never stops another's Prometheus. The binaries are Debian's
``prometheus`` and ``prometheus-alertmanager`` (``make prometheus``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bus.errors import LocalClusterError

__all__ = [
    "DEPLOY_PROMETHEUS",
    "JOBS",
    "Target",
    "Service",
    "start_prometheus",
    "stop_prometheus",
    "start_alertmanager",
    "stop_alertmanager",
    "running",
    "write_targets",
    "prepare_prometheus",
    "prepare_alertmanager",
    "prometheus_command",
    "alertmanager_command",
    "pid_file",
    "log_file",
    "answers",
    "DEFAULT_WEBHOOK_URL",
]

DEPLOY_PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"

JOBS = (
    "prometheus",
    "alertmanager",
    "bridges",
    "correlators",
    "subscribers",
    "kafka",
    "supervisor",
)
"""The target files that deploy/prometheus/prometheus.yml reads (``targets/<job>.json``)."""

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:5001/alerts"
"""Where deploy/prometheus/alertmanager.yml sends alerts unless told otherwise."""

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes started here, kept so that their exit status is collected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One ``host:port`` that serves ``/metrics``, with labels (``direction``, ``agency``)."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """A running Prometheus or Alertmanager: its pid and its address."""

    name: str
    pid: int
    url: str


def _folder(home: Path) -> Path:
    return home / "prometheus"


def write_targets(home: Path, job: str, targets: Sequence[Target]) -> Path:
    """Replace the targets of ``job`` (one of ``JOBS``); atomic, so Prometheus never reads half."""
    if job not in JOBS:
        raise ValueError(f"job: {job!r} is not one of {', '.join(JOBS)}")
    folder = _folder(home) / "targets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job}.json"
    groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in targets]
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(groups, indent=2) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise LocalClusterError(
            f"{name} is not installed: run `make prometheus` (Debian's prometheus and "
            "prometheus-alertmanager packages)"
        )
    return found


def pid_file(home: Path, name: str) -> Path:
    """Where the pid of this home's ``prometheus`` or ``alertmanager`` is recorded."""
    return _folder(home) / f"{name}.pid"


def log_file(home: Path, name: str) -> Path:
    """The output of this home's ``prometheus`` or ``alertmanager``."""
    return _folder(home) / f"{name}.log"


def answers(url: str, path: str = "/-/healthy", timeout_s: float = 2.0) -> bool:
    """Whether the Prometheus or Alertmanager at ``url`` answers 200 on ``path`` (blocking)."""
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def prepare_prometheus(home: Path) -> Path:
    """Copy the configuration, rules and consoles into ``home``; the configuration file.

    Target files already written are kept; missing ones are written empty.
    """
    folder = _folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copyfile(DEPLOY_PROMETHEUS / name, folder / name)
    for name in ("consoles", "console_libraries"):
        shutil.copytree(DEPLOY_PROMETHEUS / name, folder / name, dirs_exist_ok=True)
    for job in JOBS:
        if not (folder / "targets" / f"{job}.json").exists():
            write_targets(home, job, [])
    return folder / "prometheus.yml"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _recorded(pid_file: Path, config: Path) -> int | None:
    """The pid in ``pid_file`` if it still runs with ``config``; None otherwise."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return None
    return pid if f"--config.file={config}" in _cmdline(pid) else None


def running(home: Path, name: str) -> int | None:
    """The pid of this home's ``prometheus`` or ``alertmanager``, if it runs."""
    folder = _folder(home)
    return _recorded(folder / f"{name}.pid", folder / f"{name}.yml")


def _start(home: Path, name: str, command: list[str], config: Path, url: str) -> Service:
    folder = _folder(home)
    pid_file = folder / f"{name}.pid"
    if _recorded(pid_file, config) is not None:
        raise LocalClusterError(f"{name} of {home} already runs (pid file {pid_file})")
    with (folder / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C at the terminal of `bus local up` does not reach it
        )
    _children[process.pid] = process
    pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / f"{name}.log").read_text(errors="replace").splitlines()[-10:]
            raise LocalClusterError(
                f"{name} exited with {process.returncode} at start; its log says:\n"
                + "\n".join(tail)
            )
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return Service(name=name, pid=process.pid, url=url)
        time.sleep(0.2)
    _stop(home, name)
    raise LocalClusterError(f"{name} did not become ready at {url} in {_START_TIMEOUT_S:.0f} s")


def _stop(home: Path, name: str) -> bool:
    """SIGTERM the recorded process and wait; True if one was running."""
    folder = _folder(home)
    pid = running(home, name)
    (folder / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    child = _children.pop(pid, None)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            return True
        if child is None and not _cmdline(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if child is not None:
        child.wait(10)
    return True


def start_prometheus(
    home: Path,
    *,
    port: int,
    targets: Mapping[str, Sequence[Target]] | None = None,
    retention: str = "2d",
) -> Service:
    """Start Prometheus on ``127.0.0.1:port`` with ``targets`` (job -> targets); wait until ready.

    Prometheus scrapes itself; jobs not given keep the targets already written.
    """
    config = prepare_prometheus(home)
    write_targets(home, "prometheus", [Target(address=f"127.0.0.1:{port}")])
    for job, job_targets in (targets or {}).items():
        write_targets(home, job, job_targets)
    command = prometheus_command(home, port=port, retention=retention)
    return _start(home, "prometheus", command, config, f"http://127.0.0.1:{port}")


def prometheus_command(home: Path, *, port: int, retention: str = "2d") -> list[str]:
    """The command line of this home's Prometheus (after :func:`prepare_prometheus`)."""
    folder = _folder(home)
    config = folder / "prometheus.yml"
    return [
        _binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.console.templates={folder / 'consoles'}",
        f"--web.console.libraries={folder / 'console_libraries'}",
        "--web.enable-lifecycle",
    ]


def stop_prometheus(home: Path) -> bool:
    """Stop this home's Prometheus (SIGTERM, then wait); False if none ran."""
    return _stop(home, "prometheus")


def start_alertmanager(home: Path, *, port: int, webhook_url: str) -> Service:
    """Start Alertmanager on ``127.0.0.1:port``, sending every alert to ``webhook_url``.

    Registers it as Prometheus' Alertmanager (``targets/alertmanager.json``). Clustering is
    off, so that it opens no other port.
    """
    config = prepare_alertmanager(home, webhook_url=webhook_url)
    command = alertmanager_command(home, port=port)
    service = _start(home, "alertmanager", command, config, f"http://127.0.0.1:{port}")
    write_targets(home, "alertmanager", [Target(address=f"127.0.0.1:{port}")])
    return service


def prepare_alertmanager(home: Path, *, webhook_url: str = DEFAULT_WEBHOOK_URL) -> Path:
    """Write this home's ``alertmanager.yml``, sending every alert to ``webhook_url``."""
    folder = _folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "alertmanager.yml"
    text = (DEPLOY_PROMETHEUS / "alertmanager.yml").read_text(encoding="utf-8")
    text = text.replace(DEFAULT_WEBHOOK_URL, webhook_url)
    config.write_text(text, encoding="utf-8")
    return config


def alertmanager_command(home: Path, *, port: int) -> list[str]:
    """The command line of this home's Alertmanager (after :func:`prepare_alertmanager`).

    Clustering is off, so that it opens no other port.
    """
    folder = _folder(home)
    return [
        _binary("prometheus-alertmanager"),
        f"--config.file={folder / 'alertmanager.yml'}",
        f"--storage.path={folder / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]


def stop_alertmanager(home: Path) -> bool:
    """Stop this home's Alertmanager; False if none ran."""
    write_targets(home, "alertmanager", [])
    return _stop(home, "alertmanager")

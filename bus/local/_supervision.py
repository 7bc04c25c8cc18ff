"""What ``bus local`` supervises, and where: processes, their ports, files and command lines.

The supervisor keeps three kinds of process running: a bridge worker per source agency, hosting
every direction from it (``bus bridge run --from A --to B --to C``, decision 0017), a correlator
per agency (``bus correlate run``), and the services beside the federation, Prometheus and
Alertmanager (``_prometheus``). Pure description plus the checks that tell a recorded pid still
is the process it was recorded for; the running supervisor is ``_supervisor``, started and
stopped by ``_control``. Under the federation's home::

    supervised/supervisor.pid      the supervisor's pid
    supervised/supervisor.log      what it did: starts, exits, restarts, stops
    supervised/state.json          each supervised process: pid, state, restarts, last exit
    supervised/bridge.<from>.pid   the pid of the bridge worker of agency <from>'s directions
    supervised/bridge.<from>.log   its output
    supervised/correlator.<a>.pid  the pid of agency <a>'s correlator
    supervised/correlator.<a>.log  its output
    prometheus/                    Prometheus and Alertmanager: pids, logs, data (_prometheus)

The port plan, one contiguous block of :func:`port_count` ports from ``base_port`` (so that a
test takes one free block), for ``n`` agencies of ``b`` nodes each (``b`` is 1 by default):

- ``base_port + 2(ib + k)`` and the port after it: node ``k`` of agency ``i`` (clients,
  controller);
- ``base_port + 2nb + i``: the web port (``/metrics``, ``/healthz``) of the bridge worker of
  agency ``i``'s directions (to every other agency, in the order given);
- ``base_port + 2nb + n + i``: the web port of agency ``i``'s correlator;
- then the supervisor's ``/metrics``, Prometheus, Alertmanager;
- then the JMX exporter of node ``k`` of agency ``i`` (the node's ``/metrics``, ``_jmx``), in
  the same order as the nodes.

Two agencies from 19092: nodes 19092-19095, bridges 19096 (bridge.interpol: interpol-europol)
and 19097 (bridge.europol: europol-interpol), correlators 19098 (interpol) and 19099 (europol),
supervisor 19100, Prometheus 19101, Alertmanager 19102, JMX exporters 19103 (interpol) and
19104 (europol).
"""

from __future__ import annotations

import abc
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from bus.errors import LocalClusterError
from bus.local import _prometheus
from bus.local._spec import HOST, FederationSpec

__all__ = [
    "BRIDGE_STOP_TIMEOUT_S",
    "SERVICES",
    "SupervisedBridge",
    "SupervisedCorrelator",
    "SupervisedProcess",
    "SupervisedWorker",
    "alertmanager_port",
    "jmx_ports",
    "port_count",
    "prometheus_port",
    "service_urls",
    "services",
    "bridge_command",
    "bridges",
    "check_ports",
    "correlator_command",
    "correlators",
    "is_bridge_process",
    "is_correlator_process",
    "is_supervisor_process",
    "is_worker_process",
    "log_files",
    "read_pid",
    "read_state",
    "supervised_dir",
    "supervisor_command",
    "supervisor_log",
    "supervisor_pid_file",
    "supervisor_port",
    "worker_pid",
    "state_file",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisedWorker(abc.ABC):
    """A worker that the supervisor keeps running (a bridge's or a correlator's): its web port
    (``/metrics``, ``/healthz``) and its files in ``dir``."""

    kind: ClassVar[str]
    web_port: int
    dir: Path

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """``<kind>.<agency>``: what ``bus local status`` and ``logs`` call it."""

    @property
    @abc.abstractmethod
    def details(self) -> tuple[tuple[str, Any], ...]:
        """What ``state.json`` records of it besides its name, kind, port and files."""

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.web_port}"

    def process(self, command: list[str]) -> SupervisedProcess:
        """It as the supervisor runs it, with ``command``."""
        return SupervisedProcess(
            name=self.name,
            kind=self.kind,
            port=self.web_port,
            command=tuple(command),
            pid_file=self.pid_file,
            log_file=self.log_file,
            details=self.details,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisedBridge(SupervisedWorker):
    """One bridge worker that the supervisor keeps running: every direction from ``source``."""

    kind: ClassVar[str] = "bridge"
    source: str
    destinations: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"bridge.{self.source}"

    @property
    def directions(self) -> tuple[str, ...]:
        """Its directions by name, ``<source>-<destination>``, in the order of its ``--to``."""
        return tuple(f"{self.source}-{d}" for d in self.destinations)

    @property
    def details(self) -> tuple[tuple[str, Any], ...]:
        return (
            ("source", self.source),
            ("directions", list(self.directions)),
            ("web_port", self.web_port),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisedCorrelator(SupervisedWorker):
    """The correlator of one agency (``bus correlate run --agency``)."""

    kind: ClassVar[str] = "correlator"
    agency: str

    @property
    def name(self) -> str:
        return f"correlator.{self.agency}"

    @property
    def details(self) -> tuple[tuple[str, Any], ...]:
        return (("agency", self.agency), ("web_port", self.web_port))


BRIDGE_STOP_TIMEOUT_S: Final = 30.0
"""How long a bridge (or a correlator) may take to stop cleanly after SIGTERM before it is
killed."""

SERVICES = ("prometheus", "alertmanager")
"""The services beside the federation, by the names ``bus local status`` and ``logs`` use."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisedProcess:
    """Anything the supervisor keeps running: its command line, files and what to record.

    ``kind`` is ``bridge``, ``correlator`` or a service's name; ``details`` go into
    ``state.json`` as they are. Bridges and correlators are stopped first, services after.
    """

    name: str
    kind: str
    port: int
    command: tuple[str, ...]
    pid_file: Path
    log_file: Path
    details: tuple[tuple[str, Any], ...] = ()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def supervised_dir(spec: FederationSpec) -> Path:
    return spec.home / "supervised"


def supervisor_pid_file(spec: FederationSpec) -> Path:
    return supervised_dir(spec) / "supervisor.pid"


def supervisor_log(spec: FederationSpec) -> Path:
    return supervised_dir(spec) / "supervisor.log"


def state_file(spec: FederationSpec) -> Path:
    return supervised_dir(spec) / "state.json"


def bridges(spec: FederationSpec) -> list[SupervisedBridge]:
    """One bridge worker per source agency, hosting its directions to every other agency."""
    first = spec.base_port + 2 * len(spec.agencies) * spec.brokers
    return [
        SupervisedBridge(
            source=source,
            destinations=tuple(a for a in spec.agencies if a != source),
            web_port=first + i,
            dir=supervised_dir(spec),
        )
        for i, source in enumerate(spec.agencies)
    ]


def correlators(spec: FederationSpec) -> list[SupervisedCorrelator]:
    """One correlator per agency, its web port after the bridges'."""
    n = len(spec.agencies)
    first = spec.base_port + 2 * n * spec.brokers + n
    return [
        SupervisedCorrelator(agency=agency, web_port=first + i, dir=supervised_dir(spec))
        for i, agency in enumerate(spec.agencies)
    ]


def supervisor_port(spec: FederationSpec) -> int:
    """The supervisor's own ``/metrics`` port, after the bridges' and correlators' web ports."""
    n = len(spec.agencies)
    return spec.base_port + 2 * n * spec.brokers + 2 * n


def prometheus_port(spec: FederationSpec) -> int:
    """Prometheus' web port (its UI, API, consoles and ``/metrics``), after the supervisor's."""
    return supervisor_port(spec) + 1


def alertmanager_port(spec: FederationSpec) -> int:
    """Alertmanager's web port, after Prometheus'."""
    return supervisor_port(spec) + 2


def jmx_ports(spec: FederationSpec) -> dict[str, int]:
    """Each node's JMX exporter port (its ``/metrics``) by node name, after Alertmanager's.

    A lone node's name is its agency's (``_spec.Node.name``)."""
    first = supervisor_port(spec) + 3
    return {node.name: first + i for i, node in enumerate(spec.nodes())}


def port_count(agencies: int, brokers: int = 1) -> int:
    """How many consecutive ports from ``base_port`` a federation of ``agencies`` uses, with
    ``brokers`` nodes per agency."""
    n, b = agencies, brokers
    return 2 * n * b + 2 * n + 3 + n * b


def service_urls(spec: FederationSpec) -> dict[str, str]:
    """Where to look: Prometheus, the console page it serves, Alertmanager."""
    prometheus = f"http://{HOST}:{prometheus_port(spec)}"
    return {
        "prometheus": prometheus,
        "console": f"{prometheus}/consoles/exchange-bus.html",
        "alertmanager": f"http://{HOST}:{alertmanager_port(spec)}",
    }


def check_ports(spec: FederationSpec) -> None:
    """``LocalClusterError`` unless every process's port (the plan above) is a valid port."""
    port = spec.base_port + port_count(len(spec.agencies), spec.brokers) - 1
    if port > 65535:
        raise LocalClusterError(
            f"the federation's processes need ports up to {port}, past 65535; start the "
            "federation lower with `bus local up --base-port N`"
        )


def log_files(spec: FederationSpec) -> dict[str, Path]:
    """Every process's log by the name ``bus local logs`` takes: nodes (a lone node by its
    agency's name), bridges (``bridge.<source>``), correlators (``correlator.<agency>``),
    supervisor, prometheus, alertmanager."""
    files = {node.name: node.log_file for node in spec.nodes()}
    files.update({bridge.name: bridge.log_file for bridge in bridges(spec)})
    files.update({c.name: c.log_file for c in correlators(spec)})
    files["supervisor"] = supervisor_log(spec)
    files.update({name: _prometheus.log_file(spec.home, name) for name in SERVICES})
    return files


def services(spec: FederationSpec) -> list[SupervisedProcess]:
    """Prometheus and Alertmanager as the supervisor runs them (their files prepared first:
    ``_prometheus.prepare_prometheus`` and ``prepare_alertmanager``)."""
    home = spec.home
    commands = {
        "prometheus": _prometheus.prometheus_command(home, port=prometheus_port(spec)),
        "alertmanager": _prometheus.alertmanager_command(home, port=alertmanager_port(spec)),
    }
    ports = {"prometheus": prometheus_port(spec), "alertmanager": alertmanager_port(spec)}
    return [
        SupervisedProcess(
            name=name,
            kind=name,
            port=ports[name],
            command=tuple(commands[name]),
            pid_file=_prometheus.pid_file(home, name),
            log_file=_prometheus.log_file(home, name),
        )
        for name in SERVICES
    ]


# --- command lines and the identity of recorded pids ---------------------------------------


def supervisor_command(
    spec: FederationSpec,
    *,
    with_bridges: bool = True,
    with_correlators: bool = True,
    with_prometheus: bool = True,
) -> list[str]:
    command = [sys.executable, "-m", "bus", "local", "supervise", "--home", str(spec.home)]
    if not with_bridges:
        command.append("--no-bridges")
    if not with_correlators:
        command.append("--no-correlators")
    if not with_prometheus:
        command.append("--no-prometheus")
    return command


def bridge_command(spec: FederationSpec, bridge: SupervisedBridge) -> list[str]:
    to = [part for destination in bridge.destinations for part in ("--to", destination)]
    return _worker_command(spec, bridge, ["bridge", "run"], ["--from", bridge.source, *to])


def correlator_command(spec: FederationSpec, correlator: SupervisedCorrelator) -> list[str]:
    return _worker_command(spec, correlator, ["correlate", "run"], ["--agency", correlator.agency])


def _worker_command(
    spec: FederationSpec, worker: SupervisedWorker, command: list[str], options: list[str]
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bus",
        *command,
        "--config",
        str(spec.config_file),
        *options,
        "--web-port",
        str(worker.web_port),
        "--loglevel",
        "info",
    ]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _has(args: list[str], option: str, value: str) -> bool:
    return any(a == option and b == value for a, b in itertools.pairwise(args))


def _values(args: list[str], option: str) -> list[str]:
    return [b for a, b in itertools.pairwise(args) if a == option]


def is_supervisor_process(pid: int, spec: FederationSpec) -> bool:
    """Whether ``pid`` runs this federation's supervisor (its command line says so)."""
    args = _cmdline(pid)
    return "supervise" in args and _has(args, "--home", str(spec.home))


def is_bridge_process(pid: int, spec: FederationSpec, bridge: SupervisedBridge) -> bool:
    """Whether ``pid`` runs this federation's ``bridge`` (its command line says so)."""
    args = _cmdline(pid)
    return (
        "bridge" in args
        and _has(args, "--config", str(spec.config_file))
        and _has(args, "--from", bridge.source)
        and _values(args, "--to") == list(bridge.destinations)
    )


def is_correlator_process(pid: int, spec: FederationSpec, correlator: SupervisedCorrelator) -> bool:
    """Whether ``pid`` runs this federation's ``correlator`` (its command line says so)."""
    args = _cmdline(pid)
    return (
        "correlate" in args
        and _has(args, "--config", str(spec.config_file))
        and _has(args, "--agency", correlator.agency)
    )


def is_worker_process(pid: int, spec: FederationSpec, worker: SupervisedWorker) -> bool:
    """Whether ``pid`` runs this federation's ``worker``, a bridge or a correlator."""
    if isinstance(worker, SupervisedBridge):
        return is_bridge_process(pid, spec, worker)
    return isinstance(worker, SupervisedCorrelator) and is_correlator_process(pid, spec, worker)


def worker_pid(spec: FederationSpec, worker: SupervisedWorker) -> int | None:
    """The pid recorded for ``worker``, if that process still runs as this federation's
    ``worker``."""
    pid = read_pid(worker.pid_file)
    return pid if pid is not None and is_worker_process(pid, spec, worker) else None


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` (None if none is readable); not checked."""
    try:
        return int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def read_state(spec: FederationSpec) -> dict[str, Any]:
    """The supervisor's last written state (``{}`` when there is none or it is unreadable)."""
    try:
        state: dict[str, Any] = json.loads(state_file(spec).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state

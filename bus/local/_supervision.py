"""What ``bus local`` supervises, and where: the bridges, their ports, files and command lines.

Pure description plus the checks that tell a recorded pid still is the process it was recorded
for; the running supervisor is ``_supervisor``. Under the federation's home::

    supervised/supervisor.pid      the supervisor's pid
    supervised/supervisor.log      what it did: starts, exits, restarts, stops
    supervised/state.json          each supervised process: pid, state, restarts, last exit
    supervised/<from>-<to>.pid     a bridge's pid
    supervised/<from>-<to>.log     a bridge's output

Ports follow the nodes' (``base_port + 2*i`` and the next for agency ``i`` of ``n``): the
bridges' web ports (``/metrics``, ``/healthz``) are ``base_port + 2n + j`` for the ``j``-th
ordered pair of agencies (in the order given), then the supervisor's ``/metrics``. Two agencies
from 19092: nodes 19092-19095, bridges 19096 (interpol-europol) and 19097 (europol-interpol),
supervisor 19098.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.errors import LocalClusterError
from bus.local._spec import HOST, FederationSpec

__all__ = [
    "SupervisedBridge",
    "bridge_command",
    "bridges",
    "check_ports",
    "is_bridge_process",
    "is_supervisor_process",
    "log_files",
    "read_pid",
    "read_state",
    "supervised_dir",
    "supervisor_command",
    "supervisor_log",
    "supervisor_pid_file",
    "supervisor_port",
    "state_file",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisedBridge:
    """One bridge direction that the supervisor keeps running."""

    source: str
    destination: str
    web_port: int
    dir: Path

    @property
    def name(self) -> str:
        return f"{self.source}-{self.destination}"

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.web_port}"


def supervised_dir(spec: FederationSpec) -> Path:
    return spec.home / "supervised"


def supervisor_pid_file(spec: FederationSpec) -> Path:
    return supervised_dir(spec) / "supervisor.pid"


def supervisor_log(spec: FederationSpec) -> Path:
    return supervised_dir(spec) / "supervisor.log"


def state_file(spec: FederationSpec) -> Path:
    return supervised_dir(spec) / "state.json"


def bridges(spec: FederationSpec) -> list[SupervisedBridge]:
    """One bridge per ordered pair of distinct agencies, with its web port."""
    first = spec.base_port + 2 * len(spec.agencies)
    return [
        SupervisedBridge(
            source=source, destination=destination, web_port=first + j, dir=supervised_dir(spec)
        )
        for j, (source, destination) in enumerate(itertools.permutations(spec.agencies, 2))
    ]


def supervisor_port(spec: FederationSpec) -> int:
    """The supervisor's own ``/metrics`` port, after the bridges' web ports."""
    n = len(spec.agencies)
    return spec.base_port + 2 * n + n * (n - 1)


def check_ports(spec: FederationSpec) -> None:
    """``LocalClusterError`` unless every supervised process's port is a valid port."""
    port = supervisor_port(spec)
    if port > 65535:
        raise LocalClusterError(
            f"the supervised processes need ports up to {port}, past 65535; start the "
            "federation lower with `bus local up --base-port N`"
        )


def log_files(spec: FederationSpec) -> dict[str, Path]:
    """Every process's log by the name ``bus local logs`` takes: agencies, bridges, supervisor."""
    files = {node.agency: node.log_file for node in spec.nodes()}
    files.update({bridge.name: bridge.log_file for bridge in bridges(spec)})
    files["supervisor"] = supervisor_log(spec)
    return files


# --- command lines and the identity of recorded pids ---------------------------------------


def supervisor_command(spec: FederationSpec) -> list[str]:
    return [sys.executable, "-m", "bus", "local", "supervise", "--home", str(spec.home)]


def bridge_command(spec: FederationSpec, bridge: SupervisedBridge) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bus",
        "bridge",
        "run",
        "--config",
        str(spec.config_file),
        "--from",
        bridge.source,
        "--to",
        bridge.destination,
        "--web-port",
        str(bridge.web_port),
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
        and _has(args, "--to", bridge.destination)
    )


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

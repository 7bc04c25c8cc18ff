"""The processes of local Kafka nodes: start one, find it again, tell how it ended, stop it.

A node is known by the pid recorded in its pid file, and only by that: nothing scans the machine
for processes that look like a node, so other checkouts' and other test runs' nodes are never
touched. Before a recorded pid is signalled, its ``/proc/PID/cmdline`` must still name this
node's own ``server.properties``, so a pid reused by another process is never signalled.

Everything here blocks (sockets, ``subprocess``, waiting for a node to exit); async callers run
it with ``asyncio.to_thread``. :func:`port_open` is the one async probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bus.errors import LocalClusterError
from bus.local._node_files import java_command
from bus.local._spec import HOST, FederationSpec, Node

__all__ = [
    "diagnose",
    "exit_status",
    "port_open",
    "recorded_pid",
    "rss_mib",
    "start",
    "stop",
    "tail",
]

STOP_TIMEOUT_S = 60.0

Log = Callable[[str], None]

# Nodes this process started, kept so that their exit status is collected (no zombies, and no
# ResourceWarning from a Popen collected while its node runs on purpose). A child's pid cannot
# be reused before its exit status is collected, so signalling it is always safe.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_node_process(pid: int, node: Node) -> bool:
    args = _cmdline(pid)
    return "kafka.Kafka" in args and str(node.properties_file) in args


def exit_status(node: Node, pid: int) -> str | None:
    """None while ``pid`` runs as ``node``; else how it ended, as far as can be known."""
    child = _children.get(pid)
    if child is not None:
        # Started here: the exit status is certain (and /proc may lag behind it).
        code = child.poll()
        if code is None:
            return None
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit status {code}"
    return None if _is_node_process(pid, node) else "no longer running"


def recorded_pid(node: Node) -> int | None:
    """The pid in the node's pid file, if that process still runs as this node."""
    try:
        pid = int(node.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if exit_status(node, pid) is None else None


def start(
    java: Path,
    spec: FederationSpec,
    node: Node,
    *,
    agent: str | None = None,
    agent_port: int | None = None,
) -> int:
    """Start the node (its files prepared) in a session of its own; record and return its pid.

    ``agent`` is a ``-javaagent:`` argument for the JVM that listens on ``agent_port``. A node
    with a launcher (``spec.launcher``) runs under it; its ports are then not checked here:
    they are in the launcher's world (a network namespace of its own), not in this one.
    """
    launcher = spec.launcher(node.agency)
    ports = (node.broker_port, node.controller_port)
    for port in () if launcher else (*ports, agent_port) if agent_port is not None else ports:
        if not _port_free(port, node.host):
            raise LocalClusterError(
                f"cannot start {node.name}: port {port} on {node.host} is already in use by "
                "another process; stop it, or start the federation on other ports with "
                "`bus local up --base-port N`"
            )
    main = ["kafka.Kafka", str(node.properties_file)]
    with node.console_file.open("ab") as console:
        process = subprocess.Popen(
            [*launcher, *java_command(java, spec, node, main, agent=agent)],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            cwd=node.dir,
            start_new_session=True,  # the node outlives the `bus local up` that started it
            close_fds=True,
        )
    _children[process.pid] = process
    node.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
    return process.pid


def stop(targets: Sequence[tuple[Node, int]], *, log: Log) -> None:
    """Stop each ``(node, pid)`` with SIGTERM and wait for it to exit (SIGKILL after a minute).

    A pid that no longer runs as its node is left alone. The pid files of the nodes are removed.
    """
    signalled: list[tuple[Node, int]] = []
    for node, pid in targets:
        if _signal(node, pid, signal.SIGTERM):
            signalled.append((node, pid))
            log(f"{node.name}: stopping (pid {pid})")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for node, pid in signalled:
        if not _wait_gone(node, pid, deadline):
            log(f"{node.name}: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s; killing")
            _signal(node, pid, signal.SIGKILL)
            _wait_gone(node, pid, float("inf"))
        log(f"{node.name}: stopped")
    for node, pid in targets:
        _children.pop(pid, None)
        node.pid_file.unlink(missing_ok=True)


def _signal(node: Node, pid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to ``pid`` if it still runs as ``node``; whether it was sent."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            return False  # ended and collected: the pid may belong to someone else by now
        child.send_signal(signum)
        return True
    if not _is_node_process(pid, node):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    return True


def _wait_gone(node: Node, pid: int, deadline: float) -> bool:
    # exit_status collects a child's exit status, so the node does not linger as a zombie whose
    # /proc entry still looks alive.
    while exit_status(node, pid) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def rss_mib(pid: int) -> float | None:
    """The resident memory of ``pid`` in MiB, if it can be read."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def _port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


async def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on ``host:port`` (a plain TCP probe, 0.5 s at
    most)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def diagnose(node: Node) -> str:
    """A one-line cause for a node that exited during startup, from its logs."""
    text = tail(node.console_file, 200) + "\n" + tail(node.log_file, 200)
    if "Address already in use" in text:
        return (
            f"a port of {node.name} ({node.broker_port} or {node.controller_port}) is in use; "
            "stop what holds it, or choose other ports with --base-port"
        )
    if "ClassNotFoundException" in text or "Could not find or load main class" in text:
        return "the Kafka jars are incomplete; remove the jar cache folder and run again"
    if "OutOfMemoryError" in text:
        return "the JVM ran out of heap; give the node more with --heap-mb"
    if "Invalid cluster.id" in text or "InconsistentClusterIdException" in text:
        return "its data folder belongs to another cluster; run `bus local reset`"
    return "see its log"

"""The local federation: one real single-node Apache Kafka cluster (KRaft) per agency.

Each node is an independent cluster (its own cluster id, KRaft quorum and data) running as
combined broker and controller on loopback ports. Agency ``i`` (0-based, in the order given)
listens on ``base_port + 2*i`` (clients) and ``base_port + 2*i + 1`` (its controller).

State lives under one home folder (``bus.config.default_home()``)::

    local.toml                 the federation's shape: agencies, ports, heap (for later commands)
    bus.toml                   the configuration every bus command reads (bus.config)
    keys/                      a signing key per agency and trust.toml, made on first start
    policy.toml                the release policy between the agencies (bus._provisioning)
    nodes/<agency>/            server.properties, log4j2.properties, node.pid
    nodes/<agency>/data/       the KRaft metadata and topic logs (survive down/up)
    nodes/<agency>/logs/       server.log (the broker's log) and console.log (the JVM's output)

Keys are valid from a day before they were made (``bus.keyring.BACKDATE``), so that events
written just before ``up`` still verify. Keys are never replaced; a later ``up`` with more
agencies adds keys for the new ones, and rewrites the policy only if nobody edited it.

Starting waits for an admin call to succeed on every node (never a sleep), then creates the bus
topics. Stopping sends SIGTERM and waits, so Kafka shuts down cleanly; nothing is left running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from bus._kafka_install import ensure_jars, find_java
from bus._local_spec import (
    DEFAULT_AGENCIES,
    FederationSpec,
    Node,
    NodeStatus,
    load_spec,
    save_spec,
)
from bus._node_files import HOST, java_command, log4j_properties, server_properties
from bus._provisioning import ensure_keys, ensure_policy
from bus.config import AgencySettings, Config, render_toml
from bus.errors import LocalClusterError

__all__ = [
    "DEFAULT_AGENCIES",
    "FederationSpec",
    "Node",
    "NodeStatus",
    "down",
    "load_spec",
    "reset",
    "status",
    "up",
]

_STARTUP_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 60.0

Log = Callable[[str], None]

# Nodes this process started, kept so that their exit status is collected (no zombies, and no
# ResourceWarning from a Popen collected while its node runs on purpose).
_children: dict[int, subprocess.Popen[bytes]] = {}


# --- processes ----------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_node_process(pid: int, node: Node) -> bool:
    args = _cmdline(pid)
    return "kafka.Kafka" in args and str(node.properties_file) in args


def _node_pids(node: Node) -> list[int]:
    """Every live process of this node: the one in its pid file, and any stray one."""
    pids: set[int] = set()
    with contextlib.suppress(OSError, ValueError):
        pid = int(node.pid_file.read_text().strip())
        if _is_node_process(pid, node):
            pids.add(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_node_process(int(entry.name), node):
            pids.add(int(entry.name))
    return sorted(pids)


def _exit_status(node: Node, pid: int) -> str | None:
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


def _rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _diagnose(node: Node) -> str:
    """A one-line cause for a node that exited during startup, from its logs."""
    text = _tail(node.console_file, 200) + "\n" + _tail(node.log_file, 200)
    if "Address already in use" in text:
        return (
            f"a port of {node.agency} ({node.broker_port} or {node.controller_port}) is in use; "
            "stop what holds it, or choose other ports with --base-port"
        )
    if "ClassNotFoundException" in text or "Could not find or load main class" in text:
        return "the Kafka jars are incomplete; remove the jar cache folder and run again"
    if "OutOfMemoryError" in text:
        return "the JVM ran out of heap; give the node more with --heap-mb"
    if "Invalid cluster.id" in text or "InconsistentClusterIdException" in text:
        return "its data folder belongs to another cluster; run `bus local reset`"
    return "see its log"


# --- node files ---------------------------------------------------------------------------


def _cluster_id() -> str:
    # Kafka's Uuid as its tools print it: url-safe base64 of 16 random bytes, never leading '-'.
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def _prepare(java: Path, spec: FederationSpec, node: Node) -> None:
    """Write the node's files and format its storage on first start."""
    node.log_file.parent.mkdir(parents=True, exist_ok=True)
    node.properties_file.write_text(server_properties(node), encoding="utf-8")
    node.log4j_file.write_text(log4j_properties(node), encoding="utf-8")
    if (node.data_dir / "meta.properties").exists():
        return
    command = java_command(
        java,
        spec,
        node,
        [
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(node.properties_file),
            "--standalone",
        ],
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise LocalClusterError(
            f"formatting the storage of {node.agency} failed (exit {result.returncode}): "
            f"{(result.stdout + result.stderr).strip()[-500:]}"
        )


def _start(java: Path, spec: FederationSpec, node: Node) -> int:
    for port in (node.broker_port, node.controller_port):
        if not _port_free(port):
            raise LocalClusterError(
                f"cannot start {node.agency}: port {port} on {HOST} is already in use by "
                "another process; stop it, or start the federation on other ports with "
                "`bus local up --base-port N`"
            )
    with node.console_file.open("ab") as console:
        process = subprocess.Popen(
            java_command(java, spec, node, ["kafka.Kafka", str(node.properties_file)]),
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


# --- readiness and topics -----------------------------------------------------------------


async def _wait_ready(node: Node, pid: int, deadline: float) -> str:
    """Wait until the node answers an admin call; return its cluster id."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    last_error = "no answer yet"
    while time.monotonic() < deadline:
        status = _exit_status(node, pid)
        if status is not None:
            raise LocalClusterError(
                f"the Kafka node of {node.agency} (pid {pid}) exited during startup "
                f"({status}): {_diagnose(node)}. "
                f"Log: {node.log_file} (JVM output: {node.console_file})\n"
                f"{_tail(node.console_file) or _tail(node.log_file)}"
            )
        # A plain TCP probe first: aiokafka logs every refused connection at ERROR level.
        if _port_open(node.broker_port):
            admin = AIOKafkaAdminClient(bootstrap_servers=node.bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                return str(cluster["cluster_id"])
            except (TimeoutError, KafkaError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            finally:
                await admin.close()
        await asyncio.sleep(0.2)
    raise LocalClusterError(
        f"the Kafka node of {node.agency} (pid {pid}) did not answer on {node.bootstrap} within "
        f"{_STARTUP_TIMEOUT_S:.0f}s ({last_error}); see its log: {node.log_file}"
    )


async def _ensure_topics(spec: FederationSpec, node: Node) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    wanted = [
        NewTopic(spec.topics.events, spec.partitions, 1),
        # The owner of the data must always be able to say what left and what was refused.
        NewTopic(spec.topics.quarantine, 3, 1, topic_configs=forever),
        NewTopic(spec.topics.audit, 3, 1, topic_configs=forever),
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=node.bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *rest in response.topic_errors:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent up)
                    message = rest[0] if rest else ""
                    raise LocalClusterError(
                        f"creating topic {name!r} on {node.agency} failed: error {code} {message}"
                    )
    finally:
        await admin.close()


# --- the federation -----------------------------------------------------------------------


def _write_config(spec: FederationSpec) -> Config:
    keys = spec.keys_dir
    policy = spec.policy_file
    agencies = {}
    for node in spec.nodes():
        signing_key = keys / f"{node.agency}.key.pem"
        trust = keys / "trust.toml"
        agencies[node.agency] = AgencySettings(
            name=node.agency,
            bootstrap_servers=(node.bootstrap,),
            signing_key=signing_key if signing_key.exists() else None,
            trust_store=trust if trust.exists() else None,
        )
    config = Config(
        path=spec.config_file,
        agencies=agencies,
        topics=spec.topics,
        policy_file=policy if policy.exists() else None,
    )
    spec.config_file.write_text(
        render_toml(
            config,
            header="The local federation's configuration, written by `bus local up`.\n"
            "Every bus command reads it; edit it to point at other clusters.",
        ),
        encoding="utf-8",
    )
    return config


async def up(spec: FederationSpec, *, log: Log = lambda _: None) -> Config:
    """Start every node that is not running, wait until all answer, create the bus topics.

    Harmless when the federation already runs. Returns the configuration it wrote.
    """
    java = find_java(spec.java_home)
    ensure_jars(spec.jar_dir, log=log)
    spec.home.mkdir(parents=True, exist_ok=True)
    save_spec(spec)
    ensure_keys(spec.keys_dir, spec.agencies, log=log)
    ensure_policy(spec.policy_file, spec.agencies, log=log)
    started: dict[str, int] = {}
    nodes = spec.nodes()
    try:
        for node in nodes:
            pids = _node_pids(node)
            if pids:
                log(f"{node.agency}: already running (pid {pids[0]}) on {node.bootstrap}")
                started[node.agency] = pids[0]
                continue
            _prepare(java, spec, node)
            started[node.agency] = _start(java, spec, node)
            log(f"{node.agency}: starting (pid {started[node.agency]}) on {node.bootstrap}")
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        cluster_ids = await asyncio.gather(
            *(_wait_ready(node, started[node.agency], deadline) for node in nodes)
        )
        await asyncio.gather(*(_ensure_topics(spec, node) for node in nodes))
    except BaseException:
        # Leave nothing half-started behind a failed `up`.
        down(replace(spec), log=log, only=[n.agency for n in nodes if n.agency in started])
        raise
    for node, cluster_id in zip(nodes, cluster_ids, strict=True):
        log(f"{node.agency}: ready on {node.bootstrap} (cluster id {cluster_id})")
    return _write_config(spec)


def down(
    spec: FederationSpec, *, log: Log = lambda _: None, only: Sequence[str] | None = None
) -> None:
    """Stop every node with SIGTERM and wait for it to exit (SIGKILL after a minute)."""
    nodes = [n for n in spec.nodes() if only is None or n.agency in only]
    signalled: dict[str, list[int]] = {}
    for node in nodes:
        pids = _node_pids(node)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if pids:
            signalled[node.agency] = pids
            log(f"{node.agency}: stopping (pid {', '.join(map(str, pids))})")
        else:
            log(f"{node.agency}: not running")
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for node in nodes:
        for pid in signalled.get(node.agency, []):
            while _is_node_process(pid, node) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if _is_node_process(pid, node):
                log(f"{node.agency}: pid {pid} ignored SIGTERM for {_STOP_TIMEOUT_S:.0f}s; killing")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while _is_node_process(pid, node):
                    _reap(pid)
                    time.sleep(0.05)
        node.pid_file.unlink(missing_ok=True)
        if node.agency in signalled:
            log(f"{node.agency}: stopped")


def _reap(pid: int) -> None:
    # When this process started the node (tests do), it must collect the exit status, or the
    # node lingers as a zombie whose /proc entry still looks alive.
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def reset(spec: FederationSpec, *, log: Log = lambda _: None) -> None:
    """Stop the federation and wipe its state: data, logs, keys and configuration."""
    down(spec, log=log)
    if spec.home.exists():
        shutil.rmtree(spec.home)
        log(f"wiped {spec.home}")


async def status(spec: FederationSpec) -> list[NodeStatus]:
    """Each node's process, reachability, cluster id, topics and memory."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    result = []
    for node in spec.nodes():
        pids = _node_pids(node)
        pid = pids[0] if pids else None
        if pid is None or not _port_open(node.broker_port):
            result.append(NodeStatus(node=node, pid=pid, reachable=False))
            continue
        admin = AIOKafkaAdminClient(bootstrap_servers=node.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            topics = tuple(sorted(t for t in await admin.list_topics() if not t.startswith("__")))
            result.append(
                NodeStatus(
                    node=node,
                    pid=pid,
                    reachable=True,
                    cluster_id=str(cluster["cluster_id"]),
                    topics=topics,
                    rss_mib=_rss_mib(pid),
                )
            )
        except (TimeoutError, KafkaError, OSError):
            result.append(NodeStatus(node=node, pid=pid, reachable=False, rss_mib=_rss_mib(pid)))
        finally:
            await admin.close()
    return result


def iter_node_pids(spec: FederationSpec) -> Iterator[tuple[Node, int]]:
    """Every live process of the federation's nodes (for tests that inject faults)."""
    for node in spec.nodes():
        for pid in _node_pids(node):
            yield node, pid

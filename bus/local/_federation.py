"""The federation's operations: ``up``, ``down``, ``status``, ``reset``.

``up`` provides keys and policy (``_provisioning``), prepares and starts the nodes that are not
running (``_node_files``, ``_processes``), waits until every node answers an admin call (never a
sleep), creates the bus topics and writes ``bus.toml``. ``up`` is async; everything blocking in it
(Java and Maven, formatting storage, starting and stopping processes) runs in a worker thread, so
the event loop keeps running. ``down`` and ``reset`` block until the nodes exited: from async
code, call them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar

from bus.config import AgencySettings, Config, render_toml
from bus.errors import LocalClusterError
from bus.local import _prometheus
from bus.local._acls import apply_acls, cluster_acls
from bus.local._control import stop_supervised
from bus.local._install import ensure_jars, find_java
from bus.local._jmx import ensure_agent, javaagent_argument
from bus.local._node_files import cluster_id_for, prepare_node
from bus.local._processes import (
    diagnose,
    exit_status,
    port_open,
    recorded_pid,
    rss_mib,
    start,
    stop,
    tail,
)
from bus.local._progress import reporting
from bus.local._provisioning import ensure_keys, ensure_policy
from bus.local._spec import FederationSpec, Node, NodeStatus, save_spec
from bus.local._supervision import check_ports, jmx_ports
from bus.local._targets import kafka_targets
from bus.local._tls import (
    admin_principal,
    app_principal,
    bridge_principal,
    certificate_info,
    correlator_principal,
    ensure_certificates,
    tls_layout,
)

__all__ = ["admin_settings", "cluster_admin", "down", "iter_node_pids", "reset", "status", "up"]

_STARTUP_TIMEOUT_S = 90.0

Log = Callable[[str], None]
T = TypeVar("T")


# --- up -----------------------------------------------------------------------------------


async def up(spec: FederationSpec, *, log: Log = lambda _: None) -> Config:
    """Start every node that is not running, wait until all answer, create the bus topics.

    Harmless when the federation already runs. Returns the configuration it wrote. When it
    fails (or is cancelled), it stops the nodes that it started, and only those: nodes that
    were running before keep running.
    """
    nodes = spec.nodes()
    launched: list[tuple[Node, int]] = []
    try:
        pids = await _run_to_the_end(lambda: _launch(spec, nodes, launched, log))
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        ready: list[str] = []

        def report(elapsed: float) -> None:
            waiting = ", ".join(n.name for n in nodes if n.name not in ready)
            count = f"{len(ready)}/{len(nodes)}"
            what = "clusters" if spec.brokers == 1 else "nodes"
            log(f"waiting for {what}: {count} ready ({elapsed:.0f} s; {waiting})")

        async with reporting(report):
            cluster_ids = await _all(
                _wait_ready(spec, node, pids[node.name], deadline, ready) for node in nodes
            )
        await _all(_ensure_topics(spec, agency) for agency in spec.agencies)
        if not spec.insecure_plaintext:
            acls = cluster_acls(spec.agencies, spec.topics)
            await _all(apply_acls(cluster_admin(spec, a), acls[a]) for a in spec.agencies)
    except BaseException:
        # Leave nothing half-started behind a failed `up`.
        await asyncio.to_thread(stop, launched, log=log)
        raise
    for node, cluster_id in zip(nodes, cluster_ids, strict=True):
        log(f"{node.name}: ready on {node.bootstrap} (cluster id {cluster_id})")
    return await asyncio.to_thread(_write_config, spec)


def _launch(
    spec: FederationSpec, nodes: Sequence[Node], launched: list[tuple[Node, int]], log: Log
) -> dict[str, int]:
    """Provide keys and policy, start the nodes that are not running; each node's pid.

    Blocking (Java, Maven, storage formatting). Each node it starts is appended to ``launched``
    at once, so that a failure midway still knows what to stop.
    """
    java = find_java(spec.java_home)
    check_ports(spec)
    _check_layout(spec)
    ensure_jars(spec.jar_dir, log=log)
    ensure_agent(spec.jar_dir, log=log)
    spec.home.mkdir(parents=True, exist_ok=True)
    save_spec(spec)
    ensure_keys(spec.keys_dir, spec.agencies, log=log)
    ensure_policy(spec.policy_file, spec.agencies, log=log)
    renewed: set[str] = set()
    if spec.insecure_plaintext:
        log(
            "WARNING: --insecure-plaintext: every listener is plaintext, with no client "
            "authentication and no ACLs; anyone who reaches a port can read and write anything. "
            "For development only."
        )
    else:
        for agency in spec.agencies:
            peers = [p for p in spec.agencies if p != agency]
            named = [spec.hosts[agency]] if agency in spec.hosts else []
            if ensure_certificates(tls_layout(spec, agency), peers, log=log, hosts=named):
                renewed.add(agency)
    pids: dict[str, int] = {}
    exporters = jmx_ports(spec)
    # Each node's JMX exporter is a scrape target from its start (job kafka, label agency).
    _prometheus.write_targets(spec.home, "kafka", kafka_targets(spec))
    for node in nodes:
        pid = recorded_pid(node)
        if pid is not None:
            _check_mode(spec, node)
            if node.agency in renewed:
                log(
                    f"{node.name}: its node certificate was renewed; the running node uses "
                    "the old one until `bus local down` and `up`"
                )
            log(f"{node.name}: already running (pid {pid}) on {node.bootstrap}")
            pids[node.name] = pid
    waiting = [node for node in nodes if node.name not in pids]
    # Formatting is a JVM run per new node: all at once, each cluster's nodes with one id.
    ids = {node.agency: cluster_id_for(spec.cluster(node.agency)) for node in waiting}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(waiting))) as pool:
        for prepared in [
            pool.submit(prepare_node, java, spec, n, cluster_id=ids[n.agency]) for n in waiting
        ]:
            prepared.result()
    for node in waiting:
        port = exporters[node.name]
        agent = javaagent_argument(spec.jar_dir, port, host=node.host)
        pid = start(java, spec, node, agent=agent, agent_port=port)
        launched.append((node, pid))
        log(
            f"{node.name}: starting (pid {pid}) on {node.bootstrap}, "
            f"broker metrics on http://{node.host}:{port}/metrics"
        )
        pids[node.name] = pid
    return pids


def _check_layout(spec: FederationSpec) -> None:
    """Refuse to start clusters of another size on the data of earlier ones.

    A lone node keeps ``nodes/<agency>``, the nodes of a larger cluster ``nodes/<agency>-<id>``
    (``_spec``); data in a folder of the other layout, or of a node past this cluster's size,
    belongs to a cluster of another size, with another quorum.
    """
    wanted = {node.dir for node in spec.nodes()}
    root = spec.home / "nodes"
    for agency in spec.agencies:
        others = [root / agency, *root.glob(f"{agency}-[0-9]*")]
        stale = sorted(
            d for d in others if d not in wanted and (d / "data" / "meta.properties").exists()
        )
        if stale:
            raise LocalClusterError(
                f"{stale[0]} holds the data of {agency}'s cluster of another size (this asks "
                f"for {spec.brokers} node(s) a cluster); start it as it was (`bus local up "
                "--brokers N`), or wipe the federation with `bus local reset`, or use another "
                "--home"
            )


def _check_mode(spec: FederationSpec, node: Node) -> None:
    """Refuse to use a running node started in the other mode (mTLS or plaintext)."""
    try:
        running_tls = "ssl.client.auth=required" in node.properties_file.read_text("utf-8")
    except OSError:
        return
    if running_tls == spec.insecure_plaintext:
        now, wanted = ("mTLS", "plaintext") if running_tls else ("plaintext", "mTLS")
        raise LocalClusterError(
            f"the node {node.name} runs with {now}, and {wanted} was asked for; run "
            "`bus local down` first, then `bus local up` with the mode you want"
        )


def admin_settings(spec: FederationSpec, node: Node) -> AgencySettings:
    """How ``bus local`` reaches ``node``: as the agency's admin (a super user) over mTLS."""
    return _admin(spec, node.agency, (node.bootstrap,))


def cluster_admin(spec: FederationSpec, agency: str) -> AgencySettings:
    """How ``bus local`` reaches ``agency``'s cluster through any of its nodes, as its admin."""
    return _admin(spec, agency, spec.bootstrap_servers(agency))


def _admin(spec: FederationSpec, agency: str, servers: tuple[str, ...]) -> AgencySettings:
    settings = AgencySettings(name=agency, bootstrap_servers=servers)
    if spec.insecure_plaintext:
        return settings
    layout = tls_layout(spec, agency)
    return AgencySettings(
        name=agency, bootstrap_servers=servers, tls=layout.client(admin_principal(agency))
    )


async def _run_to_the_end(func: Callable[[], T]) -> T:
    """``func()`` in a worker thread, waited for to its end even when the caller is cancelled.

    A launch abandoned midway could go on to start a node that the failure path never hears of.
    """
    future = asyncio.get_running_loop().run_in_executor(None, func)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved here: the cancellation is what propagates
        raise


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of them concurrently; on the first failure, cancel and await the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _wait_ready(
    spec: FederationSpec, node: Node, pid: int, deadline: float, ready: list[str]
) -> str:
    """Wait until the node answers an admin call and knows every broker of its cluster; return
    its cluster id (and add its name to ``ready``)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    from bus._kafka import client_options

    options = client_options(admin_settings(spec, node), client_id=f"bus-local-{node.name}")
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        status = exit_status(node, pid)
        if status is not None:
            raise LocalClusterError(
                f"the Kafka node {node.name} (pid {pid}) exited during startup "
                f"({status}): {diagnose(node)}. "
                f"Log: {node.log_file} (JVM output: {node.console_file})\n"
                f"{tail(node.console_file) or tail(node.log_file)}"
            )
        # A plain TCP probe first: aiokafka logs every refused connection at ERROR level.
        if await port_open(node.broker_port, node.host):
            admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
                # A broker of a larger cluster answers before its peers registered; topics of
                # its replication factor can be created only once all of them did.
                known = len(cluster.get("brokers") or ())
                if known >= node.brokers:
                    ready.append(node.name)
                    return str(cluster["cluster_id"])
                last_error = f"{known} of {node.brokers} brokers registered"
            except (TimeoutError, KafkaError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            finally:
                await admin.close()
        await asyncio.sleep(0.2)
    raise LocalClusterError(
        f"the Kafka node {node.name} (pid {pid}) did not answer on {node.bootstrap} within "
        f"{_STARTUP_TIMEOUT_S:.0f}s ({last_error}); see its log: {node.log_file}"
    )


# --- topics and configuration -----------------------------------------------------------


async def _ensure_topics(spec: FederationSpec, agency: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    factor = spec.replication_factor
    replicated = {"min.insync.replicas": str(spec.min_insync_replicas)}
    forever = {**replicated, "retention.ms": "-1", "retention.bytes": "-1"}
    wanted = [
        NewTopic(spec.topics.events, spec.partitions, factor, topic_configs=replicated),
        # The owner of the data must always be able to say what left and what was refused.
        NewTopic(spec.topics.quarantine, 3, factor, topic_configs=forever),
        NewTopic(spec.topics.audit, 3, factor, topic_configs=forever),
    ]
    from bus._kafka import client_options

    admin = AIOKafkaAdminClient(
        **client_options(cluster_admin(spec, agency), client_id=f"bus-local-{agency}"),
        request_timeout_ms=30000,
    )
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
                        f"creating topic {name!r} on {agency} failed: error {code} {message}"
                    )
    finally:
        await admin.close()


def _write_config(spec: FederationSpec) -> Config:
    keys = spec.keys_dir
    policy = spec.policy_file
    agencies = {}
    for agency in spec.agencies:
        signing_key = keys / f"{agency}.key.pem"
        trust = keys / "trust.toml"
        tls = None
        identities = {}
        if not spec.insecure_plaintext:
            layout = tls_layout(spec, agency)
            tls = layout.client(app_principal(agency))
            identities["admin"] = layout.client(admin_principal(agency))
            correlator = correlator_principal(agency)
            identities[correlator] = layout.client(correlator)
            for peer in spec.agencies:
                if peer != agency:
                    for src, dst in ((agency, peer), (peer, agency)):
                        role = bridge_principal(src, dst)
                        identities[role] = layout.client(role)
        agencies[agency] = AgencySettings(
            name=agency,
            bootstrap_servers=spec.bootstrap_servers(agency),
            tls=tls,
            identities=identities,
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


# --- down, reset, status -----------------------------------------------------------------


def down(
    spec: FederationSpec, *, log: Log = lambda _: None, only: Sequence[str] | None = None
) -> None:
    """Stop the bridges' supervisor, then every node (SIGTERM, wait; SIGKILL after a minute).

    The bridges go first, so that none is left mid-transaction against a stopping cluster.
    Only the processes recorded in pid files are stopped. With ``only``, just those nodes (the
    supervisor keeps running): an agency's name stands for every node of its cluster, a node's
    name (``<agency>-<id>``) for that node. Blocking: from async code, call it with
    ``asyncio.to_thread``.
    """
    if only is None:
        stop_supervised(spec, log=log)
    targets: list[tuple[Node, int]] = []
    for node in spec.nodes():
        if only is not None and node.agency not in only and node.name not in only:
            continue
        pid = recorded_pid(node)
        if pid is None:
            log(f"{node.name}: not running")
            node.pid_file.unlink(missing_ok=True)
        else:
            targets.append((node, pid))
    stop(targets, log=log)


def reset(spec: FederationSpec, *, log: Log = lambda _: None) -> None:
    """Stop the federation and wipe its state: data, logs, keys and configuration (blocking)."""
    down(spec, log=log)
    if spec.home.exists():
        shutil.rmtree(spec.home)
        log(f"wiped {spec.home}")


async def status(spec: FederationSpec) -> list[NodeStatus]:
    """Each node's process, reachability, cluster id, topics and memory."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    from bus._kafka import client_options

    result = []
    for node in spec.nodes():
        pid = recorded_pid(node)
        certificates = _certificates(spec, node.agency) if node.node_id == 1 else ()
        if pid is None or not await port_open(node.broker_port, node.host):
            result.append(
                NodeStatus(node=node, pid=pid, reachable=False, certificates=certificates)
            )
            continue
        admin = AIOKafkaAdminClient(
            **client_options(admin_settings(spec, node), client_id=f"bus-local-{node.name}"),
            request_timeout_ms=5000,
        )
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
                    rss_mib=rss_mib(pid),
                    certificates=certificates,
                )
            )
        except (TimeoutError, KafkaError, OSError):
            result.append(
                NodeStatus(
                    node=node,
                    pid=pid,
                    reachable=False,
                    rss_mib=rss_mib(pid),
                    certificates=certificates,
                )
            )
        finally:
            await admin.close()
    return result


def _certificates(spec: FederationSpec, agency: str) -> tuple[tuple[str, datetime], ...]:
    """Each certificate of ``agency``'s folder (by file stem) and when it expires."""
    if spec.insecure_plaintext:
        return ()
    folder = tls_layout(spec, agency).dir
    result = []
    for path in sorted(folder.glob("*.pem")) if folder.is_dir() else ():
        if path.name.endswith(".key.pem") or path.name.endswith(".keystore.pem"):
            continue
        info = certificate_info(path)
        if info is not None:
            result.append((path.name.removesuffix(".pem"), info.not_after))
    return tuple(result)


def iter_node_pids(spec: FederationSpec) -> Iterator[tuple[Node, int]]:
    """Each running node of the federation and its recorded pid (for tests that inject faults)."""
    for node in spec.nodes():
        pid = recorded_pid(node)
        if pid is not None:
            yield node, pid

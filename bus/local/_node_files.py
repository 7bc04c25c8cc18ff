"""The files of one local Kafka node: its properties, its JVM command line, its formatted storage.

Rendering is pure; :func:`prepare_node` writes the files into the node's folder and formats its
KRaft storage on first start (a short ``StorageTool`` run, so it blocks: call it off the event
loop).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from bus.errors import LocalClusterError
from bus.local._spec import FederationSpec, Node, replication
from bus.local._tls import (
    PRINCIPAL_MAPPING_RULES,
    TlsLayout,
    admin_principal,
    broker_principal,
    tls_layout,
)

__all__ = [
    "cluster_id_for",
    "cluster_id_of",
    "java_command",
    "log4j_properties",
    "prepare_node",
    "server_properties",
]

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def server_properties(node: Node, tls: TlsLayout | None, cluster: Sequence[Node] = ()) -> str:
    """``server.properties``: one KRaft node, broker and controller, on ``node.host``.

    ``cluster``: every node of the agency's cluster (default: ``node`` alone). A lone node
    bootstraps its quorum by itself (``--standalone``); the nodes of a larger cluster are the
    static voters of one quorum, and every topic, ``__consumer_offsets`` and
    ``__transaction_state`` included, gets the replication of :func:`bus.local._spec.replication`.

    With ``tls`` (the default of ``bus local up``) both listeners are SSL and require a client
    certificate of the agency's CA, the StandardAuthorizer denies whatever no ACL allows, and
    the super users are the node itself and the agency's admin. Without, plaintext with no
    authentication and no authorizer (``--insecure-plaintext``, for development only).
    """
    if tls is None:
        listeners = (
            f"listeners=PLAINTEXT://{node.host}:{node.broker_port},"
            f"CONTROLLER://{node.host}:{node.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://{node.host}:{node.broker_port}\n"
            "inter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
        )
    else:
        supers = f"User:{broker_principal(node.agency)};User:{admin_principal(node.agency)}"
        # Both listeners, and the node's own client side of them (broker -> controller), use
        # the node's certificate; the controller listener requires a certificate too.
        listeners = (
            f"listeners=BROKER://{node.host}:{node.broker_port},"
            f"CONTROLLER://{node.host}:{node.controller_port}\n"
            f"advertised.listeners=BROKER://{node.host}:{node.broker_port}\n"
            "inter.broker.listener.name=BROKER\n"
            "listener.security.protocol.map=BROKER:SSL,CONTROLLER:SSL\n"
            "ssl.client.auth=required\n"
            "ssl.keystore.type=PEM\n"
            f"ssl.keystore.location={tls.keystore(node.node_id)}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={tls.ca_file}\n"
            "ssl.endpoint.identification.algorithm=https\n"
            "ssl.enabled.protocols=TLSv1.3,TLSv1.2\n"
            f"ssl.principal.mapping.rules={PRINCIPAL_MAPPING_RULES}\n"
            f"authorizer.class.name={AUTHORIZER}\n"
            "allow.everyone.if.no.acl.found=false\n"
            f"super.users={supers}\n"
        )
    if node.brokers == 1:
        quorum = (
            f"# Written by `bus local up`: a single-node KRaft cluster for agency {node.agency}.\n"
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.bootstrap.servers={node.host}:{node.controller_port}\n"
        )
    else:
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in cluster or (node,))
        quorum = (
            f"# Written by `bus local up`: node {node.node_id} of the {node.brokers}-node KRaft "
            f"cluster of agency {node.agency}.\n"
            "process.roles=broker,controller\n"
            f"node.id={node.node_id}\n"
            f"controller.quorum.voters={voters}\n"
            "unclean.leader.election.enable=false\n"
        )
    factor, min_isr = replication(node.brokers)
    return f"""\
{quorum}controller.listener.names=CONTROLLER
{listeners}log.dirs={node.data_dir}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor={factor}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={factor}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={factor}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor={factor}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
# The kernel sizes the sockets' buffers (autotuning) instead of Kafka's fixed 100 KiB, which
# would cap each connection at a few hundred KiB per round trip: ~2 MB/s at 100 ms RTT.
socket.send.buffer.bytes=-1
socket.receive.buffer.bytes=-1
"""


def log4j_properties(node: Node) -> str:
    """``log4j2.properties``: the node logs to a rolling file, never to the terminal."""
    return f"""\
# Written by `bus local up`: the node logs to a file, never to the terminal.
status = error
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {node.log_file}
appender.file.filePattern = {node.log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def java_command(
    java: Path, spec: FederationSpec, node: Node, main: Sequence[str], *, agent: str | None = None
) -> list[str]:
    """The JVM command line that runs ``main`` (a class and its arguments) for ``node``.

    ``agent``: a ``-javaagent:`` argument (the broker's JMX exporter, ``_jmx``).
    """
    return [
        str(java),
        f"-Xmx{spec.heap_mb}m",
        f"-Xms{min(spec.heap_mb, 256)}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.log4j_file}",
        *([agent] if agent else []),
        "-cp",
        f"{spec.jar_dir}/*",
        *main,
    ]


def prepare_node(
    java: Path, spec: FederationSpec, node: Node, *, cluster_id: str | None = None
) -> None:
    """Write the node's files and format its storage on first start.

    The nodes of one cluster share its cluster id: ``cluster_id`` (give the same to nodes
    formatted at once), else the one of an already formatted node of the cluster, else new.
    """
    node.log_file.parent.mkdir(parents=True, exist_ok=True)
    tls = None if spec.insecure_plaintext else tls_layout(spec, node.agency)
    cluster = spec.cluster(node.agency)
    node.properties_file.write_text(server_properties(node, tls, cluster), encoding="utf-8")
    node.log4j_file.write_text(log4j_properties(node), encoding="utf-8")
    if (node.data_dir / "meta.properties").exists():
        return
    cluster_id = cluster_id or cluster_id_for(cluster)
    # A lone node makes itself its quorum; the nodes of a larger one list their voters.
    bootstrap = ["--standalone"] if node.brokers == 1 else []
    command = java_command(
        java,
        spec,
        node,
        [
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(node.properties_file),
            *bootstrap,
        ],
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise LocalClusterError(
            f"formatting the storage of {node.name} failed (exit {result.returncode}): "
            f"{(result.stdout + result.stderr).strip()[-500:]}"
        )


def cluster_id_of(node: Node) -> str | None:
    """The cluster id in the node's formatted storage (None before it was formatted)."""
    try:
        text = (node.data_dir / "meta.properties").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id" and value.strip():
            return value.strip()
    return None


def cluster_id_for(cluster: Sequence[Node]) -> str:
    """The id of the cluster of ``cluster``'s nodes: a formatted node's, else a new one."""
    known = (cluster_id_of(node) for node in cluster)
    return next((found for found in known if found is not None), None) or _cluster_id()


def _cluster_id() -> str:
    # Kafka's Uuid as its tools print it: url-safe base64 of 16 random bytes, never leading '-'.
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value

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
from bus.local._spec import FederationSpec, Node
from bus.local._tls import (
    PRINCIPAL_MAPPING_RULES,
    TlsLayout,
    admin_principal,
    broker_principal,
    tls_layout,
)

__all__ = ["java_command", "log4j_properties", "prepare_node", "server_properties"]

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def server_properties(node: Node, tls: TlsLayout | None) -> str:
    """``server.properties``: one KRaft node, broker and controller, on ``node.host``.

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
            f"ssl.keystore.location={tls.node_keystore}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={tls.ca_file}\n"
            "ssl.endpoint.identification.algorithm=https\n"
            "ssl.enabled.protocols=TLSv1.3,TLSv1.2\n"
            f"ssl.principal.mapping.rules={PRINCIPAL_MAPPING_RULES}\n"
            f"authorizer.class.name={AUTHORIZER}\n"
            "allow.everyone.if.no.acl.found=false\n"
            f"super.users={supers}\n"
        )
    return f"""\
# Written by `bus local up`: a single-node KRaft cluster for agency {node.agency}.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={node.host}:{node.controller_port}
controller.listener.names=CONTROLLER
{listeners}log.dirs={node.data_dir}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
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


def prepare_node(java: Path, spec: FederationSpec, node: Node) -> None:
    """Write the node's files and format its storage on first start."""
    node.log_file.parent.mkdir(parents=True, exist_ok=True)
    tls = None if spec.insecure_plaintext else tls_layout(spec, node.agency)
    node.properties_file.write_text(server_properties(node, tls), encoding="utf-8")
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


def _cluster_id() -> str:
    # Kafka's Uuid as its tools print it: url-safe base64 of 16 random bytes, never leading '-'.
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value

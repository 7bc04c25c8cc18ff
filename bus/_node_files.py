"""The files and command line of one local Kafka node (``bus.local``'s node rendering)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from bus.local import FederationSpec, Node

__all__ = ["HOST", "java_command", "log4j_properties", "server_properties"]

HOST: Final = "127.0.0.1"
"""Every local node listens on loopback only."""


def server_properties(node: Node) -> str:
    """``server.properties``: one KRaft node, broker and controller, plaintext on loopback."""
    return f"""\
# Written by `bus local up`: a single-node KRaft cluster for agency {node.agency}.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={HOST}:{node.controller_port}
listeners=PLAINTEXT://{HOST}:{node.broker_port},CONTROLLER://{HOST}:{node.controller_port}
advertised.listeners=PLAINTEXT://{HOST}:{node.broker_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={node.data_dir}
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


def java_command(java: Path, spec: FederationSpec, node: Node, main: Sequence[str]) -> list[str]:
    """The JVM command line that runs ``main`` (a class and its arguments) for ``node``."""
    return [
        str(java),
        f"-Xmx{spec.heap_mb}m",
        f"-Xms{min(spec.heap_mb, 256)}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.log4j_file}",
        "-cp",
        f"{spec.jar_dir}/*",
        *main,
    ]

"""The Prometheus JMX exporter on the local Kafka nodes: the agent jar and its JVM argument.

Each node's JVM runs the exporter as a java agent that serves the broker's MBeans, filtered by
``deploy/prometheus/jmx-kafka.yml``, at ``http://127.0.0.1:PORT/metrics``. The agent comes from
Maven Central with the Kafka jars (``deploy/kafka/pom.xml``); a jar folder fetched before the
POM named it gets the agent alone, added beside the Kafka jars (nothing there is replaced, so
nodes running from that folder are not disturbed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bus.errors import LocalClusterError
from bus.local._install import KAFKA_POM

__all__ = ["JMX_RULES", "agent_jar", "ensure_agent", "exporter_version", "javaagent_argument"]

JMX_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "jmx-kafka.yml"
"""The exporter's rules: which MBeans become which metrics (docs/operations.md lists them)."""

_ARTIFACT = "jmx_prometheus_javaagent"


def exporter_version(pom: Path = KAFKA_POM) -> str:
    """The JMX exporter version that ``pom`` pins (its ``jmx.exporter.version`` property)."""
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise LocalClusterError(f"{pom}: cannot read the Kafka POM ({exc.strerror})") from exc
    match = re.search(r"<jmx\.exporter\.version>\s*([^<\s]+)\s*</jmx\.exporter\.version>", text)
    if match is None:
        raise LocalClusterError(f"{pom}: no <jmx.exporter.version> property")
    return match.group(1)


def agent_jar(lib: Path, *, pom: Path = KAFKA_POM) -> Path:
    """The agent jar in the folder of Kafka jars ``lib``; ``LocalClusterError`` if absent."""
    jar = lib / f"{_ARTIFACT}-{exporter_version(pom)}.jar"
    if not jar.is_file():
        raise LocalClusterError(
            f"{jar} is missing: the Kafka nodes' metrics need the JMX exporter agent; run "
            "`bus local install` (Maven fetches it with the Kafka jars)"
        )
    return jar


def ensure_agent(lib: Path, *, pom: Path = KAFKA_POM, log: Callable[[str], None]) -> Path:
    """The agent jar in ``lib``, fetched there by Maven first if the folder lacks it."""
    version = exporter_version(pom)
    jar = lib / f"{_ARTIFACT}-{version}.jar"
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalClusterError(
            f"{jar} is missing and Maven is not installed to fetch it: apt-get install maven"
        )
    log(f"fetching the Prometheus JMX exporter {version} with Maven into {lib} ...")
    artifact = f"io.prometheus.jmx:{_ARTIFACT}:{version}:jar"
    result = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={lib}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not jar.is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise LocalClusterError(
            f"Maven could not fetch {artifact} (exit {result.returncode}); check that Maven "
            f"Central is reachable. Maven said:\n{tail}"
        )
    return jar


def javaagent_argument(
    lib: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    rules: Path = JMX_RULES,
    pom: Path = KAFKA_POM,
) -> str:
    """The ``-javaagent:JAR=HOST:PORT:RULES`` JVM argument that serves a node's metrics."""
    if not 0 < port < 65536:
        raise ValueError(f"port: {port} is not a TCP port")
    if not rules.is_file():
        raise LocalClusterError(f"{rules}: the JMX exporter's rules file is missing")
    return f"-javaagent:{agent_jar(lib, pom=pom)}={host}:{port}:{rules}"

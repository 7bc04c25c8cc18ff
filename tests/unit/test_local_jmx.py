"""``bus.local._jmx``: the JMX exporter's rules file and the java agent argument of a node."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bus.errors import LocalClusterError
from bus.local._install import KAFKA_POM
from bus.local._jmx import JMX_RULES, agent_jar, exporter_version, javaagent_argument


def test_the_rules_file_parses_and_each_rule_has_a_pattern_that_compiles_and_a_name() -> None:
    config = yaml.safe_load(JMX_RULES.read_text(encoding="utf-8"))
    assert config["lowercaseOutputName"] is True
    rules = config["rules"]
    assert len(rules) >= 8
    for rule in rules:
        re.compile(rule["pattern"])  # Java's regex syntax; these use the common subset
        assert re.fullmatch(r"kafka_[a-z_$0-9]+", rule["name"]), rule
        assert rule.get("type", "UNTYPED") in ("GAUGE", "COUNTER")
    names = {rule["name"] for rule in rules}
    assert "kafka_server_replicamanager_$1" in names
    assert "kafka_controller_kafkacontroller_$1" in names


def test_the_rules_match_the_mbeans_operators_watch() -> None:
    """The exporter's form of an MBean attribute: domain<key=value, ...><>attribute."""
    patterns = [rule["pattern"] for rule in yaml.safe_load(JMX_RULES.read_text())["rules"]]
    watched = [
        "kafka.server<type=ReplicaManager, name=UnderReplicatedPartitions><>Value",
        "kafka.controller<type=KafkaController, name=OfflinePartitionsCount><>Value",
        "kafka.controller<type=KafkaController, name=ActiveControllerCount><>Value",
        "kafka.network<type=RequestMetrics, name=TotalTimeMs, request=Produce><>99thPercentile",
        "kafka.network<type=RequestMetrics, name=TotalTimeMs, request=EndTxn><>999thPercentile",
        "kafka.log<type=Log, name=Size, topic=intel.events, partition=0><>Value",
        "kafka.server<type=transaction-coordinator-metrics><>partition-load-time-max",
    ]
    for mbean in watched:
        assert any(re.fullmatch(p, mbean) for p in patterns), mbean
    unwatched = "kafka.network<type=RequestMetrics, name=TotalTimeMs, request=Heartbeat><>Count"
    assert not any(re.fullmatch(p, unwatched) for p in patterns)


def test_the_javaagent_argument_names_the_jar_the_port_and_the_rules(tmp_path: Path) -> None:
    jar = tmp_path / f"jmx_prometheus_javaagent-{exporter_version()}.jar"
    jar.write_bytes(b"")
    assert javaagent_argument(tmp_path, 19500) == f"-javaagent:{jar}=127.0.0.1:19500:{JMX_RULES}"
    with pytest.raises(ValueError, match="port: 0"):
        javaagent_argument(tmp_path, 0)
    with pytest.raises(LocalClusterError, match="rules file is missing"):
        javaagent_argument(tmp_path, 19500, rules=tmp_path / "absent.yml")


def test_a_missing_agent_jar_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match="bus local install"):
        agent_jar(tmp_path)


def test_the_version_comes_from_the_pom(tmp_path: Path) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", exporter_version())
    assert "<version>${jmx.exporter.version}</version>" in KAFKA_POM.read_text()
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    with pytest.raises(LocalClusterError, match=r"no <jmx\.exporter\.version>"):
        exporter_version(pom)

"""``bus.local`` and ``bus._kafka_install`` without a broker: spec, node files, diagnosis."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bus import _local_spec, local
from bus._kafka_install import KAFKA_POM, ensure_jars, find_java, has_jars, kafka_version
from bus._node_files import java_command, log4j_properties, server_properties
from bus.errors import LocalClusterError


def _spec(tmp_path: Path, **fields: object) -> local.FederationSpec:
    return local.FederationSpec(home=tmp_path, **fields)  # type: ignore[arg-type]  # test input


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"agencies": ()}, "agencies: give at least one agency"),
        ({"agencies": ("interpol", "europol", "interpol")}, "agencies: each agency once"),
        ({"base_port": 80}, "base_port: 80 is outside"),
        ({"base_port": 65534}, "base_port: 65534 is outside"),
        ({"heap_mb": 64}, "heap_mb: 64 MiB"),
        ({"heap_mb": 4096}, "heap_mb: 4096 MiB"),
        ({"partitions": 0}, "partitions: 0; give at least 1"),
    ],
)
def test_spec_validation_names_the_field(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _spec(tmp_path, **fields)


def test_each_agency_gets_two_consecutive_ports_in_the_order_given(tmp_path: Path) -> None:
    spec = _spec(tmp_path, agencies=("interpol", "europol", "ameripol"), base_port=20000)
    nodes = spec.nodes()
    assert [(n.agency, n.broker_port, n.controller_port) for n in nodes] == [
        ("interpol", 20000, 20001),
        ("europol", 20002, 20003),
        ("ameripol", 20004, 20005),
    ]
    assert nodes[1].bootstrap == "127.0.0.1:20002"
    assert nodes[1].dir == tmp_path / "nodes" / "europol"
    assert (spec.config_file, spec.keys_dir, spec.policy_file) == (
        tmp_path / "bus.toml",
        tmp_path / "keys",
        tmp_path / "policy.toml",
    )


def test_load_spec_without_a_saved_spec_gives_the_defaults(tmp_path: Path) -> None:
    spec = local.load_spec(tmp_path, heap_mb=None)
    assert spec.agencies == local.DEFAULT_AGENCIES
    assert spec.base_port == 19092


def test_load_spec_reads_the_saved_spec_and_applies_overrides(tmp_path: Path) -> None:
    _local_spec.save_spec(_spec(tmp_path, agencies=("a", "b", "c"), base_port=21000, partitions=3))
    spec = local.load_spec(tmp_path, heap_mb=256, base_port=None)
    assert (spec.agencies, spec.base_port, spec.heap_mb, spec.partitions) == (
        ("a", "b", "c"),
        21000,
        256,
        3,
    )


@pytest.mark.parametrize(
    "text",
    ["agencies = [", 'agencies = ["a"]\n', 'agencies = ["a"]\nbase_port = "x"\nheap_mb = 1\n'],
)
def test_a_corrupt_saved_spec_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    (tmp_path / "local.toml").write_text(text)
    with pytest.raises(LocalClusterError) as caught:
        local.load_spec(tmp_path)
    assert str(tmp_path / "local.toml") in str(caught.value)
    assert "bus local reset" in str(caught.value)


def test_a_bad_override_is_a_local_cluster_error(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match="local federation: heap_mb"):
        local.load_spec(tmp_path, heap_mb=10)


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_are_a_combined_kraft_node_with_rf_1_and_no_auto_create(
    tmp_path: Path,
) -> None:
    node = _spec(tmp_path, base_port=20000).nodes()[1]
    props = _properties(server_properties(node))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:20003"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:20002,CONTROLLER://127.0.0.1:20003"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:20002"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(node.data_dir)
    for key in (
        "default.replication.factor",
        "min.insync.replicas",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1", key


def test_log4j_writes_to_the_nodes_log_file_only(tmp_path: Path) -> None:
    node = _spec(tmp_path).nodes()[0]
    props = _properties(log4j_properties(node))
    assert props["appender.file.fileName"] == str(node.log_file)
    assert props["rootLogger.appenderRef.file.ref"] == "FILE"
    assert "Console" not in log4j_properties(node)


def test_java_command_bounds_the_heap_and_uses_the_jar_folder(tmp_path: Path) -> None:
    spec = _spec(tmp_path, heap_mb=384, jars=tmp_path / "lib")
    node = spec.nodes()[0]
    command = java_command(Path("/usr/bin/java"), spec, node, ["kafka.Kafka", "x.properties"])
    assert command[0] == "/usr/bin/java"
    assert "-Xmx384m" in command
    assert "-Xms256m" in command
    assert command[command.index("-cp") + 1] == f"{tmp_path / 'lib'}/*"
    assert command[-2:] == ["kafka.Kafka", "x.properties"]


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        ("java.net.BindException: Address already in use", "--base-port"),
        ("Error: Could not find or load main class kafka.Kafka", "jar cache"),
        ("java.lang.OutOfMemoryError: Java heap space", "--heap-mb"),
        ("InconsistentClusterIdException: The Cluster ID x doesn't match", "bus local reset"),
        ("something else entirely", "see its log"),
    ],
)
def test_diagnose_reads_the_cause_from_the_nodes_logs(tmp_path: Path, log: str, cause: str) -> None:
    node = _spec(tmp_path).nodes()[0]
    node.console_file.parent.mkdir(parents=True)
    node.console_file.write_text(f"starting\n{log}\n")
    assert cause in local._diagnose(node)


def test_diagnose_without_logs_says_to_see_the_log(tmp_path: Path) -> None:
    assert local._diagnose(_spec(tmp_path).nodes()[0]) == "see its log"


def test_kafka_version_is_read_from_the_pom() -> None:
    version = kafka_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f"<kafka.version>{version}</kafka.version>" in KAFKA_POM.read_text()


def test_kafka_version_of_a_pom_without_the_property_or_without_a_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project></project>")
    with pytest.raises(LocalClusterError, match=r"no <kafka\.version> property"):
        kafka_version(pom)
    with pytest.raises(LocalClusterError, match="cannot read the Kafka POM"):
        kafka_version(tmp_path / "absent.xml")


def test_find_java_with_a_bogus_java_home_names_it(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match=r"JAVA_HOME is .*does not exist"):
        find_java(tmp_path / "no-such-jdk")


def _fake_java(home: Path, version_line: str) -> Path:
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return home


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        ('openjdk version "17.0.2" 2022-01-18', True),
        ('openjdk version "21" 2023-09-19', True),
        ('openjdk version "11.0.20" 2023-07-18', False),
        ('java version "1.8.0_381"', False),
    ],
)
def test_find_java_needs_17_or_newer(tmp_path: Path, line: str, accepted: bool) -> None:
    home = _fake_java(tmp_path, line)
    if accepted:
        assert find_java(home) == home / "bin" / "java"
    else:
        with pytest.raises(LocalClusterError, match="needs Java 17 or newer"):
            find_java(home)


def _jars(lib: Path, *names: str) -> Path:
    lib.mkdir(parents=True, exist_ok=True)
    for name in names:
        (lib / name).touch()
    return lib


COMPLETE = (
    "kafka_2.13-4.1.1.jar",
    "kafka-tools-4.1.1.jar",
    "connect-mirror-4.1.1.jar",
    "log4j-slf4j-impl-2.24.3.jar",
    "kafka-clients-4.1.1.jar",
)


def test_has_jars_needs_broker_tools_mirrormaker_and_logging(tmp_path: Path) -> None:
    assert not has_jars(tmp_path / "absent")
    assert not has_jars(_jars(tmp_path / "empty"))
    assert not has_jars(_jars(tmp_path / "partial", *COMPLETE[1:]))
    assert has_jars(_jars(tmp_path / "complete", *COMPLETE))


def test_ensure_jars_keeps_a_complete_folder_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: pytest.fail("looked for Maven"))
    lib = _jars(tmp_path / "lib", *COMPLETE)
    assert ensure_jars(lib, log=pytest.fail) == lib


def test_ensure_jars_without_maven_names_maven_and_bus_kafka_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("mvn") is None
    with pytest.raises(LocalClusterError) as caught:
        ensure_jars(tmp_path / "lib", log=pytest.fail)
    assert "Maven" in str(caught.value)
    assert "BUS_KAFKA_JARS" in str(caught.value)
    assert not (tmp_path / "lib").exists()

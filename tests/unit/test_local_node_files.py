"""``bus.local._node_files`` without a broker: a node's properties and JVM command line."""

from __future__ import annotations

from pathlib import Path

from bus import local
from bus.local._node_files import java_command, log4j_properties, server_properties
from bus.local._tls import tls_layout


def _spec(tmp_path: Path, **fields: object) -> local.FederationSpec:
    return local.FederationSpec(home=tmp_path, **fields)  # type: ignore[arg-type]  # test input


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_are_a_combined_kraft_node_with_rf_1_and_no_auto_create(
    tmp_path: Path,
) -> None:
    node = _spec(tmp_path, base_port=20000).nodes()[1]
    props = _properties(server_properties(node, None))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:20003"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:20002,CONTROLLER://127.0.0.1:20003"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:20002"
    assert "authorizer.class.name" not in props
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


def test_by_default_every_listener_is_ssl_with_a_required_client_certificate_and_acls(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, base_port=20000)
    node = spec.nodes()[0]
    tls = tls_layout(spec, node.agency)
    props = _properties(server_properties(node, tls))
    assert props["listeners"] == "BROKER://127.0.0.1:20000,CONTROLLER://127.0.0.1:20001"
    assert props["listener.security.protocol.map"] == "BROKER:SSL,CONTROLLER:SSL"
    assert "PLAINTEXT" not in server_properties(node, tls)
    assert props["ssl.client.auth"] == "required"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    assert props["ssl.keystore.location"] == str(tls.node_keystore)
    assert props["ssl.truststore.location"] == str(tls.ca_file)
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:interpol-broker;User:interpol-admin"


def test_a_node_on_its_own_address_has_both_listeners_there(tmp_path: Path) -> None:
    spec = _spec(tmp_path, base_port=20000, hosts={"europol": "198.18.0.2"})
    node = spec.nodes()[1]
    props = _properties(server_properties(node, tls_layout(spec, "europol")))
    assert props["listeners"] == "BROKER://198.18.0.2:20002,CONTROLLER://198.18.0.2:20003"
    assert props["advertised.listeners"] == "BROKER://198.18.0.2:20002"
    assert props["controller.quorum.bootstrap.servers"] == "198.18.0.2:20003"
    # Socket buffers sized by the kernel: a fixed 100 KiB would throttle a long link.
    assert props["socket.send.buffer.bytes"] == props["socket.receive.buffer.bytes"] == "-1"

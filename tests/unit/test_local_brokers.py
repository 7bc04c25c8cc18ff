"""``bus local`` with clusters of several nodes, without a broker: their ports, folders,
properties, certificates, scrape targets, and the data of a cluster of another size refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bus import local
from bus._kafka import new_topic
from bus.cli import main
from bus.errors import LocalClusterError
from bus.local._federation import _check_layout
from bus.local._node_files import cluster_id_for, cluster_id_of, server_properties
from bus.local._spec import replication, save_spec
from bus.local._supervision import (
    bridges,
    correlators,
    jmx_ports,
    supervisor_port,
)
from bus.local._targets import register_targets
from bus.local._tls import ensure_certificates, tls_layout


def _spec(tmp_path: Path, **fields: object) -> local.FederationSpec:
    defaults: dict[str, object] = {
        "home": tmp_path / "home",
        "agencies": ("interpol", "europol"),
        "base_port": 20000,
        "brokers": 3,
    }
    return local.FederationSpec(**(defaults | fields))  # type: ignore[arg-type]  # test input


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))]
)
def test_replication_is_the_cluster_size_up_to_three_and_a_write_needs_all_copies_but_one(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert replication(brokers) == expected


@pytest.mark.parametrize("brokers", [0, local.MAX_BROKERS + 1])
def test_a_cluster_size_out_of_range_is_refused_naming_the_field(
    tmp_path: Path, brokers: int
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"brokers: {brokers}; give 1..")):
        _spec(tmp_path, brokers=brokers)


def test_a_base_port_too_high_for_every_node_is_refused(tmp_path: Path) -> None:
    _spec(tmp_path, base_port=65535 - 12)
    with pytest.raises(ValueError, match="base_port: 65524 is outside"):
        _spec(tmp_path, base_port=65535 - 11)


def test_each_node_of_each_cluster_gets_two_consecutive_ports_a_name_and_a_folder(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    nodes = spec.nodes()
    assert [(n.name, n.node_id, n.broker_port, n.controller_port) for n in nodes] == [
        ("interpol-1", 1, 20000, 20001),
        ("interpol-2", 2, 20002, 20003),
        ("interpol-3", 3, 20004, 20005),
        ("europol-1", 1, 20006, 20007),
        ("europol-2", 2, 20008, 20009),
        ("europol-3", 3, 20010, 20011),
    ]
    assert nodes[4].dir == spec.home / "nodes" / "europol-2"
    assert [n.name for n in spec.cluster("europol")] == ["europol-1", "europol-2", "europol-3"]
    assert spec.bootstrap_servers("interpol") == (
        "127.0.0.1:20000",
        "127.0.0.1:20002",
        "127.0.0.1:20004",
    )
    assert (spec.replication_factor, spec.min_insync_replicas) == (3, 2)
    # A lone node keeps the name and folder of its agency.
    [lone, _] = _spec(tmp_path, brokers=1).nodes()
    assert (lone.name, lone.dir) == ("interpol", spec.home / "nodes" / "interpol")


def test_bridges_supervisor_and_one_jmx_exporter_per_node_take_the_ports_after_the_nodes(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    assert [(b.name, b.directions, b.web_port) for b in bridges(spec)] == [
        ("bridge.interpol", ("interpol-europol",), 20012),
        ("bridge.europol", ("europol-interpol",), 20013),
    ]
    assert [(c.name, c.web_port) for c in correlators(spec)] == [
        ("correlator.interpol", 20014),
        ("correlator.europol", 20015),
    ]
    assert supervisor_port(spec) == 20016
    assert jmx_ports(spec) == {
        "interpol-1": 20019,
        "interpol-2": 20020,
        "interpol-3": 20021,
        "europol-1": 20022,
        "europol-2": 20023,
        "europol-3": 20024,
    }
    assert spec.base_port + local.port_count(2, 3) - 1 == 20024
    assert local.port_count(2) == local.port_count(2, 1) == 13
    assert {"interpol-1", "europol-3"} <= set(local.log_files(spec))


def test_every_node_is_a_scrape_target_labelled_with_its_agency_and_its_name(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    register_targets(spec)
    groups = json.loads((spec.home / "prometheus" / "targets" / "kafka.json").read_text())
    assert [(g["targets"], g["labels"]) for g in groups][:2] == [
        (["127.0.0.1:20019"], {"agency": "interpol", "node": "interpol-1"}),
        (["127.0.0.1:20020"], {"agency": "interpol", "node": "interpol-2"}),
    ]
    assert len(groups) == 6


def test_the_nodes_of_a_cluster_are_the_voters_of_one_quorum_with_rf_3_and_min_isr_2(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    cluster = spec.cluster("europol")
    tls = tls_layout(spec, "europol")
    props = _properties(server_properties(cluster[1], tls, cluster))
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:20007,2@127.0.0.1:20009,3@127.0.0.1:20011"
    )
    assert "controller.quorum.bootstrap.servers" not in props
    assert props["listeners"] == "BROKER://127.0.0.1:20008,CONTROLLER://127.0.0.1:20009"
    assert props["inter.broker.listener.name"] == "BROKER"
    assert props["ssl.keystore.location"] == str(tls.keystore(2))
    assert props["super.users"] == "User:europol-broker;User:europol-admin"
    assert props["unclean.leader.election.enable"] == "false"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "2", key


def test_each_node_has_its_own_key_with_the_clusters_principal_and_the_loopback_name(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    layout = tls_layout(spec, "interpol")
    assert ensure_certificates(layout, ["europol"], log=lambda _: None)
    ca = x509.load_pem_x509_certificate(layout.ca_file.read_bytes())
    keys = set()
    for node_id in (1, 2, 3):
        cert = x509.load_pem_x509_certificate(layout.node_cert(node_id).read_bytes())
        cert.verify_directly_issued_by(ca)
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert cn == "interpol-broker"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        keystore = layout.keystore(node_id).read_bytes()
        key = serialization.load_pem_private_key(keystore, None)
        assert key.public_key() == cert.public_key()
        keys.add(keystore)
    assert len(keys) == 3
    assert not ensure_certificates(layout, ["europol"], log=lambda _: None)  # kept
    layout.keystore(2).unlink()
    assert ensure_certificates(layout, ["europol"], log=lambda _: None)  # that one made again
    assert layout.keystore(2).read_bytes() not in keys


def _format(node: local.Node, cluster_id: str) -> None:
    node.data_dir.mkdir(parents=True)
    (node.data_dir / "meta.properties").write_text(
        f"version=1\nnode.id={node.node_id}\ncluster.id={cluster_id}\n"
    )


def test_nodes_formatted_later_take_the_cluster_id_of_one_already_formatted(
    tmp_path: Path,
) -> None:
    cluster = _spec(tmp_path).cluster("interpol")
    fresh = cluster_id_for(cluster)
    assert len(fresh) == 22
    assert cluster_id_of(cluster[0]) is None
    _format(cluster[2], "Cl4sTer-1d")
    assert cluster_id_of(cluster[2]) == "Cl4sTer-1d"
    assert cluster_id_for(cluster) == "Cl4sTer-1d"


def test_the_data_of_a_cluster_of_another_size_is_refused_with_the_way_out(
    tmp_path: Path,
) -> None:
    three = _spec(tmp_path)
    lone = _spec(tmp_path, brokers=1)
    _check_layout(three)  # nothing there yet
    for node in three.cluster("europol"):
        _format(node, "x")
    _check_layout(three)
    with pytest.raises(LocalClusterError, match=r"europol-1 holds the data .* `bus local reset`"):
        _check_layout(lone)
    with pytest.raises(LocalClusterError, match=r"europol-3 holds the data"):
        _check_layout(_spec(tmp_path, brokers=2))
    _format(lone.cluster("interpol")[0], "y")
    with pytest.raises(LocalClusterError, match=r"nodes/interpol holds the data"):
        _check_layout(three)


def test_the_cluster_size_is_kept_for_later_commands(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.home.mkdir()
    save_spec(spec)
    assert local.load_spec(tmp_path / "home").brokers == 3
    assert local.load_spec(tmp_path / "home", brokers=1).brokers == 1


def test_topics_the_bus_creates_take_the_clusters_default_replication() -> None:
    topic = new_topic("t", 6, {"cleanup.policy": "compact"})
    assert (topic.name, topic.num_partitions, topic.replication_factor) == ("t", 6, -1)
    assert topic.topic_configs == {"cleanup.policy": "compact"}


def test_acls_are_printed_per_cluster_with_every_node_as_its_bootstrap(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.home.mkdir()
    save_spec(spec)
    result = CliRunner().invoke(
        main, ["local", "acls", "--home", str(spec.home), "--format", "commands"]
    )
    assert result.exit_code == 0, result.output
    servers = "127.0.0.1:20006,127.0.0.1:20008,127.0.0.1:20010"
    assert f"# europol ({servers})" in result.output.splitlines()
    assert f"kafka-acls.sh --bootstrap-server {servers} --command-config europol-admin" in (
        result.output
    )
    assert result.output.count("\n# ") == 1  # two clusters, not six nodes

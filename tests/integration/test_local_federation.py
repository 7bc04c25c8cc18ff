"""The local federation: real, independent Kafka clusters, one per agency."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bus import local
from bus.config import load_config
from bus.errors import LocalClusterError
from bus.testing import (
    Federation,
    connect,
    consume_all,
    create_topic,
    free_base_port,
    produce,
    register,
    unique_topic,
)

pytestmark = pytest.mark.integration


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_each_cluster_gives_back_what_was_produced_on_it(federation: Federation) -> None:
    for agency in federation.agencies:
        bootstrap = federation.bootstrap(agency)
        topic = unique_topic(agency)
        await create_topic(bootstrap, topic, partitions=1)
        values = [f"{agency}-{i}".encode() for i in range(50)]
        await produce(bootstrap, topic, values)
        records = await consume_all(bootstrap, topic, expected=len(values))
        assert [r.value for r in records] == values


async def test_a_topic_created_on_one_cluster_is_absent_from_the_other(
    federation: Federation,
) -> None:
    first, second = federation.agencies[:2]
    topic = unique_topic("only-here")
    await create_topic(federation.bootstrap(first), topic)
    assert topic in await _topics(federation.bootstrap(first))
    assert topic not in await _topics(federation.bootstrap(second))


async def test_the_bus_topics_exist_on_every_cluster(federation: Federation) -> None:
    topics = federation.config.topics
    for agency in federation.agencies:
        present = await _topics(federation.bootstrap(agency))
        assert {topics.events, topics.quarantine, topics.audit} <= present


async def test_up_writes_the_configuration_every_command_reads(federation: Federation) -> None:
    if federation.spec is None:
        pytest.skip("external clusters: no local configuration file is written")
    config = load_config(federation.spec.config_file)
    assert set(config.agencies) == set(federation.spec.agencies)
    for node in federation.spec.nodes():
        assert config.agency(node.agency).bootstrap_servers == (node.bootstrap,)


@pytest.fixture
def lone_spec(tmp_path: Path) -> local.FederationSpec:
    """A one-agency federation of its own, for tests that stop and start nodes."""
    return local.FederationSpec(
        home=tmp_path / "exchange-bus-test-lone",
        agencies=("lone",),
        base_port=free_base_port(local.port_count(1)),
        partitions=2,
    )


async def test_records_survive_down_then_up_and_a_second_up_is_harmless(
    lone_spec: local.FederationSpec,
) -> None:
    try:
        config = await local.up(lone_spec)
        register(config)
        bootstrap = config.agency("lone").bootstrap_servers[0]
        [(_, pid)] = list(local.iter_node_pids(lone_spec))

        await local.up(lone_spec)  # already running: nothing restarts
        assert [p for _, p in local.iter_node_pids(lone_spec)] == [pid]

        values = [f"kept-{i}".encode() for i in range(20)]
        await produce(bootstrap, config.topics.events, values, partition=0)

        await asyncio.to_thread(local.down, lone_spec)
        assert list(local.iter_node_pids(lone_spec)) == []
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", lone_spec.base_port)) != 0

        await local.up(lone_spec)
        records = await consume_all(bootstrap, config.topics.events, expected=len(values))
        assert [r.value for r in records] == values
    finally:
        await asyncio.to_thread(local.down, lone_spec)
    assert list(local.iter_node_pids(lone_spec)) == []


async def test_a_taken_port_fails_with_the_port_named(lone_spec: local.FederationSpec) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", lone_spec.base_port))
        squatter.listen()
        with pytest.raises(LocalClusterError, match=rf"port {lone_spec.base_port} .*in use"):
            await local.up(lone_spec)
    assert list(local.iter_node_pids(lone_spec)) == []


async def test_a_failed_up_stops_only_the_nodes_it_started(lone_spec: local.FederationSpec) -> None:
    """Adding an agency whose port is taken fails; the node that was running keeps running."""
    spec = replace(lone_spec, base_port=free_base_port(local.port_count(2)))
    grown = replace(spec, agencies=("lone", "late"))
    late = grown.nodes()[1]
    try:
        config = await local.up(spec)
        register(config)
        [(_, pid)] = list(local.iter_node_pids(spec))
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", late.broker_port))
            squatter.listen()
            with pytest.raises(LocalClusterError, match=rf"port {late.broker_port} .*in use"):
                await local.up(grown)
        assert [p for _, p in local.iter_node_pids(grown)] == [pid]
        bootstrap = config.agency("lone").bootstrap_servers[0]
        assert config.topics.events in await _topics(bootstrap)
    finally:
        await asyncio.to_thread(local.down, grown)
    assert list(local.iter_node_pids(grown)) == []


async def test_a_missing_java_fails_with_the_fix_named(lone_spec: local.FederationSpec) -> None:
    spec = replace(lone_spec, java_home=lone_spec.home / "no-such-jdk")
    with pytest.raises(LocalClusterError, match="JAVA_HOME"):
        await local.up(spec)

"""``bus.local._acls``: who may do what on each cluster, and the names the bridge really uses."""

from __future__ import annotations

from bus.bridge._checkpoint import audit_checkpoint_topic, checkpoint_topic, transactional_id
from bus.bridge._replays import forwarded_topic
from bus.bridge.settings import BridgeSettings
from bus.config import AgencySettings, Config, TopicSettings
from bus.correlate.processor import CorrelatorSettings
from bus.local import _acls
from bus.local._acls import Acl, cluster_acls, kafka_acls_commands

TOPICS = TopicSettings()
AGENCIES = ("interpol", "europol", "ameripol")


def _allowed(
    acls: list[Acl], principal: str, operation: str, name: str, resource: str = "topic"
) -> bool:
    """Whether an ALLOW binding covers it and no DENY does (Kafka's rule)."""

    def matches(a: Acl) -> bool:
        if a.principal != principal or a.operation != operation or a.resource != resource:
            return False
        return name.startswith(a.name) if a.prefixed else a.name in (name, "*")

    return any(matches(a) for a in acls if not a.deny) and not any(
        matches(a) for a in acls if a.deny
    )


def test_only_the_bridge_of_a_direction_may_write_its_mirror_on_the_destination() -> None:
    on_europol = cluster_acls(AGENCIES, TOPICS)["europol"]
    writers = {
        a.principal
        for a in on_europol
        if a.operation == "Write" and a.name == "interpol.intel.events"
    }
    assert writers == {"bridge.interpol.europol"}


def test_applications_write_their_events_and_read_mirrors_but_no_bridge_state() -> None:
    acls = cluster_acls(AGENCIES, TOPICS)["interpol"]
    app = "interpol-app"
    assert _allowed(acls, app, "Write", "intel.events")
    assert _allowed(acls, app, "Read", "europol.intel.events")
    assert _allowed(acls, app, "Write", "bus.quarantine")
    assert _allowed(acls, app, "Read", "bus.quarantine")
    assert not _allowed(acls, app, "Read", "bus.audit")
    assert _allowed(acls, app, "Read", "bus.correlations")  # the correlator's hits (bus demo)
    assert not _allowed(acls, app, "Write", "bus.correlations")  # only the correlator writes
    assert _allowed(acls, app, "Read", "case-indexer", "group")  # any group of its own
    assert not _allowed(acls, app, "Read", "bus-bridge.interpol.europol", "group")
    assert not _allowed(acls, app, "Write", "europol.intel.events")
    assert not _allowed(acls, app, "Write", "bus.audit")
    assert not _allowed(acls, app, "Write", "bus.checkpoints.europol.intel.events")


def test_a_bridge_reads_only_its_source_topic_and_uses_only_its_own_ids() -> None:
    acls = cluster_acls(AGENCIES, TOPICS)["interpol"]
    bridge = "bridge.interpol.europol"
    reads = {a.name for a in acls if a.principal == bridge and a.operation == "Read"}
    assert reads == {
        "intel.events",
        "bus-bridge.interpol.europol",  # its group
        "bus-bridge.interpol.europol.",  # its Faust worker's group and topics (prefix)
        "bus.checkpoints.audit.europol.intel.events",
    }
    assert _allowed(acls, bridge, "Write", transactional_id("interpol", "europol", "t", 0, "x"))
    assert not _allowed(
        acls, bridge, "Write", transactional_id("interpol", "ameripol", "t", 0, "x")
    )
    assert not _allowed(acls, bridge, "Read", "europol.intel.events")


def test_the_acls_use_the_names_the_bridge_uses() -> None:
    assert _acls.checkpoint_topic("a", "t") == checkpoint_topic("a", "t")
    assert _acls.audit_checkpoint_topic("b", "t") == audit_checkpoint_topic("b", "t")
    assert transactional_id("a", "b", "t", 3, "mirror").startswith(_acls.group_prefix("a", "b"))
    agencies = {n: AgencySettings(name=n, bootstrap_servers=("h:1",)) for n in ("a", "b")}
    settings = BridgeSettings.from_config(
        Config(path=None, agencies=agencies), source="a", destination="b"
    )
    assert settings.group_id == _acls.group_prefix("a", "b").rstrip(".")
    assert settings.worker_app_id.startswith(_acls.group_prefix("a", "b"))


def test_the_bridge_may_keep_what_it_forwarded_under_the_name_the_bridge_uses() -> None:
    """The destination's forwarded-events topic of issue 10 (``bus.bridge._replays``): only the
    bridge of that direction creates, reads and writes it, on the destination only."""
    assert _acls.forwarded_topic("a", "t") == forwarded_topic("a", "t")
    name = forwarded_topic("interpol", "intel.events")
    on_europol = cluster_acls(AGENCIES, TOPICS)["europol"]
    for operation in ("Create", "Read", "Write"):
        assert _allowed(on_europol, "bridge.interpol.europol", operation, name)
        assert not _allowed(on_europol, "bridge.ameripol.europol", operation, name)
        assert not _allowed(on_europol, "europol-app", operation, name)
    on_interpol = cluster_acls(AGENCIES, TOPICS)["interpol"]
    assert not _allowed(on_interpol, "bridge.interpol.europol", "Write", name)


def test_the_commands_for_real_clusters_name_principal_operation_and_pattern() -> None:
    acl = Acl(
        principal="bridge.a.b",
        operation="Write",
        resource="transactional-id",
        name="bus-bridge.a.b.",
        prefixed=True,
    )
    (line,) = kafka_acls_commands("a", [acl], bootstrap="kafka-a:9093")
    assert line == (
        "kafka-acls.sh --bootstrap-server kafka-a:9093 --command-config a-admin.properties "
        "--add --allow-principal 'User:bridge.a.b' --operation Write "
        "--transactional-id 'bus-bridge.a.b.' --resource-pattern-type prefixed"
    )


def test_the_correlator_reads_its_agencys_feeds_and_writes_only_its_own_names() -> None:
    on_europol = cluster_acls(AGENCIES, TOPICS)["europol"]
    principal = "correlator.europol"
    config = Config(
        path=None,
        agencies={
            name: AgencySettings(name=name, bootstrap_servers=("127.0.0.1:1",)) for name in AGENCIES
        },
        topics=TOPICS,
    )
    settings = CorrelatorSettings.from_config(config, "europol")
    for topic in settings.inputs:
        assert _allowed(on_europol, principal, "Read", topic)
    for name in (settings.output_topic, settings.state_topic):
        for operation in ("Create", "Read", "Write"):
            assert _allowed(on_europol, principal, operation, name)
    assert _allowed(on_europol, principal, "Write", settings.quarantine_topic)
    assert _allowed(on_europol, principal, "Read", settings.app_id, resource="group")
    assert _allowed(on_europol, principal, "Write", settings.app_id, resource="transactional-id")
    # Not the events topic (it only reads), not a mirror, not another agency's correlator.
    assert not _allowed(on_europol, principal, "Write", "intel.events")
    assert not _allowed(on_europol, principal, "Write", "interpol.intel.events")
    assert not _allowed(on_europol, principal, "Read", "bus-correlate.interpol", resource="group")
    assert not _allowed(on_europol, "europol-app", "Write", settings.output_topic)

"""The ACLs of a federation's clusters: what each principal may do, created by ``bus local up``.

Pure rules first (:func:`cluster_acls`, :func:`bridge_acls`, :func:`application_acls`), then
the two ways out: :func:`apply_acls` creates them on a cluster through the admin principal
(Kafka's CreateAcls request over aiokafka's connection: aiokafka 0.14's admin client has no ACL
methods, and a JVM per cluster for ``kafka-acls`` would cost seconds), and
:func:`kafka_acls_commands` prints them as ``kafka-acls.sh`` commands for the operators of a
real cluster. Creating an ACL that exists is a no-op in Kafka, so ``up`` creates them all every
time; ACLs that are no longer wanted are not removed (see docs/security.md).

Everything not listed here is denied (``allow.everyone.if.no.acl.found=false``); the nodes
and the agency's admin are super users. On agency ``a``'s cluster, with peers ``p``:

=========================  ===================================================================
principal                  may
=========================  ===================================================================
``a-app``                  write and read ``intel.events``; read each ``p.intel.events``;
                           write and read ``bus.quarantine``; read ``bus.correlations``;
                           any consumer group except
                           ``bus-bridge.*`` (denied); idempotent writes
``bridge.a.p`` (source)    read ``intel.events`` in group ``bus-bridge.a.p``; write
                           ``bus.audit`` and ``bus.quarantine``; create, read and write its
                           audit checkpoints ``bus.checkpoints.audit.p.<topic>``; its Faust
                           worker's topics and group (prefix ``bus-bridge.a.p.``);
                           transactional ids ``bus-bridge.a.p.*``; idempotent writes
``bridge.p.a`` (dest.)     create and write ``p.intel.events``; create, read and write its
                           checkpoints ``bus.checkpoints.p.<topic>`` and
                           ``bus.checkpoints.forwarded.p.<topic>``; transactional ids
                           ``bus-bridge.p.a.*``; idempotent writes
``correlator.a``           read ``intel.events`` and each ``p.intel.events``; write
                           ``bus.quarantine``; create, read and write ``bus.correlations`` and
                           its topics, group and transactional id (prefix
                           ``bus-correlate.a``); idempotent writes
=========================  ===================================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from bus.config import AgencySettings, TopicSettings
from bus.errors import LocalClusterError
from bus.local._tls import app_principal, bridge_principal, correlator_principal

__all__ = [
    "Acl",
    "apply_acls",
    "application_acls",
    "bridge_acls",
    "cluster_acls",
    "correlator_acls",
    "kafka_acls_commands",
]

Resource = Literal["topic", "group", "transactional-id", "cluster"]
Operation = Literal["Read", "Write", "Create", "Describe", "IdempotentWrite"]

CLUSTER_NAME: Final = "kafka-cluster"
BRIDGE_PREFIX: Final = "bus-bridge."
"""Groups, transactional ids and Faust topics of bridges start with this."""

# Kafka's protocol codes (org.apache.kafka.common.resource / acl).
_RESOURCE_CODES: Final = {"topic": 2, "group": 3, "cluster": 4, "transactional-id": 5}
_PATTERN_CODES: Final = {"literal": 3, "prefixed": 4}
_OPERATION_CODES: Final = {
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Describe": 8,
    "IdempotentWrite": 12,
}
_PERMISSION_CODES: Final = {"deny": 2, "allow": 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class Acl:
    """One ACL binding: ``principal`` may (or may not) do ``operation`` on a resource."""

    principal: str
    """The certificate's CN; Kafka's principal is ``User:<principal>``."""
    operation: Operation
    resource: Resource
    name: str
    prefixed: bool = False
    deny: bool = False

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"

    def describe(self) -> str:
        what = "DENY" if self.deny else "ALLOW"
        pattern = " (prefix)" if self.prefixed else ""
        return f"{what} {self.principal} {self.operation} {self.resource} {self.name}{pattern}"


# The names the bridge uses (bus.bridge._checkpoint, .settings, .app); bus.local may not import
# the bridge (import-linter's layers), so a unit test pins that both agree.
def checkpoint_topic(source: str, topic: str) -> str:
    return f"bus.checkpoints.{source}.{topic}"


def audit_checkpoint_topic(destination: str, topic: str) -> str:
    return f"bus.checkpoints.audit.{destination}.{topic}"


def forwarded_topic(source: str, topic: str) -> str:
    """Which events were forwarded (``bus.bridge._replays`` on main, issue 10)."""
    return f"bus.checkpoints.forwarded.{source}.{topic}"


def group_prefix(source: str, destination: str) -> str:
    """What the direction's groups, transactional ids and Faust topics start with."""
    return f"{BRIDGE_PREFIX}{source}.{destination}."


def application_acls(agency: str, peers: Iterable[str], topics: TopicSettings) -> list[Acl]:
    """What ``agency``'s applications may do on its own cluster."""
    app = app_principal(agency)
    acls = [
        Acl(principal=app, operation="Write", resource="topic", name=topics.events),
        Acl(principal=app, operation="Read", resource="topic", name=topics.events),
        Acl(principal=app, operation="Write", resource="topic", name=topics.quarantine),
        # What the agency's own readers could not accept, for its operators to inspect
        # (`bus tail --topic bus.quarantine`): as sensitive as intel.events, which they read.
        Acl(principal=app, operation="Read", resource="topic", name=topics.quarantine),
        # The correlator's hits, for the agency's analysts (`bus demo` shows them): identifiers
        # and labels of events the agency holds anyway (docs/correlate.md). Read only.
        Acl(principal=app, operation="Read", resource="topic", name=CORRELATIONS_TOPIC),
        Acl(principal=app, operation="IdempotentWrite", resource="cluster", name=CLUSTER_NAME),
        # Any group of the agency's own, never a bridge's: a member that joins the bridge's
        # group takes partitions away from it. DENY wins over ALLOW in Kafka.
        Acl(principal=app, operation="Read", resource="group", name="*"),
        Acl(
            principal=app,
            operation="Read",
            resource="group",
            name=BRIDGE_PREFIX,
            prefixed=True,
            deny=True,
        ),
    ]
    for peer in peers:
        acls.append(
            Acl(principal=app, operation="Read", resource="topic", name=topics.mirror_of(peer))
        )
    return acls


CORRELATOR_PREFIX: Final = "bus-correlate."
"""The correlator's group, transactional id and changelog topic start with this + agency."""
CORRELATIONS_TOPIC: Final = "bus.correlations"


def correlator_acls(agency: str, peers: Iterable[str], topics: TopicSettings) -> list[Acl]:
    """What ``agency``'s correlator (``bus correlate run``) may do on the agency's cluster."""
    principal = correlator_principal(agency)
    prefix = f"{CORRELATOR_PREFIX}{agency}"

    def acl(operation: Operation, resource: Resource, name: str, *, prefixed: bool = False) -> Acl:
        return Acl(
            principal=principal,
            operation=operation,
            resource=resource,
            name=name,
            prefixed=prefixed,
        )

    acls = [
        acl("Read", "topic", topics.events),
        acl("Write", "topic", topics.quarantine),
        *(acl(op, "topic", CORRELATIONS_TOPIC) for op in ("Create", "Read", "Write")),
        *(acl(op, "topic", prefix, prefixed=True) for op in ("Create", "Read", "Write")),
        acl("Read", "group", prefix, prefixed=True),
        acl("Write", "transactional-id", prefix, prefixed=True),
        acl("IdempotentWrite", "cluster", CLUSTER_NAME),
    ]
    acls += [acl("Read", "topic", topics.mirror_of(peer)) for peer in peers]
    return acls


def bridge_acls(
    source: str, destination: str, topics: TopicSettings, source_topics: Sequence[str] = ()
) -> dict[str, list[Acl]]:
    """What the bridge ``source -> destination`` may do, per cluster (its two agencies).

    ``source_topics``: the source topics it moves (default: the events topic).
    """
    moved = tuple(source_topics) or (topics.events,)
    bridge = bridge_principal(source, destination)
    prefix = group_prefix(source, destination)

    def acl(operation: Operation, resource: Resource, name: str, *, prefixed: bool = False) -> Acl:
        return Acl(
            principal=bridge, operation=operation, resource=resource, name=name, prefixed=prefixed
        )

    common = [
        acl("Write", "transactional-id", prefix, prefixed=True),
        acl("IdempotentWrite", "cluster", CLUSTER_NAME),
    ]
    on_source = [
        acl("Read", "group", prefix.rstrip(".")),
        acl("Write", "topic", topics.audit),
        acl("Write", "topic", topics.quarantine),
        # The Faust worker: its group is its app id, its leader topic starts with it.
        acl("Read", "group", prefix, prefixed=True),
        acl("Create", "topic", prefix, prefixed=True),
        acl("Read", "topic", prefix, prefixed=True),
        acl("Write", "topic", prefix, prefixed=True),
        *common,
    ]
    on_destination = list(common)
    for topic in moved:
        on_source.append(acl("Read", "topic", topic))
        audit_checkpoints = audit_checkpoint_topic(destination, topic)
        on_source += [acl(op, "topic", audit_checkpoints) for op in ("Create", "Read", "Write")]
        checkpoints = checkpoint_topic(source, topic)
        mirror = f"{source}.{topic}"
        forwarded = forwarded_topic(source, topic)
        for name in (checkpoints, forwarded):
            on_destination += [acl(op, "topic", name) for op in ("Create", "Read", "Write")]
        on_destination += [acl("Create", "topic", mirror), acl("Write", "topic", mirror)]
    return {source: on_source, destination: on_destination}


def cluster_acls(agencies: Sequence[str], topics: TopicSettings) -> dict[str, list[Acl]]:
    """Every ACL of the federation ``agencies`` (every direction bridged), per cluster."""
    result: dict[str, list[Acl]] = {
        agency: application_acls(agency, [p for p in agencies if p != agency], topics)
        + correlator_acls(agency, [p for p in agencies if p != agency], topics)
        for agency in agencies
    }
    for source in agencies:
        for destination in agencies:
            if source != destination:
                for cluster, acls in bridge_acls(source, destination, topics).items():
                    result[cluster].extend(acls)
    return result


def kafka_acls_commands(agency: str, acls: Iterable[Acl], *, bootstrap: str) -> list[str]:
    """``kafka-acls.sh`` commands that create ``acls`` on ``agency``'s cluster."""
    lines = []
    for a in acls:
        permission = "--deny-principal" if a.deny else "--allow-principal"
        target = "--cluster" if a.resource == "cluster" else f"--{a.resource} '{a.name}'"
        pattern = " --resource-pattern-type prefixed" if a.prefixed else ""
        lines.append(
            f"kafka-acls.sh --bootstrap-server {bootstrap}"
            f" --command-config {agency}-admin.properties"
            f" --add {permission} '{a.kafka_principal}' --operation {a.operation}"
            f" {target}{pattern}"
        )
    return lines


async def apply_acls(admin: AgencySettings, acls: Sequence[Acl]) -> None:
    """Create ``acls`` on the cluster of ``admin`` (which must be a super user's settings)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.admin import CreateAclsRequest

    from bus._kafka import client_options, describe

    client = AIOKafkaAdminClient(
        **client_options(admin, client_id=f"bus-local-acls-{admin.name}"), request_timeout_ms=30000
    )
    try:
        await client.start()
        requests = [
            CreateAclsRequest(
                _RESOURCE_CODES[a.resource],
                a.name,
                _PATTERN_CODES["prefixed" if a.prefixed else "literal"],
                a.kafka_principal,
                "*",
                _OPERATION_CODES[a.operation],
                _PERMISSION_CODES["deny" if a.deny else "allow"],
            )
            for a in acls
        ]
        # One binding per request (aiokafka builds them so); sent concurrently.
        responses: list[Any] = await asyncio.gather(
            *(client._send_request(r) for r in requests)  # no public ACL API
        )
    except KafkaError as exc:
        raise LocalClusterError(
            f"creating the ACLs on {admin.name}'s cluster failed: {describe(exc)}; is the "
            "admin certificate the agency's (a super user)?"
        ) from exc
    finally:
        await client.close()
    for acl_, response in zip(acls, responses, strict=True):
        for code, message in response.creation_responses:
            if code != 0:
                raise LocalClusterError(
                    f"creating the ACL {acl_.describe()} on {admin.name}'s cluster failed: "
                    f"error {code} {message or ''}".rstrip()
                )

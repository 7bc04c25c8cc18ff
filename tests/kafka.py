"""Test helpers for real Kafka: the federation under test and small client conveniences."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus._kafka import client_options
from bus.config import AgencySettings, Config, TopicSettings
from bus.local import Acl, FederationSpec, apply_acls, bridge_acls
from bus.local._tls import app_principal

__all__ = [
    "Federation",
    "consume_all",
    "create_topic",
    "external_config",
    "free_base_port",
    "grant_applications",
    "grant_bridge",
    "connect",
    "produce",
    "register",
    "produce_records",
    "unique_topic",
]

ENV_EXTERNAL = "BUS_TEST_BOOTSTRAP_SERVERS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Federation:
    """The clusters the tests run against: local nodes (``spec`` set) or external ones."""

    config: Config
    spec: FederationSpec | None

    def bootstrap(self, agency: str) -> str:
        return ",".join(self.config.agency(agency).bootstrap_servers)

    @property
    def agencies(self) -> tuple[str, ...]:
        return tuple(self.config.agencies)


def external_config() -> Config | None:
    """Clusters given in ``BUS_TEST_BOOTSTRAP_SERVERS="interpol=host:port;europol=host:port"``."""
    value = os.environ.get(ENV_EXTERNAL, "").strip()
    if not value:
        return None
    agencies = {}
    for entry in value.split(";"):
        name, _, servers = entry.partition("=")
        agencies[name.strip()] = AgencySettings(
            name=name.strip(),
            bootstrap_servers=tuple(s.strip() for s in servers.split(",") if s.strip()),
        )
    return Config(path=None, agencies=agencies, topics=TopicSettings())


def free_base_port(count: int) -> int:
    """A base port with ``count`` free consecutive ports above it, chosen at random."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000, 2)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# The clusters the helpers below reach, by bootstrap string, as each agency's admin: the tests'
# own reads, writes and topics are the operator's; the code under test uses its own principal.
_ADMINS: dict[str, AgencySettings] = {}


def register(config: Config) -> None:
    """Let the helpers reach ``config``'s clusters as their admin (over mTLS when configured)."""
    for agency in config.agencies.values():
        _ADMINS[",".join(agency.bootstrap_servers)] = agency.as_identity("admin")


def connect(bootstrap: str) -> dict[str, Any]:
    """aiokafka options for the cluster at ``bootstrap`` as its admin (plaintext if unknown)."""
    admin = _ADMINS.get(bootstrap)
    return client_options(admin) if admin is not None else {"bootstrap_servers": bootstrap}


async def grant_applications(bootstrap: str, topic: str) -> None:
    """Let the agency's applications read and write ``topic`` (a test's own feed)."""
    admin = _ADMINS.get(bootstrap)
    if admin is None or admin.tls is None:
        return
    app = app_principal(admin.name)
    await apply_acls(
        admin,
        [
            Acl(principal=app, operation=op, resource="topic", name=topic)
            for op in ("Read", "Write")
        ],
    )


async def grant_bridge(config: Config, source: str, destination: str, topics: list[str]) -> None:
    """Let the bridge ``source -> destination`` move ``topics`` (as ``bus local up`` does for
    the events topic)."""
    for agency, acls in bridge_acls(source, destination, config.topics, topics).items():
        admin = _ADMINS.get(",".join(config.agency(agency).bootstrap_servers))
        if admin is not None and admin.tls is not None:
            await apply_acls(admin, acls)


def unique_topic(prefix: str = "test") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(**connect(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    await grant_applications(bootstrap, name)


async def produce(bootstrap: str, topic: str, values: Iterable[bytes], **send: object) -> None:
    producer = AIOKafkaProducer(**connect(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, **send) for value in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_records(
    bootstrap: str, topic: str, records: Iterable[ConsumerRecord[bytes, bytes]]
) -> None:
    """Re-publish ``records`` (key, value and headers as they are) onto ``topic``."""
    producer = AIOKafkaProducer(**connect(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, r.value, key=r.key, headers=list(r.headers)) for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    idle_ms: int = 2000,
    timeout_s: float = 60.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` from the beginning (``read_committed``, no group).

    Stops once ``expected`` records arrived, else after ``idle_ms`` without a new record.
    """
    # No group: every partition of the topic is assigned to this consumer, nothing is committed.
    consumer = AIOKafkaConsumer(
        topic,
        **connect(bootstrap),
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                if expected is None or len(records) >= expected:
                    break
                continue
            for part in batch.values():
                records.extend(part)
            if expected is not None and len(records) >= expected:
                # One more short poll: anything beyond `expected` is a duplicate to report.
                extra = await consumer.getmany(timeout_ms=300)
                for part in extra.values():
                    records.extend(part)
                break
    finally:
        await consumer.stop()
    return records


def state_dir_marker() -> str:
    """A string in every test federation's path, so a person can tell its nodes apart in ``ps``."""
    return "exchange-bus-test"

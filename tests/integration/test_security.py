"""Intrusion tests on the real clusters: mutual TLS refuses strangers, ACLs refuse the rest.

Each refusal has a positive control beside it: the same client with the right certificate or
the right resource gets in, so a test cannot pass because something else is broken.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bus._kafka import client_options
from bus.config import AgencySettings, TlsSettings
from bus.local._tls import (
    TlsLayout,
    admin_principal,
    app_principal,
    bridge_principal,
    issue,
    new_ca,
    tls_layout,
    write_private,
)
from bus.testing import Federation, connect, produce

pytestmark = pytest.mark.integration

A, B = "interpol", "europol"
TIMEOUT_S = 20.0


@pytest.fixture
def layouts(federation: Federation) -> dict[str, TlsLayout]:
    spec = federation.spec
    if spec is None or spec.insecure_plaintext:
        pytest.skip("needs the local federation over mTLS")
    return {agency: tls_layout(spec, agency) for agency in spec.agencies}


def _as(federation: Federation, agency: str, tls: TlsSettings | None) -> AgencySettings:
    servers = federation.config.agency(agency).bootstrap_servers
    return AgencySettings(name=agency, bootstrap_servers=servers, tls=tls)


def _client(
    layouts: dict[str, TlsLayout], cluster: str, principal: str, issuer: str
) -> TlsSettings:
    """``principal``'s certificate issued by ``issuer``'s CA, trusting ``cluster``'s CA."""
    own = layouts[issuer].client(principal)
    return TlsSettings(
        ca_file=layouts[cluster].ca_file, cert_file=own.cert_file, key_file=own.key_file
    )


async def _connects(settings: AgencySettings) -> None:
    """Start an admin client and describe the cluster; raises what the client sees."""
    await _connects_with(client_options(settings))


async def _connects_with(options: dict[str, Any]) -> None:
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await admin.start()
            await admin.describe_cluster()
    finally:
        await admin.close()


def _write_pair(directory: Path, name: str, cert: x509.Certificate, key: object) -> TlsSettings:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key.pem"
    write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        key_file,
        key.private_bytes(  # type: ignore[attr-defined]  # an EC private key
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return TlsSettings(ca_file=directory / "unused", cert_file=cert_file, key_file=key_file)


# --- who gets in at all ---------------------------------------------------------------------


async def test_a_client_with_the_agencys_certificate_gets_in(
    federation: Federation, layouts: dict[str, TlsLayout]
) -> None:
    await _connects(_as(federation, A, layouts[A].client(app_principal(A))))


async def test_a_client_without_a_certificate_is_refused(
    federation: Federation, layouts: dict[str, TlsLayout]
) -> None:
    import ssl

    from aiokafka.helpers import create_ssl_context

    context = create_ssl_context(cafile=str(layouts[A].ca_file))  # trusts the node, shows nothing
    options = {
        "bootstrap_servers": list(federation.config.agency(A).bootstrap_servers),
        "security_protocol": "SSL",
        "ssl_context": context,
    }
    assert isinstance(context, ssl.SSLContext)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await _connects_with(options)


async def test_a_plaintext_client_is_refused(federation: Federation) -> None:
    with pytest.raises((KafkaConnectionError, TimeoutError)):
        await _connects(_as(federation, A, None))


async def test_a_certificate_of_another_agencys_ca_is_refused(
    federation: Federation, layouts: dict[str, TlsLayout]
) -> None:
    """Europol's applications, and Europol's admin, on Interpol's cluster."""
    for principal in (app_principal(B), admin_principal(B)):
        tls = _client(layouts, A, principal, B)
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await _connects(_as(federation, A, tls))


async def test_an_application_of_one_agency_cannot_reach_the_others_cluster(
    federation: Federation, layouts: dict[str, TlsLayout]
) -> None:
    """Interpol's applications on Europol's cluster: to read its topics, or anything."""
    tls = _client(layouts, B, app_principal(A), A)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await _connects(_as(federation, B, tls))


async def test_a_self_signed_certificate_naming_the_admin_is_refused(
    federation: Federation, layouts: dict[str, TlsLayout], tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    rogue_ca, rogue_key = new_ca(A, now=now)  # same names as the real CA, another key
    cert, key = issue(rogue_ca, rogue_key, admin_principal(A), now=now)
    tls = _write_pair(tmp_path, "rogue", cert, key)
    tls = TlsSettings(ca_file=layouts[A].ca_file, cert_file=tls.cert_file, key_file=tls.key_file)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await _connects(_as(federation, A, tls))


async def test_an_expired_certificate_of_the_right_ca_is_refused(
    federation: Federation, layouts: dict[str, TlsLayout], tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = x509.load_pem_x509_certificate(layouts[A].ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(layouts[A].ca_key_file.read_bytes(), None)
    expired, key = issue(
        ca,
        ca_key,  # type: ignore[arg-type]  # the local CA's key is EC
        admin_principal(A),
        now=now,
        not_before=now - dt.timedelta(days=3),
        lifetime=dt.timedelta(days=1),
    )
    assert expired.not_valid_after_utc < now
    tls = _write_pair(tmp_path, "expired", expired, key)
    tls = TlsSettings(ca_file=layouts[A].ca_file, cert_file=tls.cert_file, key_file=tls.key_file)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await _connects(_as(federation, A, tls))
    # The control: the same CA's current admin certificate gets in.
    await _connects(_as(federation, A, layouts[A].client(admin_principal(A))))


# --- what a principal that got in may do ----------------------------------------------------


async def _ensure_topic(federation: Federation, agency: str, name: str) -> None:
    """Create ``name`` as the admin, so that a refusal below is authorization, not absence."""
    admin = AIOKafkaAdminClient(**connect(federation.bootstrap(agency)))
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


async def _write(settings: AgencySettings, topic: str) -> None:
    producer = AIOKafkaProducer(**client_options(settings), acks="all", request_timeout_ms=10000)
    try:  # a refused start is closed too: no producer is left for the garbage collector
        async with asyncio.timeout(TIMEOUT_S):
            await producer.start()
            await producer.send_and_wait(topic, b"intruder")
    finally:
        await producer.stop()


async def _read(settings: AgencySettings, topic: str, *, group: str | None = None) -> int:
    """Read ``topic`` from the start for a moment; how many records came (or what refused it)."""
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(settings),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await consumer.start()
            batch = await consumer.getmany(timeout_ms=3000)
            return sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()


@pytest.fixture
async def app_a(federation: Federation, layouts: dict[str, TlsLayout]) -> AgencySettings:
    return _as(federation, A, layouts[A].client(app_principal(A)))


@pytest.fixture
async def bridge_ab(federation: Federation, layouts: dict[str, TlsLayout]) -> AgencySettings:
    """The bridge interpol -> europol on interpol's cluster (its source)."""
    return _as(federation, A, layouts[A].client(bridge_principal(A, B)))


async def test_an_application_writes_its_events_and_reads_the_mirror(
    federation: Federation, app_a: AgencySettings
) -> None:
    topics = federation.config.topics
    await _write(app_a, topics.events)
    await _ensure_topic(federation, A, topics.mirror_of(B))
    await produce(federation.bootstrap(A), topics.mirror_of(B), [b"mirrored"])
    assert await _read(app_a, topics.mirror_of(B)) >= 1


@pytest.mark.parametrize(
    "topic",
    [
        "europol.intel.events",
        "bus.audit",
        "bus.checkpoints.europol.intel.events",
        "bus.checkpoints.audit.europol.intel.events",
    ],
)
async def test_an_application_cannot_write_a_mirror_an_audit_or_a_checkpoint(
    federation: Federation, app_a: AgencySettings, topic: str
) -> None:
    await _ensure_topic(federation, A, topic)
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(app_a, topic)


async def test_an_application_cannot_join_the_bridges_group(
    federation: Federation, app_a: AgencySettings
) -> None:
    events = federation.config.topics.events
    assert await _read(app_a, events, group="indexer-of-interpol") >= 0  # its own group: fine
    with pytest.raises(GroupAuthorizationFailedError):
        await _read(app_a, events, group=f"bus-bridge.{A}.{B}")


async def test_a_bridge_reads_its_source_topic_and_nothing_else(
    federation: Federation, bridge_ab: AgencySettings
) -> None:
    topics = federation.config.topics
    await produce(federation.bootstrap(A), topics.events, [b"for the bridge"])
    assert await _read(bridge_ab, topics.events, group=f"bus-bridge.{A}.{B}") >= 1
    await _ensure_topic(federation, A, topics.mirror_of(B))
    for topic in (topics.audit, topics.quarantine, topics.mirror_of(B)):
        with pytest.raises(TopicAuthorizationFailedError):
            await _read(bridge_ab, topic)


async def test_a_bridge_cannot_read_in_another_group_or_write_a_mirror_at_its_source(
    federation: Federation, bridge_ab: AgencySettings
) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await _read(bridge_ab, federation.config.topics.events, group="bus-bridge.europol.interpol")
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(bridge_ab, federation.config.topics.mirror_of(B))


async def _transactional(settings: AgencySettings, transactional_id: str) -> None:
    producer = AIOKafkaProducer(
        **client_options(settings), transactional_id=transactional_id, request_timeout_ms=10000
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await producer.start()
    finally:
        await producer.stop()


async def test_a_bridge_uses_only_its_own_transactional_ids(bridge_ab: AgencySettings) -> None:
    await _transactional(bridge_ab, f"bus-bridge.{A}.{B}.intel.events.0.audit")
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await _transactional(bridge_ab, f"bus-bridge.{B}.{A}.intel.events.0.audit")


async def test_only_the_bridge_of_the_direction_writes_the_mirror_on_the_destination(
    federation: Federation, layouts: dict[str, TlsLayout]
) -> None:
    mirror = federation.config.topics.mirror_of(A)  # interpol.intel.events on europol
    await _ensure_topic(federation, B, mirror)
    await _write(_as(federation, B, layouts[B].client(bridge_principal(A, B))), mirror)
    for principal in (app_principal(B), bridge_principal(B, A)):
        with pytest.raises(TopicAuthorizationFailedError):
            await _write(_as(federation, B, layouts[B].client(principal)), mirror)

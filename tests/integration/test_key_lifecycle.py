"""Signing keys over their life and the audit chain, against real clusters and a running bridge.

A rotation and a revocation while the bridge moves traffic, applied by the bridge without a
restart, with exact counts of what crossed and what was quarantined; then the bridge's signed
audit chain, copied with a plain producer, untouched and tampered with in each way, checked by
``bus audit verify``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from bus.audit import decode_audit_record, encode_audit_record
from bus.envelope import peek, seal
from bus.keyring import revoke_key, rotate_agency_key
from bus.quarantine import read_quarantined
from bus.signing import SigningKey
from bus.testing import (
    EventPlan,
    Federated,
    Federation,
    connect,
    consume_all,
    create_topic,
    federated_config,
    unique_topic,
)
from tests.bridge import BridgeProcess, audit_values, copy_records, stop_all, verify_audit

pytestmark = pytest.mark.integration

SOURCE, DESTINATION = "interpol", "europol"


@pytest.fixture
def federated(federation: Federation, tmp_path: Path) -> Federated:
    # With each direction's audit key beside the trust store, where `bus bridge run` looks.
    return federated_config(federation, tmp_path / "config")


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


async def _publish(bootstrap: str, topic: str, key: SigningKey, count: int) -> list[str]:
    """``count`` events that the policy releases, signed with ``key``; their ids."""
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=count)
    producer = AIOKafkaProducer(**connect(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    ids: list[str] = []
    try:
        for i in (i for i in range(1, 10 * count) if plan.is_released(i)):
            if len(ids) == count:
                break
            event = plan.event(i)
            ids.append(event["event_id"])
            await producer.send_and_wait(topic, seal(event, key), partition=0)
    finally:
        await producer.stop()
    return ids


async def _mirrored(federation: Federation, topic: str, expected: int) -> list[str]:
    records = await consume_all(
        federation.bootstrap(DESTINATION), f"{SOURCE}.{topic}", expected=expected, timeout_s=120
    )
    return [peek(r.value).event["event_id"] for r in records if r.value is not None]


async def _reloaded(bridge: BridgeProcess, times: float) -> None:
    deadline = time.monotonic() + 60
    while await bridge.metric("bus_trust_reloads_total", outcome="ok") < times:
        assert time.monotonic() < deadline, f"the bridge never reloaded:\n{bridge.tail()}"
        await asyncio.sleep(0.3)


async def test_a_rotation_and_a_revocation_apply_while_the_bridge_runs(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    topic = unique_topic("keys")
    source = federation.bootstrap(SOURCE)
    await create_topic(source, topic, partitions=1)
    keys = tmp_path / "config"
    old = federated.keys[SOURCE]
    bridge = BridgeProcess(
        federated, source=SOURCE, destination=DESTINATION, topics=[topic], log_dir=tmp_path
    )
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()

    before = await _publish(source, topic, old, 20)
    assert sorted(await _mirrored(federation, topic, 20)) == sorted(before)

    new, ended = rotate_agency_key(SOURCE, keys, overlap=timedelta(hours=1))
    assert [k.key_id for k in ended] == [old.key_id]
    await _reloaded(bridge, 1)
    # In the overlap both keys verify.
    overlap = await _publish(source, topic, new, 15) + await _publish(source, topic, old, 10)
    crossed = await _mirrored(federation, topic, 45)
    assert sorted(crossed) == sorted(before + overlap)

    revoke_key(keys, old.key_id, at=datetime.now(UTC))
    await _reloaded(bridge, 2)
    refused = await _publish(source, topic, old, 12)
    after = await _publish(source, topic, new, 8)
    crossed = await _mirrored(federation, topic, 53)
    assert sorted(crossed) == sorted(before + overlap + after)  # each once, nothing else
    quarantined = [
        read_quarantined(r)
        for r in await consume_all(
            source,
            federated.config.topics.quarantine,
            expected=12,
            where=lambda r: read_quarantined(r).source_topic == topic,
        )
    ]
    assert len(quarantined) == 12
    assert {q.reason for q in quarantined} == {"key-revoked"}
    assert await bridge.metric("bus_bridge_quarantined_total", reason="key-revoked") == 12
    assert await bridge.metric("bus_bridge_forwarded_total") == 53
    assert len(refused) == 12

    # The bridge's audit chain of this partition: one FORWARDED decision per event that
    # crossed (the revoked ones were quarantined, not decided on), signed, unbroken.
    chain = await audit_values(
        federation.bootstrap(SOURCE), federated.config.topics.audit, topic, expected=53
    )
    assert [decode_audit_record(v)["sequence"] for v in chain] == list(range(53))
    await _check_tampering(federation, federated, chain, tmp_path)
    assert await bridge.terminate() == 0


def _show(federated: Federated, topic: str, event_id: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "bus", "audit", "show"),
            *("--config", str(federated.path), "--agency", SOURCE, "--topic", topic),
            *("--to", DESTINATION, "--event", event_id, "--decision", "forwarded"),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


async def _check_tampering(
    federation: Federation, federated: Federated, chain: list[bytes], tmp_path: Path
) -> None:
    source = federation.bootstrap(SOURCE)
    genuine = await copy_records(source, chain)
    status, lines = verify_audit(federated, SOURCE, genuine)
    assert (status, lines[-1]["breaks"], lines[-1]["records"]) == (0, 0, len(chain))

    # The data owner's question about one event: what left, to whom, when, under which rule.
    event_id = decode_audit_record(chain[7])["event_id"]
    shown = _show(federated, genuine, event_id)
    rows = [json.loads(line) for line in shown.stdout.decode().splitlines()]
    assert [(r["event_id"], r["to"], r["decision"], r["rule"]) for r in rows] == [
        (event_id, DESTINATION, "FORWARDED", "allowed")
    ]
    assert rows[0]["audit"] == f"{genuine}/0@7"
    assert f"{SOURCE} -> {DESTINATION}: 1 forwarded" in shown.stderr.decode()

    altered = decode_audit_record(chain[30])
    altered["destination"] = "ameripol"
    deleted = chain[:20] + chain[21:]
    reordered = [*chain[:40], chain[41], chain[40], *chain[42:]]
    injected_record = {**decode_audit_record(chain[-1]), "event_id": str(uuid.uuid4())}
    injected_record.update(sequence=len(chain), signature=None, key_id=None)
    cases = {
        "altered": ([*chain[:30], encode_audit_record(altered), *chain[31:]], 30),
        "deleted": (deleted, 20),
        "reordered": (reordered, 41),
        "injected": ([*chain, encode_audit_record(injected_record)], len(chain)),
    }
    for kind, (values, offset) in cases.items():
        status, lines = verify_audit(federated, SOURCE, await copy_records(source, values))
        breaks = [(line["kind"], line["partition"], line["offset"]) for line in lines[:-1]]
        assert status == 1, kind
        assert (kind, 0, offset) in breaks, (kind, breaks)
        assert all(k in (kind, "unverifiable") for k, _, _ in breaks), (kind, breaks)

"""The correlator against real clusters with a bridge running: exactly the expected hits, once.

Events with shared identifiers written in different forms are published at INTERPOL (crossing
to Europol through the bridge) and at Europol; Europol's correlator (``bus correlate run``, a
process of its own) must write one hit per pair of events of different origins that share an
identifier, none for events Europol never received, none within one origin, and neither lose
nor repeat a hit when it is SIGKILLed and restarted in the middle. Hits are counted by an
independent ``read_committed`` reader.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus.codec import default_store
from bus.envelope import seal
from bus.events import template
from bus.local import Acl, apply_acls
from bus.local._tls import correlator_principal
from bus.testing import (
    Federated,
    Federation,
    consume_all,
    create_topic,
    federated_config,
    produce,
    unique_topic,
)
from tests.bridge import BridgeProcess
from tests.worker import WorkerProcess, stop_all

pytestmark = pytest.mark.integration

A, B = "interpol", "europol"
HIT = "bus.correlate.CorrelationHit"


class CorrelatorProcess(WorkerProcess):
    """One ``bus correlate run`` worker in a process of its own (killable with SIGKILL)."""

    def __init__(
        self, federated: Federated, *, agency: str, topic: str, output: str, log_dir: Path
    ):
        super().__init__(federated, log_dir=log_dir, name=f"correlator-{agency}")
        self.agency = agency
        self.topic = topic
        self.output = output

    def arguments(self) -> list[str]:
        return [
            "correlate",
            "run",
            "--config",
            str(self.federated.path),
            "--agency",
            self.agency,
            "--topic",
            self.topic,
            "--output",
            self.output,
            "--web-port",
            str(self.port),
            "--loglevel",
            "warn",
        ]

    async def wait_healthy(self, timeout_s: float = 90.0) -> dict[str, Any]:
        return await self.wait_health(
            lambda status: status.get("healthy"), what="became healthy", timeout_s=timeout_s
        )


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    stop_all(started)


def _event(
    origin: str, area: str, subjects: list[tuple[str, str, dict[str, str]]], **fields: Any
) -> dict[str, Any]:
    event = template(area, agency=origin, event_id=str(uuid.uuid4()))
    now = datetime.now(UTC)
    event.update(
        created_at=now,
        expires_at=now + timedelta(days=1),
        tlp="GREEN",
        releasable_to=[B] if origin == A else [],
        handling_codes=["H0"],
        subjects=[{"kind": k, "value": v, "attributes": a} for k, v, a in subjects],
    )
    event.update(fields)
    return event


async def _publish(
    federation: Federation, federated: Federated, agency: str, topic: str, events: list[Any]
) -> None:
    key = federated.keys[agency]
    for event in events:
        await produce(
            federation.bootstrap(agency),
            topic,
            [seal(event, key)],
            key=event["correlation_id"].encode(),
        )


async def _hits(federation: Federation, output: str, expected: int, check: Any) -> Counter[str]:
    records = await consume_all(
        federation.bootstrap(B), output, expected=expected, check=check, timeout_s=120
    )
    store = default_store()
    found: Counter[str] = Counter()
    for record in records:
        assert record.value is not None
        hit = store.decode(record.value, HIT)
        assert hit["agency"] == B
        assert hit["first"]["origin"] != hit["second"]["origin"]
        found[hit["hit_id"]] += 1
    return found


def _pair(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "+".join(sorted((a["event_id"], b["event_id"])))


async def test_shared_identifiers_in_other_forms_hit_once_per_pair_across_a_kill(
    federation: Federation, tmp_path: Path, processes: list[WorkerProcess]
) -> None:
    """Equal identifiers in other forms give exactly one hit per pair of events of different
    origins that Europol received; a SIGKILLed and restarted correlator neither loses nor
    repeats one; unreleased events, same-origin pairs and unshared identifiers give none."""
    federated = federated_config(federation, tmp_path / "config")
    topic = unique_topic("correlate")
    output = unique_topic("correlations")
    await create_topic(federation.bootstrap(A), topic, partitions=2)
    await create_topic(federation.bootstrap(B), topic, partitions=2)
    admin = federation.config.agency(B).as_identity("admin")
    if admin.tls is not None:
        principal = correlator_principal(B)
        await apply_acls(
            admin,
            [
                Acl(principal=principal, operation="Read", resource="topic", name=t)
                for t in (topic, f"{A}.{topic}")
            ]
            + [
                Acl(principal=principal, operation=op, resource="topic", name=output)
                for op in ("Create", "Read", "Write")
            ],
        )
    bridge = BridgeProcess(
        federated, source=A, destination=B, topics=[topic], log_dir=tmp_path, name="bridge"
    )
    processes.append(bridge)
    bridge.start()
    await bridge.wait_assigned()

    vessel_a = _event(A, "MARITIME_PIRACY", [("VESSEL", "IMO 9074729", {})])
    ip_a = _event(A, "CYBERCRIME", [("IP_ADDRESS", "2001:0db8:0000:0000:0000:0000:0000:0001", {})])
    phone_a = _event(A, "COUNTER_TERRORISM", [("PHONE_NUMBER", "0044 20 7946-0958", {})])
    domain_a = _event(A, "CYBERCRIME", [("DOMAIN", "Evil.Example.ORG.", {})])
    alone_a = _event(A, "CYBERCRIME", [("DOMAIN", "only-interpol.example", {})])
    unreleased_a = _event(A, "MARITIME_PIRACY", [("VESSEL", "IMO 9074729", {})], releasable_to=[])
    vessel_b = _event(B, "MARITIME_PIRACY", [("VESSEL", "MV EXAMPLE", {"imo": "imo9074729"})])
    ip_b = _event(B, "CYBERCRIME", [("IP_ADDRESS", "2001:db8::1", {})])
    phone_b = _event(B, "COUNTER_TERRORISM", [("PHONE_NUMBER", "+44 (0)20 7946 0958", {})])
    domain_b = _event(
        B, "CYBERCRIME", [("URL", "https://x.example/", {}), ("DOMAIN", "evil.example.org", {})]
    )
    alone_b = _event(B, "CYBERCRIME", [("DOMAIN", "only-europol.example", {})])
    vessel_b2 = _event(B, "MARITIME_PIRACY", [("VESSEL", "9074729", {"mmsi": "235009802"})])

    correlator = CorrelatorProcess(
        federated, agency=B, topic=topic, output=output, log_dir=tmp_path
    )
    processes.append(correlator)
    correlator.start()
    await correlator.wait_healthy()

    def alive() -> None:
        for process in (bridge, correlator):
            assert process.process is not None
            assert process.process.poll() is None, process.tail()

    await _publish(
        federation, federated, A, topic, [vessel_a, ip_a, phone_a, domain_a, alone_a, unreleased_a]
    )
    await _publish(federation, federated, B, topic, [vessel_b, ip_b, phone_b])
    first = await _hits(federation, output, 3, alive)
    assert set(first) <= {_pair(vessel_a, vessel_b), _pair(ip_a, ip_b), _pair(phone_a, phone_b)}

    correlator.kill()
    await produce(federation.bootstrap(B), topic, [b"garbage, not an event"], key=b"junk")
    await _publish(federation, federated, B, topic, [domain_b, alone_b, vessel_b2])
    correlator.start()
    await correlator.wait_healthy()

    expected = {
        _pair(vessel_a, vessel_b),
        _pair(ip_a, ip_b),
        _pair(phone_a, phone_b),
        _pair(domain_a, domain_b),
        _pair(vessel_a, vessel_b2),
    }
    found = await _hits(federation, output, len(expected), alive)
    assert set(found) == expected
    assert await correlator.metric("bus_correlate_events_total", outcome="rejected") == 1

    # A revision supersedes the identifiers of the one before; an expired event is not matched.
    revised_1 = _event(A, "CYBERCRIME", [("DOMAIN", "revised.example", {})])
    revised_2 = dict(
        revised_1,
        revision=2,
        subjects=[{"kind": "DOMAIN", "value": "other-revised.example", "attributes": {}}],
    )
    expiring = _event(
        A,
        "CYBERCRIME",
        [("DOMAIN", "expiring.example", {})],
        expires_at=datetime.now(UTC) + timedelta(seconds=8),
    )
    mirror = f"{A}.{topic}"
    indexed = await correlator.metric("bus_correlate_events_total", topic=mirror)
    await _publish(federation, federated, A, topic, [revised_1, revised_2, expiring])
    await _wait_for(correlator, "bus_correlate_events_total", indexed + 3, topic=mirror)
    await asyncio.sleep(max(0.0, (expiring["expires_at"] - datetime.now(UTC)).total_seconds()))
    old_form = _event(B, "CYBERCRIME", [("DOMAIN", "REVISED.example", {})])
    new_form = _event(
        B,
        "CYBERCRIME",
        [("URL", "https://other-revised.example/", {}), ("DOMAIN", "other-revised.example.", {})],
    )
    too_late = _event(B, "CYBERCRIME", [("DOMAIN", "expiring.example", {})])
    await _publish(federation, federated, B, topic, [old_form, new_form, too_late])
    await _wait_for(correlator, "bus_correlate_events_total", 3, topic=topic, outcome="indexed")
    expected.add(_pair(revised_2, new_form))
    found = await _hits(federation, output, len(expected), alive)
    # Once more after the processor had time to repeat anything it would repeat.
    await asyncio.sleep(3)
    found = await _hits(federation, output, len(expected), alive)
    assert set(found) == expected
    assert all(count == 1 for count in found.values()), found


async def _wait_for(process: WorkerProcess, name: str, value: float, **labels: str) -> None:
    """Until the process's metric ``name`` (summed over ``labels``) reaches ``value``."""
    async with asyncio.timeout(60):
        while True:
            if await process.metric(name, **labels) >= value:
                return
            await asyncio.sleep(0.3)

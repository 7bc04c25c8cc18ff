"""The bridge against real clusters: exactly the released events cross, each once, whatever fails.

Every test moves a source topic of its own, so the tests do not see each other's records.
Counts are taken by event id with an independent ``read_committed`` reader.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bus import local
from bus.audit import decode_audit_record
from bus.bridge._hops import HOP, PATH
from bus.envelope import peek, seal
from bus.headers import event_headers
from bus.quarantine import read_quarantined
from bus.testing import (
    EventPlan,
    Federated,
    Federation,
    consume_all,
    count_by_event_id,
    create_topic,
    federated_config,
    grant_bridge,
    produce,
    produce_records,
    publish_plan,
    unique_topic,
)
from tests.bridge import (
    BridgeProcess,
    audit_by_event_id,
    audit_values,
    copy_records,
    stop_all,
    verify_audit,
)

pytestmark = pytest.mark.integration

SOURCE, DESTINATION = "interpol", "europol"
PARTITIONS = 3


@pytest.fixture
def federated(federation: Federation, tmp_path: Path) -> Federated:
    return federated_config(federation, tmp_path / "config")


@pytest.fixture
def bridges(federated: Federated, tmp_path: Path) -> Iterator[list[BridgeProcess]]:
    """Bridge processes a test starts; all are stopped at the end whatever happened."""
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


async def _source_topic(federation: Federation) -> str:
    topic = unique_topic("feed")
    await create_topic(federation.bootstrap(SOURCE), topic, partitions=PARTITIONS)
    await grant_bridge(federation.config, SOURCE, DESTINATION, [topic])
    return topic


def _bridge(
    federated: Federated,
    topic: str,
    tmp_path: Path,
    name: str = "bridge",
    options: Sequence[str] = (),
) -> BridgeProcess:
    return BridgeProcess(
        federated,
        source=SOURCE,
        destination=DESTINATION,
        topics=[topic],
        log_dir=tmp_path,
        name=name,
        options=options,
    )


async def _assert_exactly_released(
    federation: Federation, federated: Federated, topic: str, plan: EventPlan
) -> None:
    """The destination's mirror holds each released event once and nothing else; the source's
    audit topic holds exactly one decision per event, the right one."""
    mirror = f"{SOURCE}.{topic}"
    counts = await count_by_event_id(
        federation.bootstrap(DESTINATION), mirror, expected=len(plan.released)
    )
    duplicates = {event_id: n for event_id, n in counts.items() if n > 1}
    assert duplicates == {}
    assert set(counts) == plan.released
    audit = await audit_by_event_id(
        federation.bootstrap(SOURCE),
        federated.config.topics.audit,
        topic,
        expected=len(plan.ids),
    )
    assert set(audit) == set(plan.ids)
    for event_id, decisions in audit.items():
        expected = "FORWARDED" if event_id in plan.released else "DENIED"
        assert decisions == [expected], event_id


async def _wait_until_moved(
    federation: Federation, topic: str, plan: EventPlan, bridge: BridgeProcess
) -> None:
    """Wait until the mirror holds as many records as the plan releases (the bridge alive)."""

    def alive() -> None:
        assert bridge.process is not None
        assert bridge.process.poll() is None, bridge.tail()

    try:
        await consume_all(
            federation.bootstrap(DESTINATION),
            f"{SOURCE}.{topic}",
            expected=len(plan.released),
            check=alive,
            timeout_s=180,
        )
    except TimeoutError as exc:
        raise AssertionError(f"the bridge did not catch up: {exc}\n{bridge.tail()}") from None


async def test_released_events_cross_rebuilt_from_what_was_verified_and_are_all_audited(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=600, garbage_every=100)
    await publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE])
    # A released event written raw with a forged key, forged CloudEvents and hop headers, an
    # extra header and a timestamp half an hour ahead (the broker takes up to an hour).
    forged = plan.event(1)
    forged["event_id"] = str(uuid.uuid4())
    plan.ids.append(forged["event_id"])
    plan.released.add(forged["event_id"])
    forged_at = int((time.time() + 1800) * 1000)
    await produce(
        federation.bootstrap(SOURCE),
        topic,
        [seal(forged, federated.keys[SOURCE])],
        key=b"attacker-chosen",
        timestamp_ms=forged_at,
        headers=[
            ("ce_id", b"forged"),
            ("ce_source", b"/agencies/ameripol/units/forged"),
            ("content-type", b"text/plain"),
            (PATH, b"europol"),
            (HOP, b"ameripol->interpol forged"),
            ("x-smuggled", b"anything"),
        ],
    )
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()
    await _wait_until_moved(federation, topic, plan, bridge)
    await _assert_exactly_released(federation, federated, topic, plan)

    # The value byte for byte in the source's partition; the key and headers rebuilt from the
    # verified event; the timestamp the bridge's.
    source = {
        (r.partition, r.value): r for r in await consume_all(federation.bootstrap(SOURCE), topic)
    }
    mirrored = await consume_all(federation.bootstrap(DESTINATION), f"{SOURCE}.{topic}")
    assert len(mirrored) == len(plan.released)
    for copy in mirrored:
        assert (copy.partition, copy.value) in source
        assert copy.value is not None
        event = peek(copy.value).event
        assert copy.key == event["correlation_id"].encode()
        assert list(copy.headers)[:-1] == [*event_headers(event), (PATH, SOURCE.encode())]
        name, hop = list(copy.headers)[-1]
        assert name == HOP
        assert hop.startswith(f"{SOURCE}->{DESTINATION} bridge-1".encode())
        if event["event_id"] == forged["event_id"]:
            assert copy.timestamp < forged_at - 600_000  # not the forged one

    # The garbage went to the source's quarantine, with where it came from.
    ours = [
        read_quarantined(r)
        for r in await consume_all(
            federation.bootstrap(SOURCE),
            federated.config.topics.quarantine,
            expected=plan.count // plan.garbage_every,
            where=lambda r: read_quarantined(r).source_topic == topic,
        )
    ]
    assert len(ours) == plan.count // plan.garbage_every
    assert {q.reason for q in ours} == {"bad-marker"}

    assert await bridge.metric("bus_bridge_forwarded_total") == len(plan.released)
    assert await bridge.metric("bus_bridge_denied_total", rule="releasable-to") > 0
    assert await bridge.metric("bus_bridge_quarantined_total", reason="bad-marker") == len(ours)
    assert await bridge.terminate() == 0


async def test_a_bridge_killed_again_and_again_loses_and_repeats_nothing(
    federation: Federation,
    federated: Federated,
    bridges: list[BridgeProcess],
    tmp_path: Path,
    seed: int,
) -> None:
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=3000)
    rng = random.Random(seed)
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    publishing = asyncio.create_task(
        publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=250)
    )
    try:
        for _ in range(3):
            bridge.start()
            await bridge.wait_assigned()
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            bridge.kill()
    finally:
        await publishing
    bridge.start()
    await bridge.wait_assigned()
    await _wait_until_moved(federation, topic, plan, bridge)
    await _assert_exactly_released(federation, federated, topic, plan)
    assert bridge.starts == 4, f"seed {seed}"
    # Four workers, three of them killed mid-transaction, wrote one unbroken signed audit chain
    # per source partition: every head came from a committed checkpoint.
    values = await audit_values(
        federation.bootstrap(SOURCE), federated.config.topics.audit, topic, expected=len(plan.ids)
    )
    copy = await copy_records(federation.bootstrap(SOURCE), values)
    status, lines = verify_audit(federated, SOURCE, copy)
    assert (status, lines) == (
        0,
        [
            {
                "records": len(plan.ids),
                "chains": PARTITIONS,
                "signatures": lines[-1]["signatures"],
                "breaks": 0,
            }
        ],
    ), f"seed {seed}"
    assert lines[-1]["signatures"] >= PARTITIONS


#: SIGTERM ends a worker within its operation timeout (30 s by default) and a few seconds: the
#: bound ``bus bridge run`` documents. Generous: a bound, not a benchmark.
STOP_BOUND_S = 45.0


async def test_a_bridge_started_after_a_sigkill_stops_within_the_bound_on_sigterm(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """The killed worker's group member lives on until its session expires; a worker started
    meanwhile and sent SIGTERM seconds later still exits cleanly within the bound, and the
    next one moves everything exactly once."""
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=1500)
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    publishing = asyncio.create_task(
        publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=300)
    )
    try:
        bridge.start()
        await bridge.wait_assigned()
        await asyncio.sleep(1.0)
        bridge.kill()  # mid-stream: its members stay in the groups until their sessions expire
        bridge.start()
        deadline = time.monotonic() + 30
        while await bridge.health() is None:  # answering: the worker is up, not yet assigned
            assert bridge.process is not None
            assert bridge.process.poll() is None, bridge.tail()
            assert time.monotonic() < deadline, bridge.tail()
            await asyncio.sleep(0.2)
        await asyncio.sleep(4.0)  # its Faust and replicator members are joining their groups
        started = time.monotonic()
        try:
            status = await bridge.terminate(STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"no exit within {STOP_BOUND_S} s of SIGTERM: {bridge.tail(60)}"
            ) from None
        took = time.monotonic() - started
        print(f"exit {status} {took:.1f} s after SIGTERM")
        assert status == 0, bridge.tail(60)
    finally:
        await publishing
    bridge.start()
    await bridge.wait_assigned()
    await _wait_until_moved(federation, topic, plan, bridge)
    await _assert_exactly_released(federation, federated, topic, plan)
    assert await bridge.terminate() == 0


async def test_the_destination_restarting_while_events_flow_loses_and_repeats_nothing(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    if federation.spec is None:
        pytest.skip("external clusters cannot be restarted by the tests")
    spec = federation.spec
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=1500)
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()
    publishing = asyncio.create_task(
        publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=300)
    )
    try:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(local.down, spec, only=[DESTINATION])
        await asyncio.sleep(3)  # events keep arriving on the source meanwhile
        await local.up(spec)
    finally:
        await publishing
    await _wait_until_moved(federation, topic, plan, bridge)
    await _assert_exactly_released(federation, federated, topic, plan)
    assert bridge.process is not None
    assert bridge.process.poll() is None  # it rode out the outage: nothing escaped


async def test_the_destination_unreachable_longer_than_a_commit_may_take_loses_nothing(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """With a 3 s operation timeout and the destination gone for 12 s, commits fail or end
    with an unknown outcome again and again; the bridge reopens, retries and rides it out."""
    if federation.spec is None:
        pytest.skip("external clusters cannot be stopped by the tests")
    spec = federation.spec
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=1200)
    bridge = _bridge(federated, topic, tmp_path, options=["--operation-timeout", "3"])
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()
    publishing = asyncio.create_task(
        publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=150)
    )
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(local.down, spec, only=[DESTINATION])
        await asyncio.sleep(12)
        felt = await bridge.metric("bus_bridge_transaction_aborts_total") + await bridge.metric(
            "bus_bridge_retries_total"
        )
        await local.up(spec)
    finally:
        await publishing
    await _wait_until_moved(federation, topic, plan, bridge)
    await _assert_exactly_released(federation, federated, topic, plan)
    assert felt > 0, bridge.tail()
    assert bridge.process is not None
    assert bridge.process.poll() is None


async def test_the_source_restarting_loses_and_repeats_nothing(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    if federation.spec is None:
        pytest.skip("external clusters cannot be restarted by the tests")
    spec = federation.spec
    topic = await _source_topic(federation)
    first = EventPlan(origin=SOURCE, destination=DESTINATION, count=600)
    await publish_plan(federation.bootstrap(SOURCE), topic, first, federated.keys[SOURCE])
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()
    await asyncio.sleep(0.5)
    await asyncio.to_thread(local.down, spec, only=[SOURCE])
    await asyncio.sleep(2)
    await local.up(spec)
    second = EventPlan(origin=SOURCE, destination=DESTINATION, count=600)
    await publish_plan(federation.bootstrap(SOURCE), topic, second, federated.keys[SOURCE])
    both = EventPlan(
        origin=SOURCE,
        destination=DESTINATION,
        count=first.count + second.count,
        ids=first.ids + second.ids,
        released=first.released | second.released,
        denied=first.denied | second.denied,
    )
    await _wait_until_moved(federation, topic, both, bridge)
    await _assert_exactly_released(federation, federated, topic, both)


async def test_two_workers_share_the_partitions_and_one_dying_loses_nothing(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=2000)
    first = _bridge(federated, topic, tmp_path, name="first")
    second = _bridge(federated, topic, tmp_path, name="second")
    bridges += [first, second]
    first.start()
    await first.wait_assigned()
    publishing = asyncio.create_task(
        publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=400)
    )
    try:
        second.start()
        await second.wait_assigned()
        shares = [len((await b.health() or {}).get("partitions", [])) for b in (first, second)]
        for _ in range(50):
            if sum(shares) == PARTITIONS and min(shares) > 0:
                break
            await asyncio.sleep(0.2)
            shares = [len((await b.health() or {}).get("partitions", [])) for b in (first, second)]
        assert min(shares) > 0, shares
        await asyncio.sleep(1)
        first.kill()  # its partitions move to the second worker mid-stream
    finally:
        await publishing
    await _wait_until_moved(federation, topic, plan, second)
    await _assert_exactly_released(federation, federated, topic, plan)


async def test_audit_records_name_the_rule_the_event_and_where_it_was_read(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    topic = await _source_topic(federation)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=40)
    await publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE])
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    await _wait_until_moved(federation, topic, plan, bridge)
    audit_topic = federated.config.topics.audit
    await audit_by_event_id(federation.bootstrap(SOURCE), audit_topic, topic, expected=plan.count)
    # All of the shared audit topic, for `bus tail --count` below.
    records = await consume_all(federation.bootstrap(SOURCE), audit_topic)
    audits = [decode_audit_record(r.value) for r in records if r.value is not None]
    ours = [a for a in audits if a["source_topic"] == topic]
    assert len(ours) == plan.count
    for audit in ours:
        assert audit["source"] == SOURCE
        assert audit["destination"] == DESTINATION
        assert audit["origin"] == SOURCE
        assert audit["bridge_id"] == "bridge-1"
        assert 0 <= audit["source_partition"] < PARTITIONS
        if audit["event_id"] in plan.released:
            assert (audit["decision"], audit["rule"]) == ("FORWARDED", "allowed")
        else:
            assert audit["decision"] == "DENIED"
            assert audit["rule"] in {"releasable-to", "tlp"}
            assert audit["reason"]

    # The operator's view of the same decisions: `bus tail --topic bus.audit`, as the admin
    # (over mTLS the applications may not read the audit topic).
    identity = ["--identity", "admin"] if federated.config.agency(SOURCE).tls is not None else []
    shown = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "bus",
            "tail",
            "--config",
            str(federated.path),
            "--agency",
            SOURCE,
            *identity,
            "--topic",
            federated.config.topics.audit,
            "--from-beginning",
            "--count",
            str(len(audits)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert sorted(
        (line["event_id"], line["decision"]) for line in lines if line["source_topic"] == topic
    ) == sorted((a["event_id"], a["decision"]) for a in ours)


async def test_three_agencies_both_directions_no_loops_and_no_event_twice(
    federation: Federation, tmp_path: Path, bridges: list[BridgeProcess]
) -> None:
    """interpol->europol, europol->interpol and europol->ameripol at once. Europol re-shares
    some interpol events on its own feed: they never go back to interpol, and reach ameripol
    only under onward forwarding (H2 only with the origin's consent)."""
    if "ameripol" not in federation.agencies:
        pytest.skip("needs a third agency")
    a, b, c = "interpol", "europol", "ameripol"
    federated = federated_config(federation, tmp_path / "config", onward=[(b, c)])
    topic_a, topic_b = unique_topic("feed-a"), unique_topic("feed-b")
    await create_topic(federation.bootstrap(a), topic_a, partitions=2)
    await create_topic(federation.bootstrap(b), topic_b, partitions=2)
    for source, destination, topic in ((a, b, topic_a), (b, a, topic_b), (b, c, topic_b)):
        await grant_bridge(federation.config, source, destination, [topic])
        bridge = BridgeProcess(
            federated,
            source=source,
            destination=destination,
            topics=[topic],
            log_dir=tmp_path,
            name=f"{source}-{destination}",
        )
        bridges.append(bridge)
        bridge.start()
    for bridge in bridges:
        await bridge.wait_assigned()

    def everywhere(event: dict[str, Any], i: int) -> dict[str, Any]:
        event["releasable_to"] = [x for x in (a, b, c) if x != event["origin"]["agency"]]
        event["tlp"] = "GREEN"
        event["handling_codes"] = ["H2"] if i % 3 == 0 else ["H0"]
        event["onward_release_consent"] = i % 6 == 0
        return event

    events_a = [
        everywhere(EventPlan(origin=a, destination=b, count=1).event(i), i) for i in range(60)
    ]
    events_b = [
        everywhere(EventPlan(origin=b, destination=a, count=1).event(i), i) for i in range(40)
    ]
    await produce(
        federation.bootstrap(a),
        topic_a,
        [seal(e, federated.keys[a]) for e in events_a],
    )
    await produce(
        federation.bootstrap(b),
        topic_b,
        [seal(e, federated.keys[b]) for e in events_b],
    )
    # Europol's own system re-shares interpol's events from the mirror, headers and all.
    mirror_a_on_b = await consume_all(
        federation.bootstrap(b), f"{a}.{topic_a}", expected=len(events_a)
    )
    assert len(mirror_a_on_b) == len(events_a)
    await produce_records(federation.bootstrap(b), topic_b, mirror_a_on_b)

    onward = {
        e["event_id"]
        for e in events_a
        if e["handling_codes"] == ["H0"] or e["onward_release_consent"]
    }
    ids_a = {e["event_id"] for e in events_a}
    ids_b = {e["event_id"] for e in events_b}
    on_c = f"{b}.{topic_b}"
    counts_c = await count_by_event_id(
        federation.bootstrap(c), on_c, expected=len(ids_b) + len(onward)
    )
    counts_a = await count_by_event_id(federation.bootstrap(a), on_c, expected=len(ids_b))
    counts_b = await count_by_event_id(
        federation.bootstrap(b), f"{a}.{topic_a}", expected=len(ids_a)
    )
    for counts in (counts_a, counts_b, counts_c):
        assert max(counts.values()) == 1
    assert set(counts_b) == ids_a
    assert set(counts_a) == ids_b  # interpol's own events never came back to interpol
    assert set(counts_c) == ids_b | onward
    # The re-shared interpol events were refused on the way back, by the origin rule.

    def sent_back(record: Any) -> bool:
        d = decode_audit_record(record.value)
        return bool(d["source_topic"] == topic_b and d["destination"] == a and d["origin"] == a)

    audit = await consume_all(
        federation.bootstrap(b),
        federated.config.topics.audit,
        expected=len(events_a),
        where=sent_back,
    )
    back = [decode_audit_record(r.value) for r in audit]
    assert len(back) == len(events_a)
    assert {(d["decision"], d["rule"]) for d in back} == {("DENIED", "loop-origin")}


async def test_a_rejected_record_too_large_to_copy_is_quarantined_without_its_value(
    federation: Federation, federated: Federated, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    """A rejected record so close to the record size limit that the reason headers would push
    its copy past it is quarantined with its size and digest instead of its bytes (inside a
    transaction a copy too large would fail the batch again and again)."""
    topic = await _source_topic(federation)
    big = b"not an event " + b"x" * 1_048_387  # 1,048,400 bytes: ~100 under the 1 MiB limit
    await produce(federation.bootstrap(SOURCE), topic, [big], partition=0)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=30)
    await publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE])
    bridge = _bridge(federated, topic, tmp_path)
    bridges.append(bridge)
    bridge.start()
    await _wait_until_moved(federation, topic, plan, bridge)
    await _assert_exactly_released(federation, federated, topic, plan)
    quarantined = await consume_all(
        federation.bootstrap(SOURCE),
        federated.config.topics.quarantine,
        expected=1,
        where=lambda r: dict(r.headers).get("bus_source_topic") == topic.encode(),
    )
    assert len(quarantined) == 1
    assert quarantined[0].value is None
    assert dict(quarantined[0].headers)["bus_value_omitted"] == str(len(big)).encode()
    digest = hashlib.sha256(big).hexdigest().encode()
    assert dict(quarantined[0].headers)["bus_value_sha256"] == digest

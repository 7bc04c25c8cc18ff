"""The hostile-record campaign (issue 10, point 11): a running federation under attack.

Every case of ``tests.hostile.catalogue`` is written raw, with plain producers, into the source
topic of a running bridge (and, for the receiving-side cases, straight into the destination's
mirror), interleaved with valid traffic, while a subscriber group reads the source topic and
another reads the mirror. Then everything is counted with independent readers:

- each hostile record met the fate its case states, at the bridge (quarantined with its reason,
  denied by its rule, or forwarded once with headers and key rebuilt from the verified event)
  and at each subscriber (quarantined with its reason, delivered, or skipped as a duplicate or
  a rollback);
- every valid event crossed (or was denied) exactly as the policy says, and each subscriber
  delivered it exactly once; nothing else reached the mirror;
- the bridge's and the subscribers' counters equal those counts;
- the bridge process and both subscribers are still running at the end.

Every mismatch is collected and reported by case name, so one run shows every case that does
not hold yet. ``BUS_CAMPAIGN_CASES`` (comma-separated case names, or ``-name`` to leave one out)
narrows a run for diagnosis; by default every case runs.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from bus.audit import decode_audit_record
from bus.bridge._hops import HOP, PATH
from bus.config import Config
from bus.envelope import peek, seal
from bus.errors import BusError
from bus.headers import event_headers
from bus.records import QuarantinedRecord, read_quarantined
from bus.subscriber import Delivery, Rejection, open_subscriber
from bus.testing import (
    EventPlan,
    Federation,
    connect,
    federated_config,
    grant_applications,
    grant_bridge,
    unique_topic,
)
from bus.trust import append_key
from tests.bridge import BridgeProcess
from tests.hostile import (
    CODECS,
    DUPLICATE,
    FORWARDED,
    ROLLBACK,
    HostileCase,
    HostileKeys,
    Kind,
    Outcome,
    Planted,
    Target,
    catalogue,
    denied,
    quarantined,
    write_case,
)

pytestmark = pytest.mark.integration

SOURCE, DESTINATION, THIRD = "interpol", "europol", "ameripol"
PARTITIONS = 3
VALID_EVENTS = 200
TOPIC_MAX_BYTES = 3_000_000
"""The source topic takes records past the bus's 1 MiB limit, so the oversized case reaches it."""
BRIDGE_TIMEOUT_S = 300.0
READ_TIMEOUT_S = 60.0
SELECT_ENV = "BUS_CAMPAIGN_CASES"


def _selected(cases: list[HostileCase]) -> list[HostileCase]:
    spec = [s.strip() for s in os.environ.get(SELECT_ENV, "").split(",") if s.strip()]
    if not spec:
        return cases
    known = {c.name for c in cases}
    unknown = [s.lstrip("-") for s in spec if s.lstrip("-") not in known]
    assert not unknown, f"{SELECT_ENV}: no such case {unknown}"
    only = {s for s in spec if not s.startswith("-")}
    left_out = {s[1:] for s in spec if s.startswith("-")}
    return [c for c in cases if (not only or c.name in only) and c.name not in left_out]


# --- the subscribers --------------------------------------------------------------------------


@dataclass
class SubscriberRun:
    """A subscriber group running in this process; what it delivered and rejected."""

    config: Config
    agency: str
    topic: str
    group: str = field(default_factory=lambda: f"campaign-{uuid.uuid4().hex[:8]}")
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    deliveries: list[Delivery] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    failure: BaseException | None = None
    running: bool = False

    async def run(self) -> None:
        try:
            async with open_subscriber(
                self.config,
                self.agency,
                group_id=self.group,
                topics=[self.topic],
                from_beginning=True,
                on_rejected=self.rejections.append,
                registry=self.registry,
            ) as subscriber:
                self.running = True
                async for delivery in subscriber:
                    self.deliveries.append(delivery)
        except Exception as exc:  # reported as a finding: no record may stop a subscriber
            self.failure = exc
        finally:
            self.running = False

    def is_running(self) -> bool:
        return self.running

    async def consumed_now(self) -> float:
        """``consumed()`` as an awaitable, for ``_wait_for``."""
        return self.consumed()

    def consumed(self, outcome: str | None = None) -> float:
        outcomes = [outcome] if outcome else ["delivered", "duplicate", "rollback", "rejected"]
        return sum(
            self.registry.get_sample_value(
                "bus_consumed_total", {"agency": self.agency, "topic": self.topic, "outcome": o}
            )
            or 0.0
            for o in outcomes
        )

    def quarantined(self, reason: str) -> float:
        labels = {"agency": self.agency, "topic": self.topic, "reason": reason}
        return self.registry.get_sample_value("bus_quarantined_total", labels) or 0.0

    def reasons(self) -> set[str]:
        return {
            sample.labels["reason"]
            for metric in self.registry.collect()
            if metric.name == "bus_quarantined"
            for sample in metric.samples
            if sample.labels.get("topic") == self.topic and sample.name.endswith("_total")
        }


# --- reading back ---------------------------------------------------------------------------


async def _read(
    bootstrap: str,
    topic: str,
    *,
    expected: int,
    match: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda r: True,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[ConsumerRecord[bytes, bytes]]:
    """The committed records of ``topic`` that ``match``, read until ``expected`` of them came
    (then a short look for more, which would be extras), or until ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        topic,
        **connect(bootstrap),
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        settle = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found.extend(r for r in records if match(r))
            if len(found) >= expected:
                settle = settle or loop.time() + 1.0
                if loop.time() >= settle:
                    break
    finally:
        await consumer.stop()
    return found


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> bytes | None:
    value = None
    for key, raw in record.headers or ():
        if key == name:
            value = raw
    return value


async def _wait_for(
    count: Callable[[], Awaitable[float]],
    expected: float,
    timeout_s: float,
    alive: Callable[[], bool],
) -> bool:
    """Poll ``count()`` until it reaches ``expected``; False on timeout or when not ``alive``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if await count() >= expected:
                return True
        except OSError:
            pass  # the process is still starting its web server, or is gone: alive() says
        if not alive():
            return False
        await asyncio.sleep(1.0)
    return False


# --- what was written -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placed:
    """A planted record and where it landed."""

    case: HostileCase
    planted: Planted
    partition: int
    offset: int


def _placed(cases: Iterable[tuple[HostileCase, int, list[int]]]) -> Iterator[Placed]:
    for case, partition, offsets in cases:
        for planted, offset in zip(case.records, offsets, strict=True):
            yield Placed(case=case, planted=planted, partition=partition, offset=offset)


def _observed(audits: list[dict[str, Any]], reasons: list[str]) -> str:
    """What one consumer did with one record, from the audit decisions and quarantine reasons
    found at its coordinates."""
    seen = [
        str(FORWARDED) if a["decision"] == "FORWARDED" else str(denied(a["rule"])) for a in audits
    ] + [str(quarantined(r)) for r in reasons]
    if not seen:
        return "nothing"
    return seen[0] if len(seen) == 1 else "several: " + ", ".join(seen)


# --- the campaign -----------------------------------------------------------------------------


async def test_hostile_records_are_refused_one_by_one_while_valid_traffic_crosses_exactly_once(
    federation: Federation, tmp_path: Path
) -> None:
    federated = federated_config(federation, tmp_path / "config")
    config = federated.config
    keys = HostileKeys(
        agencies=federated.keys,
        source=SOURCE,
        destination=DESTINATION,
        third=THIRD,
        now=datetime.now(UTC),
    )
    every_case = catalogue(keys)
    on_source = [c for c in every_case if c.target is Target.SOURCE]
    assert len({c.name for c in on_source}) >= 40, "the campaign needs 40 distinct source cases"
    cases = _selected(every_case)
    trust_file = config.agency(SOURCE).trust_store
    assert trust_file is not None
    assert trust_file == config.agency(DESTINATION).trust_store  # one store for all receivers
    for extra in keys.trusted_extras():
        append_key(trust_file, extra)

    src, dst = federation.bootstrap(SOURCE), federation.bootstrap(DESTINATION)
    topic = unique_topic("campaign")
    mirror = f"{SOURCE}.{topic}"
    admin = AIOKafkaAdminClient(**connect(src))
    await admin.start()
    try:
        configs = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=configs)])
    finally:
        await admin.close()
    # Over mutual TLS, with the ACLs `bus local up` would give for a topic of this name.
    await grant_applications(src, topic)
    await grant_bridge(config, SOURCE, DESTINATION, [topic])

    bridge = BridgeProcess(
        federated,
        source=SOURCE,
        destination=DESTINATION,
        topics=[topic],
        log_dir=tmp_path,
        name="campaign",
    )
    bridge.start()
    bridge_id = f"{bridge.name}-{bridge.starts}"
    problems: list[str] = []
    try:
        await bridge.wait_assigned()  # the bridge has created the mirror by now
        await grant_applications(dst, mirror)
        source_sub = SubscriberRun(config, SOURCE, topic)
        mirror_sub = SubscriberRun(config, DESTINATION, mirror)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(s.run()) for s in (source_sub, mirror_sub)]
            try:
                written, plan = await _attack(src, dst, topic, mirror, cases, federated.keys)
                await _check(
                    problems,
                    config=config,
                    src=src,
                    dst=dst,
                    topic=topic,
                    mirror=mirror,
                    bridge=bridge,
                    bridge_id=bridge_id,
                    source_sub=source_sub,
                    mirror_sub=mirror_sub,
                    written=written,
                    plan=plan,
                )
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        bridge.kill()
    summary = f"{len(cases)} cases ({len(every_case)} in the catalogue)"
    assert not problems, f"{summary}; {len(problems)} problems:\n" + "\n".join(problems)


async def _attack(
    src: str,
    dst: str,
    topic: str,
    mirror: str,
    cases: Sequence[HostileCase],
    agency_keys: dict[str, Any],
) -> tuple[list[tuple[HostileCase, int, list[int]]], EventPlan]:
    """Valid traffic with the hostile cases spread through it; where each case landed."""
    plain = {**connect(src), "max_request_size": TOPIC_MAX_BYTES, "linger_ms": 0}
    producers: dict[str | None, AIOKafkaProducer] = {None: AIOKafkaProducer(**plain)}
    for codec in CODECS:
        producers[codec] = AIOKafkaProducer(**plain, compression_type=codec)
    to_mirror = AIOKafkaProducer(**connect(dst), linger_ms=0)
    valid = AIOKafkaProducer(**connect(src), acks="all", enable_idempotence=True)
    started = [*producers.values(), to_mirror, valid]
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=VALID_EVENTS)
    written: list[tuple[HostileCase, int, list[int]]] = []
    pending = list(cases)
    every = max(1, VALID_EVENTS // max(1, len(cases)))
    try:  # every producer is stopped, also one whose start failed
        for producer in started:
            await producer.start()
        futures = []
        for i in range(VALID_EVENTS):
            event = plan.event(i)
            plan.ids.append(event["event_id"])
            (plan.denied if i % 5 == 0 or i % 7 == 0 else plan.released).add(event["event_id"])
            futures.append(
                await valid.send(
                    topic,
                    seal(event, agency_keys[SOURCE]),
                    key=event["correlation_id"].encode(),
                    headers=event_headers(event),
                )
            )
            while pending and (i % every == every - 1 or i == VALID_EVENTS - 1):
                case = pending.pop(0)
                partition = len(written) % PARTITIONS
                if case.target is Target.MIRROR:
                    offsets = await write_case({None: to_mirror}, mirror, partition, case)
                else:
                    offsets = await write_case(producers, topic, partition, case)
                written.append((case, partition, offsets))
                if i != VALID_EVENTS - 1:
                    break
        await asyncio.gather(*futures)
    finally:
        for producer in started:
            await producer.stop()
    return written, plan


def _rule_of_valid(i: int) -> str:
    return "releasable-to" if i % 5 == 0 else "tlp"


async def _check(
    problems: list[str],
    *,
    config: Config,
    src: str,
    dst: str,
    topic: str,
    mirror: str,
    bridge: BridgeProcess,
    bridge_id: str,
    source_sub: SubscriberRun,
    mirror_sub: SubscriberRun,
    written: list[tuple[HostileCase, int, list[int]]],
    plan: EventPlan,
) -> None:
    placed = list(_placed(written))
    on_source = [p for p in placed if p.case.target is Target.SOURCE]
    on_mirror = [p for p in placed if p.case.target is Target.MIRROR]
    source_records = VALID_EVENTS + len(on_source)

    # --- what must happen, counted ---
    expected_bridge: Counter[str] = Counter(str(p.planted.bridge) for p in on_source)
    for i, event_id in enumerate(plan.ids):
        expected_bridge[
            str(FORWARDED if event_id in plan.released else denied(_rule_of_valid(i)))
        ] += 1
    forwarded_hostile = [p for p in on_source if p.planted.bridge == FORWARDED]
    expected_forwarded = len(plan.released) + len(forwarded_hostile)
    expected_sub: Counter[str] = Counter(str(p.planted.subscriber) for p in on_source)
    expected_sub["delivered"] += VALID_EVENTS
    expected_mirror_sub: Counter[str] = Counter(
        str(p.planted.at_mirror_subscriber)
        for p in placed
        if p.planted.at_mirror_subscriber.kind is not Kind.ABSENT
    )
    expected_mirror_sub["delivered"] += len(plan.released)

    # --- wait on counts ---
    def alive() -> bool:
        return bridge.process is not None and bridge.process.poll() is None

    async def bridge_total() -> float:
        return sum(
            [
                await bridge.metric(name, source=SOURCE, destination=DESTINATION)
                for name in (
                    "bus_bridge_forwarded_total",
                    "bus_bridge_denied_total",
                    "bus_bridge_quarantined_total",
                )
            ]
        )

    if not await _wait_for(bridge_total, source_records, BRIDGE_TIMEOUT_S, alive):
        problems.append(
            f"bridge: did not judge all {source_records} source records in {BRIDGE_TIMEOUT_S:.0f} s"
            f" (alive: {alive()}); log tail:\n{bridge.tail(15)}"
        )
    for name, sub, total in (
        ("source subscriber", source_sub, source_records),
        ("mirror subscriber", mirror_sub, sum(expected_mirror_sub.values())),
    ):
        if not await _wait_for(sub.consumed_now, total, READ_TIMEOUT_S, sub.is_running):
            problems.append(
                f"{name}: consumed {sub.consumed():.0f} of {total} records"
                + (
                    f"; it stopped: {type(sub.failure).__name__}: {sub.failure}"
                    if sub.failure
                    else ""
                )
            )

    # --- the bridge's own account ---
    metrics: dict[str, float] = {}
    if alive():
        try:
            metrics = await _bridge_counts(bridge)
        except OSError as exc:
            problems.append(f"bridge: /metrics unreadable: {exc}")
    audit_expected = int(
        metrics.get("forwarded", 0) + sum(v for k, v in metrics.items() if k.startswith("denied("))
    ) or sum(v for k, v in expected_bridge.items() if not k.startswith("quarantined"))
    audit_records = await _read(
        src,
        config.topics.audit,
        expected=audit_expected,
        match=lambda r: r.value is not None and topic.encode() in r.value,
    )
    audits = [
        a
        for a in map(decode_audit_record, [r.value for r in audit_records if r.value])
        if a["source_topic"] == topic
    ]
    quarantine_records = await _read(
        src,
        config.topics.quarantine,
        expected=int(sum(v for k, v in metrics.items() if k.startswith("quarantined(")))
        + int(source_sub.consumed("rejected")),
        match=lambda r: _header(r, "bus_source_topic") == topic.encode(),
    )
    quarantine = [read_quarantined(r) for r in quarantine_records]
    mirror_records = await _read(
        dst, mirror, expected=int(metrics.get("forwarded", expected_forwarded)) + len(on_mirror)
    )
    mirror_quarantine = [
        read_quarantined(r)
        for r in await _read(
            dst,
            config.topics.quarantine,
            expected=int(mirror_sub.consumed("rejected")),
            match=lambda r: _header(r, "bus_source_topic") == mirror.encode(),
        )
    ]

    by_offset_audit: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for a in audits:
        by_offset_audit[(a["source_partition"], a["source_offset"])].append(a)
    bridge_quarantine: dict[tuple[int, int], list[QuarantinedRecord]] = defaultdict(list)
    sub_quarantine: dict[tuple[int, int], list[QuarantinedRecord]] = defaultdict(list)
    for q in quarantine:
        where = (q.source_partition, q.source_offset)
        if q.consumer == bridge_id:
            bridge_quarantine[where].append(q)
        elif q.consumer == source_sub.group:
            sub_quarantine[where].append(q)
        else:
            problems.append(
                f"quarantine: a record of {topic} by an unknown consumer {q.consumer!r}"
            )
    mirror_sub_quarantine: dict[tuple[int, int], list[QuarantinedRecord]] = defaultdict(list)
    for q in mirror_quarantine:
        mirror_sub_quarantine[(q.source_partition, q.source_offset)].append(q)
    mirror_by_id: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    injected = {(p.partition, p.offset) for p in on_mirror}
    for r in mirror_records:
        if (r.partition, r.offset) in injected:
            continue
        try:
            mirror_by_id[str(peek(r.value or b"").event["event_id"])].append(r)
        except BusError:
            problems.append(f"mirror: {mirror}/{r.partition}@{r.offset} is not an event at all")
    delivered_at = Counter((d.partition, d.offset) for d in source_sub.deliveries)
    delivered_ids = Counter(d.event_id for d in source_sub.deliveries)
    rejected_at = {(r.partition, r.offset): r.reason for r in source_sub.rejections}
    mirror_delivered_ids = Counter(d.event_id for d in mirror_sub.deliveries)
    mirror_rejected_at = {(r.partition, r.offset): r.reason for r in mirror_sub.rejections}
    source_sub_done = source_sub.consumed() >= source_records

    # --- each hostile record ---
    forwarded_ids: Counter[str] = Counter()
    verdicts: list[str] = []
    for case in dict.fromkeys(p.case for p in placed):
        mismatches: list[str] = []
        for index, p in enumerate(x for x in placed if x.case is case):
            where = (p.partition, p.offset)
            label = f"record {index}" if len(case.records) > 1 else "record"
            expect = p.planted
            if case.target is Target.SOURCE:
                seen = _observed(
                    by_offset_audit.get(where, []),
                    [q.reason for q in bridge_quarantine.get(where, [])],
                )
                if seen != str(expect.bridge):
                    mismatches.append(
                        f"{label} at the bridge: expected {expect.bridge}, saw {seen}"
                    )
                if expect.bridge == FORWARDED and expect.event_id is not None:
                    forwarded_ids[expect.event_id] += 1
                    mismatches += _check_mirrored(label, p, mirror_by_id.get(expect.event_id, []))
                seen_sub = _subscriber_saw(where, delivered_at, rejected_at, source_sub_done)
                if seen_sub != _per_record(expect.subscriber):
                    mismatches.append(
                        f"{label} at the subscriber: expected {expect.subscriber}, saw {seen_sub}"
                    )
                if expect.subscriber.kind is Kind.QUARANTINED:
                    got = [q.reason for q in sub_quarantine.get(where, [])]
                    if got != [expect.subscriber.code]:
                        mismatches.append(f"{label}: subscriber's quarantine topic holds {got}")
            at_mirror = expect.at_mirror_subscriber
            if case.target is Target.MIRROR:
                seen_m = mirror_rejected_at.get(where)
                got_q = [q.reason for q in mirror_sub_quarantine.get(where, [])]
                if at_mirror.kind is Kind.QUARANTINED and (
                    seen_m != at_mirror.code or got_q != [at_mirror.code]
                ):
                    mismatches.append(
                        f"{label} at the mirror's subscriber: expected {at_mirror}, saw "
                        f"{quarantined(seen_m) if seen_m else 'no rejection'} "
                        f"(quarantine topic: {got_q})"
                    )
                if expect.event_id and mirror_delivered_ids[expect.event_id]:
                    mismatches.append(f"{label}: delivered by the mirror's subscriber")
            elif (
                at_mirror.kind is Kind.DELIVERED
                and expect.event_id is not None
                and mirror_delivered_ids[expect.event_id] != 1
            ):
                mismatches.append(
                    f"{label}: delivered {mirror_delivered_ids[expect.event_id]} times by the "
                    "mirror's subscriber, expected once"
                )
        verdicts.append(
            f"  {'ok  ' if not mismatches else 'FAIL'} {case.name} (point {case.point})"
            + "".join(f"\n         {m}" for m in mismatches)
        )
        if mismatches:
            problems.append(f"case {case.name}: " + "; ".join(mismatches))
    print("hostile campaign, case by case:\n" + "\n".join(verdicts))

    # --- valid traffic: exactly once (findings grouped, naming the first few events) ---
    valid: dict[str, list[int]] = defaultdict(list)
    for i, event_id in enumerate(plan.ids):
        copies = mirror_by_id.get(event_id, [])
        if event_id in plan.released:
            if len(copies) != 1:
                valid[f"{len(copies)} copies in the mirror, expected 1"].append(i)
            else:
                for m in _check_mirrored_record(copies[0]):
                    valid[m].append(i)
        elif copies:
            valid[f"denied, but {len(copies)} copies in the mirror"].append(i)
        if delivered_ids[event_id] != 1:
            valid[f"delivered {delivered_ids[event_id]} times at the source"].append(i)
        if event_id in plan.released and mirror_delivered_ids[event_id] != 1:
            valid[f"delivered {mirror_delivered_ids[event_id]} times at the mirror"].append(i)
    for finding, indices in valid.items():
        shown = ", ".join(f"#{i}" for i in indices[:5]) + (", ..." if len(indices) > 5 else "")
        problems.append(f"{len(indices)} valid events ({shown}): {finding}")
    expected_ids = plan.released | set(forwarded_ids)
    strays = sorted(set(mirror_by_id) - expected_ids)
    if strays:
        problems.append(f"mirror: {len(strays)} events that must not have crossed")

    # --- the counters equal the counts ---
    audit_counts = Counter(
        str(FORWARDED) if a["decision"] == "FORWARDED" else str(denied(a["rule"])) for a in audits
    )
    quarantine_counts = Counter(
        str(quarantined(q.reason)) for qs in bridge_quarantine.values() for q in qs
    )
    wanted_audit = Counter({k: v for k, v in expected_bridge.items() if not k.startswith("quar")})
    wanted_quarantine = Counter({k: v for k, v in expected_bridge.items() if k.startswith("quar")})
    if audit_counts != wanted_audit:
        problems.append(f"audit topic: {_diff(audit_counts, wanted_audit)}")
    if quarantine_counts != wanted_quarantine:
        problems.append(f"quarantine topic (bridge): {_diff(quarantine_counts, wanted_quarantine)}")
    if metrics:
        got_metrics = Counter({k: int(v) for k, v in metrics.items() if v})
        if got_metrics != expected_bridge:
            problems.append(f"bridge metrics: {_diff(got_metrics, expected_bridge)}")
    for name, sub, wanted in (
        ("source subscriber", source_sub, expected_sub),
        ("mirror subscriber", mirror_sub, expected_mirror_sub),
    ):
        got_sub = Counter(
            {
                "delivered": int(sub.consumed("delivered")),
                str(DUPLICATE): int(sub.consumed("duplicate")),
                str(ROLLBACK): int(sub.consumed("rollback")),
            }
        )
        for reason in sub.reasons():
            got_sub[str(quarantined(reason))] = int(sub.quarantined(reason))
        rejected = int(sub.consumed("rejected"))
        if rejected != sum(v for k, v in got_sub.items() if k.startswith("quar")):
            problems.append(f"{name}: {rejected} rejected but quarantine counters disagree")
        if +got_sub != +wanted:
            problems.append(f"{name} metrics: {_diff(+got_sub, +wanted)}")

    # --- everything still runs ---
    if not alive():
        problems.append(f"bridge: the process exited; log tail:\n{bridge.tail(15)}")
    else:
        health = await bridge.health()
        if not health or not health.get("healthy"):
            problems.append(f"bridge: /healthz says {health}")
    for name, sub in (("source subscriber", source_sub), ("mirror subscriber", mirror_sub)):
        if not sub.running:
            problems.append(f"{name}: not running at the end ({sub.failure!r})")


async def _bridge_counts(bridge: BridgeProcess) -> dict[str, float]:
    """The bridge's counters, keyed like ``Outcome`` strings."""
    counts: dict[str, float] = defaultdict(float)
    for line in (await bridge.metrics()).splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if name == "bus_bridge_forwarded_total":
            counts[str(FORWARDED)] += float(value)
        elif name == "bus_bridge_denied_total":
            counts[str(denied(labels["rule"]))] += float(value)
        elif name == "bus_bridge_quarantined_total":
            counts[str(quarantined(labels["reason"]))] += float(value)
    return dict(counts)


def _subscriber_saw(
    where: tuple[int, int],
    delivered_at: Counter[tuple[int, int]],
    rejected_at: dict[tuple[int, int], str],
    done: bool,
) -> str:
    delivered = delivered_at[where]
    reason = rejected_at.get(where)
    if delivered and reason:
        return f"several: delivered x{delivered}, {quarantined(reason)}"
    if delivered:
        return str(Outcome(Kind.DELIVERED)) if delivered == 1 else f"delivered x{delivered}"
    if reason:
        return str(quarantined(reason))
    return SKIPPED if done else "nothing (not reached)"


SKIPPED = "skipped (a duplicate or a rollback)"
"""A record the subscriber read but neither delivered nor rejected. Which of the two it was
is not visible per record; the ``duplicate`` and ``rollback`` counters tell them apart."""


def _per_record(expected: Outcome) -> str:
    """``expected`` as ``_subscriber_saw`` can tell it for one record."""
    return SKIPPED if expected.kind in (Kind.DUPLICATE, Kind.ROLLBACK) else str(expected)


def _check_mirrored(label: str, p: Placed, copies: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    if len(copies) != 1:
        return [f"{label}: {len(copies)} copies in the mirror, expected 1"]
    problems = [f"{label}: {m}" for m in _check_mirrored_record(copies[0])]
    forged = p.planted.record.timestamp_ms
    if forged is not None and copies[0].timestamp == forged:
        problems.append(f"{label}: the mirrored copy kept the producer's timestamp")
    return problems


def _check_mirrored_record(record: ConsumerRecord[bytes, bytes]) -> list[str]:
    """Only verified content crossed: the key is the correlation id, the CloudEvents headers
    are those of the signed event, the hop headers are this bridge's, and nothing else."""
    event = peek(record.value or b"").event
    problems = []
    if record.key != str(event["correlation_id"]).encode():
        problems.append("the mirrored key is not the event's correlation id")
    wanted = [*event_headers(event), (PATH, SOURCE.encode())]
    headers = list(record.headers or ())
    hops = [v for n, v in headers if n == HOP]
    rest = sorted((n, v) for n, v in headers if n != HOP)
    if rest != sorted(wanted):
        extra = sorted({n for n, _ in headers} - {n for n, _ in wanted} - {HOP})
        problems.append(
            "the mirrored headers are not rebuilt from the event"
            + (f" (extra headers: {extra[:5]}{'...' if len(extra) > 5 else ''})" if extra else "")
        )
    if len(hops) != 1 or not hops[0].startswith(f"{SOURCE}->{DESTINATION} ".encode()):
        problems.append(
            f"the mirrored copy has {len(hops)} bus_hop headers, expected this bridge's one"
        )
    return problems


def _diff(got: Counter[str], wanted: Counter[str]) -> str:
    keys = sorted(set(got) | set(wanted))
    return ", ".join(f"{k}: {got[k]} (expected {wanted[k]})" for k in keys if got[k] != wanted[k])

"""What each stage of the bridge's judge costs per event, without Kafka.

Run ``python -m bench.bench_stages [--rounds R]``. Seals a batch of 256 events like the bridge
benchmark's (about 1 KB, about 69% released: ``bus.testing.EventPlan`` with a padded summary) as
``SignedEvent`` v2 records, then times, per event, each stage ``bus.bridge._verdict.judge`` runs,
in isolation, and the whole judge:

- split and framing, the inclusion proof and the batch signature (root cached, as in a running
  bridge), the full decode under ``EVENT_LIMITS``, and the key's trust checks (``open_``'s parts);
- ``bus.events.validate``, ``ReleaseRequest.from_event``, ``Policy.decide``, ``EventIdentity``,
  and ``Policy.decide_event`` (memoised by markings) that the judge calls instead;
- the audit record's dict and its encoding, and ``encode_audit`` that the judge calls instead;
- on the destination side, the mirrored record's key and headers (``bus.bridge._outgoing``);
- for scale: one Ed25519 verification, and a partial decode that reads only the fields the policy
  needs (a reader schema of the leading fields), which the judge cannot use (module ``_verdict``
  and ``docs/performance.md`` say why).

Rounds are interleaved so that a busy machine slows every stage alike; in each round a stage's
figure is its fastest call (35 events of the batch) within 0.3 s, and the report gives the best
and the median of the rounds, with the spread. Figures are printed (and returned), never asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro

from bus import _framing, merkle
from bus._revisions import EventIdentity
from bus.audit import (
    SourcePosition,
    audit_key,
    audit_record,
    encode_audit,
    encode_audit_record,
)
from bus.batch import RootCache, batch_root
from bus.bridge._hops import mirrored_headers, verified_path
from bus.bridge._verdict import judge
from bus.codec import INTELLIGENCE_EVENT, default_store
from bus.envelope import EVENT_LIMITS, open_, seal_batch
from bus.events import validate
from bus.headers import event_key
from bus.policy import ReleaseRequest, load_policy
from bus.signing import SigningKey
from bus.testing import EventPlan
from bus.trust import TrustedKey, TrustStore

__all__ = ["PAD", "main", "measure"]

SOURCE = "interpol"
DESTINATION = "europol"
BATCH = 256
CHUNK = 35
PAD = (
    " Corroborated by two liaison officers; travel pattern matches earlier transits through the "
    "same hub, with tickets bought in cash a day before departure and a different name on each "
    "booking. Request: discreet check at the border, no arrest without prior consultation of the "
    "originating unit, and report of any accompanying persons, luggage and onward connections. "
    "Handling as marked; do not forward outside the receiving agency without written consent of "
    "the originator. Further details on request through the usual liaison channel."
)
_POLICY = Path(__file__).resolve().parent.parent / "deploy" / "policy" / "local.toml"
_POLICY_FIELDS = (
    "event_id",
    "revision",
    "origin",
    "crime_area",
    "info_kind",
    "handling_codes",
    "handling_conditions",
    "onward_release_consent",
    "tlp",
    "releasable_to",
    "source_reliability",
    "info_accuracy",
    "priority",
    "created_at",
    "occurred_at",
    "expires_at",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    """A source record as the judge reads it (``bus.records.SourceRecord``)."""

    topic: str = "bench"
    partition: int = 0
    offset: int
    timestamp: int = 0
    key: bytes | None = None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def _per_event(function: Callable[[], object], count: int, seconds: float) -> float:
    """Microseconds per event of ``function``, which handles ``count`` events per call: the
    fastest call within ``seconds`` (the one the other work on the machine disturbed least)."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        function()
        end = time.perf_counter()
        best = min(best, end - start)
        if end > deadline:
            return best / count * 1e6


def measure(*, rounds: int = 7, seconds: float = 0.3) -> dict[str, Any]:
    """Time every stage; return ``{"stages": {name: {best, median, min, max}}, ...}`` in
    µs/event (best is the least disturbed by other work on the machine)."""
    store = default_store()
    key = SigningKey.generate()
    now = datetime.now(UTC)
    trust = TrustStore(
        [TrustedKey(agency=SOURCE, public_key=key.public_key, not_before=now - timedelta(days=1))]
    )
    policy = load_policy(_POLICY)
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=BATCH)
    events = []
    for i in range(BATCH):
        event = plan.event(i)
        event["summary"] += PAD
        events.append(event)
    values = seal_batch(events, key)
    records = [_Record(offset=i, value=v) for i, v in enumerate(values)]
    framing = _framing.framing(store)
    parts = [_framing.split(v, framing) for v in values]
    roots = RootCache()
    opened = [open_(v, trust, now=now, roots=roots) for v in values]
    decoded = [o.event for o in opened]
    path = verified_path(origin=SOURCE, source=SOURCE)
    requests = [
        ReleaseRequest.from_event(e, source=SOURCE, destination=DESTINATION, path=path, now=now)
        for e in decoded
    ]
    decisions = [policy.decide(r) for r in requests]
    position = SourcePosition(topic="bench", partition=0, offset=1)
    audits = [
        audit_record(d, r, position=position, bridge_id="bench", decided_at=now)
        for d, r in zip(decisions, requests, strict=True)
    ]
    trusted = trust.get(key.key_id)
    writer = store.latest(INTELLIGENCE_EVENT)
    # Time calls of CHUNK events (the released/denied pattern repeats every 35): a call of a few
    # milliseconds is rarely preempted on a busy machine, one of the whole batch almost always.
    values, records, parts, opened = (
        values[:CHUNK],
        records[:CHUNK],
        parts[:CHUNK],
        opened[:CHUNK],
    )
    decoded, requests, decisions, audits = (
        decoded[:CHUNK],
        requests[:CHUNK],
        decisions[:CHUNK],
        audits[:CHUNK],
    )
    partial = fastavro.parse_schema(
        {
            **writer.raw,
            "fields": [f for f in writer.raw["fields"] if f["name"] in _POLICY_FIELDS],
        },
        named_schemas={},
    )
    one = parts[0]
    sealed_one = key.sign(one.event_bytes)

    def split() -> None:
        for v in values:
            _framing.split(v, framing)

    def proofs() -> None:
        for p in parts:
            batch = p.batch
            assert batch is not None
            root = merkle.root_from_proof(
                merkle.leaf_hash(p.event_bytes), batch.leaf_index, batch.tree_size, batch.path
            )
            assert root is not None
            signed = batch_root(
                root=root, tree_size=batch.tree_size, key_id=p.key_id, origin=batch.origin
            )
            roots.verify(trusted.public_key, signed, p.signature)

    def decode() -> None:
        for p in parts:
            store.decode(p.event_bytes, INTELLIGENCE_EVENT, limits=EVENT_LIMITS)

    def decode_partial() -> None:
        for p in parts:
            fastavro.schemaless_reader(io.BytesIO(p.event_bytes[10:]), writer.io_schema, partial)

    def trust_checks() -> None:
        for e in decoded:
            trusted.check(e["origin"]["agency"], e["created_at"], now=now)

    def whole_open() -> None:
        for v in values:
            open_(v, trust, now=now, roots=roots)

    def validating() -> None:
        for e in decoded:
            validate(e)

    def requesting() -> None:
        for e in decoded:
            ReleaseRequest.from_event(
                e,
                source=SOURCE,
                destination=DESTINATION,
                path=verified_path(origin=e["origin"]["agency"], source=SOURCE),
                now=now,
            )

    def deciding() -> None:
        for r in requests:
            policy.decide(r)

    def memoised() -> None:
        for e in decoded:
            policy.decide_event(
                e,
                source=SOURCE,
                destination=DESTINATION,
                path=verified_path(origin=e["origin"]["agency"], source=SOURCE),
                now=now,
            )

    def audit_by_hand() -> None:
        for d, e in zip(decisions, decoded, strict=True):
            encode_audit(
                d,
                event_id=e["event_id"],
                origin=SOURCE,
                source=SOURCE,
                destination=DESTINATION,
                position=position,
                bridge_id="bench",
                decided_at=now,
            )

    def identities() -> None:
        for o in opened:
            EventIdentity.of(o.event, o.event_bytes)

    def auditing() -> None:
        for d, r in zip(decisions, requests, strict=True):
            audit_record(d, r, position=position, bridge_id="bench", decided_at=now)

    def encoding() -> None:
        for a in audits:
            audit_key(a)
            encode_audit_record(a)

    def mirroring() -> None:
        for e in decoded:
            event_key(e)
            mirrored_headers(e, source=SOURCE, destination=DESTINATION, bridge_id="bench")

    def judging() -> None:
        for r in records:
            judge(
                r,
                trust=trust,
                policy=policy,
                source=SOURCE,
                destination=DESTINATION,
                bridge_id="bench",
                now=now,
                max_size=1 << 20,
                roots=roots,
            )

    def judging_as_before() -> None:
        # The judge before issue 12's lean path: a request per event, the rules, the audit
        # record's dict through fastavro. Same checks, same verdict contents.
        for r in records:
            assert r.value is not None
            verified = open_(r.value, trust, now=now, max_size=1 << 20, roots=roots)
            event = verified.event
            validate(event)
            request = ReleaseRequest.from_event(
                event,
                source=SOURCE,
                destination=DESTINATION,
                path=verified_path(origin=verified.agency, source=SOURCE),
                now=now,
            )
            decision = policy.decide(request)
            EventIdentity.of(event, verified.event_bytes)
            audit = audit_record(
                decision,
                request,
                position=SourcePosition(topic=r.topic, partition=r.partition, offset=r.offset),
                bridge_id="bench",
                decided_at=now,
            )
            audit_key(audit)
            encode_audit_record(audit)

    def verify_one() -> None:
        trusted.public_key.verify(one.event_bytes, sealed_one)

    stages: dict[str, Callable[[], object]] = {
        "split (framing)": split,
        "proof + batch signature (root cached)": proofs,
        "decode, whole event, under limits": decode,
        "key trust checks": trust_checks,
        "open_ (the four above)": whole_open,
        "validate": validating,
        "ReleaseRequest.from_event": requesting,
        "Policy.decide": deciding,
        "Policy.decide_event (memoised; replaces the two above)": memoised,
        "EventIdentity.of (sha-256)": identities,
        "audit record dict": auditing,
        "audit record key + encode": encoding,
        "encode_audit (by hand; replaces the two above)": audit_by_hand,
        "judge (whole)": judging,
        "judge as before issue 12 (from_event, decide, dict audit)": judging_as_before,
        "mirrored key + headers (destination)": mirroring,
        "for scale: one Ed25519 verify": verify_one,
        "for scale: partial decode (policy fields)": decode_partial,
    }
    counts = {name: (1 if name.endswith("Ed25519 verify") else CHUNK) for name in stages}
    rounds_of: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(rounds):
        for name, function in stages.items():
            rounds_of[name].append(_per_event(function, counts[name], seconds))
    allowed = sum(1 for d in decisions if d.allowed)
    before = rounds_of["judge as before issue 12 (from_event, decide, dict audit)"]
    pairs = {
        "judge as before / judge": (before, rounds_of["judge (whole)"]),
        "from_event + decide / decide_event": (
            [
                a + b
                for a, b in zip(
                    rounds_of["ReleaseRequest.from_event"], rounds_of["Policy.decide"], strict=True
                )
            ],
            rounds_of["Policy.decide_event (memoised; replaces the two above)"],
        ),
        "audit dict + encode / encode_audit": (
            [
                a + b
                for a, b in zip(
                    rounds_of["audit record dict"],
                    rounds_of["audit record key + encode"],
                    strict=True,
                )
            ],
            rounds_of["encode_audit (by hand; replaces the two above)"],
        ),
    }
    ratios = {
        name: sorted(a / b for a, b in zip(old, new, strict=True))
        for name, (old, new) in pairs.items()
    }
    return {
        "unit": "us/event",
        "rounds": rounds,
        "batch": BATCH,
        "chunk": CHUNK,
        "value_bytes": len(values[0]),
        "event_bytes": len(parts[0].event_bytes),
        "released": allowed,
        "load_average": list(os.getloadavg()),
        "ratios": ratios,
        "stages": {
            name: {
                "best": min(times),
                "median": statistics.median(times),
                "min": min(times),
                "max": max(times),
            }
            for name, times in rounds_of.items()
        },
    }


def report(result: dict[str, Any]) -> None:
    """Print ``measure``'s result as a table."""
    print(
        f"python {platform.python_version()}, one thread, {result['rounds']} interleaved rounds, "
        f"batch of {result['batch']} ({result['value_bytes']} B values), calls of "
        f"{result['chunk']} ({result['released']} released); "
        f"load average {result['load_average'][0]:.1f}"
    )
    judge_us = result["stages"]["judge (whole)"]["best"]
    print(f"  {'stage (us/event: best, median [max])':56} {'best':>7} {'median':>7}  share")
    for name, figure in result["stages"].items():
        share = figure["best"] / judge_us
        print(
            f"  {name:56} {figure['best']:7.2f} {figure['median']:7.2f} [{figure['max']:.2f}]"
            f"  {share:6.1%} of judge"
        )


def _print_ratios(result: dict[str, Any]) -> None:
    print("  ratios within a round (median [min-max]):")
    for name, values in result["ratios"].items():
        print(f"    {name:40} {statistics.median(values):5.2f} [{values[0]:.2f}-{values[-1]:.2f}]")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stages", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = measure(rounds=args.rounds)
    report(result)
    _print_ratios(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()

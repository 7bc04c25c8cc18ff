"""The correlator per event against the bridge's verification, and its memory per identifier.

Run ``python -m bench.bench_correlate [--quick]``. On one thread, no Kafka, for realistic
~1 KB events with five identifiers each (one in five shares an identifier with another
agency's event):

- baseline: ``bus.envelope.open_`` per event (verify, decode, trust checks), the per-event
  core of what the bridge and every reader do, in the same run;
- the correlator's path per event: ``RecordVerifier.judge`` (the same ``open_``, validation,
  the release checks), ``identifiers`` and ``CorrelationIndex.offer``;
- their ratio: the share of a verifying reader's rate the correlator keeps (Kafka costs come
  on top of both; the bridge adds its policy, audit and two transactional logs);
- memory: ``tracemalloc`` of an index holding a number of events, per million identifiers.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.bench_core import realistic_event
from bus.batch import RootCache
from bus.correlate._identifiers import Identifier, identifiers
from bus.correlate._index import CorrelationIndex, EventEntry
from bus.envelope import VerifiedEvent, open_, seal
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore
from bus.verifier import RecordVerifier

__all__ = ["main"]


@dataclass(frozen=True)
class _Record:
    value: bytes
    topic: str
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def _events(count: int, keys: dict[str, SigningKey]) -> list[_Record]:
    now = datetime.now(UTC)
    records = []
    for i in range(count):
        origin = "interpol" if i % 2 else "europol"
        event = realistic_event()
        event.update(
            event_id=str(uuid.uuid4()),
            created_at=now,
            expires_at=now + timedelta(days=30),
            releasable_to=["europol"],
        )
        event["origin"] = dict(event["origin"], agency=origin)
        shared = f"198.51.{(i // 10) % 256}.{i % 5}" if i % 5 == 0 else f"10.{i % 250}.1.2"
        event["subjects"] = [
            {"kind": "IP_ADDRESS", "value": shared, "attributes": {}},
            {"kind": "DOMAIN", "value": f"c2-{i}.example.net", "attributes": {}},
            {"kind": "EMAIL_ADDRESS", "value": f"Ops{i}@Example.org", "attributes": {}},
            {"kind": "PHONE_NUMBER", "value": f"+44 20 7946 {i % 10000:04d}", "attributes": {}},
            {"kind": "FILE_HASH", "value": f"sha256:{uuid.uuid4().hex * 2}", "attributes": {}},
        ]
        topic = "intel.events" if origin == "europol" else "interpol.intel.events"
        records.append(_Record(value=seal(event, keys[origin]), topic=topic, offset=i))
    return records


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _entry(verified: VerifiedEvent, record: _Record) -> EventEntry:
    event = verified.event
    expires = event.get("expires_at")
    return EventEntry(
        event_id=event["event_id"],
        revision=event.get("revision", 1),
        origin=verified.agency,
        crime_area=event["crime_area"],
        created_at=int(event["created_at"].timestamp() * 1e6),
        occurred_at=None,
        expires_at=int(expires.timestamp() * 1e6) if expires else None,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        identifiers=tuple(sorted(identifiers(event))),
    )


def _memory(events: int, per_event: int = 5) -> dict[str, float]:
    """Bytes an index of ``events`` events of ``per_event`` identifiers holds."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = CorrelationIndex()
    now = int(time.time() * 1e6)
    for i in range(events):
        ids = tuple(
            sorted(Identifier("DOMAIN", f"host-{i}-{j}.example.net") for j in range(per_event))
        )
        index.offer(
            EventEntry(
                event_id=str(uuid.uuid4()),
                revision=1,
                origin="interpol" if i % 2 else "europol",
                crime_area="CYBERCRIME",
                created_at=now,
                occurred_at=None,
                expires_at=now + 10**12,
                topic="interpol.intel.events",
                partition=0,
                offset=i,
                identifiers=ids,
            ),
            now,
        )
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    total = events * per_event
    return {
        "events": events,
        "identifiers": total,
        "bytes": used,
        "mib_per_million_identifiers": used / total * 1e6 / 2**20,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_correlate")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    count = 1000 if args.quick else 5000
    rounds = 3 if args.quick else 5
    keys = {"interpol": SigningKey.generate(), "europol": SigningKey.generate()}
    trust = TrustStore(
        [
            TrustedKey(
                agency=a, public_key=k.public_key, not_before=datetime.now(UTC) - timedelta(1)
            )
            for a, k in keys.items()
        ]
    )
    records = _events(count, keys)
    baseline, correlator, hits = [], [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        for record in records:
            open_(record.value, trust, roots=RootCache())
        baseline.append(_rate(count, time.perf_counter() - started))
        verifier = RecordVerifier(
            agency="europol",
            trust=trust,
            mirrors={"interpol.intel.events": "interpol"},
            roots=RootCache(),
        )
        index = CorrelationIndex()
        now = int(time.time() * 1e6)
        started = time.perf_counter()
        hits = 0
        for record in records:
            verdict = verifier.judge(record)
            assert isinstance(verdict, VerifiedEvent), verdict
            hits += len(index.offer(_entry(verdict, record), now).hits)
        correlator.append(_rate(count, time.perf_counter() - started))
    figures: dict[str, Any] = {
        "events": count,
        "verify_per_s": statistics.median(baseline),
        "correlate_per_s": statistics.median(correlator),
        "hits_per_round": hits,
    }
    figures["ratio"] = figures["correlate_per_s"] / figures["verify_per_s"]
    figures["memory"] = _memory(20_000 if args.quick else 200_000)
    memory = figures["memory"]
    print(f"events per round: {count}, hits per round: {hits} (median of {rounds} rounds)")
    print(f"open_ (verify + decode), the baseline: {figures['verify_per_s']:,.0f} events/s")
    print(
        f"correlator (judge + identifiers + index): {figures['correlate_per_s']:,.0f} events/s "
        f"= {figures['ratio']:.2f}x the baseline"
    )
    print(
        f"index memory: {memory['bytes'] / 2**20:,.1f} MiB for {memory['events']:,} events, "
        f"{memory['identifiers']:,} identifiers: "
        f"{memory['mib_per_million_identifiers']:,.0f} MiB per million identifiers"
    )
    return figures


if __name__ == "__main__":
    main()

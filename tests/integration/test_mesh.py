"""Five agencies meshed: every ordered pair bridged (20 directions), onward forwarding allowed
for some pairs only, no loops, no returns to the origin, exact counts on every mirror.

The federation is this module's own (five single-node clusters with small heaps), and its
bridges run as five worker processes, one per source agency, each hosting its four outgoing
directions (``bus bridge run --from A --to B --to C ...``).

Each agency publishes a plan of its own events whose ``releasable_to``, TLP and handling codes
vary with the event's number; then each agency's own systems re-share on their own feed every
event they received (as an analyst forwarding what came in). The expected decision of every
direction for every record is computed here from the plan, by a model of the rules written
for this test, and compared with what independent ``read_committed`` readers find: each mirror
holds exactly the events expected there, each once, and each source's audit topic exactly one
decision per record and direction, the expected one.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from bus.audit import decode_audit_record
from bus.envelope import peek, seal
from bus.events import template
from bus.testing import (
    Federated,
    Federation,
    consume_all,
    federated_config,
    produce,
    produce_records,
    running_federation,
)
from tests.bridge import BridgeProcess, stop_all
from tests.kafka import external_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENCIES = ("interpol", "europol", "ameripol", "afripol", "aseanapol")
ONWARD = frozenset(
    {
        ("europol", "interpol"),
        ("europol", "afripol"),
        ("ameripol", "aseanapol"),
        ("afripol", "europol"),
        ("aseanapol", "interpol"),
        ("interpol", "ameripol"),
    }
)
"""The directions whose agreement allows onward forwarding; the 14 others do not."""
EVENTS = 48
"""Own events per agency: three of each of the 16 subsets of its four peers."""
HEAP_MB = 256


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    if external_config() is not None:
        pytest.skip("the mesh starts five clusters of its own")
    with running_federation(
        tmp_path_factory.mktemp("exchange-bus-test-mesh"), AGENCIES, heap_mb=HEAP_MB, partitions=2
    ) as federation:
        yield federation


def _own_event(origin: str, i: int) -> dict[str, Any]:
    """Event ``i`` of ``origin``: releasable to the subset ``i % 16`` of its peers, TLP RED
    when i % 7 == 3, H2 when i % 3 == 0 (with onward consent when i % 6 == 0)."""
    peers = [a for a in AGENCIES if a != origin]
    event = template("CYBERCRIME", agency=origin, event_id=str(uuid.uuid4()))
    event["created_at"] = datetime.now(UTC)
    event["expires_at"] = datetime.now(UTC) + timedelta(days=1)
    event["correlation_id"] = f"case-{i % 11}"
    event["releasable_to"] = [p for k, p in enumerate(peers) if (i % 16) >> k & 1]
    event["tlp"] = "RED" if i % 7 == 3 else "GREEN"
    event["handling_codes"] = ["H2"] if i % 3 == 0 else ["H0"]
    event["onward_release_consent"] = i % 6 == 0
    return event


def expected_rule(event: dict[str, Any], source: str, destination: str) -> str:
    """The rule that decides ``event`` read from ``source``'s feed for ``destination``, under
    this module's policy: every area, TLP up to AMBER, onward forwarding only on ``ONWARD``."""
    origin = event["origin"]["agency"]
    if destination == origin:
        return "loop-origin"
    if destination not in event["releasable_to"]:
        return "releasable-to"
    if event["tlp"] not in ("CLEAR", "GREEN", "AMBER"):
        return "tlp"
    if origin != source and (source, destination) not in ONWARD:
        return "onward-forwarding"
    if origin != source and "H2" in event["handling_codes"] and not event["onward_release_consent"]:
        return "handling-h2-onward"
    return "allowed"


def _mirror(source: str) -> str:
    return f"{source}.intel.events"


async def _wait_all_assigned(workers: list[BridgeProcess], timeout_s: float = 180.0) -> None:
    """Until every direction of every worker has source partitions."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for worker in workers:
        while True:
            assert worker.process is not None
            assert worker.process.poll() is None, worker.tail()
            status = await worker.health() or {}
            directions = status.get("directions", [])
            if len(directions) == len(AGENCIES) - 1 and all(d["partitions"] for d in directions):
                break
            assert loop.time() < deadline, f"not all directions assigned: {worker.tail()}"
            await asyncio.sleep(0.5)


async def _mirrors(
    federation: Federation, expected: dict[tuple[str, str], Counter[str]]
) -> dict[tuple[str, str], list[ConsumerRecord[bytes, bytes]]]:
    """Every mirror's records once it holds at least the expected count (read to its end)."""
    pairs = list(expected)
    found = await asyncio.gather(
        *(
            consume_all(
                federation.bootstrap(d),
                _mirror(s),
                expected=sum(expected[s, d].values()),
                timeout_s=240,
            )
            for s, d in pairs
        )
    )
    return dict(zip(pairs, found, strict=True))


def _ids(records: list[ConsumerRecord[bytes, bytes]]) -> Counter[str]:
    return Counter(peek(r.value).event["event_id"] for r in records if r.value is not None)


async def test_five_agencies_meshed_count_exactly_with_onward_forwarding_for_some_pairs(
    mesh: Federation, tmp_path: Path
) -> None:
    federated: Federated = federated_config(mesh, tmp_path / "config", onward=ONWARD)
    events_topic = federated.config.topics.events
    workers = [
        BridgeProcess(
            federated,
            source=source,
            destination=peers[0],
            topics=[events_topic],
            log_dir=tmp_path,
            name=f"bridge-{source}",
            options=[arg for peer in peers[1:] for arg in ("--to", peer)],
        )
        for source in AGENCIES
        for peers in [[a for a in AGENCIES if a != source]]
    ]
    try:
        for worker in workers:
            worker.start()
        await _wait_all_assigned(workers)

        # Phase 1: every agency publishes its own events.
        own = {o: [_own_event(o, i) for i in range(EVENTS)] for o in AGENCIES}
        await asyncio.gather(
            *(
                produce(
                    mesh.bootstrap(o),
                    events_topic,
                    [seal(e, federated.keys[o]) for e in own[o]],
                )
                for o in AGENCIES
            )
        )
        direct = {
            (s, d): Counter(e["event_id"] for e in own[s] if expected_rule(e, s, d) == "allowed")
            for s, d in itertools.permutations(AGENCIES, 2)
        }
        first = await _mirrors(mesh, direct)

        # Phase 2: each agency re-shares on its own feed every event it received, headers and
        # all (the bridge ignores them: the path comes from the verified origin and source).
        reshared: dict[str, list[dict[str, Any]]] = {s: [] for s in AGENCIES}
        for (_, at), records in first.items():
            reshared[at] += [peek(r.value).event for r in records if r.value is not None]
        await asyncio.gather(
            *(
                produce_records(
                    mesh.bootstrap(at),
                    events_topic,
                    [r for (_, d), records in first.items() if d == at for r in records],
                )
                for at in AGENCIES
            )
        )

        # Every record of every feed, decided once per direction, as the model says.
        fed = {s: own[s] + reshared[s] for s in AGENCIES}
        audits = await asyncio.gather(
            *(
                consume_all(
                    mesh.bootstrap(s),
                    federated.config.topics.audit,
                    expected=len(fed[s]) * (len(AGENCIES) - 1),
                    timeout_s=240,
                )
                for s in AGENCIES
            )
        )
        for source, records in zip(AGENCIES, audits, strict=True):
            decided = Counter(
                (a["event_id"], a["destination"], a["rule"])
                for a in (decode_audit_record(r.value) for r in records if r.value is not None)
            )
            wanted = Counter(
                (e["event_id"], d, expected_rule(e, source, d))
                for e in fed[source]
                for d in AGENCIES
                if d != source
            )
            assert decided == wanted, source

        # Every mirror: exactly the allowed events, each once; nothing of an origin on a mirror
        # of its own cluster (no returns), nothing that went on without the pair's agreement.
        expected = {
            (s, d): Counter(e["event_id"] for e in fed[s] if expected_rule(e, s, d) == "allowed")
            for s, d in itertools.permutations(AGENCIES, 2)
        }
        final = await _mirrors(mesh, expected)
        for (source, destination), records in final.items():
            assert _ids(records) == expected[source, destination], f"{source}->{destination}"
            origins = {peek(r.value).event["origin"]["agency"] for r in records if r.value}
            assert destination not in origins
            if (source, destination) not in ONWARD:
                assert origins == {source}
        onward = sum(
            1
            for (s, d), records in final.items()
            for r in records
            if r.value and peek(r.value).event["origin"]["agency"] != s
        )
        assert onward > 0  # the plan exercised onward forwarding where it is allowed
        for worker in workers:
            assert await worker.terminate() == 0, worker.tail()
    finally:
        stop_all(workers)

"""The examples of ``examples/`` against real Kafka: a Faust agent and a plain aiokafka consumer
on Europol's cluster receive exactly the verified, released, committed events of Interpol's
mirrored feed; hostile records end in ``bus.quarantine`` with their reasons while they keep
going."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from bus import envelope
from bus.config import Config
from bus.quarantine import read_quarantined
from bus.signing import SigningKey
from bus.testing import connect, consume_all, create_topic, grant_applications, unique_topic
from tests.signed import make_event

pytestmark = pytest.mark.integration

READER = "europol"
ORIGIN = "interpol"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMMANDS = {
    "faust": [str(EXAMPLES / "faust_verified.py")],
    "aiokafka": [str(EXAMPLES / "aiokafka_verified.py")],
}


def _key(config: Config, agency: str) -> SigningKey:
    path = config.agency(agency).signing_key
    assert path is not None
    return SigningKey.load(path)


def _plan(config: Config) -> tuple[list[tuple[bytes | None, str | None]], list[str]]:
    """The records to write in order (value, the reason it must be quarantined with, or None),
    and the ids of the events that must be delivered, once each."""
    interpol, europol = _key(config, ORIGIN), _key(config, READER)
    released: dict[str, Any] = {"releasable_to": [READER]}
    first = make_event(ORIGIN, **released)
    first_value = envelope.seal(first, interpol)
    tampered = bytearray(envelope.seal(make_event(ORIGIN, **released), interpol))
    tampered[40] ^= 0x01  # inside the signed event bytes
    batch = [make_event(ORIGIN, **released) for _ in range(3)]
    last = make_event(ORIGIN, **released)
    records: list[tuple[bytes | None, str | None]] = [
        (first_value, None),
        (b"not avro at all", "bad-marker"),
        (None, "truncated"),
        (bytes(tampered), "bad-signature"),
        # Signed by europol, on interpol's mirrored feed: only interpol's bridge writes it.
        (envelope.seal(make_event(READER, releasable_to=[READER]), europol), "origin-mismatch"),
        (envelope.seal(make_event(ORIGIN, releasable_to=["ameripol"]), interpol), "not-releasable"),
        *((value, None) for value in envelope.seal_batch(batch, interpol)),  # v2, one signature
        (first_value, None),  # the same event again: a duplicate, skipped
        (envelope.seal(last, interpol), None),  # after all that, still delivered
    ]
    return records, [e["event_id"] for e in (first, *batch, last)]


async def _write_aborted(bootstrap: str, topic: str, key: SigningKey) -> None:
    """A valid, released event in a transaction that is aborted: a ``read_committed`` reader
    never sees it (bridges abort transactions when a batch fails)."""
    producer = AIOKafkaProducer(
        **connect(bootstrap), transactional_id=f"test-streams-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        value = envelope.seal(make_event(ORIGIN, releasable_to=[READER]), key)
        await (await producer.send(topic, value, key=b"case-1"))
        await producer.abort_transaction()
    finally:
        await producer.stop()


def _lines(out: Path) -> list[dict[str, Any]]:
    text = out.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def _delivered_until(
    out: Path, process: asyncio.subprocess.Process, last: str, timeout_s: float
) -> list[dict[str, Any]]:
    """The JSON lines the example printed to ``out``, once it printed the event ``last``: on
    one partition, everything written before ``last`` was handled by then."""
    async with asyncio.timeout(timeout_s):
        while True:
            lines = await asyncio.to_thread(_lines, out)
            if any(line["event_id"] == last for line in lines):
                return lines
            if process.returncode is not None:
                raise AssertionError(f"the example exited with {process.returncode}")
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("example", sorted(COMMANDS))
async def test_the_example_receives_exactly_the_verified_events_and_quarantines_the_rest(
    signed_federation: Config, tmp_path: Path, example: str
) -> None:
    bootstrap = ",".join(signed_federation.agency(READER).bootstrap_servers)
    topic = f"{ORIGIN}.{unique_topic('streams')}"  # a mirrored feed of interpol's, by its name
    await create_topic(bootstrap, topic, partitions=1)
    await grant_applications(bootstrap, topic)
    records, expected = _plan(signed_federation)
    writer = AIOKafkaProducer(**connect(bootstrap), acks="all", enable_idempotence=True)
    await writer.start()
    try:
        offsets = [
            (await writer.send_and_wait(topic, value, key=b"case-1")).offset
            for value, _ in records[:-1]
        ]
        await _write_aborted(bootstrap, topic, _key(signed_federation, ORIGIN))
        offsets.append((await writer.send_and_wait(topic, records[-1][0], key=b"case-1")).offset)
    finally:
        await writer.stop()
    group = f"test-streams-{example}-{uuid.uuid4().hex[:8]}"
    environment = {
        **os.environ,
        "BUS_CONFIG": str(signed_federation.path),
        "BUS_AGENCY": READER,
        "BUS_TOPICS": topic,
        "BUS_APP_ID": group,
        "BUS_APP_DATA": str(tmp_path / "data"),
    }
    out = tmp_path / "out.jsonl"
    with out.open("wb") as stdout:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *COMMANDS[example], cwd=tmp_path, env=environment, stdout=stdout
        )
    try:
        delivered = await _delivered_until(out, process, expected[-1], timeout_s=180)
        quarantined = await consume_all(
            bootstrap,
            signed_federation.topics.quarantine,
            expected=sum(1 for _, reason in records if reason is not None),
            where=lambda r: read_quarantined(r).source_topic == topic,
        )
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
    assert Counter(line["event_id"] for line in delivered) == Counter(expected)
    assert {line["origin"] for line in delivered} == {ORIGIN}
    reasons = {
        q.source_offset: (q.reason, q.consumer) for q in (read_quarantined(r) for r in quarantined)
    }
    assert reasons == {
        offset: (reason, group)
        for offset, (_, reason) in zip(offsets, records, strict=True)
        if reason is not None
    }

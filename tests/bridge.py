"""Test harness for the bridge: bridge processes, and the audit decisions read back.

The federation's configuration with keys and policy, the event plans and the counting readers
are :mod:`bus.testing`'s, shared with the benchmarks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bus.audit import decode_audit_record
from bus.testing import (
    Federated,
    connect,
    consume_all,
    create_topic,
    unique_topic,
)
from tests.worker import WorkerProcess, stop_all

__all__ = [
    "BridgeProcess",
    "audit_by_event_id",
    "audit_values",
    "copy_records",
    "stop_all",
    "verify_audit",
]


async def audit_by_event_id(
    bootstrap: str,
    audit_topic: str,
    source_topic: str,
    *,
    expected: int,
    check: Callable[[], object] | None = None,
) -> dict[str, list[str]]:
    """Decisions recorded in the audit topic for events read from ``source_topic``.

    Waits for ``expected`` such records, then reads to the topic's end, so that a second
    decision for an event is seen.
    """

    def ours(record: Any) -> bool:
        return record.value is not None and (
            decode_audit_record(record.value)["source_topic"] == source_topic
        )

    records = await consume_all(bootstrap, audit_topic, expected=expected, where=ours, check=check)
    decisions: dict[str, list[str]] = {}
    for r in records:
        audit = decode_audit_record(r.value)
        decisions.setdefault(audit["event_id"], []).append(audit["decision"])
    return decisions


async def audit_values(
    bootstrap: str, audit_topic: str, source_topic: str, *, expected: int
) -> list[bytes]:
    """The values of the audit records about ``source_topic``, in audit partition and offset
    order (so each chain's records keep their order), once ``expected`` are there."""
    records = await consume_all(
        bootstrap,
        audit_topic,
        expected=expected,
        where=lambda r: (
            r.value is not None and decode_audit_record(r.value)["source_topic"] == source_topic
        ),
    )
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    return [r.value for r in ordered if r.value is not None]


async def copy_records(bootstrap: str, values: Sequence[bytes]) -> str:
    """A new one-partition topic holding ``values`` in order, written with a plain producer."""
    topic = unique_topic("audit-copy")
    await create_topic(bootstrap, topic, partitions=1)
    producer = AIOKafkaProducer(**connect(bootstrap), acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    return topic


def verify_audit(federated: Federated, agency: str, topic: str) -> tuple[int, list[dict[str, Any]]]:
    """``bus audit verify --json`` of ``agency``'s audit topic ``topic``: the exit status and
    its JSON lines (the breaks, then the summary)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bus",
            "audit",
            "verify",
            "--config",
            str(federated.path),
            "--agency",
            agency,
            "--topic",
            topic,
            "--json",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines, result.stderr.decode()
    return result.returncode, lines


class BridgeProcess(WorkerProcess):
    """One ``bus bridge run`` worker in a process of its own (killable with SIGKILL)."""

    def __init__(
        self,
        federated: Federated,
        *,
        source: str,
        destination: str,
        topics: Sequence[str],
        log_dir: Path,
        name: str = "bridge",
        options: Sequence[str] = (),
    ) -> None:
        super().__init__(federated, log_dir=log_dir, name=name)
        self.source = source
        self.destination = destination
        self.topics = tuple(topics)
        self.options = tuple(options)

    def arguments(self) -> list[str]:
        command = [
            "bridge",
            "run",
            "--config",
            str(self.federated.path),
            "--from",
            self.source,
            "--to",
            self.destination,
            "--web-port",
            str(self.port),
            "--bridge-id",
            f"{self.name}-{self.starts}",
            "--loglevel",
            "warn",
        ]
        for topic in self.topics:
            command += ["--topic", topic]
        return command + list(self.options)

    async def wait_assigned(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the worker answers /healthz with partitions assigned."""
        return await self.wait_health(
            lambda status: status.get("partitions"), what="got partitions", timeout_s=timeout_s
        )

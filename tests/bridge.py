"""Test harness for the bridge: bridge processes, and the audit decisions read back.

The federation's configuration with keys and policy, the event plans and the counting readers
are :mod:`bus.testing`'s, shared with the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
    free_base_port,
    unique_topic,
)

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


class BridgeProcess:
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
        self.federated = federated
        self.source = source
        self.destination = destination
        self.topics = tuple(topics)
        self.log_dir = log_dir
        self.name = name
        self.options = tuple(options)
        self.port = free_base_port(1)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_dir / f"{self.name}.{self.starts}.log"
        command = [
            sys.executable,
            "-m",
            "bus",
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
        command += self.options
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )

    async def health(self) -> dict[str, Any] | None:
        """The worker's /healthz answer; None while it does not answer."""
        return await asyncio.to_thread(self._health)

    def _health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                body: dict[str, Any] = json.load(r)
                return body
        except urllib.error.HTTPError as exc:  # 503: answered, but not healthy
            unhealthy: dict[str, Any] = json.load(exc)
            return unhealthy
        except (OSError, ValueError):
            return None

    async def metrics(self) -> str:
        """The worker's /metrics page."""
        return await asyncio.to_thread(self._metrics)

    def _metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text: str = r.read().decode()
            return text

    async def wait_assigned(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the worker answers /healthz with partitions assigned."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"bridge exited with {self.process.returncode}: {self.tail()}")
            status = await self.health()
            if status and status.get("partitions"):
                return status
            await asyncio.sleep(0.3)
        raise AssertionError(f"bridge never got partitions: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    async def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait (off the event loop); the exit status."""
        return await asyncio.to_thread(self.stop, timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; the exit status (SIGKILL if it did not exit in ``timeout_s``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise

    def tail(self, lines: int = 30) -> str:
        log = self.log_dir / f"{self.name}.{self.starts}.log"
        with contextlib.suppress(OSError):
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


def stop_all(bridges: Sequence[BridgeProcess], timeout_s: float = 5.0) -> None:
    """SIGTERM to every running bridge at once, then SIGKILL to any still running after
    ``timeout_s``: a clean exit where possible, so that children measured by coverage write
    their data. (After earlier tests' bridges were killed, a bridge may take longer than that
    to stop; a test that needs a clean stop uses :meth:`BridgeProcess.terminate`.)"""
    running = [b.process for b in bridges if b.process is not None and b.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)

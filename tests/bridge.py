"""Test harness for the bridge: a federation config with keys and policy, bridge processes,
a stream of signed events, and counts taken by an independent reader.
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
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bus.audit import decode_audit_record
from bus.config import Config, render_toml
from bus.envelope import peek, seal
from bus.events import template
from bus.local._provisioning import render_policy
from bus.signing import SigningKey
from tests.kafka import Federation, connect, consume_all, free_base_port
from tests.signed import signed_config

__all__ = [
    "BridgeProcess",
    "EventPlan",
    "Federated",
    "count_by_event_id",
    "federated_config",
    "publish_plan",
]

AREAS = ("MARITIME_PIRACY", "COUNTER_TERRORISM", "CYBERCRIME", "MAJOR_EVENT_SECURITY")


@dataclass(frozen=True, slots=True, kw_only=True)
class Federated:
    """A configuration file for the test federation, with keys, trust store and policy."""

    config: Config
    path: Path
    keys: dict[str, SigningKey]


def federated_config(
    federation: Federation,
    directory: Path,
    *,
    onward: Iterable[tuple[str, str]] = (),
) -> Federated:
    """Keys, a trust store, a policy (every direction) and ``bus.toml`` under ``directory``.

    ``onward`` lists the directions that allow onward forwarding.
    """
    signed = signed_config(federation.config, directory)
    keys = {
        name: SigningKey.load(settings.signing_key)
        for name, settings in signed.agencies.items()
        if settings.signing_key is not None
    }
    policy = directory / "policy.toml"
    policy.write_text(render_policy(federation.agencies, onward=onward), encoding="utf-8")
    path = directory / "bus.toml"
    config = replace(signed, path=path, policy_file=policy)
    path.write_text(render_toml(config, header="test federation"), encoding="utf-8")
    return Federated(config=config, path=path, keys=keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventPlan:
    """Which events a test publishes, and which of them must cross ``destination``."""

    origin: str
    destination: str
    count: int
    garbage_every: int = 0
    """Every n-th record is garbage (quarantined); 0 for none."""
    ids: list[str] = field(default_factory=list)
    released: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)

    def event(self, i: int) -> dict[str, Any]:
        """Event ``i``: released unless i % 5 == 0 (not releasable) or i % 7 == 0 (RED)."""
        event = template(AREAS[i % len(AREAS)], agency=self.origin, event_id=str(uuid.uuid4()))
        event["created_at"] = datetime.now(UTC)
        event["expires_at"] = datetime.now(UTC) + timedelta(days=1)
        event["correlation_id"] = f"case-{i % 37}"
        event["tlp"] = "RED" if i % 7 == 0 else "GREEN"
        event["releasable_to"] = [] if i % 5 == 0 else [self.destination]
        return event


async def publish_plan(
    bootstrap: str,
    topic: str,
    plan: EventPlan,
    key: SigningKey,
    *,
    rate: float | None = None,
) -> None:
    """Publish the plan's events (at ``rate`` per second if given), recording their ids."""
    producer = AIOKafkaProducer(
        **connect(bootstrap), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = []
        started = time.monotonic()
        for i in range(plan.count):
            if plan.garbage_every and i % plan.garbage_every == plan.garbage_every - 1:
                futures.append(await producer.send(topic, b"garbage, not an event", key=b"junk"))
            event = plan.event(i)
            plan.ids.append(event["event_id"])
            target = plan.denied if (i % 5 == 0 or i % 7 == 0) else plan.released
            target.add(event["event_id"])
            value = seal(event, key)
            futures.append(await producer.send(topic, value, key=event["correlation_id"].encode()))
            if rate is not None:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_by_event_id(bootstrap: str, topic: str, *, expected: int) -> Counter[str]:
    """How often each event id is on ``topic`` (``read_committed``, independent reader)."""
    records = await consume_all(bootstrap, topic, expected=expected, idle_ms=3000)
    return Counter(peek(r.value).event["event_id"] for r in records if r.value is not None)


async def audit_by_event_id(
    bootstrap: str, audit_topic: str, source_topic: str
) -> dict[str, list[str]]:
    """Decisions recorded in the audit topic for events read from ``source_topic``."""
    records = await consume_all(bootstrap, audit_topic, idle_ms=3000)
    decisions: dict[str, list[str]] = {}
    for r in records:
        assert r.value is not None
        audit = decode_audit_record(r.value)
        if audit["source_topic"] == source_topic:
            decisions.setdefault(audit["event_id"], []).append(audit["decision"])
    return decisions


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

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                body: dict[str, Any] = json.load(r)
                return body
        except urllib.error.HTTPError as exc:  # 503: answered, but not healthy
            unhealthy: dict[str, Any] = json.load(exc)
            return unhealthy
        except (OSError, ValueError):
            return None

    def metrics(self) -> str:
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
            status = self.health()
            if status and status.get("partitions"):
                return status
            await asyncio.sleep(0.3)
        raise AssertionError(f"bridge never got partitions: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; the exit status."""
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

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

"""The contenders as the benchmarks run them, and the processes they run in.

- the ``Replicator`` in-process (``replicator``) or in a spawned process of its own
  (``replicator_child``), counting what it has finished with (``processed``);
- ``bus bridge run`` as a child process (``start_bridge``), its ``/healthz`` (``health``);
- MirrorMaker 2 from the same Kafka jars, one task, ``-Xmx512m`` (``start_mirrormaker``);
- the pass-throughs are in ``bench._passthrough``.

``join`` and ``stop`` end the children: each gets a grace period, then is killed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench._clusters import DESTINATION, SOURCE, quiet
from bus.bridge import BridgeSettings, Replicator
from bus.config import Config, java_home, load_config
from bus.local._install import find_java
from bus.policy import load_policy
from bus.testing import free_base_port
from bus.trust import TrustStore

__all__ = [
    "Bridge",
    "health",
    "join",
    "processed",
    "replicator",
    "replicator_child",
    "start_bridge",
    "start_mirrormaker",
    "stop",
]

_PROCESSED = {
    "bus_bridge_forwarded_total",
    "bus_bridge_denied_total",
    "bus_bridge_quarantined_total",
}


# --- the replicator ----------------------------------------------------------------------


def replicator(
    config: Config, topic: str, bridge_id: str, verify_threads: int
) -> tuple[Replicator, CollectorRegistry]:
    """A replicator of ``topic`` from interpol to europol (batches of 500), and its metrics."""
    settings = BridgeSettings.from_config(
        config,
        source=SOURCE,
        destination=DESTINATION,
        topics=(topic,),
        bridge_id=bridge_id,
        verify_threads=verify_threads,
        max_batch=500,
    )
    trust_file = settings.source.trust_store
    assert trust_file is not None
    assert config.policy_file is not None
    registry = CollectorRegistry()
    made = Replicator(
        settings,
        trust=TrustStore.load(trust_file),
        policy=load_policy(config.policy_file),
        registry=registry,
    )
    return made, registry


def processed(registry: CollectorRegistry) -> int:
    """Source records the replicator has finished with (forwarded, denied or quarantined)."""
    return int(
        sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name in _PROCESSED
        )
    )


def replicator_child(
    config_path: str,
    topic: str,
    bridge_id: str,
    verify_threads: int,
    progress: Any,
    assigned: Any,
    stop: Any,
) -> None:
    """One replicator worker in a spawned process; reports progress and assigned partitions
    until ``stop``."""
    quiet()

    async def work() -> None:
        config = load_config(Path(config_path))
        running, registry = replicator(config, topic, bridge_id, verify_threads)
        task = asyncio.ensure_future(running.run())
        while not stop.is_set() and not task.done():
            progress.value = processed(registry)
            assigned.value = len(running.health()["partitions"])
            await asyncio.sleep(0.02)
        running.stop()
        await asyncio.wait_for(task, 60)

    asyncio.run(work())


# --- bus bridge run ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bridge:
    """A ``bus bridge run`` process and the port of its ``/healthz``."""

    process: subprocess.Popen[bytes]
    port: int
    directions: int


def start_bridge(
    config_path: Path,
    source: str,
    destinations: Sequence[str],
    log: Path,
    *,
    topic: str | None = None,
    bridge_id: str | None = None,
) -> Bridge:
    """``bus bridge run`` from ``source`` to each of ``destinations`` (one worker), its output
    to ``log``; of ``topic`` only, if given."""
    port = free_base_port(1)
    command = [
        sys.executable,
        "-m",
        "bus",
        "bridge",
        "run",
        "--config",
        str(config_path),
        "--from",
        source,
        *(arg for d in destinations for arg in ("--to", d)),
        *(("--topic", topic) if topic else ()),
        *(("--bridge-id", bridge_id) if bridge_id else ()),
        "--web-port",
        str(port),
        "--loglevel",
        "warn",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    return Bridge(process, port, len(destinations))


def health(port: int) -> dict[str, Any] | None:
    """What a worker's ``/healthz`` says (also when unhealthy); None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            body: dict[str, Any] = json.load(r)
            return body
    except urllib.error.HTTPError as exc:
        unhealthy: dict[str, Any] = json.load(exc)
        return unhealthy
    except (OSError, ValueError):
        return None


# --- MirrorMaker 2 -----------------------------------------------------------------------

_MM2_LOG4J = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


def _mm2_properties(source: str, destination: str, topic: str) -> str:
    return f"""\
clusters = {SOURCE}, {DESTINATION}
{SOURCE}.bootstrap.servers = {source}
{DESTINATION}.bootstrap.servers = {destination}
{SOURCE}->{DESTINATION}.enabled = true
{SOURCE}->{DESTINATION}.topics = {topic}
{DESTINATION}->{SOURCE}.enabled = false
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
sync.topic.acls.enabled = false
sync.topic.configs.enabled = false
sync.group.offsets.enabled = false
emit.checkpoints.enabled = false
emit.heartbeats.enabled = false
refresh.topics.interval.seconds = 5
refresh.groups.enabled = false
"""


def start_mirrormaker(
    folder: Path, source: str, destination: str, topic: str, jars: Path
) -> subprocess.Popen[bytes]:
    """MirrorMaker 2 copying ``topic`` from interpol to europol; its configuration and logs
    in ``folder``. Blocks a little (files, ``find_java``): call it in a thread."""
    folder.mkdir(exist_ok=True)
    properties = folder / "mm2.properties"
    properties.write_text(_mm2_properties(source, destination, topic), encoding="utf-8")
    log4j = folder / "log4j2.properties"
    log4j.write_text(_MM2_LOG4J.format(log=folder / "mm2.log"), encoding="utf-8")
    java = find_java(java_home())
    command = [
        str(java),
        "-Xmx512m",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{jars}/*",
        "org.apache.kafka.connect.mirror.MirrorMaker",
        str(properties),
    ]
    with (folder / "console.log").open("wb") as console:
        return subprocess.Popen(
            command, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


# --- ending children ---------------------------------------------------------------------


async def join(process: Any, timeout_s: float = 60) -> None:
    """Wait for a spawned ``multiprocessing`` child to end; terminate it after ``timeout_s``."""
    await asyncio.to_thread(process.join, timeout_s)
    if process.is_alive():
        process.terminate()
        await asyncio.to_thread(process.join, 10)


async def stop(*processes: subprocess.Popen[bytes], wait_s: float = 30, kill_s: float = 10) -> None:
    """SIGTERM every one of ``processes`` still running, wait ``wait_s`` for each, then kill."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.to_thread(process.wait, wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, kill_s)

"""The two-agency federation the Kafka benchmarks start, and what a run records beside it.

``two_agencies(prefix)`` starts interpol and europol (one KRaft node each, plaintext, free
ports, a temporary home), writes their signed configuration and yields a ``Setup``; it stops
the nodes and removes the home at the end, also on error. Plaintext, as the earlier figures:
every contender (MirrorMaker 2 is configured without TLS) reaches the nodes the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bus.local._install import kafka_version
from bus.testing import Federated, Federation, federated_config, running_federation

__all__ = [
    "DESTINATION",
    "PARTITIONS",
    "SOURCE",
    "Setup",
    "announce",
    "delete_topics",
    "machine",
    "peak_rss_mib",
    "print_ratios",
    "quiet",
    "spread",
    "two_agencies",
]

SOURCE = "interpol"
DESTINATION = "europol"
PARTITIONS = 6


def quiet() -> None:
    """aiokafka's retry warnings (a new topic's leader, a group settling) are noise here."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


@dataclass(slots=True, kw_only=True)
class Setup:
    """A running two-agency federation: where its nodes are, its configuration and keys."""

    src: str
    dst: str
    config_path: Path
    key_path: Path
    """The source agency's signing key."""
    jars: Path
    """The Kafka jars (MirrorMaker 2 runs from them)."""
    home: Path
    """A temporary folder for logs, removed at the end."""
    federation: Federation
    federated: Federated
    up_s: float
    """Seconds the nodes took to start."""


@contextlib.contextmanager
def two_agencies(
    prefix: str, *, partitions: int | None = PARTITIONS, remote: Sequence[str] = ()
) -> Iterator[Setup]:
    """Interpol and europol, plaintext, for the ``with`` block (see the module's docstring);
    ``partitions`` of their event topics, ``remote`` agencies behind a long link."""
    quiet()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp)
        started = time.monotonic()
        with running_federation(
            home / "federation",
            (SOURCE, DESTINATION),
            partitions=partitions,
            insecure_plaintext=True,
            remote=remote,
        ) as federation:
            up_s = time.monotonic() - started
            assert federation.spec is not None
            federated = federated_config(federation, home / "signed")
            key_path = federated.config.agency(SOURCE).signing_key
            assert key_path is not None
            yield Setup(
                src=federation.bootstrap(SOURCE),
                dst=federation.bootstrap(DESTINATION),
                config_path=federated.path,
                key_path=key_path,
                jars=federation.spec.jar_dir,
                home=home,
                federation=federation,
                federated=federated,
                up_s=up_s,
            )


async def delete_topics(bootstrap: str, topic: str) -> None:
    """Delete every topic whose name holds ``topic`` (the run's own, its mirror, checkpoints
    and forwarded-events state; never a shared one): 16 KB runs would fill the disk otherwise."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [n for n in await admin.list_topics() if topic in n]
        if doomed:
            with contextlib.suppress(Exception):
                await admin.delete_topics(doomed)
    finally:
        await admin.close()


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set of process ``pid`` (``VmHWM``), MiB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split("\n"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text(encoding="ascii").split("\n")[0]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": " ".join(memory.split()[1:]),
        "load_average": list(os.getloadavg()),
    }


def spread(ratios: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Each key's ratios as median, min, max and how many, keys sorted."""
    return {
        key: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
        for key, v in sorted(ratios.items())
    }


def print_ratios(ratios: dict[str, dict[str, float]], width: int) -> None:
    """``spread``'s figures, one a line, the keys ``width`` wide."""
    print("  ratios within a repetition (median [min-max]):")
    for key, r in ratios.items():
        print(f"    {key:{width}} {r['median']:5.2f} [{r['min']:.2f}-{r['max']:.2f}]")


def announce(plan: str) -> None:
    """The line a benchmark starts with: Python, cores, Kafka, ``plan``, the load average."""
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores; Apache Kafka "
        f"{kafka_version()}; {plan}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

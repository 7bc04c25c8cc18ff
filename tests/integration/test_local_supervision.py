"""`bus local up` runs the whole federation: clusters, a supervised bridge worker per source
agency (each direction shown in `bus local status`) and a supervised correlator per agency.

A federation of its own (home, free ports, two agencies, small heaps), started and stopped with
the CLI as `make up` and `make down` do; the session's federation is not touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus import local
from bus.config import Config, load_config
from bus.signing import SigningKey
from bus.testing import EventPlan, count_by_event_id, free_base_port, publish_plan, register

pytestmark = pytest.mark.integration

AGENCIES = ("interpol", "europol")
_CLI_TIMEOUT_S = 300


def _bus(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", "local", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=_CLI_TIMEOUT_S,
        check=check,
    )


@dataclass
class Supervised:
    """The federation under test and the released events published so far, by direction."""

    spec: local.FederationSpec
    config: Config
    up_seconds: float
    released: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def status(self) -> dict[str, dict[str, Any]]:
        result = _bus(self.spec.home, "status", "--json", check=False)
        return {p["name"]: p for p in json.loads(result.stdout)["processes"]}

    def key(self, agency: str) -> SigningKey:
        return SigningKey.load(self.spec.keys_dir / f"{agency}.key.pem")


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervised]:
    home = tmp_path_factory.mktemp("exchange-bus-test-supervised") / "home"
    base_port = free_base_port(local.port_count(len(AGENCIES)))
    started = time.monotonic()
    try:
        _bus(
            home,
            "up",
            "--agencies",
            ",".join(AGENCIES),
            "--base-port",
            str(base_port),
            "--heap-mb",
            "256",
            "--partitions",
            "2",
        )
        up_seconds = time.monotonic() - started
        spec = local.load_spec(home)
        config = load_config(spec.config_file)
        register(config)  # the helpers reach the mTLS clusters as their admin
        yield Supervised(spec=spec, config=config, up_seconds=up_seconds)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"bus local up failed ({exc.returncode}):\n{exc.stderr}")
    finally:
        _bus(home, "down", check=False)


async def _publish(s: Supervised, origin: str, destination: str, count: int, **kw: Any) -> None:
    plan = EventPlan(origin=origin, destination=destination, count=count)
    bootstrap = ",".join(s.config.agency(origin).bootstrap_servers)
    await publish_plan(bootstrap, s.config.topics.events, plan, s.key(origin), **kw)
    s.released.setdefault((origin, destination), set()).update(plan.released)


async def _mirror_counts(s: Supervised, origin: str, destination: str) -> Counter[str]:
    """Each event id on the destination's mirror of ``origin``, once all released ones are."""
    expected = len(s.released[(origin, destination)])
    return await count_by_event_id(
        ",".join(s.config.agency(destination).bootstrap_servers),
        s.config.topics.mirror_of(origin),
        expected=expected,
        timeout_s=120,
    )


async def test_up_then_publishing_at_each_agency_shows_the_released_events_on_the_peer(
    supervised: Supervised,
) -> None:
    print(f"bus local up with bridges took {supervised.up_seconds:.1f} s")
    for origin, destination in (AGENCIES, AGENCIES[::-1]):
        await _publish(supervised, origin, destination, 60)
    for origin, destination in (AGENCIES, AGENCIES[::-1]):
        counts = await _mirror_counts(supervised, origin, destination)
        assert set(counts) == supervised.released[(origin, destination)]
        assert set(counts.values()) == {1}


async def test_a_bridge_sigkilled_under_supervision_is_back_within_seconds_exactly_once(
    supervised: Supervised,
) -> None:
    origin, destination = AGENCIES
    name, direction = f"bridge.{origin}", f"{origin}-{destination}"
    status = await asyncio.to_thread(supervised.status)
    before = status[name]
    assert before["health"] == status[direction]["health"] == "healthy", status
    assert status[direction]["pid"] == before["pid"]  # the direction runs in its worker
    publishing = asyncio.ensure_future(_publish(supervised, origin, destination, 400, rate=100))
    try:
        await asyncio.sleep(1.0)  # the kill lands while events are being published and moved
        os.kill(before["pid"], signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 60
        while True:
            status = await asyncio.to_thread(supervised.status)
            now = status[name]
            if (
                now["pid"] not in (None, before["pid"])
                and now["health"] == status[direction]["health"] == "healthy"
            ):
                break
            assert time.monotonic() < deadline, f"not back after 60 s: {now}"
            await asyncio.sleep(0.2)
        back_s = time.monotonic() - killed
        print(f"{name}: healthy again {back_s:.1f} s after SIGKILL")
        assert now["restarts"] == (before["restarts"] or 0) + 1
        assert status[direction]["pid"] == now["pid"]
        assert back_s < 30
    finally:
        await publishing
    counts = await _mirror_counts(supervised, origin, destination)
    assert set(counts) == supervised.released[(origin, destination)]
    duplicated = {event_id: n for event_id, n in counts.items() if n != 1}
    assert not duplicated


def test_tail_until_end_prints_the_mirrored_feed_and_exits(supervised: Supervised) -> None:
    origin, destination = AGENCIES
    released = supervised.released.get((origin, destination))
    if not released:
        pytest.skip("needs the events published by the tests above")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bus", "tail", "--agency", destination),
            *("--topic", supervised.config.topics.mirror_of(origin), "--from-beginning", "-e"),
            *("--config", str(supervised.spec.config_file)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    printed = [json.loads(line)["event_id"] for line in result.stdout.splitlines()]
    assert sorted(printed) == sorted(released)


def test_status_json_reports_every_process(supervised: Supervised) -> None:
    status = supervised.status()
    workers = [f"bridge.{a}" for a in AGENCIES]
    directions = [f"{a}-{b}" for a, b in (AGENCIES, AGENCIES[::-1])]
    correlators = [f"correlator.{a}" for a in AGENCIES]
    assert set(status) == {
        *AGENCIES,
        *workers,
        *directions,
        *correlators,
        "supervisor",
        "prometheus",
        "alertmanager",
    }
    for process in status.values():
        assert process["state"] == "running", process
        assert process["ok"], process
        assert isinstance(process["pid"], int), process
    for name in [*workers, *directions, *correlators]:
        assert status[name]["health"] == "healthy"
    for name in [*workers, *directions]:
        assert isinstance(status[name]["lag"], int)
    for worker, direction in zip(workers, directions, strict=True):
        assert status[direction]["kind"] == "direction"
        assert status[direction]["pid"] == status[worker]["pid"]
        assert isinstance(status[worker]["restarts"], int)
    assert isinstance(status["supervisor"]["restarts"], int)


async def test_a_correlator_sigkilled_under_supervision_is_restarted_and_healthy_again(
    supervised: Supervised,
) -> None:
    name = f"correlator.{AGENCIES[1]}"
    before = (await asyncio.to_thread(supervised.status))[name]
    assert before["health"] == "healthy", before
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        now = (await asyncio.to_thread(supervised.status))[name]
        if now["pid"] not in (None, before["pid"]) and now["health"] == "healthy":
            break
        assert time.monotonic() < deadline, f"not back after 90 s: {now}"
        await asyncio.sleep(0.3)
    assert now["restarts"] == (before["restarts"] or 0) + 1


def _gone(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in text  # exited, its parent not yet told


def test_down_stops_bridges_first_then_clusters_and_leaves_no_process(
    supervised: Supervised,
) -> None:
    pids = {name: p["pid"] for name, p in supervised.status().items()}
    assert all(isinstance(pid, int) for pid in pids.values())
    result = _bus(supervised.spec.home, "down")
    lines = result.stderr.splitlines()
    assert lines.index("supervisor: stopped") < min(
        lines.index(f"{agency}: stopping (pid {pids[agency]})") for agency in AGENCIES
    )
    deadline = time.monotonic() + 10  # init reaps the orphans' exit statuses
    while not all(_gone(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {name: pid for name, pid in pids.items() if not _gone(pid)} == {}
    assert not list(supervised.spec.home.glob("**/*.pid"))
    assert all(not p["ok"] or p["state"] == "off" for p in supervised.status().values())

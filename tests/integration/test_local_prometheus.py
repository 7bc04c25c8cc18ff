"""`bus local up` runs Prometheus and Alertmanager beside the clusters and bridges: every process
is a scrape target that is up, the brokers' JMX metrics arrive, the console page draws its
graphs in headless Chromium, and `bus local down` leaves no process.

A federation of its own (home, free ports, two agencies, small heaps), started and stopped with
the CLI as `make up` and `make down` do; the session's federation is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus import local
from bus.config import Config, load_config
from bus.local._prometheus import DEPLOY_PROMETHEUS
from bus.signing import SigningKey
from bus.testing import EventPlan, free_base_port, publish_plan, register

pytestmark = pytest.mark.integration

AGENCIES = ("interpol", "europol")
_CLI_TIMEOUT_S = 300
_JOBS = {
    "kafka": 2,
    "bus-bridge": 2,
    "bus-correlate": 2,
    "bus-local": 1,
    "prometheus": 1,
    "alertmanager": 1,
}
"""Every scrape job of the local federation and how many targets it has with two agencies."""

_EMPTY_WHILE_HEALTHY = {
    "Published and consumed (events/s)": "no publisher or subscriber of the federation is "
    "scraped in this test (the test publishes from its own process)",
    "Audit and checkpoint alarms": "series appear with the first alarm",
    "Retries and aborted transactions (/s)": "series appear with the first retry",
}
"""Console panels with nothing to draw here, and why; every other panel must draw."""


def _bus(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", "local", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=_CLI_TIMEOUT_S,
        check=check,
    )


@dataclass
class Watched:
    """The federation under test, its configuration and where its Prometheus is."""

    spec: local.FederationSpec
    config: Config
    urls: dict[str, str]
    up_stdout: str

    def key(self, agency: str) -> SigningKey:
        return SigningKey.load(self.spec.keys_dir / f"{agency}.key.pem")

    def status(self) -> dict[str, dict[str, Any]]:
        result = _bus(self.spec.home, "status", "--json", check=False)
        return {p["name"]: p for p in json.loads(result.stdout)["processes"]}


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    home = tmp_path_factory.mktemp("exchange-bus-test-prometheus") / "home"
    base_port = free_base_port(local.port_count(len(AGENCIES)))
    try:
        up = _bus(
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
        spec = local.load_spec(home)
        config = load_config(spec.config_file)
        register(config)  # the helpers reach the mTLS clusters as their admin
        yield Watched(
            spec=spec,
            config=config,
            urls=local.service_urls(spec),
            up_stdout=up.stdout,
        )
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"bus local up failed ({exc.returncode}):\n{exc.stderr}")
    finally:
        _bus(home, "down", check=False)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector of ``expr`` (blocking: call it off the event loop)."""
    address = f"{url}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(address, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _until(what: str, check: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(1)
    raise AssertionError(f"{what}: not seen in {timeout_s:.0f} s (last: {last})")


async def test_up_prints_where_to_look_and_every_target_is_up_with_the_brokers_jmx_metrics(
    watched: Watched,
) -> None:
    for name in ("prometheus", "console", "alertmanager"):
        assert f"{name}\t{watched.urls[name]}" in watched.up_stdout
    prometheus = watched.urls["prometheus"]

    def all_up() -> list[tuple[str, str, str]] | None:
        series = _query(prometheus, "up")
        found = [(s["metric"]["job"], s["metric"]["instance"], s["value"][1]) for s in series]
        per_job = {job: sum(1 for j, _, _ in found if j == job) for job in _JOBS}
        if per_job != _JOBS or any(value != "1" for _, _, value in found):
            return None
        return found

    found = await _until("every target of the federation up", all_up)
    assert len(found) == sum(_JOBS.values())
    ports = {int(instance.rsplit(":", 1)[1]) for _, instance, _ in found}
    # Every target is a port of the federation's own block.
    block = local.port_count(len(AGENCIES))
    assert ports <= set(range(watched.spec.base_port, watched.spec.base_port + block))

    # One target per bridge worker: each direction by its metrics' own source and destination.
    def directions() -> set[tuple[str, str, str]] | None:
        series = _query(
            prometheus,
            'count by (worker, source, destination) (bus_bridge_source_lag{job="bus-bridge"})',
        )
        found = {
            (s["metric"]["worker"], s["metric"]["source"], s["metric"]["destination"])
            for s in series
        }
        return found if len(found) == 2 else None

    assert await _until("each direction's metrics", directions) == {
        ("bridge.interpol", "interpol", "europol"),
        ("bridge.europol", "europol", "interpol"),
    }

    def correlating() -> set[tuple[str, str]] | None:
        series = _query(
            prometheus,
            'count by (worker, agency) (bus_correlate_table_entries{job="bus-correlate"})',
        )
        found = {(s["metric"]["worker"], s["metric"]["agency"]) for s in series}
        return found if len(found) == 2 else None

    assert await _until("each correlator's metrics", correlating) == {
        ("correlator.interpol", "interpol"),
        ("correlator.europol", "europol"),
    }

    controllers = await asyncio.to_thread(
        _query, prometheus, "kafka_controller_kafkacontroller_activecontrollercount"
    )
    assert {s["metric"]["agency"]: s["value"][1] for s in controllers} == {
        "interpol": "1",
        "europol": "1",
    }
    partitions = await asyncio.to_thread(
        _query, prometheus, "sum by (agency) (kafka_server_replicamanager_partitioncount)"
    )
    assert {s["metric"]["agency"] for s in partitions} == set(AGENCIES)
    assert all(float(s["value"][1]) > 0 for s in partitions)

    status = watched.status()
    for name in ("prometheus", "alertmanager"):
        assert (status[name]["state"], status[name]["health"]) == ("running", "healthy")


_KAFKA_ALERT_METRICS = (
    "kafka_server_replicamanager_underreplicatedpartitions",
    "kafka_server_replicamanager_underminisrpartitioncount",
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "kafka_controller_kafkacontroller_activecontrollercount",
    "kafka_controller_kafkacontroller_fencedbrokercount",
    "kafka_server_raft_metrics_current_leader",
)
"""What the replication and quorum alerts (group bus-kafka of alerts.yml) read."""


async def test_the_replication_alerts_read_real_metrics_and_stay_quiet_on_single_nodes(
    watched: Watched,
) -> None:
    """One node per cluster, replication factor 1: no bus-kafka alert condition holds."""
    prometheus = watched.urls["prometheus"]

    def agencies(metric: str) -> set[str]:
        return {s["metric"]["agency"] for s in _query(prometheus, metric)}

    for metric in _KAFKA_ALERT_METRICS:  # every node scraped once at least
        await _until(f"{metric} of every agency", lambda m=metric: agencies(m) == set(AGENCIES))
    groups = yaml.safe_load((DEPLOY_PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    (kafka,) = [g for g in groups["groups"] if g["name"] == "bus-kafka"]
    assert len(kafka["rules"]) >= 5
    for rule in kafka["rules"]:
        assert await asyncio.to_thread(_query, prometheus, rule["expr"]) == [], rule["alert"]


def _panels(dom: str) -> dict[str, str]:
    """Each console panel's HTML by its title, from Chromium's dump of the rendered page."""
    panels = {}
    for part in dom.split('<div class="bus-panel">')[1:]:
        title = re.search(r"<h3>(.*?)</h3>", part)
        assert title is not None, part[:200]
        panels[title.group(1).replace("&amp;", "&")] = part
    return panels


_POINT = re.compile(r"[ML](\d+(?:\.\d+)?),(\d+(?:\.\d+)?)")


def _drawn_lines(panel: str) -> int:
    """Rickshaw's drawn series in a panel: SVG paths with at least one finite data point.

    A rate over a minute-old federation may have one step's point only (``M x,y Z``); a panel
    without data has no path at all, and PromConsole writes "No timeseries returned" instead.
    """
    paths = re.findall(r'<path class="path" d="([^"]*)"', panel)
    return sum(1 for d in paths if _POINT.search(d) and "NaN" not in d)


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Chromium is not installed, so the console page cannot be rendered: run "
            "`make chromium` (Debian's chromium package), then run this test again"
        )
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # runs as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1280,3600",
            # Virtual time: the page's XHRs and drawing finish before the DOM is taken.
            "--virtual-time-budget=20000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


async def test_the_console_page_draws_its_graphs_in_headless_chromium_while_traffic_flows(
    watched: Watched, tmp_path: Path
) -> None:
    prometheus = watched.urls["prometheus"]
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            for origin, destination in (AGENCIES, AGENCIES[::-1]):
                plan = EventPlan(origin=origin, destination=destination, count=50, garbage_every=25)
                bootstrap = ",".join(watched.config.agency(origin).bootstrap_servers)
                topic = watched.config.topics.events
                await publish_plan(bootstrap, topic, plan, watched.key(origin))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)

    async with asyncio.TaskGroup() as group:
        flowing = group.create_task(traffic())
        try:
            for expr in (
                "sum by (source) (rate(bus_bridge_forwarded_total[1m])) > 0",
                "sum by (source) (rate(bus_bridge_quarantined_total[5m])) > 0",
                "sum by (source) (rate(bus_bridge_denied_total[5m])) > 0",
            ):
                await _until(
                    f"{expr} for both directions",
                    lambda expr=expr: len(_query(prometheus, expr)) == len(AGENCIES),
                )
            profile = tmp_path / "chromium-profile"
            dumped = await asyncio.to_thread(
                _chromium, "--dump-dom", watched.urls["console"], profile=profile
            )
            screenshot = tmp_path / "exchange-bus-console.png"
            await asyncio.to_thread(
                _chromium, f"--screenshot={screenshot}", watched.urls["console"], profile=profile
            )
        finally:
            stop.set()
        await flowing
    print(f"console screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000
    (tmp_path / "exchange-bus-console.html").write_text(dumped.stdout, encoding="utf-8")
    panels = _panels(dumped.stdout)
    assert set(_EMPTY_WHILE_HEALTHY) <= set(panels), sorted(panels)
    drawn = {title: _drawn_lines(html) for title, html in panels.items()}
    errors = {title for title, html in panels.items() if "prom_graph_error" in html}
    expected = set(panels) - set(_EMPTY_WHILE_HEALTHY)
    assert len(expected) >= 9, sorted(panels)
    assert {title for title in expected if drawn[title] == 0} == set(), drawn
    assert errors & expected == set(), errors


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: exited processes waiting for init to reap them do not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
    return state is not None and state.group(1) != "Z"


def test_down_stops_prometheus_alertmanager_and_everything_else(watched: Watched) -> None:
    pids = {name: row["pid"] for name, row in watched.status().items() if row["pid"]}
    assert {"prometheus", "alertmanager", "supervisor", *AGENCIES} <= set(pids)
    _bus(watched.spec.home, "down")
    left = {name: pid for name, pid in pids.items() if _running(pid)}
    assert left == {}, f"still running after down: {left}"
    rows = watched.status()
    assert {rows[name]["state"] for name in ("prometheus", "alertmanager")} == {"off"}

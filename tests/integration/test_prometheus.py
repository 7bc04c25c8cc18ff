"""A real Prometheus (and Alertmanager) scraping a real bridge: numbers agree, panels have data,
and an alert reaches a webhook when the bridge stops.

Prometheus and Alertmanager are started by ``bus.local._prometheus`` in the test's own folder,
on free ports, and stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bus.local._prometheus import (
    Target,
    start_alertmanager,
    start_prometheus,
    stop_alertmanager,
    stop_prometheus,
)
from bus.testing import (
    EventPlan,
    Federated,
    Federation,
    consume_all,
    create_topic,
    federated_config,
    free_base_port,
    publish_plan,
    unique_topic,
)
from tests.bridge import BridgeProcess, stop_all

pytestmark = pytest.mark.integration

SOURCE, DESTINATION = "interpol", "europol"
_ONLY_WHEN_FAILING = {"Audit and checkpoint alarms", "Retries and aborted transactions (/s)"}
"""Panels whose series appear with the first alarm or retry: nothing to draw while all is well."""
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "exchange-bus.json"


@pytest.fixture
def federated(federation: Federation, tmp_path: Path) -> Federated:
    return federated_config(federation, tmp_path / "config")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The folder of the test's Prometheus and Alertmanager; both stopped at the end."""
    home = tmp_path / "home"
    home.mkdir()
    yield home
    stop_alertmanager(home)
    stop_prometheus(home)


@pytest.fixture
def bridges() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    stop_all(started)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}") as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _scalar(url: str, expr: str) -> float | None:
    result = _query(url, expr)
    return float(result[0]["value"][1]) if result else None


async def _until(what: str, check: Any, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(1)
    raise AssertionError(f"{what}: not seen in {timeout_s:.0f} s (last: {last})")


async def _bridge_with_prometheus(
    federation: Federation,
    federated: Federated,
    tmp_path: Path,
    home: Path,
    bridges: list[BridgeProcess],
) -> tuple[str, BridgeProcess, str]:
    topic = unique_topic("prom")
    await create_topic(federation.bootstrap(SOURCE), topic, partitions=3)
    bridge = BridgeProcess(
        federated, source=SOURCE, destination=DESTINATION, topics=[topic], log_dir=tmp_path
    )
    bridges.append(bridge)
    bridge.start()
    await bridge.wait_assigned()
    prometheus = await asyncio.to_thread(
        start_prometheus,
        home,
        port=free_base_port(1),
        targets={
            "bridges": [
                Target(
                    address=f"127.0.0.1:{bridge.port}",
                    labels={"direction": f"{SOURCE}-{DESTINATION}"},
                )
            ]
        },
    )
    return topic, bridge, prometheus.url


async def test_prometheus_reports_the_counts_the_test_made_and_every_bridge_panel_has_data(
    federation: Federation,
    federated: Federated,
    tmp_path: Path,
    home: Path,
    bridges: list[BridgeProcess],
) -> None:
    topic, bridge, url = await _bridge_with_prometheus(
        federation, federated, tmp_path, home, bridges
    )
    plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=300, garbage_every=50)
    await publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE])
    await consume_all(
        federation.bootstrap(DESTINATION),
        f"{SOURCE}.{topic}",
        expected=len(plan.released),
        timeout_s=180,
    )
    direction = f'source="{SOURCE}", destination="{DESTINATION}"'
    expected = {
        f'sum(bus_bridge_forwarded_total{{{direction}, topic="{SOURCE}.{topic}"}})': len(
            plan.released
        ),
        f"sum(bus_bridge_denied_total{{{direction}}})": len(plan.denied),
        f"sum(bus_bridge_quarantined_total{{{direction}}})": plan.count // plan.garbage_every,
    }
    assert len(plan.released) > 0
    assert len(plan.denied) > 0

    def agree() -> dict[str, float | None] | None:
        seen = {expr: _scalar(url, expr) for expr in expected}
        return None if seen != expected else seen

    try:
        await _until("Prometheus' counts equal the test's", agree)
    except AssertionError:
        seen = {expr: _scalar(url, expr) for expr in expected}
        raise AssertionError(f"Prometheus: {seen}, the test: {expected}") from None

    # Every panel that draws the bridge's own series finds data.
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    bridge_panels = [
        p for p in dashboard["panels"] if all("bus_bridge_" in t["expr"] for t in p["targets"])
    ]
    assert len(bridge_panels) >= 7
    for panel in bridge_panels:
        exprs = [
            t["expr"].replace("$source", ".*").replace("$destination", ".*")
            for t in panel["targets"]
        ]
        if panel["title"] in _ONLY_WHEN_FAILING:
            continue
        await _until(
            f"data for the panel {panel['title']!r}",
            lambda exprs=exprs: any(_query(url, e) for e in exprs),
            timeout_s=30,
        )
    assert bridge.process is not None
    assert bridge.process.poll() is None


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_a_stopped_bridge_fires_bridge_down_through_alertmanager_to_the_webhook(
    federation: Federation,
    federated: Federated,
    tmp_path: Path,
    home: Path,
    bridges: list[BridgeProcess],
) -> None:
    received: list[dict[str, Any]] = []
    handler = type("Webhook", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        await asyncio.to_thread(
            start_alertmanager,
            home,
            port=free_base_port(1),
            webhook_url=f"http://127.0.0.1:{server.server_address[1]}/alerts",
        )
        topic, bridge, url = await _bridge_with_prometheus(
            federation, federated, tmp_path, home, bridges
        )
        await _until("the bridge scraped", lambda: _scalar(url, 'up{job="bus-bridge"}') == 1)
        plan = EventPlan(origin=SOURCE, destination=DESTINATION, count=400)
        traffic = asyncio.create_task(
            publish_plan(federation.bootstrap(SOURCE), topic, plan, federated.keys[SOURCE], rate=5)
        )
        try:
            await asyncio.sleep(3)
            bridge.kill()

            def fired() -> list[dict[str, Any]]:
                return [
                    alert
                    for message in received
                    for alert in message["alerts"]
                    if alert["labels"]["alertname"] == "BusBridgeDown"
                    and alert["status"] == "firing"
                ]

            (alert, *_) = await _until("BusBridgeDown at the webhook", fired, timeout_s=150)
            assert alert["labels"]["direction"] == f"{SOURCE}-{DESTINATION}"
            assert alert["labels"]["instance"] == f"127.0.0.1:{bridge.port}"
            assert not traffic.done(), "traffic stopped before the alert fired"
        finally:
            traffic.cancel()
            with pytest.raises(asyncio.CancelledError):
                await traffic
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

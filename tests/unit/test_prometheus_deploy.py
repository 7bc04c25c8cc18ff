"""deploy/prometheus and deploy/grafana: valid for promtool and amtool, and every alert tested."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.promtool import DEPLOY, promtool

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "exchange-bus.json"
CONSOLE = PROMETHEUS / "consoles" / "exchange-bus.html"

ISSUE_ALERTS = {
    "BusBridgeDown",
    "BusBridgeLagGrowing",
    "BusPartitionStuckBehindTransaction",
    "BusCheckpointTooOld",
    "BusSignatureFailure",
    "BusQuarantineRate",
    "BusAuditChainBroken",
    "BusLatencyP99High",
    "BusClusterUnreachable",
    "BusCertificateExpiresSoon",
}


def _alerts() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def _tested_alerts() -> dict[str, set[str]]:
    """Alert name -> the test files that expect it to fire at some time."""
    tested: dict[str, set[str]] = {}
    for path in sorted((PROMETHEUS / "tests").glob("*.yml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case["alert_rule_test"]:
                if check["exp_alerts"]:
                    tested.setdefault(check["alertname"], set()).add(path.name)
    return tested


def test_the_prometheus_configuration_and_its_alert_rules_are_valid() -> None:
    out = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert f"SUCCESS: {len(_alerts())} rules found" in out
    promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))


def test_every_alert_the_issue_asks_for_exists_and_has_a_unit_test_that_fires_it() -> None:
    alerts = _alerts()
    assert len(alerts) == len(set(alerts))
    assert set(alerts) >= ISSUE_ALERTS
    tested = _tested_alerts()
    assert sorted(tested) == sorted(alerts)


def test_docs_operations_lists_every_alert_with_its_for_and_explains_the_new_ones() -> None:
    """The table of docs/operations.md names each alert of alerts.yml with its ``for``."""
    docs = (DEPLOY.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `(Bus\w+)` \| .* \| (\w+) \|$", docs, re.M))
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    rules = {r["alert"]: r.get("for", "0") for g in groups for r in g["rules"]}
    assert table == rules
    for group in groups:
        if group["name"] in ("bus-kafka", "bus-correlate"):
            for rule in group["rules"]:
                assert f"- **`{rule['alert']}`** ({rule['labels']['severity']})" in docs


def test_the_alert_unit_tests_pass() -> None:
    files = sorted(p.name for p in (PROMETHEUS / "tests").glob("*.yml"))
    out = promtool("test", "rules", *files, cwd=PROMETHEUS / "tests")
    assert out.count("SUCCESS") == len(files) >= len(ISSUE_ALERTS)


def test_the_alertmanager_configuration_is_valid_and_sends_to_a_webhook() -> None:
    amtool = shutil.which("amtool")
    assert amtool is not None, "amtool is not installed: run `make prometheus` (apt-get)"
    path = PROMETHEUS / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    receiver = config["route"]["receiver"]
    (webhook,) = next(r for r in config["receivers"] if r["name"] == receiver)["webhook_configs"]
    assert webhook["url"].startswith("http")


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def _console_queries() -> list[str]:
    exprs: list[str] = []
    for match in re.finditer(r"^  expr: (\[.*\]),$", CONSOLE.read_text(encoding="utf-8"), re.M):
        exprs.extend(json.loads(match.group(1)))
    return exprs


def test_every_dashboard_and_console_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each as the expression of a recording rule."""
    variables = {"$source": ".*", "$destination": ".*"}
    queries = _dashboard_queries() + _console_queries()
    rules = []
    for i, query in enumerate(queries):
        for name, value in variables.items():
            query = query.replace(name, value)
        assert "$" not in query, query
        rules.append({"record": f"bus:panel_{i}", "expr": query})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path))


def test_the_console_shows_the_dashboards_views() -> None:
    """The same queries, without the dashboard's direction filter."""
    unfiltered = [
        q.replace('{source=~"$source", destination=~"$destination"}', "")
        for q in _dashboard_queries()
    ]
    assert _console_queries() == unfiltered
    assert len(unfiltered) >= 12
    views = " ".join(unfiltered)
    for metric in (
        "bus_bridge_forwarded_total",
        "bus_bridge_end_to_end_latency_seconds_bucket",
        "bus_bridge_source_lag",
        "bus_bridge_source_lso_stalled_seconds",
        "bus_bridge_denied_total",
        "bus_bridge_quarantined_total",
        "bus_bridge_checkpoint_age_seconds",
        "bus_audit_chain_breaks_total",
    ):
        assert metric in views, metric

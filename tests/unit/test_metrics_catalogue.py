"""docs/operations.md's metrics catalogue is what the code registers, and lints clean."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from bus.bridge._metrics import BridgeMetrics
from bus.correlate._metrics import CorrelatorMetrics
from bus.metrics import (
    AuditMetrics,
    ComponentMetrics,
    PublisherMetrics,
    QuarantineMetrics,
    SubscriberMetrics,
    TrustMetrics,
)
from tests.promtool import DEPLOY, promtool

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
COMPONENTS: tuple[type[ComponentMetrics], ...] = (
    PublisherMetrics,
    SubscriberMetrics,
    QuarantineMetrics,
    BridgeMetrics,
    TrustMetrics,
    AuditMetrics,
    CorrelatorMetrics,
)
_ROW = re.compile(
    r"^\| `(?P<name>[a-z_]+)` \| (?P<type>\w+) \|(?P<labels>[^|]*)\| (?P<meaning>.*)\|$"
)

Entry = tuple[str, tuple[str, ...]]


def _documented() -> dict[str, tuple[Entry, bool]]:
    """Metric name -> ((type, labels), planned) for every row of the catalogue's tables."""
    rows: dict[str, tuple[Entry, bool]] = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name = match["name"]
        assert name not in rows, f"{name} is listed twice"
        labels = tuple(re.findall(r"`(\w+)`", match["labels"]))
        rows[name] = ((match["type"], labels), match["meaning"].startswith("(planned"))
    return rows


def _metrics(registry: CollectorRegistry) -> list[MetricWrapperBase]:
    found = []
    for component in COMPONENTS:
        for value in vars(component.on(registry)).values():
            if isinstance(value, MetricWrapperBase):
                found.append(value)
    return found


def _registered() -> dict[str, Entry]:
    """Exposed name -> (type, labels) of every metric of every component, on a fresh registry."""
    registered = {}
    for metric in _metrics(CollectorRegistry()):
        kind = str(metric._type)  # prometheus-client keeps these private; the test reads them
        name = metric._name + ("_total" if kind == "counter" else "")
        registered[name] = (kind, tuple(metric._labelnames))
    return registered


def test_every_registered_metric_is_in_the_catalogue_with_its_type_and_labels() -> None:
    documented = _documented()
    registered = _registered()
    assert len(registered) >= 18
    for name, entry in registered.items():
        assert name in documented, f"{name} is exported but not in docs/operations.md"
        assert documented[name][0] == entry, f"{name}: the catalogue says {documented[name][0]}"


def test_every_documented_bus_metric_exists_unless_it_is_marked_planned() -> None:
    registered = _registered()
    documented = {n: d for n, d in _documented().items() if n.startswith("bus_")}
    missing = [n for n, (_, planned) in documented.items() if n not in registered and not planned]
    assert missing == []
    assert sum(planned for _, planned in documented.values()) <= 5


def test_the_documented_broker_metrics_are_named_by_the_jmx_rules() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "jmx-kafka.yml").read_text(encoding="utf-8"))
    # A rule's name may take parts of the MBean ($1); the exporter lowercases it.
    names = [re.sub(r"\$\d", "[a-z0-9_]+", rule["name"].lower()) for rule in rules["rules"]]
    brokers = [n for n in _documented() if n.startswith("kafka_")]
    assert len(brokers) >= 6
    for name in brokers:
        assert any(re.fullmatch(n, name) for n in names), f"{name}: no rule of jmx-kafka.yml"


def test_the_exposition_passes_promtool_check_metrics() -> None:
    registry = CollectorRegistry()
    for metric in _metrics(registry):
        metric.labels(*("x" for _ in metric._labelnames))  # one series each, so each is shown
    exposition = generate_latest(registry).decode()
    assert "bus_bridge_source_lso_stalled_seconds{" in exposition
    promtool("check", "metrics", stdin=exposition)

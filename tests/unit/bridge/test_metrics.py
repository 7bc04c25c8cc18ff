"""The bridge's view of open transactions on its source partitions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bus.bridge._metrics import BridgeMetrics, LastStableOffsets

LABELS = ("interpol", "europol", "bus.events", "3")
SERIES = {"source": "interpol", "destination": "europol", "topic": "bus.events", "partition": "3"}


def _value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, SERIES)


def test_an_lso_standing_still_below_the_high_watermark_ages_until_it_moves() -> None:
    registry = CollectorRegistry()
    watch = LastStableOffsets(BridgeMetrics.on(registry))
    watch.observe(LABELS, stable=100, high=100, now=10.0)
    assert _value(registry, "bus_bridge_source_lso_lag") == 0
    assert _value(registry, "bus_bridge_source_lso_stalled_seconds") == 0

    watch.observe(LABELS, stable=100, high=140, now=11.0)  # a transaction opens at 100
    watch.observe(LABELS, stable=100, high=190, now=71.0)  # ... and hangs
    assert _value(registry, "bus_bridge_source_lso_lag") == 90
    assert _value(registry, "bus_bridge_source_lso_stalled_seconds") == 60

    watch.observe(LABELS, stable=150, high=190, now=72.0)  # it ended; another is open
    assert _value(registry, "bus_bridge_source_lso_stalled_seconds") == 0
    watch.observe(LABELS, stable=190, high=190, now=80.0)
    assert _value(registry, "bus_bridge_source_lso_lag") == 0
    assert _value(registry, "bus_bridge_source_lso_stalled_seconds") == 0


def test_nothing_is_reported_before_a_fetch_and_a_revoked_partition_loses_its_series() -> None:
    registry = CollectorRegistry()
    watch = LastStableOffsets(BridgeMetrics.on(registry))
    watch.observe(LABELS, stable=-1, high=None, now=1.0)
    assert _value(registry, "bus_bridge_source_lso_lag") is None
    watch.observe(LABELS, stable=5, high=9, now=2.0)
    watch.forget(LABELS)
    assert _value(registry, "bus_bridge_source_lso_lag") is None
    assert _value(registry, "bus_bridge_source_lso_stalled_seconds") is None
    watch.forget(LABELS)  # twice is harmless

"""Per-registry metric sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bus.metrics import PublisherMetrics, QuarantineMetrics, SubscriberMetrics


def test_each_registry_gets_one_instance_per_component_and_registries_do_not_mix() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert PublisherMetrics.on(first) is PublisherMetrics.on(first)
    assert PublisherMetrics.on(first) is not PublisherMetrics.on(second)
    SubscriberMetrics.on(first).consumed.labels("interpol", "t", "delivered").inc(3)
    QuarantineMetrics.on(first).quarantined.labels("interpol", "t", "truncated").inc()
    labels = {"agency": "interpol", "topic": "t"}
    assert first.get_sample_value("bus_consumed_total", {**labels, "outcome": "delivered"}) == 3
    assert second.get_sample_value("bus_consumed_total", {**labels, "outcome": "delivered"}) is None
    assert first.get_sample_value("bus_quarantined_total", {**labels, "reason": "truncated"}) == 1

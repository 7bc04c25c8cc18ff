"""Prometheus metrics of the bus: ``bus_`` prefix, labelled by agency and topic.

Each component has a small metrics class whose metrics live on one ``CollectorRegistry``;
``PublisherMetrics.on(registry)`` (and the others) return the one instance for that registry,
creating it on first use, so any number of publishers in a process share the same series and
a test can pass a registry of its own. ``registry=None`` means prometheus-client's global
``REGISTRY``, which the default ``/metrics`` exposition serves. A new component (the bridge)
adds its own class the same way: subclass ``ComponentMetrics`` and create its metrics in
``__init__``.

Metrics (docs/operations.md is the catalogue of every process's metrics, checked by a test):

- ``bus_published_total{agency, topic, outcome}``: events handed to ``publish``; ``outcome`` is
  ``ok`` (the cluster acknowledged it) or ``error``.
- ``bus_publish_latency_seconds{agency, topic}``: from sending an event to its acknowledgement.
- ``bus_consumed_total{agency, topic, outcome}``: records a subscriber read; ``outcome`` is
  ``delivered`` (verified, handed to the consumer's code), ``duplicate`` or ``rollback``
  (skipped by de-duplication) or ``rejected`` (could not be accepted; see the quarantine metric).
- ``bus_subscriber_retries_total{agency, stage}``: transient Kafka errors a subscriber rode out
  with backoff, by stage (``fetch``, ``commit``, ``quarantine``).
- ``bus_quarantined_total{agency, topic, reason}``: records written to ``bus.quarantine``;
  ``topic`` is the record's source topic, ``reason`` the ``RecordRejected.reason`` code.
- ``bus_trust_reloads_total{outcome}``: trust store reloads after the file changed (``ok``), or
  attempts that failed and kept the old store (``failed``).
- ``bus_audit_chain_breaks_total{agency, topic, partition}``: breaks ``bus audit verify`` found.
"""

from __future__ import annotations

import threading
import weakref
from typing import ClassVar, Self

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = [
    "ComponentMetrics",
    "PublisherMetrics",
    "SubscriberMetrics",
    "QuarantineMetrics",
    "TrustMetrics",
    "AuditMetrics",
    "LATENCY_BUCKETS",
]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets (seconds) for delivery latencies: a loopback ack is ~1-5 ms."""

_lock = threading.Lock()


class ComponentMetrics:
    """Base of the per-component metric sets; one instance per (class, registry)."""

    _instances: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, ComponentMetrics]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._instances = weakref.WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    @classmethod
    def on(cls, registry: CollectorRegistry | None = None) -> Self:
        """This component's metrics on ``registry`` (default: the global registry)."""
        registry = REGISTRY if registry is None else registry
        with _lock:
            instance = cls._instances.get(registry)
            if instance is None:
                instance = cls._instances[registry] = cls(registry)
        assert isinstance(instance, cls)
        return instance


class PublisherMetrics(ComponentMetrics):
    """``bus_published_total`` and ``bus_publish_latency_seconds``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.published = Counter(
            "bus_published_total",
            "Events handed to a publisher, by outcome (ok: acknowledged by the cluster).",
            ["agency", "topic", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "bus_publish_latency_seconds",
            "Time from sending an event to the cluster's acknowledgement.",
            ["agency", "topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class SubscriberMetrics(ComponentMetrics):
    """``bus_consumed_total`` and ``bus_subscriber_retries_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumed = Counter(
            "bus_consumed_total",
            "Records read by subscribers, by outcome (delivered, duplicate, rejected).",
            ["agency", "topic", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "bus_subscriber_retries_total",
            "Transient Kafka errors a subscriber retried with backoff, by stage.",
            ["agency", "stage"],
            registry=registry,
        )


class QuarantineMetrics(ComponentMetrics):
    """``bus_quarantined_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.quarantined = Counter(
            "bus_quarantined_total",
            "Records written to the quarantine topic, by source topic and reason code.",
            ["agency", "topic", "reason"],
            registry=registry,
        )


class TrustMetrics(ComponentMetrics):
    """``bus_trust_reloads_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.reloads = Counter(
            "bus_trust_reloads_total",
            "Trust store files reloaded after a change, by outcome (ok, failed: old one kept).",
            ["outcome"],
            registry=registry,
        )

    def count_reload(self, outcome: str) -> None:
        """Count one reload (``ReloadingTrustStore``'s ``on_reload``)."""
        self.reloads.labels(outcome).inc()


class AuditMetrics(ComponentMetrics):
    """``bus_audit_chain_breaks_total`` (exported by ``bus audit verify --metrics-file``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.chain_breaks = Counter(
            "bus_audit_chain_breaks_total",
            "Audit records found altered, deleted, reordered, injected or unverifiable.",
            ["agency", "topic", "partition"],
            registry=registry,
        )

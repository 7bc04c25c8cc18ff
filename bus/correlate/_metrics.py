"""The correlator's Prometheus metrics (docs/operations.md has the catalogue)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from bus.metrics import ComponentMetrics

__all__ = ["CorrelatorMetrics"]


class CorrelatorMetrics(ComponentMetrics):
    """Events indexed, hits written, table sizes, lag, recoveries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.events = Counter(
            "bus_correlate_events_total",
            "Records the correlator read, by outcome: indexed, duplicate, rollback (a revision "
            "at or below the one indexed), expired (not indexed), rejected (quarantined).",
            ["agency", "topic", "outcome"],
            registry=registry,
        )
        self.hits = Counter(
            "bus_correlate_hits_total",
            "CorrelationHits written to bus.correlations (committed), by identifier kind.",
            ["agency", "kind"],
            registry=registry,
        )
        self.table_entries = Gauge(
            "bus_correlate_table_entries",
            "Entries of the correlator's tables: events, identifiers, pairs.",
            ["agency", "table"],
            registry=registry,
        )
        self.lag = Gauge(
            "bus_correlate_lag_records",
            "Records of a feed not yet processed (last stable offset minus position, summed "
            "over its partitions).",
            ["agency", "topic"],
            registry=registry,
        )
        self.recoveries = Counter(
            "bus_correlate_recoveries_total",
            "Times the correlator dropped its session after an error and rebuilt its state "
            "from the changelog.",
            ["agency"],
            registry=registry,
        )

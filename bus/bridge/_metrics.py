"""The bridge's Prometheus metrics (``bus_bridge_*``), labelled by direction."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bus.metrics import ComponentMetrics

__all__ = ["BridgeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BridgeMetrics(ComponentMetrics):
    """Forwarded, denied by rule, quarantined by reason, latency, lag, checkpoint age, retries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        direction = ["source", "destination"]
        self.forwarded = Counter(
            "bus_bridge_forwarded_total",
            "Events forwarded to the destination's mirrored topic (committed transactions).",
            [*direction, "topic"],
            registry=registry,
        )
        self.denied = Counter(
            "bus_bridge_denied_total",
            "Events the release policy kept at the source, by the rule that decided.",
            [*direction, "rule"],
            registry=registry,
        )
        self.quarantined = Counter(
            "bus_bridge_quarantined_total",
            "Source records the bridge could not verify or decode, by reason code.",
            [*direction, "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "bus_bridge_end_to_end_latency_seconds",
            "From an event's created_at to the commit of its copy on the destination.",
            direction,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "bus_bridge_batch_seconds",
            "Time to move one batch of one source partition (verify, decide, write, commit).",
            direction,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "bus_bridge_source_lag",
            "Records of a source partition not yet moved (last stable offset - checkpoint).",
            [*direction, "topic", "partition"],
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "bus_bridge_checkpoint_age_seconds",
            "Seconds since the partition's checkpoint last advanced or was confirmed current.",
            [*direction, "topic", "partition"],
            registry=registry,
        )
        self.aborts = Counter(
            "bus_bridge_transaction_aborts_total",
            "Destination transactions abandoned (aborted, fenced or of unknown outcome).",
            direction,
            registry=registry,
        )
        self.retries = Counter(
            "bus_bridge_retries_total",
            "Retries after a failed write, by stage (source: audit/quarantine; destination).",
            [*direction, "stage"],
            registry=registry,
        )
        self.assigned = Gauge(
            "bus_bridge_assigned_partitions",
            "Source partitions this worker currently moves.",
            direction,
            registry=registry,
        )
        self.replay_entries = Gauge(
            "bus_bridge_replay_entries",
            "Events whose forwarded revision this worker remembers (replays, rollbacks).",
            direction,
            registry=registry,
        )
        self.replay_state_invalid = Counter(
            "bus_bridge_replay_state_invalid_total",
            "Records of the destination's forwarded topics that are not entries (skipped).",
            direction,
            registry=registry,
        )

"""The bridge's Prometheus metrics (``bus_bridge_*``), labelled by direction."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bus.metrics import ComponentMetrics

__all__ = ["BridgeMetrics", "LastStableOffsets"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BridgeMetrics(ComponentMetrics):
    """Forwarded, denied by rule, quarantined by reason, latency, lag, checkpoint age, retries,
    errors, checkpoint alarms and blocked lanes."""

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
        self.lso_lag = Gauge(
            "bus_bridge_source_lso_lag",
            "Records of a source partition above its last stable offset (high watermark - LSO): "
            "open transactions that every read_committed reader waits for.",
            [*direction, "topic", "partition"],
            registry=registry,
        )
        self.lso_stalled = Gauge(
            "bus_bridge_source_lso_stalled_seconds",
            "Seconds the partition's last stable offset has stayed below the high watermark "
            "without moving (0 when nothing is open): the age of the oldest open transaction, "
            "as far as a reader can tell.",
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
        self.errors = Counter(
            "bus_bridge_errors_total",
            "Unexpected errors caught (logged with a traceback) and retried, by stage.",
            [*direction, "stage"],
            registry=registry,
        )
        self.checkpoint_alarms = Counter(
            "bus_bridge_checkpoint_alarms_total",
            "Checkpoints found untrustworthy (the partition's lane stopped), by reason.",
            [*direction, "topic", "partition", "reason"],
            registry=registry,
        )
        self.blocked = Gauge(
            "bus_bridge_lane_blocked",
            "1 while a partition's lane moves nothing, by reason: checkpoint (stopped until an "
            "operator acts), audit or mirror (that log's commits fail), error (unexpected).",
            [*direction, "topic", "partition", "reason"],
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


class LastStableOffsets:
    """Open transactions of the source partitions, seen from the high watermark and the LSO.

    A hanging transaction pins the last stable offset: every ``read_committed`` reader stops
    there, and the bridge's lag (LSO - checkpoint) and checkpoint age look healthy meanwhile.
    So the records above the LSO (``bus_bridge_source_lso_lag``) and how long the LSO has stood
    still below the high watermark (``bus_bridge_source_lso_stalled_seconds``) are measured on
    their own; an alert on the second catches a partition stuck behind a transaction.
    """

    def __init__(self, metrics: BridgeMetrics) -> None:
        self._metrics = metrics
        self._since: dict[tuple[str, ...], tuple[int, float]] = {}
        """Per partition's labels: its LSO while below the high watermark, and since when."""

    def observe(
        self, labels: tuple[str, ...], *, stable: int, high: int | None, now: float
    ) -> None:
        """Record one fetch's view of a partition (``now`` in monotonic seconds)."""
        if high is None or stable < 0:
            return  # not fetched yet, or not read_committed: nothing known
        open_records = max(0, high - stable)
        self._metrics.lso_lag.labels(*labels).set(open_records)
        if open_records == 0:
            self._since.pop(labels, None)
            self._metrics.lso_stalled.labels(*labels).set(0)
            return
        since = self._since.get(labels)
        if since is None or since[0] != stable:
            since = self._since[labels] = (stable, now)
        self._metrics.lso_stalled.labels(*labels).set(now - since[1])

    def forget(self, labels: tuple[str, ...]) -> None:
        """Drop a partition that this worker no longer moves (its series go too)."""
        self._since.pop(labels, None)
        for gauge in (self._metrics.lso_lag, self._metrics.lso_stalled):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

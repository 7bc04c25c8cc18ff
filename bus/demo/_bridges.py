"""What the demo reads from the bridges' ``/metrics``: one direction's counts, and their growth.

A bridge serves its ``bus_bridge_*`` metrics (docs/operations.md) on its web port, which
``bus.local`` knows. The demo scrapes every direction at the start and then again and again, and
shows the growth since the start (:meth:`BridgeCounts.since`), so that what a bridge did before
the demo does not count. A counter that went down means that bridge restarted (its counters
start again at 0): the growth is then counted from 0, as Prometheus' ``increase`` does.

Parsing and arithmetic are pure; :func:`scrape` does the HTTP request (blocking: call it in a
thread).
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from bus.errors import BusError

__all__ = ["BridgeCounts", "BridgeUnreachable", "parse_metrics", "quantile", "scrape"]

_FORWARDED: Final = "bus_bridge_forwarded_total"
_DENIED: Final = "bus_bridge_denied_total"
_QUARANTINED: Final = "bus_bridge_quarantined_total"
_LATENCY: Final = "bus_bridge_end_to_end_latency_seconds_bucket"
_LAG: Final = "bus_bridge_source_lag"


class BridgeUnreachable(BusError):
    """A bridge's ``/metrics`` did not answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeCounts:
    """One direction's counters as a bridge reports them (or their growth over a time)."""

    forwarded: int = 0
    denied: Mapping[str, int] = field(default_factory=dict)
    """By the rule that decided."""
    quarantined: Mapping[str, int] = field(default_factory=dict)
    """By reason code."""
    latency_buckets: Mapping[float, int] = field(default_factory=dict)
    """Cumulative counts of the end-to-end latency histogram, by upper bound (``le``)."""
    lag: int = 0
    """Records of the source not yet moved (a gauge: the value now, never a growth)."""

    @property
    def processed(self) -> int:
        """Every source record the bridge decided on: forwarded, denied or quarantined."""
        return self.forwarded + sum(self.denied.values()) + sum(self.quarantined.values())

    def since(self, start: BridgeCounts) -> BridgeCounts:
        """The growth from ``start`` to these counts (a counter that went down restarted at 0)."""
        return BridgeCounts(
            forwarded=_growth(self.forwarded, start.forwarded),
            denied=_growths(self.denied, start.denied),
            quarantined=_growths(self.quarantined, start.quarantined),
            latency_buckets=_growths_by_bound(self.latency_buckets, start.latency_buckets),
            lag=self.lag,
        )

    def latency(self, q: float) -> float | None:
        """The ``q`` quantile of the end-to-end latency (seconds); None with no observation."""
        return quantile(q, self.latency_buckets)


def _growth(now: int, start: int) -> int:
    return now - start if now >= start else now


def _growths(now: Mapping[str, int], start: Mapping[str, int]) -> dict[str, int]:
    grown = {k: _growth(v, start.get(k, 0)) for k, v in now.items()}
    return {k: v for k, v in grown.items() if v}


def _growths_by_bound(now: Mapping[float, int], start: Mapping[float, int]) -> dict[float, int]:
    return {k: _growth(v, start.get(k, 0)) for k, v in now.items()}


def quantile(q: float, buckets: Mapping[float, int]) -> float | None:
    """``histogram_quantile`` of cumulative ``buckets`` (linear inside the bucket); None if empty.

    In the ``+Inf`` bucket it answers the largest finite bound, as Prometheus does.
    """
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def parse_metrics(text: str, *, source: str, destination: str) -> BridgeCounts:
    """The counts of direction ``source`` -> ``destination`` in a ``/metrics`` exposition."""
    forwarded = 0
    denied: dict[str, int] = {}
    quarantined: dict[str, int] = {}
    buckets: dict[float, int] = {}
    lag = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("source") != source or labels.get("destination") != destination:
                continue
            value = int(sample.value)
            if sample.name == _FORWARDED:
                forwarded += value
            elif sample.name == _DENIED:
                denied[labels["rule"]] = denied.get(labels["rule"], 0) + value
            elif sample.name == _QUARANTINED:
                reason = labels["reason"]
                quarantined[reason] = quarantined.get(reason, 0) + value
            elif sample.name == _LATENCY:
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0) + value
            elif sample.name == _LAG:
                lag += value
    return BridgeCounts(
        forwarded=forwarded,
        denied=denied,
        quarantined=quarantined,
        latency_buckets=buckets,
        lag=lag,
    )


def scrape(url: str, *, source: str, destination: str, timeout_s: float = 5.0) -> BridgeCounts:
    """Read ``url``/metrics (blocking); ``BridgeUnreachable`` says which bridge and what to do."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=timeout_s) as response:
            text = response.read().decode("utf-8")
    except (OSError, urllib.error.URLError) as exc:
        raise BridgeUnreachable(
            f"bridge {source} -> {destination}: no answer from {url}/metrics ({exc}); "
            "is the federation running with its bridges? See `bus local status`, and start it "
            "with `bus local up`"
        ) from exc
    return parse_metrics(text, source=source, destination=destination)

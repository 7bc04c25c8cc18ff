"""Throughput of release decisions.

Run ``python -m bench.bench_policy``. Measures, on one thread, ``Policy.decide`` for an allowed
event (every rule evaluated) and a RED event, and ``ReleaseRequest.from_event`` + ``decide`` as
the bridge calls them. Figures are printed, never asserted: tests do not time things.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bus.events import template
from bus.policy import ReleaseRequest, load_policy

__all__ = ["main"]

_POLICY = Path(__file__).resolve().parent.parent / "deploy" / "policy" / "local.toml"


def _rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1000):
            fn()
        count += 1000
    return count / elapsed


def main() -> None:
    """Print decisions per second."""
    policy = load_policy(_POLICY)
    now = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    event = template("CYBERCRIME", now=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    event["tlp"] = "AMBER"
    allowed = ReleaseRequest.from_event(event, source="interpol", destination="europol", now=now)
    red = ReleaseRequest.from_event(
        {**event, "tlp": "RED"}, source="interpol", destination="europol", now=now
    )
    assert policy.decide(allowed).allowed
    rows = [
        ("decide (allowed, all rules)", lambda: policy.decide(allowed)),
        ("decide (RED, denied)", lambda: policy.decide(red)),
        (
            "from_event + decide",
            lambda: policy.decide(
                ReleaseRequest.from_event(event, source="interpol", destination="europol", now=now)
            ),
        ),
    ]
    for name, fn in rows:
        print(f"{name:32} {_rate(fn):>12,.0f} /s")


if __name__ == "__main__":
    main()

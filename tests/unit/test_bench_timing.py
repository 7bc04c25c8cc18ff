"""The benchmarks' steady rate: the middle of a run, without its first and last records' way."""

from __future__ import annotations

from bench._timing import Arrivals


def _arrivals(times: list[float]) -> Arrivals:
    return Arrivals(
        first_sent=1.0, arrived=len(times), last=times[-1], load_average=[], times=tuple(times)
    )


def test_steady_is_the_rate_of_the_middle_of_the_run() -> None:
    # 1,000 records at 100/s, the first behind a 5 s start and the last 5 s late: the whole
    # run's rate counts both delays, the steady one only the 100/s.
    times = [6.0 + i / 100 for i in range(1000)]
    times[-1] += 5.0
    run = _arrivals(times)
    steady = run.steady(1000)
    assert steady is not None
    assert abs(steady - 100.0) < 0.5
    assert 1000 / run.seconds < 60


def test_steady_counts_source_events_when_only_some_arrive() -> None:
    # The bridge forwards only released events: 500 of 1,000 source events, arriving at 50/s,
    # is 100 source events a second.
    steady = _arrivals([i / 50 for i in range(500)]).steady(1000)
    assert steady is not None
    assert abs(steady - 100.0) < 0.5


def test_steady_needs_a_middle() -> None:
    assert _arrivals([1.0] * 5).steady(5) is None
    assert _arrivals([2.0] * 100).steady(100) is None  # all at once: no rate to tell

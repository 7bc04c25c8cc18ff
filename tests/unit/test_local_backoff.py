"""``bus.local._backoff``: the delays between restarts of a supervised process."""

from __future__ import annotations

import pytest

from bus.local._backoff import Backoff, BackoffPolicy


def test_quick_exits_in_a_row_double_the_delay_up_to_the_maximum() -> None:
    backoff = Backoff(BackoffPolicy(initial_s=0.5, factor=2, maximum_s=4, stable_s=60))
    assert [backoff.after_exit(1.0) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_a_run_as_long_as_the_stable_period_starts_the_count_again() -> None:
    backoff = Backoff(BackoffPolicy(initial_s=1, factor=3, maximum_s=100, stable_s=10))
    assert [backoff.after_exit(0.1) for _ in range(3)] == [1, 3, 9]
    assert backoff.after_exit(10.0) == 1
    assert backoff.after_exit(9.9) == 3


def test_a_long_crash_loop_stays_at_the_maximum_without_overflow() -> None:
    policy = BackoffPolicy(initial_s=0.5, factor=2, maximum_s=30)
    assert policy.delay(10_000) == 30


@pytest.mark.parametrize(
    "fields",
    [
        {"initial_s": 0},
        {"initial_s": 5, "maximum_s": 1},
        {"factor": 0.5},
        {"stable_s": 0},
    ],
)
def test_a_policy_out_of_range_names_the_parameter(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        BackoffPolicy(**fields)


def test_delay_counts_exits_from_one() -> None:
    with pytest.raises(ValueError, match="exits_in_a_row"):
        BackoffPolicy().delay(0)

"""When to restart a supervised process that exited: exponential backoff, reset once stable.

Pure arithmetic (no clock, no process): the supervisor tells :class:`Backoff` how long the
process ran before it exited and gets the delay before the next start.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Delays ``initial_s * factor**(n-1)`` for the n-th exit in a row, at most ``maximum_s``.

    A process that ran at least ``stable_s`` before it exited starts the count again: one crash
    after an hour of work is restarted at once, a crash loop slows down to ``maximum_s``.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    maximum_s: float = 30.0
    stable_s: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.maximum_s < self.initial_s:
            raise ValueError(
                f"initial_s {self.initial_s}, maximum_s {self.maximum_s}: give 0 < initial_s "
                "<= maximum_s"
            )
        if self.factor < 1:
            raise ValueError(f"factor {self.factor}: give 1 or more")
        if self.stable_s <= 0:
            raise ValueError(f"stable_s {self.stable_s}: give a positive number of seconds")

    def delay(self, exits_in_a_row: int) -> float:
        """The delay before restarting after the ``exits_in_a_row``-th quick exit (1-based)."""
        if exits_in_a_row < 1:
            raise ValueError(f"exits_in_a_row {exits_in_a_row}: give 1 or more")
        # min() before the power would overflow for a long crash loop.
        exponent = min(exits_in_a_row - 1, 64)
        return min(self.initial_s * self.factor**exponent, self.maximum_s)


class Backoff:
    """The restart state of one supervised process."""

    def __init__(self, policy: BackoffPolicy | None = None) -> None:
        self.policy = policy or BackoffPolicy()
        self.exits_in_a_row = 0

    def after_exit(self, ran_s: float) -> float:
        """The process exited after running ``ran_s`` seconds: the delay before restarting it."""
        if ran_s >= self.policy.stable_s:
            self.exits_in_a_row = 0
        self.exits_in_a_row += 1
        return self.policy.delay(self.exits_in_a_row)

"""The net under the bridge's bounded waits: a fetch loop that stops completing steps is seen.

Every wait of the bridge on a cluster is bounded (``bus._kafka.within``, ``stop_within``,
aiokafka's own request timeouts), so a cluster away, slow or behind a partition makes a lane
retry, warn and count, and the loop goes on. Should a wait escape that (an aiokafka call found
later to wait with no limit), the worker would otherwise sit there alive, healthy and silent,
moving nothing, with its gauges frozen at their last values. The watchdog runs beside the loop:

- at every tick it calls ``on_tick`` (the replicator keeps each lane's checkpoint age current
  there, so a stopped loop shows in ``bus_bridge_checkpoint_age_seconds`` and its alert);
- once no step has completed for ``after_s``, it logs at WARNING, once per stall, where every
  task of the worker waits (``where_tasks_wait``: module, function and line, no file paths),
  and ``stalled_for`` makes ``/healthz`` answer 503 until the loop completes a step again.

A long outage of a cluster also stops steps (a lane retries its batch until it lands); then the
lanes' own warnings say why, and the dump shows them in their backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

__all__ = ["Watchdog", "where_tasks_wait"]

log = logging.getLogger("bus.bridge")

_FRAMES = 4
"""Innermost frames shown per task: where it waits and what called that."""

_TASKS = 40
"""Tasks shown at most (a worker runs a few per lane and per client)."""


def where_tasks_wait(tasks: Iterable[asyncio.Task[object]]) -> list[str]:
    """One line per unfinished task, by name: its innermost frames, outermost first."""
    lines = []
    for task in sorted(tasks, key=lambda t: t.get_name()):
        if task.done():
            continue
        frames = task.get_stack()[-_FRAMES:]
        where = " > ".join(
            f"{frame.f_globals.get('__name__', '?')}.{frame.f_code.co_qualname}:{frame.f_lineno}"
            for frame in frames
        )
        lines.append(f"{task.get_name()}: {where or 'not started'}")
    if len(lines) > _TASKS:
        lines[_TASKS:] = [f"... and {len(lines) - _TASKS} more tasks"]
    return lines


class Watchdog:
    """Watches one fetch loop: ``beat()`` after each completed step, ``run()`` beside it."""

    def __init__(
        self,
        *,
        name: str,
        after_s: float,
        on_tick: Callable[[float], None] = lambda now: None,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.after_s = after_s
        self._on_tick = on_tick
        self._interval_s = interval_s
        self._clock = clock
        self._last = clock()
        self._reported = False

    def beat(self) -> None:
        """A step completed."""
        if self._reported:
            log.warning(
                "bridge %s: the fetch loop completes steps again after %.0f s",
                self.name,
                self._clock() - self._last,
            )
            self._reported = False
        self._last = self._clock()

    def stalled_for(self) -> float | None:
        """Seconds since the last completed step once that is ``after_s`` or more, else None."""
        age = self._clock() - self._last
        return age if age >= self.after_s else None

    def check(self) -> None:
        """One tick: ``on_tick``, and the stall report if one is due."""
        self._on_tick(self._clock())
        age = self.stalled_for()
        if age is None or self._reported:
            return
        self._reported = True
        log.warning(
            "bridge %s: the fetch loop has completed no step for %.0f s; where each task "
            "waits:\n  %s",
            self.name,
            age,
            "\n  ".join(where_tasks_wait(asyncio.all_tasks())),
        )

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            self.check()

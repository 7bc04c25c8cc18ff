"""The watchdog: a fetch loop that completes no step for ``after_s`` is reported once, with where
each task waits, and reported as stalled until it completes one again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus.bridge._watchdog import Watchdog, where_tasks_wait


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _waits_for_an_offset_reset(never: asyncio.Event) -> None:
    await never.wait()


async def test_where_tasks_wait_names_each_task_with_its_innermost_frames_and_no_paths() -> None:
    never = asyncio.Event()
    task = asyncio.create_task(_waits_for_an_offset_reset(never), name="lane-open-t/3")
    done = asyncio.create_task(asyncio.sleep(0), name="finished")
    await asyncio.sleep(0.01)
    try:
        lines = where_tasks_wait([task, done])
    finally:
        task.cancel()
    assert len(lines) == 1
    assert lines[0].startswith("lane-open-t/3: ")
    assert f"{__name__}._waits_for_an_offset_reset:" in lines[0]
    assert "/" not in lines[0].removeprefix("lane-open-t/3: ")  # module names, not file paths


async def test_where_tasks_wait_is_bounded() -> None:
    never = asyncio.Event()
    tasks = [asyncio.create_task(never.wait(), name=f"t{i:03}") for i in range(100)]
    await asyncio.sleep(0)
    try:
        lines = where_tasks_wait(tasks)
    finally:
        for task in tasks:
            task.cancel()
    assert len(lines) == 41
    assert lines[-1] == "... and 60 more tasks"


async def test_a_stall_is_reported_once_and_its_end_too(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    ticks: list[float] = []
    dog = Watchdog(name="interpol-europol", after_s=60, on_tick=ticks.append, clock=clock)
    caplog.set_level(logging.WARNING, logger="bus.bridge")

    clock.now += 59
    dog.check()
    assert dog.stalled_for() is None
    assert caplog.records == []

    clock.now += 2
    dog.check()
    dog.check()
    assert dog.stalled_for() == pytest.approx(61)
    stalls = [r for r in caplog.records if "completed no step for 61 s" in r.getMessage()]
    assert len(stalls) == 1, caplog.text
    assert "interpol-europol" in stalls[0].getMessage()
    assert "test_a_stall_is_reported_once_and_its_end_too" in stalls[0].getMessage()  # this task
    assert ticks == [1059.0, 1061.0, 1061.0]

    clock.now += 10
    dog.beat()
    assert dog.stalled_for() is None
    assert "completes steps again after 71 s" in caplog.records[-1].getMessage()

    # A second stall is reported again.
    clock.now += 60
    dog.check()
    assert len([r for r in caplog.records if "completed no step" in r.getMessage()]) == 2


async def test_steps_keep_it_quiet(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    dog = Watchdog(name="d", after_s=60, clock=clock)
    caplog.set_level(logging.WARNING, logger="bus.bridge")
    for _ in range(10):
        clock.now += 30
        dog.beat()
        dog.check()
    assert dog.stalled_for() is None
    assert caplog.records == []


async def test_it_ticks_until_cancelled() -> None:
    ticks: list[float] = []
    three = asyncio.Event()

    def tick(now: float) -> None:
        ticks.append(now)
        if len(ticks) == 3:
            three.set()

    dog = Watchdog(name="d", after_s=60, on_tick=tick, interval_s=0.01)
    running = asyncio.create_task(dog.run())
    await asyncio.wait_for(three.wait(), 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

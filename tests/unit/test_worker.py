"""The service a bus worker hosts: a failure crashes the worker, a stop waits for a clean
shutdown, cancels one that takes too long, and cancels at once one still starting when asked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from bus._worker import HostedService


@dataclass(frozen=True)
class _Settings:
    name: str = "thing.a"
    operation_timeout_s: float = 0.1


class _Hosted:
    """Fails, runs until stopped, ignores the stop, or never starts, as ``behaviour`` says."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.settings = _Settings()
        self.started = asyncio.Event()
        self.stopped_cleanly = True
        self.stop_asked = False
        self._stop = asyncio.Event()

    async def run(self) -> None:
        if self.behaviour == "fails":
            raise RuntimeError("broken")
        if self.behaviour != "never starts":
            self.started.set()
        if self.behaviour == "ignores the stop":
            await asyncio.sleep(3600)
        await self._stop.wait()

    def stop(self) -> None:
        self.stop_asked = True
        self._stop.set()


class _Service(HostedService):
    kind = "thing"


class _Impatient(_Service):
    cancel_while_starting = True


async def _run_then_stop(service: HostedService) -> asyncio.Task[None]:
    await service.start()
    await asyncio.sleep(0.05)
    await service.stop()
    task = service._task
    assert task is not None
    return task


async def test_a_failing_service_crashes_the_worker_and_did_not_stop_cleanly() -> None:
    hosted = _Hosted("fails")
    service = _Service(hosted)
    await service.start()
    await asyncio.sleep(0.05)
    assert service.crashed
    assert isinstance(service.crash_reason, RuntimeError)
    assert hosted.stopped_cleanly is False
    await service.stop()


async def test_a_stop_lets_the_service_finish_cleanly() -> None:
    hosted = _Hosted("runs")
    task = await _run_then_stop(_Service(hosted))
    assert hosted.stop_asked
    assert task.done()
    assert not task.cancelled()
    assert hosted.stopped_cleanly is True


async def test_a_service_still_running_past_its_timeout_is_cancelled_and_unclean(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hosted = _Hosted("ignores the stop")
    task = await _run_then_stop(_Service(hosted))
    assert task.cancelled()
    assert hosted.stopped_cleanly is False
    assert "thing thing.a: shutdown did not finish within" in caplog.text


@pytest.mark.parametrize(("service", "cancelled"), [(_Service, False), (_Impatient, True)])
async def test_a_service_still_starting_is_cancelled_at_once_only_when_its_kind_says(
    service: type[HostedService], cancelled: bool
) -> None:
    hosted = _Hosted("never starts")
    task = await _run_then_stop(service(hosted))
    assert hosted.stop_asked
    assert task.cancelled() is cancelled
    assert hosted.stopped_cleanly is True

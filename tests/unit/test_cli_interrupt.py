"""Ctrl-C ends a `bus publish`/`bus tail` command with status 130, even when the command did
not take the first cancellation (Python 3.11's ``asyncio.wait_for`` can drop one)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from bus.cli import pubsub


def test_ctrl_c_ends_a_command_with_status_130() -> None:
    cleaned_up = []

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append(True)  # context managers close

    with pytest.raises(SystemExit) as ended:
        pubsub._run(main())
    assert ended.value.code == 130
    assert cleaned_up == [True]


def test_ctrl_c_ends_a_command_that_dropped_the_first_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pubsub, "_RECANCEL_S", 0.05)
    dropped = []

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            dropped.append(True)  # as wait_for may, when the call completes at that moment
        await asyncio.sleep(10)  # goes on as if nothing happened

    with pytest.raises(SystemExit) as ended:
        pubsub._run(main())
    assert ended.value.code == 130
    assert dropped == [True]


def test_a_command_that_ends_by_itself_leaves_sigint_as_it_was() -> None:
    async def main() -> None:
        await asyncio.sleep(0)

    pubsub._run(main())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_command_runs_outside_the_main_thread_too() -> None:
    """As a test runs one with click's CliRunner in a worker thread: no signal handler there."""
    ran: list[bool] = []
    failed: list[BaseException] = []

    async def main() -> None:
        await asyncio.sleep(0)
        ran.append(True)

    def command() -> None:
        try:
            pubsub._run(main())
        except BaseException as exc:  # reported below
            failed.append(exc)

    thread = threading.Thread(target=command)
    thread.start()
    thread.join(10)
    assert failed == []
    assert ran == [True]

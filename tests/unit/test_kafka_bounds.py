"""The bounds on aiokafka waits that have none of their own: ``stop_within`` (a client that does
not stop, its sockets never closing as behind a network partition, or that fails to stop, does
not hold up the caller) and ``within`` (a call that never answers becomes a ``TransportError``
that names it, which the bridge retries)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from bus._kafka import RETRYABLE, stop_within, within
from bus.errors import TransportError


class _Client:
    def __init__(self, *, hangs: bool = False, fails: bool = False) -> None:
        self.hangs, self.fails = hangs, fails
        self.stopped = False
        self.cancelled = False

    async def stop(self) -> None:
        if self.fails:
            raise KafkaConnectionError("Connection at 198.18.0.2:9092 closed")
        if self.hangs:
            try:
                await asyncio.Event().wait()  # never set: a socket that never finishes closing
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        self.stopped = True


async def test_a_client_that_stops_is_stopped() -> None:
    client = _Client()
    assert await stop_within(client, 1.0) is True
    assert client.stopped


async def test_a_client_that_never_stops_is_given_up_on() -> None:
    client = _Client(hangs=True)
    assert await stop_within(client, 0.05) is False
    assert client.cancelled
    assert not client.stopped


async def test_a_client_that_fails_to_stop_is_given_up_on() -> None:
    client = _Client(fails=True)
    assert await stop_within(client, 1.0) is False
    assert not client.stopped


async def test_an_answer_within_the_bound_is_returned() -> None:
    async def position() -> int:
        await asyncio.sleep(0)
        return 42

    assert await within(position(), 1.0, "reading the checkpoint") == 42


async def test_no_answer_within_the_bound_is_a_retryable_error_naming_the_call() -> None:
    cancelled = asyncio.Event()

    async def position() -> int:
        try:
            await asyncio.Event().wait()  # an offset reset the cut cluster never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0  # pragma: no cover

    with pytest.raises(
        TransportError, match=r"reading checkpoint c/0 on europol: no answer within 0.05 s"
    ) as caught:
        await within(position(), 0.05, "reading checkpoint c/0 on europol")
    assert isinstance(caught.value, RETRYABLE)
    assert cancelled.is_set()


async def test_a_failure_within_the_bound_is_raised_as_it_is() -> None:
    async def commit() -> None:
        raise KafkaConnectionError("Connection at 198.18.0.2:9092 closed")

    with pytest.raises(KafkaConnectionError):
        await within(commit(), 1.0, "committing")

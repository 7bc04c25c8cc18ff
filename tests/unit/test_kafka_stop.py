"""``stop_within``: a Kafka client that does not stop (its sockets never close, as behind a
network partition) or fails to stop does not hold up the caller."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError

from bus._kafka import stop_within


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

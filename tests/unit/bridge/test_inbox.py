"""A lane's inbox: fetch order kept, a batch at most per take, full when a batch waits."""

from __future__ import annotations

import asyncio

import pytest

from bus.bridge._inbox import Inbox


async def test_take_returns_what_waits_in_fetch_order_at_most_a_batch() -> None:
    inbox = Inbox(batch=3)
    assert inbox.put([1, 2]) is False
    assert inbox.put([3, 4]) is True  # a whole batch waits: the partition may be paused
    assert await inbox.take() == [1, 2, 3]
    assert not inbox.full
    assert await inbox.take() == [4]
    assert len(inbox) == 0


async def test_take_waits_for_records_and_ends_when_closed() -> None:
    inbox = Inbox(batch=10)
    waiting = asyncio.ensure_future(inbox.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put([7])
    assert await waiting == [7]
    waiting = asyncio.ensure_future(inbox.take())
    await asyncio.sleep(0)
    inbox.close()
    assert await waiting is None
    assert inbox.put([8]) is False  # a closed inbox takes nothing
    assert await inbox.take() is None


async def test_clear_forgets_what_waits_and_counts_a_generation() -> None:
    inbox = Inbox(batch=2)
    inbox.put([1, 2, 3])
    before = inbox.generation
    inbox.clear()
    assert len(inbox) == 0
    assert not inbox.full
    assert inbox.generation == before + 1
    inbox.put([1])
    assert await inbox.take() == [1]


async def test_an_empty_put_changes_nothing() -> None:
    inbox = Inbox(batch=1)
    assert inbox.put([]) is False
    inbox.put([5])
    assert inbox.put([]) is True


def test_a_batch_of_less_than_one_record_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(batch=0)

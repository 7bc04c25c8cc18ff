"""The replicator's pipeline: a lane's batch collects records behind the one committing
(``bus.bridge._batches``), and commits only if that one landed whole
(``Replicator._commit_after``); no broker: a lane that records its commits."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from bus.bridge._batches import Batch
from bus.bridge.replicator import Replicator
from bus.policy import Policy
from bus.trust import TrustStore
from tests.unit.bridge.fakes import bridge_settings

TP = TopicPartition("bus.events", 0)


@dataclass
class _Lane:
    """What ``_commit_after`` uses of a lane: its partition, where it resumes, ``commit``."""

    tp: TopicPartition = TP
    next_offset: int = 0
    audited_until: int = 0
    lands: bool = True
    commits: list[int] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def resume_from(self) -> int:
        return min(self.next_offset, self.audited_until)

    async def commit(self, verdicts: Any, *, next_offset: int) -> bool:
        await self.release.wait()
        self.commits.append(next_offset)
        if self.lands:
            self.next_offset = self.audited_until = next_offset
        return self.lands


def _replicator(lane: _Lane) -> tuple[Replicator, list[int]]:
    replicator = Replicator(
        bridge_settings(),
        trust=TrustStore([]),
        policy=Policy(agencies=frozenset()),
        registry=CollectorRegistry(),
    )
    replicator._lanes[TP] = lane  # type: ignore[assignment]
    sought: list[int] = []
    # What the replicator's seeks reach: its consumer.
    replicator._consumer = SimpleNamespace(seek=lambda tp, offset: sought.append(offset))
    return replicator, sought


async def _queue(replicator: Replicator, lane: _Lane, after: int, end: int) -> Batch:
    """Queue judged records ``after``..``end - 1`` as the step does; the lane's last batch."""
    verdicts = [
        SimpleNamespace(record=SimpleNamespace(offset=o), outcome=None, decision=None, error=None)
        for o in range(after, end)
    ]
    replicator._batches.add(
        TP,
        verdicts,  # type: ignore[arg-type]
        after=after,
        next_offset=end,
        started=0.0,
        commit=functools.partial(replicator._commit_after, lane=lane),  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)
    return replicator._batches.in_flight(TP)[-1]


async def test_a_batch_commits_only_after_the_one_before_it_landed() -> None:
    lane = _Lane(next_offset=10, audited_until=10)
    replicator, sought = _replicator(lane)
    first = await _queue(replicator, lane, after=10, end=20)
    second = await _queue(replicator, lane, after=20, end=35)
    await asyncio.sleep(0.01)
    assert lane.commits == []  # the first is committing; the second waits behind it
    assert replicator._batches.in_flight(TP) == [first, second]
    lane.release.set()
    await replicator._batches.settle()
    assert lane.commits == [20, 35]
    assert lane.resume_from == 35
    assert sought == []


async def test_a_batch_behind_one_that_did_not_land_is_dropped_and_the_lane_sought_back() -> None:
    lane = _Lane(next_offset=10, audited_until=10, lands=False)
    replicator, sought = _replicator(lane)
    await _queue(replicator, lane, after=10, end=20)
    await _queue(replicator, lane, after=20, end=35)
    lane.release.set()
    await replicator._batches.settle()
    assert lane.commits == [20]  # records 20..34 were not written over the gap 10..19
    assert sought == [10]  # fetched again from the lane's checkpoints


async def test_a_batch_of_a_lane_revoked_meanwhile_is_dropped() -> None:
    lane = _Lane(next_offset=10, audited_until=10)
    replicator, sought = _replicator(lane)
    await _queue(replicator, lane, after=10, end=20)
    await _queue(replicator, lane, after=20, end=35)
    del replicator._lanes[TP]  # revoked while the first committed
    lane.release.set()
    await replicator._batches.settle()
    assert lane.commits == [20]
    assert sought == []  # the partition is no longer this worker's to seek


async def test_nothing_more_commits_once_the_worker_stops() -> None:
    lane = _Lane(next_offset=10, audited_until=10)
    replicator, _ = _replicator(lane)
    await _queue(replicator, lane, after=10, end=20)
    await _queue(replicator, lane, after=20, end=35)
    replicator.stop()
    lane.release.set()
    await replicator._batches.settle()
    assert lane.commits == [20]  # the batch in flight finishes; the waiting one does not start


async def test_records_fetched_while_a_batch_commits_join_the_batch_waiting_behind_it() -> None:
    lane = _Lane(next_offset=10, audited_until=10)
    replicator, _ = _replicator(lane)
    await _queue(replicator, lane, after=10, end=20)
    second = await _queue(replicator, lane, after=20, end=25)
    third = await _queue(replicator, lane, after=25, end=31)
    assert third is second  # one batch collects while the first commits
    assert (second.after, second.next_offset, len(second.verdicts)) == (20, 31, 11)
    assert replicator._batches.queued_until(TP, lane.resume_from) == 31
    lane.release.set()
    await replicator._batches.settle()
    assert lane.commits == [20, 31]  # two transactions for three fetches
    assert replicator._batches.in_flight(TP) == []
    assert replicator._batches.queued_until(TP, lane.resume_from) == 31  # from the lane itself now


async def test_a_lane_takes_no_more_records_once_a_whole_batch_waits() -> None:
    lane = _Lane(next_offset=0, audited_until=0)
    replicator, _ = _replicator(lane)
    size = replicator.settings.max_batch
    await _queue(replicator, lane, after=0, end=5)
    assert not replicator._batches.full(TP)  # committing, nothing waiting
    await _queue(replicator, lane, after=5, end=5 + size - 1)
    assert not replicator._batches.full(TP)
    await _queue(replicator, lane, after=5 + size - 1, end=5 + size)
    assert replicator._batches.full(TP)  # fetched no more until the commit in flight ends
    lane.release.set()
    await replicator._batches.settle()
    assert lane.commits == [5, 5 + size]
    assert not replicator._batches.full(TP)


async def test_a_batch_never_holds_more_than_max_batch_the_rest_is_carried() -> None:
    lane = _Lane(next_offset=0, audited_until=0)
    replicator, sought = _replicator(lane)
    batches = replicator._batches
    size = replicator.settings.max_batch
    fetched = [SimpleNamespace(offset=o) for o in range(size + 7)]
    assert len(batches.take(TP, fetched)) == size
    assert batches.carries(TP)
    carried = batches.carried([TP])[TP]
    assert carried == fetched[size:]  # its next records, not fetched again
    assert batches.carried([TP]) == {}  # handed out once
    assert not batches.carries(TP)
    await _queue(replicator, lane, after=0, end=5)  # committing
    await _queue(replicator, lane, after=5, end=size)  # collecting, 5 short of a batch
    taken = batches.take(TP, carried)
    assert [r.offset for r in taken] == list(range(size, size + 5))
    replicator._seek(TP, 0)  # the lane starts over from its checkpoints
    assert batches.carried([TP]) == {}  # what it carried (size + 5, size + 6) is dropped
    assert sought == [0]
    lane.release.set()
    await batches.settle()


async def test_judging_a_large_fetch_on_the_loop_lets_the_commits_in_flight_move(
    monkeypatch: Any,
) -> None:
    # Without verify threads the records are judged on the event loop: a whole fetch (up to
    # max_batch for every lane) at once would hold every commit's next request until its end.
    replicator, _ = _replicator(_Lane())
    assert replicator._pool is None
    seen: list[object] = []

    def judging(record: Any, **_: Any) -> Any:
        seen.append(record.offset)
        return SimpleNamespace(record=record)

    async def a_commit_in_flight() -> None:
        await asyncio.sleep(0)
        seen.append("commit moved")

    monkeypatch.setattr("bus.bridge.replicator.judge", judging)
    records = [SimpleNamespace(offset=o) for o in range(500)]
    moving = asyncio.create_task(a_commit_in_flight())
    verdicts = await replicator._judge_all(records)
    await moving
    assert [v.record.offset for v in verdicts] == list(range(500))  # all, in order
    # The other task ran while the batch was judged, not after it.
    assert 0 < seen.index("commit moved") < 500

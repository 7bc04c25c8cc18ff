"""A replicator's batches in flight: per lane, one committing and one collecting behind it.

Records fetched while a lane commits are judged at once and join the batch that collects behind
that commit; the collecting batch commits as soon as the commit in flight ends, whatever the
other lanes do (``docs/decisions/0024-lanes-commit-behind-their-own-batch.md``). A batch holds
at most ``max_batch`` records; what a fetch brought beyond that is *carried*: kept, in order,
as the lane's next records, in place of a fetch of its partition (whose consumer position is
already past them), and dropped whenever the lane seeks.

This module keeps the queue only. What commits a batch, and the rule that a batch commits only
behind one that landed whole, are the replicator's (``Replicator._commit_after``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from bus.bridge._verdict import Verdict

__all__ = ["Batch", "Batches"]


@dataclass(slots=True, eq=False, kw_only=True)
class Batch:
    """A lane's judged records of source offsets ``after`` to ``next_offset - 1``: collecting
    more while the lane's previous batch commits, then committing (``task``)."""

    after: int
    next_offset: int
    verdicts: list[Verdict]
    started: float
    committing: bool = False
    task: asyncio.Task[None] | None = None


Commit = Callable[[asyncio.Task[None] | None, Batch], Coroutine[Any, Any, None]]
"""Commits a batch once the task of the batch before it (None: none) is done."""


class Batches:
    """Each lane's batch committing and the one collecting behind it, by source partition."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._queued: dict[TopicPartition, list[Batch]] = {}
        self._carried: dict[TopicPartition, list[Any]] = {}

    def in_flight(self, tp: TopicPartition) -> list[Batch]:
        """The batches of ``tp`` committing or collecting (at most one each), oldest first."""
        return [b for b in self._queued.get(tp, ()) if b.task is None or not b.task.done()]

    def full(self, tp: TopicPartition) -> bool:
        """True while ``tp`` has a batch committing and a whole ``max_batch`` waiting."""
        in_flight = self.in_flight(tp)
        return bool(in_flight) and (
            not in_flight[-1].committing and len(in_flight[-1].verdicts) >= self.max_batch
        )

    def queued_until(self, tp: TopicPartition, resume_from: int) -> int:
        """The source offset the next records of ``tp`` start at: after its last batch, or
        where its lane resumes (``resume_from``) when none is in flight."""
        in_flight = self.in_flight(tp)
        return in_flight[-1].next_offset if in_flight else resume_from

    def take(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """As many of a lane's fetched records as its batch has room for (``max_batch`` a
        batch: one Produce request, a bounded transaction); the rest is carried."""
        in_flight = self.in_flight(tp)
        collecting = in_flight[-1] if in_flight and not in_flight[-1].committing else None
        room = self.max_batch - (len(collecting.verdicts) if collecting else 0)
        if len(records) > room > 0:
            self._carried[tp] = records[room:]
            return records[:room]
        return records

    def carries(self, tp: TopicPartition) -> bool:
        """True while ``tp`` has records carried to its next batch."""
        return tp in self._carried

    def carried(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, list[Any]]:
        """The carried records of ``partitions`` (taken out): they are fetched no more."""
        return {tp: self._carried.pop(tp) for tp in partitions if tp in self._carried}

    def drop_carried(self, tp: TopicPartition) -> None:
        """Forget what ``tp`` carried: its lane seeks, or closes."""
        self._carried.pop(tp, None)

    def add(
        self,
        tp: TopicPartition,
        verdicts: list[Verdict],
        *,
        after: int,
        next_offset: int,
        started: float,
        commit: Commit,
    ) -> None:
        """Add a lane's judged records (source offsets ``after`` to ``next_offset - 1``) to the
        batch it collects, or start one (``commit`` runs it, behind the batch in flight)."""
        in_flight = self.in_flight(tp)
        last = in_flight[-1] if in_flight else None
        if last is not None and not last.committing and last.next_offset == after:
            last.verdicts.extend(verdicts)
            last.next_offset = next_offset
            return
        batch = Batch(after=after, next_offset=next_offset, verdicts=verdicts, started=started)
        batch.task = asyncio.create_task(commit(last.task if last is not None else None, batch))
        self._queued[tp] = [*in_flight, batch]

    def tasks(self, partitions: Sequence[TopicPartition]) -> list[asyncio.Task[None]]:
        """The tasks of the batches in flight of ``partitions``."""
        return [b.task for tp in partitions for b in self.in_flight(tp) if b.task is not None]

    async def settle(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Wait for the batches in flight (of ``partitions``; None: of every lane). Their
        commits never raise."""
        tps = list(self._queued) if partitions is None else list(partitions)
        tasks = [b.task for tp in tps for b in self._queued.pop(tp, ()) if b.task is not None]
        if tasks:
            await asyncio.gather(*tasks)

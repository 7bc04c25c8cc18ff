"""A lane's inbox: records fetched for one source partition, waiting for the lane's next batch.

The replicator's fetch loop puts what each fetch brought for a partition into that partition's
inbox and fetches again at once; the lane's own task takes everything waiting (up to a batch)
whenever it is free. So a lane's next batch is fetched while its previous one commits, no lane
waits for another, and batches grow by themselves with the load (whatever came in while a
commit was in flight is the next batch) while staying one fetch small at low rates.

``put`` says when the inbox holds a whole batch: the replicator then pauses the partition
(nothing more is fetched for it) until ``take`` has emptied it below that again. ``clear``
forgets what is waiting (the lane starts over from a checkpoint) and counts a new
``generation``, so that a fetch that was under way meanwhile can tell its records are stale.

Pure: no Kafka client; it never looks inside a record but for its order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["Inbox"]


class Inbox:
    """Records of one partition in fetch order, taken by one lane task."""

    def __init__(self, *, batch: int) -> None:
        if batch < 1:
            raise ValueError("an inbox's batch must be at least 1 record")
        self._batch = batch
        self._records: list[Any] = []
        self._ready = asyncio.Event()
        self.generation = 0
        """Counts ``clear``: records fetched under an older generation are stale."""
        self.closed = False

    def __len__(self) -> int:
        return len(self._records)

    @property
    def full(self) -> bool:
        """True while a whole batch is waiting: fetching more of the partition can wait."""
        return len(self._records) >= self._batch

    def put(self, records: Sequence[Any]) -> bool:
        """Append ``records`` (in fetch order); True if the inbox is ``full`` now. A closed
        inbox takes nothing."""
        if self.closed or not records:
            return self.full
        self._records.extend(records)
        self._ready.set()
        return self.full

    async def take(self) -> list[Any] | None:
        """The records waiting, oldest first, at most a batch; waits while there are none.
        None once the inbox is closed (the lane's task then ends)."""
        while not self._records:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        taken, self._records = self._records[: self._batch], self._records[self._batch :]
        return taken

    def clear(self) -> None:
        """Forget what is waiting: the lane starts over from its checkpoints."""
        self._records = []
        self.generation += 1

    def close(self) -> None:
        """Take nothing more; a ``take`` under way returns None."""
        self.closed = True
        self._records = []
        self.generation += 1
        self._ready.set()

"""A lane: one source partition with its two transactional logs, and how a batch commits on both.

The *source log* writes the audit records and quarantine copies of a batch to the source
cluster with the checkpoint ``audited_until``; the *destination log* writes the released records
to the destination with the checkpoint ``next_offset`` (``_txlog.TxLog`` for both). For each
batch the two commit concurrently. A lane reads from the lower of its two checkpoints, audits
only above the source's and mirrors only above the destination's, so after any crash neither the
audit nor the mirror of a record is skipped, and neither is written twice.

A failed commit, or one whose outcome is unknown, is never aborted: the log is reopened (fencing
its old producer) and its re-read checkpoint says whether the commit landed. The lane retries
with backoff until both logs hold the batch, or gives up as soon as its partition is being
revoked or the worker stops (the next owner redoes the batch from the checkpoints).

The lane knows nothing of the consumer: its replicator gives it the settings, the metrics, a
predicate "revoked or stopping" and a callback to seek its partition, and the logs are a
``Log`` protocol, so the protocol is tested on a fake log without a broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from aiokafka import TopicPartition

from bus._kafka import RETRYABLE
from bus.bridge._metrics import BridgeMetrics
from bus.bridge._outgoing import Outgoing, destination_log_records, source_log_records
from bus.bridge._verdict import Verdict
from bus.bridge.settings import BridgeSettings
from bus.errors import Fenced, TxFailed

__all__ = ["Lane", "Log"]

log = logging.getLogger("bus.bridge")

_FENCED_GRACE_S = 20.0
"""How long a fenced lane waits for its revocation before it takes its partition back."""


class Log(Protocol):
    """A transactional log on one cluster: records and a checkpoint committed atomically."""

    @property
    def where(self) -> str:
        """The checkpoint's topic, partition and cluster, for messages."""
        ...

    async def open(self) -> int:
        """Start a new producer (fencing every earlier one) and read the checkpoint (0: none)."""
        ...

    async def commit(
        self, records: Sequence[Outgoing], *, next_offset: int, bridge_id: str, now: datetime
    ) -> None:
        """Write ``records`` and the checkpoint ``next_offset`` in one transaction; ``TxFailed``
        if it failed or its outcome is unknown, ``Fenced`` if another producer took over."""
        ...

    async def close(self) -> None:
        """Stop the producer, bounded in time."""
        ...


class Lane:
    """One source partition this worker moves, with its two transactional logs."""

    def __init__(
        self,
        *,
        tp: TopicPartition,
        source_log: Log,
        destination_log: Log,
        settings: BridgeSettings,
        metrics: BridgeMetrics,
        audit_partition: int,
        quarantine_partition: int,
        leaving: Callable[[], bool],
        seek: Callable[[TopicPartition, int], None],
        clock: Callable[[], datetime],
    ) -> None:
        """``leaving``: True while the partition is being revoked or the worker stops; ``seek``
        moves the consumer's position of a partition; ``audit_partition`` and
        ``quarantine_partition``: where this partition's audit trail and quarantine copies go."""
        self.tp = tp
        self.source_log = source_log
        self.destination_log = destination_log
        self.next_offset = 0
        """The destination's checkpoint: the first source offset not yet moved."""
        self.audited_until = 0
        """The source's checkpoint: the first source offset whose decision is not yet audited."""
        self.checkpointed_at = time.monotonic()
        self.failing_since: float | None = None
        self._settings = settings
        self._metrics = metrics
        self._labels = (settings.source.name, settings.destination.name)
        self._audit_partition = audit_partition
        self._quarantine_partition = quarantine_partition
        self._leaving = leaving
        self._seek = seek
        self._clock = clock

    @property
    def resume_from(self) -> int:
        """The first source offset this lane still needs: the lower of its two checkpoints."""
        return min(self.next_offset, self.audited_until)

    async def open(self) -> None:
        """Open both logs (every earlier owner fenced) and read their checkpoints."""
        self.audited_until = await self.source_log.open()
        self.next_offset = await self.destination_log.open()

    async def close(self) -> None:
        await self.source_log.close()
        await self.destination_log.close()

    async def commit(self, verdicts: Sequence[Verdict], *, next_offset: int) -> bool:
        """Commit one judged batch, up to source offset ``next_offset - 1``, on both logs.

        True when both logs hold it; False when the lane gave up: its partition is being
        revoked, the worker stops, or another worker moved part of the batch meanwhile (then
        the partition is sought back to where the lane must start over).
        """
        attempt = 0
        while True:
            logs = [
                txlog
                for txlog, done_until in (
                    (self.source_log, self.audited_until),
                    (self.destination_log, self.next_offset),
                )
                if done_until < next_offset
            ]
            if not logs:
                break
            results = await asyncio.gather(
                *(self._commit(txlog, verdicts, next_offset) for txlog in logs),
                return_exceptions=True,
            )
            failed: list[Log] = []
            for txlog, result in zip(logs, results, strict=True):
                if result is None:
                    self._advance(txlog, next_offset)
                elif isinstance(result, TxFailed):
                    self._metrics.aborts.labels(*self._labels).inc()
                    log.warning("bridge %s: %s", self._settings.name, result)
                    failed.append(txlog)
                else:
                    raise result
            if not failed:
                break
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            # Fenced: another worker owns the partition now (its revocation is on the way) or
            # the transaction outlived its timeout: give the group time to revoke first.
            fenced = any(isinstance(r, Fenced) for r in results)
            attempt += 1
            grace = _FENCED_GRACE_S if fenced else self._settings.backoff_s(attempt)
            if await self._left_within(grace):
                return False
            for txlog in failed:
                # The outcome of a failed commit is unknown: the re-read checkpoint says.
                checkpoint = await self._reopen(txlog)
                if checkpoint is None:
                    return False  # revoked or stopping while the cluster was unavailable
                if txlog is self.source_log:
                    self.audited_until = checkpoint
                elif checkpoint >= next_offset or checkpoint == self.next_offset:
                    self.next_offset = checkpoint
                else:
                    # Someone else moved part of this partition meanwhile: start over there.
                    self.next_offset = checkpoint
                    self._seek(self.tp, min(checkpoint, self.audited_until))
                    return False
        self.failing_since = None
        self.checkpointed_at = time.monotonic()
        return True

    async def _commit(self, txlog: Log, verdicts: Sequence[Verdict], next_offset: int) -> None:
        s = self._settings
        if txlog is self.source_log:
            now = self._clock()
            records = source_log_records(
                verdicts,
                audited_until=self.audited_until,
                settings=s,
                audit_partition=self._audit_partition,
                quarantine_partition=self._quarantine_partition,
                now=now,
            )
        else:
            records = destination_log_records(
                verdicts,
                next_offset=self.next_offset,
                settings=s,
                topic=self.tp.topic,
                partition=self.tp.partition,
            )
            now = self._clock()
        await txlog.commit(records, next_offset=next_offset, bridge_id=s.bridge_id, now=now)

    def _advance(self, txlog: Log, next_offset: int) -> None:
        if txlog is self.source_log:
            self.audited_until = next_offset
        else:
            self.next_offset = next_offset

    async def _left_within(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a revocation or a stop is under way."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._leaving():
                return True
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self._leaving()

    async def _reopen(self, txlog: Log) -> int | None:
        """Reopen ``txlog`` (fencing its old producer); its checkpoint, or None if given up."""
        attempt = 0
        while True:
            try:
                return await txlog.open()
            except RETRYABLE as exc:
                attempt += 1
                self._metrics.retries.labels(*self._labels, "reopen").inc()
                log.warning(
                    "bridge %s: cannot reopen %s (%s)", self._settings.name, txlog.where, exc
                )
                if await self._left_within(self._settings.backoff_s(attempt)):
                    await txlog.close()
                    return None

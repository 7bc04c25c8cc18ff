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

An unexpected exception while a batch commits (a bug, or a client error that is not a Kafka
error) is handled like a commit of unknown outcome: logged with its traceback, counted in
``bus_bridge_errors_total``, the log reopened, the batch retried with backoff. Nothing but
cancellation leaves a lane.

The mirror never runs more than one batch ahead of the audit trail: the lane takes no new
batch until both logs hold the current one, so while the audit cannot be written, mirroring
stops too, and ``bus_bridge_lane_blocked{reason="audit"}`` says why (``mirror`` the other way
round, ``error`` for an unexpected exception, ``checkpoint`` for a stopped lane).

Checkpoints are checked before they are trusted, on opening and on every reopening: one that
does not decode or has another key (``_txlog``), names another direction, is ahead of the
source partition's end (last stable offset) or behind its earliest retained offset (records
between were deleted before they were moved) raises an alarm
(``bus_bridge_checkpoint_alarms_total``, one error line) and *stops* the lane: ``stopped`` says
why, and its replicator keeps the partition paused, moving nothing, until a re-check finds the
checkpoint sane again (an operator corrected it), while the other lanes go on.

The lane knows nothing of the consumer: its replicator gives it the settings, the metrics, a
predicate "revoked or stopping", a callback to seek its partition and one that reads the source
partition's bounds, and the logs are a ``Log`` protocol, so the protocol is tested on a fake log
without a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from aiokafka import TopicPartition

from bus._kafka import RETRYABLE
from bus._quote import bounded
from bus.audit_chain import ChainHead
from bus.bridge._checkpoint import Checkpoint
from bus.bridge._metrics import BridgeMetrics
from bus.bridge._outgoing import (
    Outgoing,
    admitted,
    chain_audit_records,
    destination_log_records,
    source_log_records,
)
from bus.bridge._verdict import Verdict
from bus.bridge.settings import BridgeSettings
from bus.errors import CheckpointError, Fenced, TxFailed
from bus.signing import Signer

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

    async def open(self) -> Checkpoint | None:
        """Start a new producer (fencing every earlier one) and read the checkpoint (None: none
        yet); ``CheckpointError`` if the partition's last record is not a checkpoint of it."""
        ...

    async def commit(
        self,
        records: Sequence[Outgoing],
        *,
        next_offset: int,
        bridge_id: str,
        now: datetime,
        audit_head: ChainHead | None = None,
    ) -> None:
        """Write ``records`` and the checkpoint ``next_offset`` (with ``audit_head``, where the
        audit chain stands) in one transaction; ``TxFailed`` if it failed or its outcome is
        unknown, ``Fenced`` if another producer took over."""
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
        source_bounds: Callable[[], Awaitable[tuple[int, int]]],
        clock: Callable[[], datetime],
        chain: str = "",
        audit_signer: Signer | None = None,
    ) -> None:
        """``leaving``: True while the partition is being revoked or the worker stops; ``seek``
        moves the consumer's position of a partition; ``source_bounds``: the source partition's
        earliest retained offset and its end (last stable offset); ``audit_partition`` and
        ``quarantine_partition``: where this partition's audit trail and quarantine copies go;
        ``chain``: the id of this partition's audit chain (``bus.audit_chain.chain_id``, this
        lane its only writer) and ``audit_signer`` the bridge key that signs its heads."""
        self.tp = tp
        self.source_log = source_log
        self.destination_log = destination_log
        self.next_offset = 0
        """The destination's checkpoint: the first source offset not yet moved."""
        self.audited_until = 0
        """The source's checkpoint: the first source offset whose decision is not yet audited."""
        self.checkpointed_at = time.monotonic()
        self.failing_since: float | None = None
        self.stopped: CheckpointError | None = None
        """Why the lane stopped (an untrusted checkpoint), or None while it moves."""
        self.recheck_at = 0.0
        """When its replicator next re-opens a stopped lane to see if it may go on."""
        self._blocked_by: str | None = None
        self._settings = settings
        self._metrics = metrics
        self._labels = (settings.source.name, settings.destination.name)
        self._audit_partition = audit_partition
        self._quarantine_partition = quarantine_partition
        self._leaving = leaving
        self._seek = seek
        self._source_bounds = source_bounds
        self._clock = clock
        self._chain = chain or f"{settings.name}/{tp.topic}/{tp.partition}"
        self._audit_signer = audit_signer
        self.audit_head = ChainHead()
        """Where the audit chain stands after what the source log committed."""
        self._pending_head = ChainHead()

    @property
    def resume_from(self) -> int:
        """The first source offset this lane still needs: the lower of its two checkpoints."""
        return min(self.next_offset, self.audited_until)

    async def open(self) -> None:
        """Open both logs (every earlier owner fenced) and read their checkpoints.

        A checkpoint that cannot be trusted stops the lane (``stopped``; alarm counted and
        logged once per reason) instead of raising; a sane one clears ``stopped``. Kafka errors
        propagate (``RETRYABLE``): the replicator retries.
        """
        try:
            audited_until = self._trusted(await self.source_log.open(), self.source_log)
            next_offset = self._trusted(await self.destination_log.open(), self.destination_log)
            bounds = await self._source_bounds()
            self._check_bounds(audited_until, bounds, self.source_log)
            self._check_bounds(next_offset, bounds, self.destination_log)
        except CheckpointError as exc:
            self._stop(exc)
            return
        self.audited_until, self.next_offset = audited_until, next_offset
        if self.stopped is not None:
            log.warning(
                "bridge %s: %s/%d: its checkpoints are sane again; the lane goes on",
                self._settings.name,
                self.tp.topic,
                self.tp.partition,
            )
            self.stopped = None
        self._block(None)

    async def close(self) -> None:
        await self.source_log.close()
        await self.destination_log.close()

    def forget_metrics(self) -> None:
        """Remove this lane's blocked gauge (its partition left this worker)."""
        self._block(None)

    # --- checkpoints ----------------------------------------------------------------------

    def _trusted(self, checkpoint: Checkpoint | None, txlog: Log) -> int:
        if txlog is self.source_log:
            # The chain goes on from what the committed audit checkpoint says, never from what
            # this process last tried to write (that transaction may not have landed).
            head = checkpoint.audit_head if checkpoint is not None else None
            self.audit_head = head or ChainHead()
        if checkpoint is None:
            return 0
        if checkpoint.direction not in (None, self._settings.name):
            raise CheckpointError(
                f"{txlog.where}: the checkpoint names another direction "
                f"({bounded(checkpoint.direction or '', 60)!r}, not {self._settings.name})",
                reason="foreign",
            )
        return checkpoint.next_offset

    def _check_bounds(self, offset: int, bounds: tuple[int, int], txlog: Log) -> None:
        start, end = bounds
        if offset == 0:
            return  # no checkpoint yet: the lane starts at the earliest retained record
        if offset > end:
            raise CheckpointError(
                f"{txlog.where}: checkpoint {offset} is ahead of the end of source "
                f"{self.tp.topic}/{self.tp.partition} ({end}); records would be skipped",
                reason="ahead-of-source",
            )
        if offset < start:
            raise CheckpointError(
                f"{txlog.where}: checkpoint {offset} is behind the earliest retained offset of "
                f"source {self.tp.topic}/{self.tp.partition} ({start}): records "
                f"{offset}..{start - 1} were deleted before they were moved",
                reason="behind-retention",
            )

    def _stop(self, error: CheckpointError) -> None:
        self.recheck_at = time.monotonic() + self._settings.checkpoint_recheck_s
        if self.stopped is None or self.stopped.reason != error.reason:
            labels = (*self._labels, self.tp.topic, str(self.tp.partition))
            self._metrics.checkpoint_alarms.labels(*labels, error.reason).inc()
            log.error(
                "bridge %s: CHECKPOINT ALARM (%s): %s/%d stopped, nothing of it moves until an "
                "operator acts: %s",
                self._settings.name,
                error.reason,
                self.tp.topic,
                self.tp.partition,
                error,
            )
        self.stopped = error
        self._block("checkpoint")

    def _block(self, reason: str | None) -> None:
        """Set the blocked gauge of this lane to ``reason`` (None: moving)."""
        if reason == self._blocked_by:
            return
        labels = (*self._labels, self.tp.topic, str(self.tp.partition))
        if self._blocked_by is not None:
            with contextlib.suppress(KeyError):
                self._metrics.blocked.remove(*labels, self._blocked_by)
        if reason is not None:
            self._metrics.blocked.labels(*labels, reason).set(1)
        self._blocked_by = reason

    async def commit(self, verdicts: Sequence[Verdict], *, next_offset: int) -> bool:
        """Commit one judged batch, up to source offset ``next_offset - 1``, on both logs.

        True when both logs hold it; False when the lane gave up: its partition is being
        revoked, the worker stops, another worker moved part of the batch meanwhile (then the
        partition is sought back to where the lane must start over), or a re-read checkpoint
        cannot be trusted (then ``stopped`` says why).
        """
        # What would not fit under the record size limit is quarantined, not retried for ever.
        verdicts = admitted(verdicts, settings=self._settings)
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
            unexpected = False
            for txlog, result in zip(logs, results, strict=True):
                if result is None:
                    self._advance(txlog, next_offset)
                elif isinstance(result, TxFailed):
                    self._metrics.aborts.labels(*self._labels).inc()
                    log.warning("bridge %s: %s", self._settings.name, bounded(str(result), 1000))
                    failed.append(txlog)
                elif isinstance(result, Exception):
                    # A bug or a client error that is not a Kafka error: the transaction may be
                    # half written, so handle it like an unknown outcome, never kill the worker.
                    self._metrics.errors.labels(*self._labels, "commit").inc()
                    log.error(
                        "bridge %s: unexpected error committing %s up to source offset %d; "
                        "reopening it and retrying",
                        self._settings.name,
                        txlog.where,
                        next_offset - 1,
                        exc_info=result,
                    )
                    failed.append(txlog)
                    unexpected = True
                else:
                    raise result  # cancellation (a BaseException): never swallowed
            if not failed:
                break
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            self._block(
                "error" if unexpected else "audit" if self.source_log in failed else "mirror"
            )
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
                    return False  # revoked, stopping, or the checkpoint cannot be trusted
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
        self._block(None)
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
            records, self._pending_head = chain_audit_records(
                records,
                audit_topic=s.topics.audit,
                chain=self._chain,
                head=self.audit_head,
                signer=self._audit_signer,
            )
            await txlog.commit(
                records,
                next_offset=next_offset,
                bridge_id=s.bridge_id,
                now=now,
                audit_head=self._pending_head,
            )
            return
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
            self.audit_head = self._pending_head
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
        """Reopen ``txlog`` (fencing its old producer); its checkpoint, or None if given up:
        revoked or stopping meanwhile, or the checkpoint cannot be trusted (``stopped``)."""
        attempt = 0
        while True:
            try:
                offset = self._trusted(await txlog.open(), txlog)
                self._check_bounds(offset, await self._source_bounds(), txlog)
            except CheckpointError as exc:
                await txlog.close()
                self._stop(exc)
                return None
            except Exception as exc:
                attempt += 1
                if isinstance(exc, RETRYABLE):
                    self._metrics.retries.labels(*self._labels, "reopen").inc()
                    log.warning(
                        "bridge %s: cannot reopen %s (%s)",
                        self._settings.name,
                        txlog.where,
                        bounded(str(exc), 1000),
                    )
                else:
                    self._metrics.errors.labels(*self._labels, "reopen").inc()
                    log.exception(
                        "bridge %s: unexpected error reopening %s; retrying",
                        self._settings.name,
                        txlog.where,
                    )
                if await self._left_within(self._settings.backoff_s(attempt)):
                    await txlog.close()
                    return None
            else:
                return offset

"""A transactional log on one cluster: records written together with a checkpoint, atomically.

The bridge keeps two per source partition:

- on the destination, the mirrored records and the next source offset they account for;
- on the source, the audit and quarantine records and the next source offset they account for.

Each has its own transactional id, so opening it (``init_transactions``) fences whichever
process wrote it before and aborts that process's open transaction; only then is its
checkpoint read, and it is exact: the last committed checkpoint record of its partition.
A write whose commit failed or timed out has an unknown outcome: the log is reopened (never
aborted) and the re-read checkpoint tells whether the commit landed.

Only the last record of the checkpoint partition counts (the earlier ones are superseded, and
compaction removes them). If it cannot be read, is not a checkpoint, is a tombstone or has
another key, ``open`` raises ``CheckpointError`` (reason ``undecodable`` or ``foreign``); the
lane decides whether a checkpoint that decodes makes sense (``_lane``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from bus._fetch import Unreadable, fetch
from bus._kafka import client_options, describe, stop_within, within
from bus.audit_chain import ChainHead
from bus.bridge._checkpoint import Checkpoint
from bus.bridge._outgoing import Outgoing
from bus.config import AgencySettings
from bus.errors import CheckpointError, Fenced, TransportError, TxFailed

__all__ = ["TxLog"]


class TxLog:
    """A transactional producer on one cluster and the checkpoint it commits with its records."""

    def __init__(
        self,
        *,
        cluster: AgencySettings,
        transactional_id: str,
        checkpoint_topic: str,
        checkpoint_key: bytes,
        direction: str,
        partition: int,
        client_id: str,
        timeout_s: float,
        transaction_timeout_ms: int,
    ) -> None:
        self.cluster = cluster
        self.transactional_id = transactional_id
        self.checkpoint_topic = checkpoint_topic
        self.checkpoint_key = checkpoint_key
        self.direction = direction
        self.partition = partition
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._transaction_timeout_ms = transaction_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    @property
    def where(self) -> str:
        return f"{self.checkpoint_topic}/{self.partition} on {self.cluster.name}"

    async def open(self) -> Checkpoint | None:
        """Start a new producer (fencing every earlier one) and read the checkpoint (None: none
        yet); ``CheckpointError`` if the partition's last record is not one of ours."""
        await self.close()
        producer = AIOKafkaProducer(
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=960 * 1024,
            transaction_timeout_ms=self._transaction_timeout_ms,
            request_timeout_ms=int(self._timeout_s * 1000),
            **client_options(self.cluster, client_id=self._client_id),
        )
        self._producer = producer
        await asyncio.wait_for(producer.start(), self._timeout_s)
        return await self._read_checkpoint()

    async def close(self) -> None:
        """Stop the producer; bounded, since a producer of an unreachable cluster may hang."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_within(producer)

    async def commit(
        self,
        records: Sequence[Outgoing],
        *,
        next_offset: int,
        bridge_id: str,
        now: datetime,
        audit_head: ChainHead | None = None,
    ) -> None:
        """Write ``records`` and the checkpoint ``next_offset`` (with the audit chain's
        ``audit_head``, on the source) in one transaction."""
        producer = self._producer
        if producer is None:
            raise TxFailed(f"{self.where}: the log is not open")
        checkpoint = Checkpoint(
            next_offset=next_offset,
            direction=self.direction,
            bridge_id=bridge_id,
            written_at=now,
            audit_head=audit_head,
        )
        try:
            # It waits for a producer id with no limit of its own.
            await within(producer.begin_transaction(), self._timeout_s, "beginning")
            for r in records:
                await producer.send(
                    r.topic,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    timestamp_ms=r.timestamp_ms,
                    headers=list(r.headers),
                )
            await producer.send(
                self.checkpoint_topic,
                checkpoint.encode(),
                key=self.checkpoint_key,
                partition=self.partition,
            )
            await within(producer.commit_transaction(), self._timeout_s, "committing")
        except ProducerFenced as exc:
            raise Fenced(f"{self.where}: fenced ({exc})") from exc
        except (KafkaError, TimeoutError, TransportError) as exc:
            raise TxFailed(
                f"transaction up to source offset {next_offset - 1} with checkpoint "
                f"{self.where} failed or has an unknown outcome: {describe(exc)}"
            ) from exc

    @property
    def _reading(self) -> str:
        return f"reading checkpoint {self.where}"

    async def _read_checkpoint(self) -> Checkpoint | None:
        where = TopicPartition(self.checkpoint_topic, self.partition)
        reader = AIOKafkaConsumer(
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(self._timeout_s * 1000),
            **client_options(self.cluster),
        )
        try:
            await asyncio.wait_for(reader.start(), self._timeout_s)
            reader.assign([where])
            # The last stable offset: with every earlier writer fenced, nothing is pending.
            end = (await reader.end_offsets([where]))[where]
            last: Any = None
            if end > 0:
                await reader.seek_to_beginning(where)
                deadline = time.monotonic() + self._timeout_s
                while await within(reader.position(where), self._timeout_s, self._reading) < end:
                    if time.monotonic() > deadline:
                        raise TransportError(f"{self._reading} timed out")
                    # fetch: a record the client cannot parse must not wedge the lane either.
                    batch = await fetch(reader, timeout_ms=500)
                    for record in batch.get(where, ()):
                        last = record
            return None if last is None else self._checkpoint_of(last)
        finally:
            await stop_within(reader)

    def _checkpoint_of(self, record: Any) -> Checkpoint:
        """The checkpoint in the partition's last record; ``CheckpointError`` if it is none."""
        at = f"{self.where}@{record.offset}"
        if isinstance(record, Unreadable):
            raise CheckpointError(f"{at}: the Kafka client cannot read the last record")
        if record.key != self.checkpoint_key:
            raise CheckpointError(
                f"{at}: the last record has another key than this partition's checkpoints "
                f"({len(record.key or b'')} bytes); it was not written by this lane",
                reason="foreign",
            )
        if record.value is None:
            raise CheckpointError(f"{at}: the last record is a tombstone, not a checkpoint")
        return Checkpoint.decode(record.value, where=at)

"""The pass-throughs, the bridge's ceilings: a plain consume -> produce loop between clusters.

- raw: ``getmany`` -> one idempotent producer on the other cluster, same partition, delivery
  awaited per fetch (no verification, no policy: the Python ceiling);
- transactional: a transactional producer per partition and one transaction (the records and a
  small checkpoint) per partition per fetch, the partitions committed one after the other as the
  replicator once did, or concurrently (``concurrent``): exactly once, nothing else.

``PassThrough`` runs in the caller's loop; ``passthrough_child`` runs one in a process of its
own (spawned) until its ``stop`` event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._clusters import PARTITIONS, quiet
from bus.testing import connect

__all__ = ["PassThrough", "passthrough_child"]


class PassThrough:
    """A plain consume -> produce loop between the clusters: no verification, no policy."""

    def __init__(
        self,
        source: str,
        destination: str,
        topic: str,
        mirror: str,
        *,
        transactional: bool = False,
        concurrent: bool = False,
    ) -> None:
        self.source, self.destination = source, destination
        self.topic, self.mirror = topic, mirror
        self.transactional, self.concurrent = transactional, concurrent
        self.done = 0
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()

    def _producer(self, partition: int | None) -> AIOKafkaProducer:
        options: dict[str, Any] = {}
        if partition is not None:
            options["transactional_id"] = f"bench.{self.mirror}.{partition}"
        return AIOKafkaProducer(
            **connect(self.destination),
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=512 * 1024,
            **options,
        )

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **connect(self.source),
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        if self.transactional:
            producers = {p: self._producer(p) for p in range(PARTITIONS)}
        else:
            shared = self._producer(None)
            producers = dict.fromkeys(range(PARTITIONS), shared)
        started: list[Any] = []
        try:
            for client in (consumer, *set(producers.values())):
                await client.start()
                started.append(client)
            consumer.assign([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
            self.ready.set()
            while not self.stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if not self.transactional:
                    futures = [
                        await self._forward(shared, tp, r)
                        for tp, records in batches.items()
                        for r in records
                    ]
                    await asyncio.gather(*futures)
                    self.done += len(futures)
                elif self.concurrent:
                    await asyncio.gather(
                        *(
                            self._transaction(producers[tp.partition], tp, rs)
                            for tp, rs in batches.items()
                        )
                    )
                else:
                    for tp, records in batches.items():
                        await self._transaction(producers[tp.partition], tp, records)
        finally:
            for client in reversed(started):
                with contextlib.suppress(Exception):
                    await client.stop()

    def _forward(self, producer: AIOKafkaProducer, tp: TopicPartition, r: Any) -> Any:
        """``send`` of ``r`` to the mirror's partition of the same number (await it)."""
        return producer.send(
            self.mirror,
            r.value,
            key=r.key,
            partition=tp.partition,
            timestamp_ms=r.timestamp,
            headers=list(r.headers),
        )

    async def _transaction(
        self, producer: AIOKafkaProducer, tp: TopicPartition, records: Sequence[Any]
    ) -> None:
        await producer.begin_transaction()
        for r in records:
            await self._forward(producer, tp, r)
        # A checkpoint in the same transaction, as the replicator writes one.
        await producer.send(
            f"{self.mirror}.checkpoints",
            f'{{"next_offset":{records[-1].offset + 1}}}'.encode(),
            key=f"{tp.topic}/{tp.partition}".encode(),
            partition=tp.partition,
        )
        await producer.commit_transaction()
        self.done += len(records)


def passthrough_child(
    source: str,
    destination: str,
    topic: str,
    mirror: str,
    ready: Any,
    stop: Any,
    **options: bool,
) -> None:
    """A pass-through with ``PassThrough``'s ``options`` in a process; sets ``ready`` once it
    reads, runs until ``stop``."""
    quiet()

    async def work() -> None:
        loop = PassThrough(source, destination, topic, mirror, **options)
        task = asyncio.ensure_future(loop.run())
        await loop.ready.wait()
        ready.set()
        while not stop.is_set() and not task.done():  # noqa: ASYNC110  # a process's event
            await asyncio.sleep(0.05)
        loop.stopping.set()
        await asyncio.wait_for(task, 60)

    asyncio.run(work())

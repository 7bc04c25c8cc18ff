"""The publisher: how an agency's systems put signed events on their own cluster.

::

    async with open_publisher(config, "interpol") as publisher:
        published = await publisher.publish(event)          # returns once the cluster has it
        many = await publisher.publish_many(events)         # pipelined, in order

Each event is checked (``bus.events.validate``, and its ``origin.agency`` must be the
publisher's agency), encoded and signed with the agency's key, and sent
with the correlation id as the Kafka key (so one case stays on one partition, in order) and the
CloudEvents binary-mode headers of ``bus.headers``. The producer is idempotent with
``acks="all"``: ``publish`` returns a ``Published`` (topic, partition, offset) only after every
in-sync replica has the event. At most ``max_in_flight`` events are sent and not yet
acknowledged at any time: ``publish_many`` waits for acknowledgements before sending more
(backpressure). Leaving the ``async with`` flushes everything in flight, then closes.

Events are signed in batches, one Ed25519 signature per batch (``bus.envelope.seal_batch``,
docs/wire-format.md section 7): ``publish_many`` seals up to ``sign_batch`` events (default 256)
at a time; ``publish`` calls that arrive within ``linger_ms`` (default 5 ms) of the first one of
a batch share its signature. That linger is the only delay batching adds: the sealed records go
to the producer at once (its own linger is 0), and each ``publish`` still returns only when the
cluster has its event. The batching task belongs to a task group that ``open_publisher`` owns.

Errors: ``EventError`` for an event that breaks the model (nothing is sent), ``PublishError``
(a ``TransportError``) naming the topic when the cluster did not take an event,
``ConfigError`` when the agency, its key or the options are wrong.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from bus import envelope, events
from bus._kafka import client_options, describe, translated
from bus.batch import MAX_TREE_SIZE
from bus.config import Config
from bus.errors import ConfigError, EventError, PublishError, TransportError
from bus.headers import event_headers, event_key
from bus.metrics import PublisherMetrics
from bus.signing import Signer, SigningKey

__all__ = [
    "COMPRESSION_TYPES",
    "DEFAULT_SIGN_BATCH",
    "Published",
    "Publisher",
    "open_publisher",
]

COMPRESSION_TYPES: Final = ("gzip", "snappy", "lz4", "zstd")
"""Kafka compression codecs; all four are installed with the package (aiokafka's extras)."""

_DEFAULT_MAX_IN_FLIGHT: Final = 10_000
_DEFAULT_LINGER_MS: Final = 5
_DEFAULT_BATCH_BYTES: Final = 256 * 1024
DEFAULT_SIGN_BATCH: Final = 256
"""Most events ``Publisher`` signs with one signature by default."""

_Sealed = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # event id, key, value, headers
_Waiting = tuple[Mapping[str, Any], "asyncio.Future[Published]"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """Where an acknowledged event landed."""

    event_id: str
    topic: str
    partition: int
    offset: int


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Publisher:
    """Publishes signed events to one topic of one agency's cluster (see ``open_publisher``)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        agency: str,
        topic: str,
        signer: Signer,
        max_in_flight: int,
        registry: CollectorRegistry | None,
        sign_batch: int = DEFAULT_SIGN_BATCH,
        linger_ms: float = _DEFAULT_LINGER_MS,
    ) -> None:
        self._producer = producer
        self.agency = agency
        self.topic = topic
        self._signer = signer
        self._window = asyncio.Semaphore(max_in_flight)
        self._sign_batch = sign_batch
        self._linger = linger_ms / 1000
        metrics = PublisherMetrics.on(registry)
        self._ok = metrics.published.labels(agency, topic, "ok")
        self._failed = metrics.published.labels(agency, topic, "error")
        self._latency = metrics.latency.labels(agency, topic)
        self._state = _State.OPEN
        # publish() calls waiting for their batch's signature; run_batches() seals them.
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._drained = asyncio.Event()
        self._batching = False

    def _check(self, event: Mapping[str, Any]) -> None:
        """Raise ``EventError`` unless ``event`` is valid and this publisher's agency's."""
        events.validate(event)
        origin = event["origin"]["agency"]
        if origin != self.agency:
            raise EventError(
                f"origin.agency is {origin!r} but this publisher signs for {self.agency!r}: "
                "an agency publishes only its own events"
            )

    def _seal(self, batch: Sequence[Mapping[str, Any]]) -> list[_Sealed]:
        """Sign checked events with one signature. Raises ``EventError``."""
        values = envelope.seal_batch([dict(event) for event in batch], self._signer)
        return [
            (str(event["event_id"]), event_key(event), value, event_headers(event))
            for event, value in zip(batch, values, strict=True)
        ]

    async def _send(self, sealed: _Sealed) -> asyncio.Future[Any]:
        """Send one sealed event inside the in-flight window: the producer's future, which
        resolves with the record's metadata on the ack (``_published`` reads it)."""
        event_id, key, value, headers = sealed
        await self._window.acquire()
        started = time.perf_counter()
        try:
            sent: asyncio.Future[Any] = await self._producer.send(
                self.topic, value, key=key, headers=headers
            )
        except BaseException as exc:
            self._window.release()
            if isinstance(exc, KafkaError):
                self._failed.inc()
                raise self._error(event_id, exc) from exc
            raise
        sent.add_done_callback(functools.partial(self._acked, started))
        return sent

    def _acked(self, started: float, ack: asyncio.Future[Any]) -> None:
        """Frees the event's place in the window and counts it, once the cluster answered."""
        self._window.release()
        if ack.cancelled() or ack.exception() is not None:
            self._failed.inc()
            return
        self._latency.observe(time.perf_counter() - started)
        self._ok.inc()

    def _published(self, event_id: str, ack: asyncio.Future[Any]) -> Published:
        """What a settled producer future says of ``event_id``; ``PublishError`` if it failed."""
        if ack.cancelled():
            raise PublishError(f"sending event {event_id} was cancelled")
        exc = ack.exception()
        if exc is not None:
            raise self._error(event_id, exc) from exc
        metadata = ack.result()
        return Published(
            event_id=event_id,
            topic=metadata.topic,
            partition=metadata.partition,
            offset=metadata.offset,
        )

    def _error(self, event_id: str, exc: BaseException) -> TransportError:
        return PublishError(
            f"topic {self.topic} on {self.agency}'s cluster did not take event {event_id}: "
            f"{describe(exc)}"
        )

    async def publish(self, event: Mapping[str, Any]) -> Published:
        """Sign and publish ``event``; return where it landed once the cluster has it.

        ``event`` is the in-memory form (``bus.events.from_json`` makes one from JSON). Events
        published within ``linger_ms`` of each other share one signature. ``EventError`` at
        once if the event is invalid (nothing is sent); ``PublishError`` if the cluster did
        not take it. Cancelling the call does not withdraw an event already handed on.
        """
        if self._state is not _State.OPEN:
            raise RuntimeError("this publisher is closed; open a new one with open_publisher")
        self._check(event)
        result: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, result))
        self._arrived.set()
        if len(self._waiting) >= self._sign_batch:
            self._full.set()
        return await result

    async def run_batches(self) -> None:
        """Seal and send what ``publish`` collects, until ``aclose``; run by ``open_publisher``.

        A batch is sealed ``linger_ms`` after its first event, or as soon as it holds
        ``sign_batch`` events. Failures go to the waiting callers, never out of this loop.
        """
        self._batching = True
        try:
            while self._state is _State.OPEN or self._waiting:
                await self._arrived.wait()
                if self._state is _State.OPEN and len(self._waiting) < self._sign_batch:
                    try:
                        async with asyncio.timeout(self._linger):
                            await self._full.wait()
                    except TimeoutError:
                        pass
                batch = self._waiting[: self._sign_batch]
                del self._waiting[: self._sign_batch]
                if len(self._waiting) < self._sign_batch:
                    self._full.clear()
                if not self._waiting and self._state is _State.OPEN:
                    self._arrived.clear()
                await self._send_waiting(batch)
        finally:
            # Only a cancellation gets here with callers still waiting: tell them.
            for _, result in self._waiting:
                _fail(result, PublishError("the publisher stopped before sending the event"))
            self._waiting.clear()
            self._drained.set()

    async def _send_waiting(self, batch: list[_Waiting]) -> None:
        try:
            sealed = self._seal([event for event, _ in batch])
        except EventError:
            # Validated events that still do not encode: find them, one by one.
            sealed = []
            kept = []
            for event, result in batch:
                try:
                    sealed.extend(self._seal([event]))
                    kept.append((event, result))
                except EventError as exc:
                    _fail(result, exc)
            batch = kept
        for (_, result), one in zip(batch, sealed, strict=True):
            try:
                sending = await self._send(one)
            except Exception as exc:  # the caller's to see; this loop serves the others
                _fail(result, exc)
                continue
            sending.add_done_callback(functools.partial(self._settle, result, one[0]))

    def _settle(
        self, result: asyncio.Future[Published], event_id: str, ack: asyncio.Future[Any]
    ) -> None:
        """Settle a ``publish`` caller's ``result`` as the producer's ``ack`` settled (the
        caller may have given up meanwhile)."""
        if result.done():
            return
        try:
            result.set_result(self._published(event_id, ack))
        except PublishError as exc:
            result.set_exception(exc)

    async def publish_many(self, batch: Iterable[Mapping[str, Any]]) -> list[Published]:
        """Publish events in order, pipelined; return once the cluster has all of them.

        Events are signed ``sign_batch`` at a time (one signature each time), without waiting
        for the linger. Sending pauses while ``max_in_flight`` events await acknowledgement.
        If an event is invalid, nothing after it is sent and ``EventError`` is raised once the
        events before it are acknowledged. If the cluster refuses some, ``PublishError`` names
        the first and counts them; events that were acknowledged stay published (publishing
        them again makes duplicates that subscribers with de-duplication skip).
        """
        if self._state is not _State.OPEN:
            raise RuntimeError("this publisher is closed; open a new one with open_publisher")
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        failure: BaseException | None = None
        chunk: list[Mapping[str, Any]] = []
        events_left = iter(batch)
        try:
            while failure is None:
                chunk.clear()
                for event in events_left:
                    try:
                        self._check(event)
                    except EventError as exc:
                        failure = exc
                        break
                    chunk.append(event)
                    if len(chunk) >= self._sign_batch:
                        break
                if not chunk:
                    break
                for sealed in self._seal(chunk):
                    pending.append((sealed[0], await self._send(sealed)))
        except (EventError, PublishError) as exc:
            failure = exc
        for _, sent in pending:  # in order: most are settled by the time they are reached
            if not sent.done():
                await asyncio.wait((sent,))
        results: list[Published | PublishError] = []
        for event_id, sent in pending:
            try:
                results.append(self._published(event_id, sent))
            except PublishError as exc:
                results.append(exc)
        errors = [r for r in results if isinstance(r, PublishError)]
        if failure is not None:
            raise failure
        if errors:
            raise PublishError(
                f"{len(errors)} of {len(results)} events were not taken by topic {self.topic}; "
                f"first: {errors[0]}"
            ) from errors[0]
        return [r for r in results if isinstance(r, Published)]

    async def flush(self) -> None:
        """Wait until every event sent so far is acknowledged (or failed)."""
        await self._producer.flush()

    async def aclose(self) -> None:
        """Seal and send what ``publish`` calls are waiting for, flush what is in flight and
        close; later ``publish`` calls raise ``RuntimeError``."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._arrived.set()
        self._full.set()
        if self._batching:
            await self._drained.wait()
        await self._producer.stop()


def _fail(result: asyncio.Future[Published], exc: BaseException) -> None:
    if not result.done():  # a caller that gave up has a cancelled future
        result.set_exception(exc)


@asynccontextmanager
async def open_publisher(
    config: Config,
    agency: str,
    *,
    signer: Signer | None = None,
    topic: str | None = None,
    compression: str | None = None,
    max_in_flight: int = _DEFAULT_MAX_IN_FLIGHT,
    linger_ms: float = _DEFAULT_LINGER_MS,
    sign_batch: int = DEFAULT_SIGN_BATCH,
    max_batch_bytes: int = _DEFAULT_BATCH_BYTES,
    request_timeout_ms: int = 30_000,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Publisher]:
    """A started ``Publisher`` for ``agency``'s cluster; flushed and closed on exit.

    ``signer`` defaults to the agency's ``signing_key`` from the configuration; ``topic`` to
    ``config.topics.events``. ``compression`` is one of ``COMPRESSION_TYPES`` or ``None``.
    ``linger_ms`` (default 5) is the longest a ``publish`` waits for others to share its
    signature and its produce request, ``sign_batch`` (default 256, at most
    ``bus.batch.MAX_TREE_SIZE``) the most events one signature covers; with
    ``max_batch_bytes`` they trade latency for throughput. ``linger_ms=0`` seals what arrived
    in the same turn of the event loop.
    """
    settings = config.agency(agency)
    if signer is None:
        if settings.signing_key is None:
            raise ConfigError(
                f"{config.path or 'configuration'}: agencies.{agency}.signing_key is not set; "
                "a publisher needs the agency's private key (bus keys generate)"
            )
        signer = SigningKey.load(settings.signing_key)
    if compression is not None and compression not in COMPRESSION_TYPES:
        raise ConfigError(
            f"compression {compression!r}: use one of {', '.join(COMPRESSION_TYPES)} or none"
        )
    if max_in_flight < 1:
        raise ConfigError(f"max_in_flight {max_in_flight}: give at least 1")
    if not 1 <= sign_batch <= MAX_TREE_SIZE:
        raise ConfigError(f"sign_batch {sign_batch}: give 1 to {MAX_TREE_SIZE}")
    if linger_ms < 0:
        raise ConfigError(f"linger_ms {linger_ms}: give 0 or more")
    topic = topic or config.topics.events
    try:
        producer = AIOKafkaProducer(
            **client_options(settings, client_id=f"bus-publisher-{agency}"),
            acks="all",
            enable_idempotence=True,
            compression_type=compression,
            # The publisher lingers before signing; what it sends then is a batch already.
            linger_ms=0,
            max_batch_size=max_batch_bytes,
            request_timeout_ms=request_timeout_ms,
        )
    except (AssertionError, RuntimeError, ValueError) as exc:
        # aiokafka checks codec availability and option ranges in the constructor.
        raise ConfigError(f"publisher options for {agency}: {exc}") from exc
    try:
        with translated(
            f"cannot connect a publisher to {agency}'s cluster at "
            f"{', '.join(settings.bootstrap_servers)}"
        ):
            await producer.start()
    except TransportError:
        await producer.stop()
        raise
    publisher = Publisher(
        producer,
        agency=agency,
        topic=topic,
        signer=signer,
        max_in_flight=max_in_flight,
        registry=registry,
        sign_batch=sign_batch,
        linger_ms=linger_ms,
    )
    failure: BaseException | None = None
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(publisher.run_batches(), name=f"bus-publisher-{agency}-batches")
        try:
            yield publisher
        except BaseException as exc:  # re-raised below, outside the task group, as it came
            failure = exc
        finally:
            await publisher.aclose()
    if failure is not None:
        raise failure

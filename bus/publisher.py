"""The publisher: how an agency's systems put signed events on their own cluster.

::

    async with open_publisher(config, "interpol") as publisher:
        published = await publisher.publish(event)          # returns once the cluster has it
        many = await publisher.publish_many(events)         # pipelined, in order

Each event is checked (``bus.events.validate``, and its ``origin.agency`` must be the
publisher's agency), encoded and signed with the agency's key (``bus.envelope.seal``), and sent
with the correlation id as the Kafka key (so one case stays on one partition, in order) and the
CloudEvents binary-mode headers of ``bus.headers``. The producer is idempotent with
``acks="all"``: ``publish`` returns a ``Published`` (topic, partition, offset) only after every
in-sync replica has the event. At most ``max_in_flight`` events are sent and not yet
acknowledged at any time: ``publish_many`` waits for acknowledgements before sending more
(backpressure). Leaving the ``async with`` flushes everything in flight, then closes.

Errors: ``EventError`` for an event that breaks the model (nothing is sent), ``PublishError``
(a ``TransportError``) naming the topic when the cluster did not take an event,
``ConfigError`` when the agency, its key or the options are wrong.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from bus import envelope, events
from bus._kafka import client_options, describe, translated
from bus.config import Config
from bus.errors import ConfigError, EventError, PublishError, TransportError
from bus.headers import event_headers, event_key
from bus.metrics import PublisherMetrics
from bus.signing import Signer, SigningKey

__all__ = [
    "COMPRESSION_TYPES",
    "Published",
    "Publisher",
    "open_publisher",
]

COMPRESSION_TYPES: Final = ("gzip", "snappy", "lz4", "zstd")
"""Kafka compression codecs; all four are installed with the package (aiokafka's extras)."""

_DEFAULT_MAX_IN_FLIGHT: Final = 10_000
_DEFAULT_LINGER_MS: Final = 5
_DEFAULT_BATCH_BYTES: Final = 256 * 1024


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
    ) -> None:
        self._producer = producer
        self.agency = agency
        self.topic = topic
        self._signer = signer
        self._window = asyncio.Semaphore(max_in_flight)
        metrics = PublisherMetrics.on(registry)
        self._ok = metrics.published.labels(agency, topic, "ok")
        self._failed = metrics.published.labels(agency, topic, "error")
        self._latency = metrics.latency.labels(agency, topic)
        self._state = _State.OPEN

    def _seal(self, event: Mapping[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Check and sign ``event``: (key, value, headers). Raises ``EventError``."""
        events.validate(event)
        origin = event["origin"]["agency"]
        if origin != self.agency:
            raise EventError(
                f"origin.agency is {origin!r} but this publisher signs for {self.agency!r}: "
                "an agency publishes only its own events"
            )
        value = envelope.seal(dict(event), self._signer)
        return event_key(event), value, event_headers(event)

    async def _send(self, event: Mapping[str, Any]) -> asyncio.Future[Published]:
        """Sign and send one event inside the in-flight window; the future resolves on the ack."""
        if self._state is not _State.OPEN:
            raise RuntimeError("this publisher is closed; open a new one with open_publisher")
        key, value, headers = self._seal(event)
        event_id = str(event["event_id"])
        await self._window.acquire()
        started = time.perf_counter()
        try:
            sent = await self._producer.send(self.topic, value, key=key, headers=headers)
        except BaseException as exc:
            self._window.release()
            if isinstance(exc, KafkaError):
                self._failed.inc()
                raise self._error(event_id, exc) from exc
            raise
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Published] = loop.create_future()

        def done(ack: asyncio.Future[Any]) -> None:
            self._window.release()
            if ack.cancelled():
                self._failed.inc()
                result.set_exception(PublishError(f"sending event {event_id} was cancelled"))
                return
            exc = ack.exception()
            if exc is not None:
                self._failed.inc()
                result.set_exception(self._error(event_id, exc))
                return
            metadata = ack.result()
            self._latency.observe(time.perf_counter() - started)
            self._ok.inc()
            result.set_result(
                Published(
                    event_id=event_id,
                    topic=metadata.topic,
                    partition=metadata.partition,
                    offset=metadata.offset,
                )
            )

        sent.add_done_callback(done)
        return result

    def _error(self, event_id: str, exc: BaseException) -> TransportError:
        return PublishError(
            f"topic {self.topic} on {self.agency}'s cluster did not take event {event_id}: "
            f"{describe(exc)}"
        )

    async def publish(self, event: Mapping[str, Any]) -> Published:
        """Sign and publish ``event``; return where it landed once the cluster has it.

        ``event`` is the in-memory form (``bus.events.from_json`` makes one from JSON).
        """
        return await (await self._send(event))

    async def publish_many(self, batch: Iterable[Mapping[str, Any]]) -> list[Published]:
        """Publish events in order, pipelined; return once the cluster has all of them.

        Sending pauses while ``max_in_flight`` events await acknowledgement. If an event is
        invalid, nothing after it is sent and ``EventError`` is raised once the events before
        it are acknowledged. If the cluster refuses some, ``PublishError`` names the first and
        counts them; events that were acknowledged stay published (publishing them again makes
        duplicates that subscribers with de-duplication skip).
        """
        pending: list[asyncio.Future[Published]] = []
        failure: BaseException | None = None
        try:
            for event in batch:
                pending.append(await self._send(event))
        except (EventError, PublishError) as exc:
            failure = exc
        results = await asyncio.gather(*pending, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
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
        """Flush what is in flight and close; later ``publish`` calls raise ``RuntimeError``."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._producer.stop()


@asynccontextmanager
async def open_publisher(
    config: Config,
    agency: str,
    *,
    signer: Signer | None = None,
    topic: str | None = None,
    compression: str | None = None,
    max_in_flight: int = _DEFAULT_MAX_IN_FLIGHT,
    linger_ms: int = _DEFAULT_LINGER_MS,
    max_batch_bytes: int = _DEFAULT_BATCH_BYTES,
    request_timeout_ms: int = 30_000,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Publisher]:
    """A started ``Publisher`` for ``agency``'s cluster; flushed and closed on exit.

    ``signer`` defaults to the agency's ``signing_key`` from the configuration; ``topic`` to
    ``config.topics.events``. ``compression`` is one of ``COMPRESSION_TYPES`` or ``None``.
    ``linger_ms`` and ``max_batch_bytes`` trade latency for throughput.
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
    topic = topic or config.topics.events
    try:
        producer = AIOKafkaProducer(
            **client_options(settings, client_id=f"bus-publisher-{agency}"),
            acks="all",
            enable_idempotence=True,
            compression_type=compression,
            linger_ms=linger_ms,
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
    )
    try:
        yield publisher
    finally:
        await publisher.aclose()

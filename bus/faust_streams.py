"""Verified events in Faust agents: an app that reads the bus safely, topics of raw bytes, and
``verified(stream)``.

::

    app = create_app(config, "europol", "case-indexer")      # a faust.App for europol's cluster
    feeds = VerifiedStreams(app, config, "europol")
    topic = feeds.topic("interpol.intel.events", "intel.events")

    @app.agent(topic)
    async def index(stream):
        async for delivery in feeds.verified(stream):        # only verified, released events
            await store(delivery.event)

Why not a Faust codec: a codec runs inside Faust's consumer, cannot await a quarantine write,
and an exception in it makes Faust acknowledge the record and throw into the agent. So the
topics carry raw bytes (``raw`` key and value serializers), and ``verified`` judges each event
in the agent's own task through an ``EventGate`` (``bus.streams``): a rejected record is
written to ``bus.quarantine`` with its reason, and Faust acknowledges it only after the
cluster acknowledged that copy (Faust acks an event when the stream is asked for the next one;
``verified`` asks only once the copy is stored). Quarantining is retried, with backoff, for as
long as it fails: an agent that let the exception escape would acknowledge the record
unrecorded. An event that was yielded counts as handled (for replays) when the agent asks for
the next one.

``create_app`` sets what a Faust app on the bus needs (see ``faust_settings``):

- the agency's bootstrap servers, and mutual TLS with the applications' certificate;
- ``read_committed`` isolation: bridges write mirrored feeds in transactions, and Faust's
  consumer reads uncommitted records unless its app runs exactly-once transactions, which
  the applications' principal may not; an aborted copy would be read as an event;
- no leader topic and no topic declaration: the applications' principal may not create
  topics (``docs/security.md``); the topics exist (the bus creates them, or their owners).

Faust's own gotchas apply (``docs/streams.md``): an exception escaping the agent's loop
acknowledges the event it was handling; keep ``concurrency=1``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import faust
import mode
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import CollectorRegistry

from bus._kafka import ssl_context
from bus._quote import bounded
from bus.config import Config
from bus.errors import TransportError
from bus.streams import EventGate, gate_for
from bus.subscriber import Delivery, Rejection

__all__ = ["VerifiedStreams", "create_app", "faust_settings"]

log = logging.getLogger("bus.faust_streams")

_BACKOFF_S: Final = 0.5
_MAX_BACKOFF_S: Final = 10.0


def faust_settings(config: Config, agency: str) -> dict[str, Any]:
    """Faust settings for an app on ``agency``'s cluster (module docs); add your own."""
    settings = config.agency(agency)
    options: dict[str, Any] = {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_servers],
        "topic_disable_leader": True,
        "topic_allow_declare": False,
        "consumer_auto_offset_reset": "earliest",
    }
    if settings.tls is not None:
        options["broker_credentials"] = faust.SSLCredentials(ssl_context(settings.tls))
    return options


class _CommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read at construction and used when the consumer starts (its fetcher): only the
        # committed records of the bridges' transactions.
        consumer._isolation_level = "read_committed"
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _BusApp(faust.App):
    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def create_app(config: Config, agency: str, app_id: str, **options: Any) -> faust.App:
    """A ``faust.App`` named ``app_id`` (its consumer group) on ``agency``'s cluster, with
    ``faust_settings``; ``options`` are further Faust settings (``web_port``, ``datadir``...)."""
    return _BusApp(app_id, **{**faust_settings(config, agency), **options})


class VerifiedStreams(mode.Service):
    """Verified events for the agents of ``app``, rejected records quarantined (module docs).

    A service of the app (started and stopped with it; it closes the quarantine producer).
    ``gate_options`` are those of ``bus.streams.gate_for`` (``dedup_capacity``,
    ``require_release``, ``trust``...); the quarantine's ``bus_consumer`` names the app.
    """

    def __init__(
        self,
        app: faust.App,
        config: Config,
        agency: str,
        *,
        registry: CollectorRegistry | None = None,
        on_rejected: Callable[[Rejection], None] | None = None,
        **gate_options: Any,
    ) -> None:
        self.app = app
        self.gate: EventGate = gate_for(
            config,
            agency,
            consumer=str(app.conf.id),
            registry=registry,
            on_rejected=on_rejected,
            **gate_options,
        )
        super().__init__()
        app.service(self)  # type: ignore[arg-type]  # instances are started too

    def topic(self, *topics: str, **options: Any) -> Any:
        """``app.topic`` for the bus's topics: raw bytes in, for ``verified``."""
        return self.app.topic(
            *topics,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            **options,
        )

    async def verified(self, stream: Any) -> AsyncIterator[Delivery]:
        """The verified events of ``stream`` (a stream of ``topic``'s raw records)."""
        async for event in stream.events():
            message = event.message
            record = _MessageRecord(message)
            delivery = await self._admit(record)
            if delivery is None:
                continue  # quarantined (stored) or a replay: Faust acks it now
            yield delivery
            self.gate.done(delivery)  # the agent asked for the next one: handled

    async def _admit(self, record: _MessageRecord) -> Delivery | None:
        attempt = 0
        while True:
            try:
                return await self.gate.admit(record)
            except TransportError as exc:
                # Not transient (say the quarantine topic is not writable): an operator must
                # act; meanwhile nothing is acknowledged unrecorded.
                attempt += 1
                log.warning(
                    "%s/%d@%d on %s's cluster could not be quarantined, retrying: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    self.gate.agency,
                    bounded(str(exc), 1000),
                )
                await asyncio.sleep(min(_MAX_BACKOFF_S, _BACKOFF_S * 2 ** min(attempt, 10)))

    async def on_stop(self) -> None:
        await self.gate.aclose()


class _MessageRecord:
    """A Faust ``Message`` as a ``bus.records.SourceRecord`` (its timestamp in milliseconds)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, message: Any) -> None:
        self.topic: str = message.topic
        self.partition: int = message.partition
        self.offset: int = message.offset
        self.timestamp: int = round(message.timestamp * 1000)  # Faust keeps seconds
        self.key: bytes | None = message.key
        self.value: bytes | None = message.value
        headers = message.headers or ()
        if isinstance(headers, dict):
            headers = headers.items()
        self.headers: tuple[tuple[str, bytes], ...] = tuple(headers)

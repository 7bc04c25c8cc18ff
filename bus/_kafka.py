"""The boundary to aiokafka: client options from the settings, and aiokafka's errors translated.

Everything that turns ``bus.config`` settings into aiokafka arguments lives here, so that the
configuration stays plain data (``bus.config`` imports no Kafka client) and every client of a
cluster connects the same way: its bootstrap servers, mutual TLS when the agency's settings
have a ``[tls]`` table, and a client id that names who it is in the brokers' logs and quotas.

The other half is what comes back: aiokafka raises its own ``KafkaError`` tree. At the edge of
the transport (publisher, subscriber, quarantine, the CLI's readers) it becomes a
``TransportError`` naming what was being done where (``translated``); the bridge's retry loops
retry exactly ``RETRYABLE``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.helpers import create_ssl_context

from bus.config import AgencySettings, TlsSettings
from bus.errors import ConfigError, TransportError

__all__ = [
    "RETRYABLE",
    "STOP_TIMEOUT_S",
    "client_options",
    "describe",
    "is_transient",
    "new_topic",
    "ssl_context",
    "stop_within",
    "translated",
    "within",
]

RETRYABLE: Final = (KafkaError, TransportError, TimeoutError, OSError)
"""What a cluster that is away, slow or electing a leader raises: worth a retry with backoff.

A ``TransportError`` is in it because the bus's own transport code (a checkpoint read that
timed out, a ``TxFailed``) reports the same conditions with a message that says where.
"""

_T = TypeVar("_T")

STOP_TIMEOUT_S: Final = 5.0
"""How long :func:`stop_within` waits for a client to stop by default."""


async def stop_within(client: Any, seconds: float = STOP_TIMEOUT_S) -> bool:
    """Stop an aiokafka consumer or producer, giving up after ``seconds``; True if it stopped.

    ``stop()`` waits until every socket of the client is closed, and a socket with data still
    to send to a cluster behind a partition may take as long as the kernel keeps retrying: a
    worker that awaited it unbounded would sit there, silent. Its errors (``RETRYABLE``) are
    swallowed too: a client being thrown away has nothing left to report.
    """
    try:
        await asyncio.wait_for(client.stop(), seconds)
    except RETRYABLE:
        return False
    return True


async def within(action: Awaitable[_T], seconds: float, what: str) -> _T:
    """Await ``action`` for at most ``seconds``; then ``TransportError("<what>: no answer within
    ...")``, which the bridge's retry loops retry (``RETRYABLE``).

    For the aiokafka calls that wait with no limit of their own while a cluster is away:
    ``position()`` after a seek waits for an offset reset, ``begin_transaction()`` for a
    producer id, ``commit()`` for a group coordinator. A worker awaiting one of them behind a
    partition would sit there for ever, alive, silent and moving nothing.
    """
    try:
        return await asyncio.wait_for(action, seconds)
    except TimeoutError as exc:
        raise TransportError(f"{what}: no answer within {seconds:g} s") from exc


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The client side of mutual TLS: trust ``ca_file``, present ``cert_file``/``key_file``.

    The brokers' certificates are checked against ``ca_file`` and their names (SAN) against
    the bootstrap address. A file that is missing or unreadable, or a key that does not match
    its certificate, is a ConfigError naming the files (never their contents).
    """
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(tls.ca_file),
            certfile=str(tls.cert_file),
            keyfile=str(tls.key_file),
        )
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"TLS: cannot load the CA {tls.ca_file} or the certificate {tls.cert_file} with its "
            f"key {tls.key_file} ({type(exc).__name__}: {reason}); check the paths in the "
            "configuration's [tls] table and that the key belongs to the certificate"
        ) from exc
    return context


def client_options(agency: AgencySettings, *, client_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client of ``agency``'s cluster: servers, security and,
    when given, the ``client_id`` (``bus-<role>-<agency>`` for the library's own clients)."""
    options: dict[str, Any] = {"bootstrap_servers": list(agency.bootstrap_servers)}
    if agency.tls is not None:
        options["security_protocol"] = "SSL"
        options["ssl_context"] = ssl_context(agency.tls)
    if client_id is not None:
        options["client_id"] = client_id
    return options


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (a ``TransportError`` from ``translated``, or an aiokafka error) is worth
    a retry: a broker away, slow, or electing a leader or coordinator (aiokafka's
    ``retriable`` errors and its timeouts). Not transient: authorization failures, a topic or
    partition that does not exist (deleted), and the rest, which need an operator."""
    cause = exc.__cause__ if isinstance(exc, TransportError) else exc
    if isinstance(cause, UnknownTopicOrPartitionError):
        return False
    if isinstance(cause, KafkaTimeoutError | TimeoutError):
        return True
    return isinstance(cause, KafkaError) and bool(cause.retriable)


def describe(exc: BaseException) -> str:
    """``KafkaTimeoutError: ...``: an aiokafka error for a message (never a record's contents:
    aiokafka's messages name brokers, topics and error codes)."""
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def translated(what: str, *, error: type[TransportError] = TransportError) -> Iterator[None]:
    """Raise ``error("<what>: <aiokafka error>")`` from any ``KafkaError`` raised inside.

    ``what`` says what was being done, and where: "reading intel.events on interpol's cluster".
    """
    try:
        yield
    except KafkaError as exc:
        raise error(f"{what}: {describe(exc)}") from exc


def new_topic(name: str, partitions: int, configs: dict[str, str] | None = None) -> NewTopic:
    """A topic to create with the cluster's own replication: its ``default.replication.factor``
    (and, unless ``configs`` say otherwise, its ``min.insync.replicas``).

    So what the bus creates by itself (the bridge's mirrors and checkpoints) is replicated as
    the operators of the cluster set it: 3 and 2 on ``bus local up --brokers 3``. CreateTopics
    takes -1 for "the broker's default" (KIP-464); aiokafka's ``NewTopic`` refuses it without a
    replica assignment, so it is set after construction. Kafka 4's controller reads it at every
    request version aiokafka speaks (v0-v3); ``docs/decisions/0016-replicated-clusters.md``.
    """
    topic = NewTopic(name, partitions, 1, topic_configs=configs)
    topic.replication_factor = -1
    return topic

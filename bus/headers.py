"""Kafka record headers: CloudEvents binary mode on events, reason headers on quarantine records.

Events (CloudEvents Kafka protocol binding 1.0, binary content mode). The Kafka value is the
event data (the signed, single-object-encoded ``SignedEvent``); the attributes are headers:

===================  ======================================================================
``ce_specversion``   ``1.0``
``ce_id``            the event's ``event_id`` (canonical UUID text)
``ce_source``        ``/agencies/<origin.agency>/units/<origin.unit>``
``ce_type``          ``int.exchangebus.intel.v1`` (the ``IntelligenceEvent`` major version)
``ce_time``          ``created_at`` in RFC 3339, UTC, with microseconds
``content-type``     ``application/avro`` (Avro single-object encoding, see wire-format.md)
===================  ======================================================================

Values are UTF-8. Headers are routing hints and observability only: nothing reads them to make
a security decision. They are unsigned, so a bridge never copies them: it regenerates them from
the verified event (``event_headers``), as it derives the mirrored record's key (``event_key``).

Quarantine records keep the original record's key, value, timestamp and headers (in their
original order), then add ours, all prefixed ``bus_``:

===========================  ================================================================
``bus_reason``               the ``RecordRejected.reason`` code (``bad-signature``, ...)
``bus_error``                the error message (names where; never payload or key material)
``bus_source_topic``         topic of the rejected record
``bus_source_partition``     its partition (decimal)
``bus_source_offset``        its offset (decimal)
``bus_quarantined_at``       when it was quarantined, RFC 3339 UTC
``bus_consumer``             who quarantined it (consumer group or bridge name); optional
``bus_value_omitted``        the original value's size, when it was too large to copy
===========================  ================================================================

An original header whose name is one of those is renamed ``bus_original_<name>``, so that the
quarantine headers are always the last word and appear exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

# RFC 3339, UTC, microseconds, ``Z`` (``2026-03-01T09:30:00.000000Z``); kept under its old name.
from bus._time import format_time as rfc3339

__all__ = [
    "Headers",
    "CE_SPECVERSION",
    "CE_ID",
    "CE_SOURCE",
    "CE_TYPE",
    "CE_TIME",
    "CONTENT_TYPE",
    "SPEC_VERSION",
    "EVENT_TYPE",
    "AVRO_CONTENT_TYPE",
    "REASON",
    "ERROR",
    "SOURCE_TOPIC",
    "SOURCE_PARTITION",
    "SOURCE_OFFSET",
    "QUARANTINED_AT",
    "CONSUMER",
    "VALUE_OMITTED",
    "QUARANTINE_HEADERS",
    "ORIGINAL_PREFIX",
    "MAX_ERROR_LENGTH",
    "event_headers",
    "event_key",
    "event_source",
    "quarantine_headers",
    "header_value",
    "rfc3339",
]

Headers = Sequence[tuple[str, bytes]]
"""Kafka record headers as aiokafka gives and takes them: ``(name, value)`` pairs, in order."""

CE_SPECVERSION: Final = "ce_specversion"
CE_ID: Final = "ce_id"
CE_SOURCE: Final = "ce_source"
CE_TYPE: Final = "ce_type"
CE_TIME: Final = "ce_time"
CONTENT_TYPE: Final = "content-type"

SPEC_VERSION: Final = "1.0"
EVENT_TYPE: Final = "int.exchangebus.intel.v1"
AVRO_CONTENT_TYPE: Final = "application/avro"

REASON: Final = "bus_reason"
ERROR: Final = "bus_error"
SOURCE_TOPIC: Final = "bus_source_topic"
SOURCE_PARTITION: Final = "bus_source_partition"
SOURCE_OFFSET: Final = "bus_source_offset"
QUARANTINED_AT: Final = "bus_quarantined_at"
CONSUMER: Final = "bus_consumer"
VALUE_OMITTED: Final = "bus_value_omitted"

QUARANTINE_HEADERS: Final = frozenset(
    {
        REASON,
        ERROR,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        QUARANTINED_AT,
        CONSUMER,
        VALUE_OMITTED,
    }
)
"""The names of the headers a quarantine record gets on top of the original ones."""

ORIGINAL_PREFIX: Final = "bus_original_"
"""Prefix given to an original header that has the name of a quarantine header."""

MAX_ERROR_LENGTH: Final = 1000
"""``bus_error`` is cut to this many characters (a record's headers must stay small)."""


def event_source(event: Mapping[str, Any]) -> str:
    """The CloudEvents ``source`` of an event: ``/agencies/<agency>/units/<unit>``."""
    origin = event["origin"]
    return f"/agencies/{origin['agency']}/units/{origin['unit']}"


def event_key(event: Mapping[str, Any]) -> bytes:
    """The Kafka key of an event: its ``correlation_id`` (UTF-8), else its ``event_id``.

    One case keeps its order on one partition. Publishers key by it, and a bridge derives the
    mirrored record's key from the verified event with it, never from the record's own key.
    """
    return str(event.get("correlation_id") or event["event_id"]).encode()


def event_headers(event: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """The CloudEvents binary-mode headers of an in-memory event (see the module docstring)."""
    return [
        (CE_SPECVERSION, b"1.0"),
        (CE_ID, str(event["event_id"]).encode()),
        (CE_SOURCE, event_source(event).encode()),
        (CE_TYPE, EVENT_TYPE.encode()),
        (CE_TIME, rfc3339(event["created_at"]).encode()),
        (CONTENT_TYPE, AVRO_CONTENT_TYPE.encode()),
    ]


def quarantine_headers(
    original: Iterable[tuple[str, bytes]] | None,
    *,
    reason: str,
    error: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    quarantined_at: datetime,
    consumer: str | None = None,
    value_omitted: int | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a quarantine record: the original ones, then the reason headers.

    An original header named like a quarantine header is renamed with ``ORIGINAL_PREFIX``.
    ``error`` is cut to ``MAX_ERROR_LENGTH`` characters. ``value_omitted`` is the size of a
    value that was too large to copy into the quarantine record.
    """
    headers = [
        (ORIGINAL_PREFIX + name if name in QUARANTINE_HEADERS else name, value)
        for name, value in original or ()
    ]
    if len(error) > MAX_ERROR_LENGTH:
        error = error[: MAX_ERROR_LENGTH - 3] + "..."
    headers += [
        (REASON, reason.encode()),
        (ERROR, error.encode()),
        (SOURCE_TOPIC, source_topic.encode()),
        (SOURCE_PARTITION, str(source_partition).encode()),
        (SOURCE_OFFSET, str(source_offset).encode()),
        (QUARANTINED_AT, rfc3339(quarantined_at).encode()),
    ]
    if consumer is not None:
        headers.append((CONSUMER, consumer.encode()))
    if value_omitted is not None:
        headers.append((VALUE_OMITTED, str(value_omitted).encode()))
    return headers


def header_value(headers: Iterable[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """The value of the last header called ``name``, or ``None``."""
    found = None
    for key, value in headers or ():
        if key == name:
            found = value
    return found

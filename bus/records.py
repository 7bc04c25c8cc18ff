"""The source-record model and the quarantine's records, as data: no Kafka client here.

A ``SourceRecord`` is what the bus needs of a record read from a topic (aiokafka's
``ConsumerRecord`` has it; the unit tests pass a dataclass). When a record is rejected,
``quarantine_copy`` builds what goes to the quarantine topic: the original key, value bytes,
timestamp and headers, plus the reason headers of ``bus.headers`` (reason code, message,
source topic/partition/offset, time, and who quarantined it). The subscriber's ``Quarantine``
writer and the bridge's transactions both send that copy, so the two write the same record.

``read_quarantined(record)`` reads a record of the quarantine topic back into a
``QuarantinedRecord`` (for ``bus tail`` and tests); a record that is not one raises
``QuarantineRecordError`` naming where it is.

Pure, like the rest of the core: the transport (``bus.quarantine``, ``bus.subscriber``, the
bridge) sits on top.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from bus import headers as h
from bus._time import parse_time
from bus.errors import QuarantineRecordError, RecordRejected, UnreadableRecord

__all__ = [
    "SourceRecord",
    "QuarantineCopy",
    "quarantine_copy",
    "QuarantinedRecord",
    "read_quarantined",
    "unreadable_error",
]

_T = TypeVar("_T")


class SourceRecord(Protocol):
    """A record as read from a topic: what judging and quarantining it need (aiokafka's
    ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Iterable[tuple[str, bytes]]: ...


def unreadable_error(record: SourceRecord) -> UnreadableRecord | None:
    """The error of a stand-in for a record the Kafka client could not read, or ``None``.

    ``bus._fetch`` returns such stand-ins (``Unreadable``: coordinates, no value, and an
    ``error``); they are quarantined with that error (reason ``unreadable``), not as truncated.
    """
    if record.value is not None:
        return None
    error = getattr(record, "error", None)
    return error if isinstance(error, UnreadableRecord) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineCopy:
    """What goes to the quarantine topic for one rejected record."""

    key: bytes | None
    value: bytes | None = field(repr=False)
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(repr=False)


def quarantine_copy(
    record: SourceRecord,
    error: RecordRejected,
    *,
    quarantined_at: datetime,
    consumer: str | None,
    omit_value: bool,
) -> QuarantineCopy:
    """The quarantine record of ``record``: its key, value (unless ``omit_value``, then
    ``bus_value_omitted`` gives the size), timestamp and headers, plus the reason headers."""
    value = None if omit_value else record.value
    headers = h.quarantine_headers(
        record.headers,
        reason=error.reason,
        error=str(error),
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        quarantined_at=quarantined_at,
        consumer=consumer,
        value_omitted=len(record.value or b"") if omit_value else None,
    )
    # A record with neither key nor value (possible on the wire) still needs a record here.
    key = record.key if record.key is not None or value is not None else b""
    timestamp = record.timestamp if record.timestamp >= 0 else None
    return QuarantineCopy(key=key, value=value, timestamp_ms=timestamp, headers=headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantinedRecord:
    """A record read from the quarantine topic, with its reason headers parsed."""

    reason: str
    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    quarantined_at: datetime
    consumer: str | None
    value_omitted: int | None
    """The original value's size when it was too large to copy (then ``value`` is None)."""
    key: bytes | None = field(repr=False)
    value: bytes | None = field(repr=False)
    timestamp: int
    original_headers: tuple[tuple[str, bytes], ...] = field(repr=False)
    """The rejected record's headers, renamed back if they were prefixed."""
    topic: str
    partition: int
    offset: int
    """Where this quarantine record is."""


def read_quarantined(record: SourceRecord) -> QuarantinedRecord:
    """Parse a quarantine record; ``QuarantineRecordError`` naming the record and the header
    if a reason header is missing or wrong (never the header's value: it came off the wire)."""
    where = f"{record.topic}/{record.partition}@{record.offset}"
    values: dict[str, str] = {}
    original: list[tuple[str, bytes]] = []
    for name, value in record.headers or ():
        if name in h.QUARANTINE_HEADERS:
            try:
                values[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise QuarantineRecordError(f"{where}: header {name} is not UTF-8") from None
        elif name.removeprefix(h.ORIGINAL_PREFIX) in h.QUARANTINE_HEADERS:
            original.append((name.removeprefix(h.ORIGINAL_PREFIX), value))
        else:
            original.append((name, value))
    required = (
        h.REASON,
        h.ERROR,
        h.SOURCE_TOPIC,
        h.SOURCE_PARTITION,
        h.SOURCE_OFFSET,
        h.QUARANTINED_AT,
    )
    missing = [name for name in required if name not in values]
    if missing:
        raise QuarantineRecordError(
            f"{where}: not a quarantine record, headers missing: {', '.join(missing)}"
        )
    partition = _header(values, h.SOURCE_PARTITION, int, "an integer", where)
    offset = _header(values, h.SOURCE_OFFSET, int, "an integer", where)
    quarantined_at = _header(values, h.QUARANTINED_AT, parse_time, "an RFC 3339 time", where)
    omitted = (
        _header(values, h.VALUE_OMITTED, int, "an integer", where)
        if h.VALUE_OMITTED in values
        else None
    )
    return QuarantinedRecord(
        reason=values[h.REASON],
        error=values[h.ERROR],
        source_topic=values[h.SOURCE_TOPIC],
        source_partition=partition,
        source_offset=offset,
        quarantined_at=quarantined_at,
        consumer=values.get(h.CONSUMER),
        value_omitted=omitted,
        key=record.key,
        value=record.value,
        timestamp=record.timestamp,
        original_headers=tuple(original),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )


def _header(
    values: dict[str, str], name: str, parse: Callable[[str], _T], expected: str, where: str
) -> _T:
    try:
        return parse(values[name])
    except ValueError:
        raise QuarantineRecordError(
            f"{where}: malformed quarantine header {name}: not {expected}"
        ) from None

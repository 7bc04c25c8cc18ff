"""The source-record model and the quarantine's records, as data: no Kafka client here.

A ``SourceRecord`` is what the bus needs of a record read from a topic (aiokafka's
``ConsumerRecord`` has it; the unit tests pass a dataclass). When a record is rejected,
``quarantine_copy`` builds what goes to the quarantine topic: the original key, value bytes,
timestamp and headers, plus the reason headers of ``bus.headers`` (reason code, message,
source topic/partition/offset, time, and who quarantined it). The subscriber's ``Quarantine``
writer and the bridge's transactions both send that copy, so the two write the same record.

The copy must fit under ``max_size`` (``record_size`` estimates a record as Kafka frames it),
although the original may have filled its own topic's limit alone and the reason headers add to
it: it is the first of three forms that fits, whole, without its value, or a *dead letter*
without value, key and original headers (sizes and SHA-256 digests say what was left out). The
dead letter is bounded whatever the input, so a rejected record can always be quarantined and
never wedges its consumer.

``read_quarantined(record)`` reads a record of the quarantine topic back into a
``QuarantinedRecord`` (for ``bus tail`` and tests); a record that is not one raises
``QuarantineRecordError`` naming where it is.

Pure, like the rest of the core: the transport (``bus.quarantine``, ``bus.subscriber``, the
bridge) sits on top.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol, TypeVar

from bus import headers as h
from bus._time import parse_time
from bus.errors import QuarantineRecordError, RecordRejected, UnreadableRecord

__all__ = [
    "SourceRecord",
    "QuarantineCopy",
    "CopyForm",
    "RECORD_OVERHEAD",
    "record_size",
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


RECORD_OVERHEAD: Final = 61 + 5 + 1 + 10 + 5 + 5
"""Bytes Kafka's framing may add around one record alone in a batch (batch header, then the
record's length, attributes, timestamp and offset deltas, header count), at most."""


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
) -> int:
    """An upper bound of the size of a record alone in its batch, as the producer and the
    broker count it against ``max_request_size`` and ``max.message.bytes`` (uncompressed)."""
    size = RECORD_OVERHEAD + 5 + len(key or b"") + 5 + len(value or b"")
    for name, header_value in headers:
        size += 5 + len(name.encode("utf-8", "surrogateescape")) + 5 + len(header_value)
    return size


class CopyForm(enum.Enum):
    """How much of a rejected record its quarantine copy holds."""

    WHOLE = "whole"
    WITHOUT_VALUE = "without-value"
    DEAD_LETTER = "dead-letter"
    """Reason headers, coordinates and digests only: value, key and headers left out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineCopy:
    """What goes to the quarantine topic for one rejected record."""

    key: bytes | None
    value: bytes | None = field(repr=False)
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(repr=False)
    form: CopyForm = CopyForm.WHOLE

    @property
    def size(self) -> int:
        """An upper bound of its size on the wire (``record_size``)."""
        return record_size(self.key, self.value, self.headers)


def quarantine_copy(
    record: SourceRecord,
    error: RecordRejected,
    *,
    quarantined_at: datetime,
    consumer: str | None,
    max_size: int,
) -> QuarantineCopy:
    """The quarantine record of ``record``, in the first form whose ``record_size`` is at most
    ``max_size``: whole (key, value, timestamp, headers and the reason headers); without the
    value (``bus_value_omitted`` and ``bus_value_sha256`` say what it was); or the dead letter
    (value, key and original headers left out, each with its size or count and digest). The
    dead letter is returned even if it exceeds a ``max_size`` smaller than it (0 forces it):
    it is bounded, a few KiB at most.
    """
    original = list(record.headers or ())
    timestamp = record.timestamp if record.timestamp >= 0 else None

    def reason_headers(
        original_headers: Iterable[tuple[str, bytes]],
        *,
        value_omitted: int | None = None,
        omitted: Sequence[tuple[str, bytes]] = (),
    ) -> list[tuple[str, bytes]]:
        return h.quarantine_headers(
            original_headers,
            reason=error.reason,
            error=str(error),
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            quarantined_at=quarantined_at,
            consumer=consumer,
            value_omitted=value_omitted,
            omitted=omitted,
        )

    # A record with neither key nor value (possible on the wire) still needs a record here.
    whole = QuarantineCopy(
        key=record.key if record.key is not None or record.value is not None else b"",
        value=record.value,
        timestamp_ms=timestamp,
        headers=reason_headers(original),
    )
    if whole.size <= max_size:
        return whole
    value = record.value or b""
    value_digest = [(h.VALUE_SHA256, _sha256(value))]
    without_value = QuarantineCopy(
        key=record.key if record.key is not None else b"",
        value=None,
        timestamp_ms=timestamp,
        headers=reason_headers(original, value_omitted=len(value), omitted=value_digest),
        form=CopyForm.WITHOUT_VALUE,
    )
    if without_value.size <= max_size:
        return without_value
    key = record.key or b""
    return QuarantineCopy(
        key=b"",
        value=None,
        timestamp_ms=timestamp,
        headers=reason_headers(
            (),
            value_omitted=len(value),
            omitted=[
                *value_digest,
                (h.KEY_OMITTED, str(len(key)).encode()),
                (h.KEY_SHA256, _sha256(key)),
                (h.HEADERS_OMITTED, str(len(original)).encode()),
                (h.HEADERS_SHA256, _headers_digest(original)),
            ],
        ),
        form=CopyForm.DEAD_LETTER,
    )


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def _headers_digest(headers: Iterable[tuple[str, bytes]]) -> bytes:
    digest = hashlib.sha256()
    for name, value in headers:
        raw = name.encode("utf-8", "surrogateescape")
        digest.update(len(raw).to_bytes(4, "big") + raw + len(value).to_bytes(4, "big") + value)
    return digest.hexdigest().encode()


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
    value_sha256: str | None = None
    """The original value's SHA-256 (hex) when it was left out."""
    key_omitted: int | None = None
    """The original key's size when this is a dead letter (then ``key`` is empty)."""
    headers_omitted: int | None = None
    """How many original headers a dead letter left out."""
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
    key_omitted = (
        _header(values, h.KEY_OMITTED, int, "an integer", where)
        if h.KEY_OMITTED in values
        else None
    )
    headers_omitted = (
        _header(values, h.HEADERS_OMITTED, int, "an integer", where)
        if h.HEADERS_OMITTED in values
        else None
    )
    return QuarantinedRecord(
        value_sha256=values.get(h.VALUE_SHA256),
        key_omitted=key_omitted,
        headers_omitted=headers_omitted,
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

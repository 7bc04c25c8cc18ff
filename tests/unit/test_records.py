"""Source records and quarantine records as data: building quarantine copies, reading them back."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from bus import headers as h
from bus.errors import QuarantineRecordError, UnknownKey
from bus.records import (
    CopyForm,
    QuarantineCopy,
    quarantine_copy,
    read_quarantined,
    record_size,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    topic: str = "intel.events"
    partition: int = 1
    offset: int = 41
    timestamp: int = 1_772_357_400_000
    key: bytes | None = b"case-7"
    value: bytes | None = b"\xc3\x01garbage"
    headers: tuple[tuple[str, bytes], ...] = (("ce_id", b"abc"),)


def test_read_quarantined_gives_back_reason_source_and_original_headers() -> None:
    headers = h.quarantine_headers(
        [("bus_reason", b"x"), ("ce_id", b"abc")],
        reason="unknown-key",
        error="key 'k' is not in trust.toml",
        source_topic="intel.events",
        source_partition=3,
        source_offset=9,
        quarantined_at=datetime(2026, 3, 1, tzinfo=UTC),
        consumer="g",
    )
    record = _Record(topic="bus.quarantine", partition=0, offset=5, headers=tuple(headers))
    q = read_quarantined(record)
    assert (q.reason, q.source_topic, q.source_partition, q.source_offset) == (
        "unknown-key",
        "intel.events",
        3,
        9,
    )
    assert q.quarantined_at == datetime(2026, 3, 1, tzinfo=UTC)
    assert q.consumer == "g"
    assert q.value_omitted is None
    assert q.original_headers == (("bus_reason", b"x"), ("ce_id", b"abc"))
    assert (q.topic, q.partition, q.offset) == ("bus.quarantine", 0, 5)


def test_read_quarantined_refuses_a_record_without_reason_headers() -> None:
    with pytest.raises(QuarantineRecordError, match="not a quarantine record"):
        read_quarantined(_Record())


def _quarantined(**changes: bytes) -> _Record:
    copy = quarantine_copy(
        _Record(),
        UnknownKey("key k is not in trust.toml"),
        quarantined_at=datetime(2026, 3, 1, tzinfo=UTC),
        consumer="g",
        max_size=1 << 20,
    )
    headers = [(name, changes.get(name, value)) for name, value in copy.headers]
    return replace(_Record(topic="bus.quarantine", offset=5), headers=tuple(headers))


def test_a_quarantine_copy_reads_back_as_the_record_it_came_from() -> None:
    q = read_quarantined(_quarantined())
    assert (q.reason, q.source_topic, q.source_partition, q.source_offset) == (
        "unknown-key",
        "intel.events",
        1,
        41,
    )
    assert q.original_headers == (("ce_id", b"abc"),)


@pytest.mark.parametrize(
    ("header", "garbage"),
    [
        (h.SOURCE_OFFSET, b"secret-payload-text"),
        (h.SOURCE_PARTITION, b"secret-payload-text"),
        (h.QUARANTINED_AT, b"secret-payload-text"),
        (h.REASON, b"\xffsecret-payload-text"),
    ],
)
def test_a_malformed_reason_header_is_named_and_its_value_never_echoed(
    header: str, garbage: bytes
) -> None:
    with pytest.raises(QuarantineRecordError, match=rf"bus\.quarantine/1@5: .*{header}") as info:
        read_quarantined(_quarantined(**{header: garbage}))
    assert "secret" not in str(info.value)


LIMIT = 1 << 20
"""The local federation's record size limit (topics' default ``max.message.bytes``)."""


def _copy(record: _Record, *, max_size: int = LIMIT, error: str = "rejected") -> QuarantineCopy:
    return quarantine_copy(
        record,
        UnknownKey(error),
        quarantined_at=datetime(2026, 3, 1, tzinfo=UTC),
        consumer="interpol->europol@host:1",
        max_size=max_size,
    )


def test_record_size_bounds_what_the_kafka_client_counts() -> None:
    """Never below aiokafka's own estimate, which its producer checks against its limit."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    headers = [("ce_id", b"x" * 300), ("trace", b"")] * 50
    for key, value in ((None, None), (b"k", b"v" * 70_000), (b"k" * 5000, None)):
        estimate = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        assert estimate <= record_size(key, value, headers) <= estimate + 2000


def test_a_copy_that_fits_is_whole() -> None:
    copy = _copy(_Record())
    assert copy.form is CopyForm.WHOLE
    assert (copy.key, copy.value) == (b"case-7", b"\xc3\x01garbage")


def test_a_maximal_value_is_left_out_with_its_size_and_digest() -> None:
    value = b"v" * (LIMIT - 100)
    copy = _copy(_Record(value=value))
    assert copy.form is CopyForm.WITHOUT_VALUE
    assert copy.value is None
    assert copy.key == b"case-7"
    assert copy.size <= LIMIT
    q = read_quarantined(replace(_Record(), headers=tuple(copy.headers), value=None))
    assert q.value_omitted == len(value)
    assert q.value_sha256 == hashlib.sha256(value).hexdigest()
    assert q.original_headers == (("ce_id", b"abc"),)


@pytest.mark.parametrize(
    "record",
    [
        # Source headers alone near the limit (the original fits it, the copy would not).
        _Record(headers=tuple((f"h{i:04d}", b"x" * 1000) for i in range(1032))),
        # 52,000 empty headers named like our own: each renamed bus_original_..., 13 bytes more.
        _Record(headers=(("bus_reason", b""),) * 52_000),
        # A key near the limit.
        _Record(key=b"k" * (LIMIT - 200), value=None, headers=()),
    ],
    ids=["large-headers", "renamed-headers", "large-key"],
)
def test_a_record_whose_copy_cannot_fit_becomes_a_bounded_dead_letter(record: _Record) -> None:
    assert record_size(record.key, record.value, record.headers) <= LIMIT  # the original fits
    copy = _copy(record, error="e" * 1_000_000)
    assert copy.form is CopyForm.DEAD_LETTER
    assert (copy.key, copy.value) == (b"", None)
    assert copy.size < 4096
    q = read_quarantined(replace(_Record(), headers=tuple(copy.headers), key=b"", value=None))
    assert q.reason == "unknown-key"
    assert (q.source_topic, q.source_partition, q.source_offset) == ("intel.events", 1, 41)
    assert q.original_headers == ()
    assert q.headers_omitted == len(record.headers)
    assert q.key_omitted == len(record.key or b"")
    assert q.value_omitted == len(record.value or b"")
    assert len(q.error) == h.MAX_ERROR_LENGTH
    key_digest = dict(copy.headers)[h.KEY_SHA256].decode()
    assert key_digest == hashlib.sha256(record.key or b"").hexdigest()


def test_a_size_limit_below_the_dead_letter_still_gives_the_dead_letter() -> None:
    copy = _copy(_Record(), max_size=0)
    assert copy.form is CopyForm.DEAD_LETTER

"""Source records and quarantine records as data: building quarantine copies, reading them back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from bus import headers as h
from bus.errors import QuarantineRecordError, UnknownKey
from bus.records import quarantine_copy, read_quarantined


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

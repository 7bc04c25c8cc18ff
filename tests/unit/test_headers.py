"""CloudEvents binary-mode headers and the quarantine headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bus import headers as h
from tests.signed import make_event


def test_event_headers_carry_the_cloudevents_attributes_in_binary_mode() -> None:
    event = make_event("interpol")
    event["created_at"] = datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    got = dict(h.event_headers(event))
    assert got == {
        "ce_specversion": b"1.0",
        "ce_id": event["event_id"].encode(),
        "ce_source": b"/agencies/interpol/units/operations-centre",
        "ce_type": b"int.exchangebus.intel.v1",
        "ce_time": b"2026-03-01T09:30:00.000000Z",
        "content-type": b"application/avro",
    }


def test_an_event_is_keyed_by_its_correlation_id_else_its_event_id() -> None:
    event = make_event("interpol", correlation_id="case-9")
    assert h.event_key(event) == b"case-9"
    event["correlation_id"] = ""
    assert h.event_key(event) == event["event_id"].encode()


def test_rfc3339_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        h.rfc3339(datetime(2026, 3, 1))


def test_quarantine_headers_keep_the_originals_first_and_rename_clashing_names() -> None:
    original = [("ce_id", b"x"), ("bus_reason", b"forged"), ("trace", b"t")]
    got = h.quarantine_headers(
        original,
        reason="bad-signature",
        error="e" * 2000,
        source_topic="intel.events",
        source_partition=2,
        source_offset=17,
        quarantined_at=datetime(2026, 3, 1, tzinfo=UTC),
        consumer="indexer",
    )
    assert got[:3] == [("ce_id", b"x"), ("bus_original_bus_reason", b"forged"), ("trace", b"t")]
    names = [name for name, _ in got]
    assert all(names.count(name) == 1 for name in h.QUARANTINE_HEADERS - {h.VALUE_OMITTED})
    assert h.header_value(got, h.REASON) == b"bad-signature"
    assert h.header_value(got, h.SOURCE_PARTITION) == b"2"
    assert h.header_value(got, h.SOURCE_OFFSET) == b"17"
    assert h.header_value(got, h.QUARANTINED_AT) == b"2026-03-01T00:00:00.000000Z"
    assert h.header_value(got, h.CONSUMER) == b"indexer"
    error = h.header_value(got, h.ERROR)
    assert error is not None
    assert len(error) == h.MAX_ERROR_LENGTH
    assert error.endswith(b"...")


def test_quarantine_headers_without_consumer_or_original_headers() -> None:
    got = h.quarantine_headers(
        None,
        reason="truncated",
        error="short",
        source_topic="t",
        source_partition=0,
        source_offset=0,
        quarantined_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert h.header_value(got, h.CONSUMER) is None
    assert {name for name, _ in got} == h.QUARANTINE_HEADERS - {h.CONSUMER, h.VALUE_OMITTED}

"""What each log of a lane writes for a batch: audit records and quarantine copies on the
source; on the destination, released records rebuilt from the verified event (the value byte
for byte, key and headers derived, the bridge's hop headers)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from bus import headers as h
from bus.bridge._hops import HOP, PATH
from bus.bridge._outgoing import (
    Outgoing,
    admitted,
    destination_log_records,
    source_log_records,
)
from bus.bridge._verdict import Outcome, Verdict
from bus.errors import OversizedRecord
from tests.signed import make_event
from tests.unit.bridge.fakes import Record, bridge_settings, verdict

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = bridge_settings(max_record_size=10_000)


def _source(verdicts: list[Verdict], *, audited_until: int = 0) -> list[Outgoing]:
    return source_log_records(
        verdicts,
        audited_until=audited_until,
        settings=SETTINGS,
        audit_partition=3,
        quarantine_partition=1,
        now=NOW,
    )


def _destination(verdicts: list[Verdict], *, next_offset: int = 0) -> list[Outgoing]:
    return destination_log_records(
        verdicts, next_offset=next_offset, settings=SETTINGS, topic="intel.events", partition=2
    )


def test_every_decision_is_audited_in_the_partition_given() -> None:
    records = _source([verdict(5, Outcome.FORWARD), verdict(6, Outcome.DENY)])
    assert records == [
        Outgoing(topic="bus.audit", value=b"audit-5" + bytes(5), key=b"id-5", partition=3),
        Outgoing(topic="bus.audit", value=b"audit-6" + bytes(5), key=b"id-6", partition=3),
    ]


def test_decisions_below_the_audit_checkpoint_are_not_audited_again() -> None:
    verdicts = [verdict(o, Outcome.FORWARD) for o in (5, 6, 7)]
    assert [r.value for r in _source(verdicts, audited_until=6)] == [
        b"audit-6" + bytes(5),
        b"audit-7" + bytes(5),
    ]


def test_a_quarantined_record_is_copied_with_its_reason_to_the_quarantine_partition() -> None:
    [copy] = _source([verdict(5, Outcome.QUARANTINE, value=b"garbage")])
    assert (copy.topic, copy.partition, copy.key, copy.value) == (
        "bus.quarantine",
        1,
        b"case-5",
        b"garbage",
    )
    assert copy.timestamp_ms == 1_700_000_000_000
    assert h.header_value(copy.headers, h.REASON) == b"truncated"
    assert h.header_value(copy.headers, h.SOURCE_OFFSET) == b"5"
    assert h.header_value(copy.headers, h.CONSUMER) == b"b1"
    assert h.header_value(copy.headers, h.QUARANTINED_AT) is not None
    assert h.header_value(copy.headers, h.VALUE_OMITTED) is None


def test_a_quarantined_value_that_would_not_fit_beside_the_headers_is_left_out() -> None:
    """The whole copy when it fits under max_record_size to the byte; one byte more and the
    value is left out, with its size and digest."""
    [probe] = _source([verdict(5, Outcome.QUARANTINE, value=b"")])
    fits = b"x" * (SETTINGS.max_record_size - probe.size)
    too_large = fits + b"x"
    kept, omitted = _source(
        [
            verdict(5, Outcome.QUARANTINE, value=fits),
            verdict(5, Outcome.QUARANTINE, value=too_large),
        ]
    )
    assert kept.value == fits
    assert kept.size == SETTINGS.max_record_size
    assert omitted.value is None
    assert omitted.key == b"case-5"
    assert h.header_value(omitted.headers, h.VALUE_OMITTED) == str(len(too_large)).encode()
    digest = hashlib.sha256(too_large).hexdigest().encode()
    assert h.header_value(omitted.headers, h.VALUE_SHA256) == digest
    assert omitted.size <= SETTINGS.max_record_size


def test_only_released_records_at_or_above_the_mirror_checkpoint_are_mirrored() -> None:
    verdicts = [
        verdict(4, Outcome.FORWARD),
        verdict(5, Outcome.FORWARD),
        verdict(6, Outcome.DENY),
        verdict(7, Outcome.QUARANTINE),
        verdict(8, Outcome.FORWARD),
    ]
    records = _destination(verdicts, next_offset=5)
    assert [(r.topic, r.partition, r.key, r.value) for r in records] == [
        ("interpol.intel.events", 2, b"case-5", b"event-5"),
        ("interpol.intel.events", 2, b"case-8", b"event-8"),
    ]


def test_a_mirrored_record_is_rebuilt_from_the_verified_event_and_nothing_else() -> None:
    """Forged ce_* headers, a forged bus_path and bus_hop, extra headers, an unsigned key and a
    far-future timestamp on the source record: none of them crosses. The value does, byte for
    byte; the key, the CloudEvents headers and the hop headers derive from the signed event."""
    event = make_event("interpol", correlation_id="case-77")
    record = Record(
        value=b"\xc3\x01signed bytes",
        offset=9,
        key=b"attacker-chosen key",
        timestamp=4_102_444_800_000,  # 2100-01-01: far in the future
        headers=(
            (h.CE_ID, b"forged-id"),
            (h.CE_SOURCE, b"/agencies/europol/units/forged"),
            (h.CE_TYPE, b"forged.type"),
            (h.CE_TIME, b"2100-01-01T00:00:00.000000Z"),
            (h.CONTENT_TYPE, b"text/plain"),
            (PATH, b"europol"),
            (HOP, b"europol->interpol forged"),
            ("x-extra", b"smuggled"),
            ("bus_reason", b"forged"),
        ),
    )
    [mirrored] = _destination([Verdict(record=record, outcome=Outcome.FORWARD, event=event)])
    assert mirrored.value is record.value
    assert mirrored.key == b"case-77"
    assert mirrored.timestamp_ms is None  # the producer's: never the source record's
    assert list(mirrored.headers) == [
        *h.event_headers(event),
        (PATH, b"interpol"),
        (HOP, b"interpol->europol b1"),
    ]


def test_a_mirrored_event_without_a_correlation_id_is_keyed_by_its_event_id() -> None:
    event = make_event("interpol", correlation_id="")
    record = Record(value=b"v", offset=9, key=b"case-1")
    [mirrored] = _destination([Verdict(record=record, outcome=Outcome.FORWARD, event=event)])
    assert mirrored.key == event["event_id"].encode()


def test_an_onward_forwarded_event_carries_its_verified_path() -> None:
    event = make_event("ameripol")
    record = Record(value=b"v", offset=9, headers=((PATH, b"fbi"),))
    [mirrored] = _destination([Verdict(record=record, outcome=Outcome.FORWARD, event=event)])
    assert h.header_value(mirrored.headers, PATH) == b"ameripol,interpol"


def test_a_released_record_whose_mirrored_copy_would_not_fit_is_quarantined_instead() -> None:
    """The hop headers push a record that filled the source's limit past the destination's:
    it is quarantined as oversized (its copy without the value), never retried for ever."""
    [probe] = _destination([verdict(5, Outcome.FORWARD, value=b"")])
    fits = b"x" * (SETTINGS.max_record_size - probe.size)
    verdicts = admitted(
        [verdict(5, Outcome.FORWARD, value=fits), verdict(6, Outcome.FORWARD, value=fits + b"x")],
        settings=SETTINGS,
    )
    assert [v.outcome for v in verdicts] == [Outcome.FORWARD, Outcome.QUARANTINE]
    error = verdicts[1].error
    assert isinstance(error, OversizedRecord)
    assert "intel.events/2@6" in str(error)
    assert verdicts[1].audit_value is None
    [mirrored] = _destination(verdicts)
    assert mirrored.size == SETTINGS.max_record_size
    audit, copy = _source(verdicts)
    assert audit.topic == "bus.audit"
    assert (copy.topic, copy.value) == ("bus.quarantine", None)
    assert h.header_value(copy.headers, h.REASON) == b"oversized"
    assert copy.size <= SETTINGS.max_record_size


def test_a_decision_whose_audit_record_would_not_fit_is_quarantined_instead() -> None:
    big = dataclasses.replace(verdict(7, Outcome.DENY), audit_value=b"a" * SETTINGS.max_record_size)
    [v] = admitted([big], settings=SETTINGS)
    assert v.outcome is Outcome.QUARANTINE
    assert isinstance(v.error, OversizedRecord)
    assert "audit record" in str(v.error)


def test_verdicts_that_fit_are_admitted_as_they_are() -> None:
    verdicts = [verdict(o, outcome) for o, outcome in enumerate(Outcome)]
    assert admitted(verdicts, settings=SETTINGS) == verdicts

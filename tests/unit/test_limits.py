"""Decode limits: hostile events are refused by the pre-scan, unread; real ones pass unchanged.

Every hostile value here is signed with a trusted key, so it gets past the signature check to
the decoder: the case where the sender holds a key. ``bench/bench_limits.py`` times them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from bus import envelope
from bus._limits import SMALL_DATUM, DecodeLimits, compile_scanner, scan
from bus.codec import HEADER_SIZE, INTELLIGENCE_EVENT, SIGNED_EVENT, default_store
from bus.envelope import EVENT_LIMITS
from bus.errors import LimitExceeded, MalformedDatum, RecordRejected, TruncatedRecord
from bus.events import template
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
KEY = SigningKey.generate()
TRUST = TrustStore([TrustedKey(agency="interpol", public_key=KEY.public_key, not_before=NOW)])
STORE = default_store()
WRITER = STORE.latest(INTELLIGENCE_EVENT)


def _long(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _text(size: int, fill: bytes = b"x") -> bytes:
    return _long(size) + fill * size


def _items(count: int, item: bytes, *, blocks: int = 1) -> bytes:
    per = count // blocks
    return (_long(per) + item * per) * blocks + b"\x00"


def _event_bytes(raw: Mapping[str, bytes], **fields: Any) -> bytes:
    """A single-object-encoded event whose ``raw`` fields are the given Avro bytes."""
    event = template("CYBERCRIME", now=NOW)
    event.update(fields)
    parts = [WRITER.header]
    for field in WRITER.io_schema["fields"]:
        if field["name"] in raw:
            parts.append(raw[field["name"]])
            continue
        out = io.BytesIO()
        fastavro.schemaless_writer(out, field["type"], event[field["name"]])
        parts.append(out.getvalue())
    return b"".join(parts)


def _signed(raw: Mapping[str, bytes], **fields: Any) -> bytes:
    data = _event_bytes(raw, **fields)
    return STORE.encode(
        SIGNED_EVENT, {"event": data, "key_id": KEY.key_id, "signature": KEY.sign(data)}
    )


def _open(value: bytes) -> dict[str, Any]:
    return envelope.open_(value, TRUST, now=NOW).event


def _room(field: str) -> int:
    """Bytes left for ``field`` in a value of exactly the 1 MiB maximum."""
    return envelope.DEFAULT_MAX_SIZE - len(_signed({field: b"\x00"})) - 8


PAD = _text(3000)
"""A summary that makes a datum larger than SMALL_DATUM, so that the pre-scan reads it."""
ATTRIBUTES_65 = _long(65) + b"".join(_long(2) + b"%02d" % i + b"\x00" for i in range(65)) + b"\x00"
"""A map of 65 distinct attributes with empty values."""

HOSTILE: dict[str, tuple[Callable[[], dict[str, bytes]], str]] = {
    "references: 1M empty strings in one block": (
        lambda: {"references": _items(_room("references"), b"\x00")},
        "references: more than 1000 items",
    ),
    "references: half a million blocks of one": (
        lambda: {"references": _items(_room("references") // 2, b"\x00", blocks=500_000)},
        "references: more than 1000 items",
    ),
    "references: a block count of 2^62 with little data": (
        lambda: {"references": _long(2**62) + bytes(8), "summary": PAD},
        "references: more than 1000 items",
    ),
    "references: a negative block count of -2^31": (
        lambda: {"references": _long(-(2**31)) + _long(4) + bytes(8), "summary": PAD},
        "references: more than 1000 items",
    ),
    "handling_codes: 1M": (
        lambda: {"handling_codes": _items(_room("handling_codes"), b"\x00")},
        "handling_codes: more than 16 items",
    ),
    "releasable_to: 257 recipients": (
        lambda: {"releasable_to": _items(257, _text(8))},
        "releasable_to: more than 256 items",
    ),
    "subjects: 330k minimal subjects": (
        lambda: {"subjects": _items(_room("subjects") // 3, b"\x00\x00\x00")},
        "subjects: more than 1000 items",
    ),
    "subjects[].attributes: 500k entries in one subject": (
        lambda: {
            "subjects": b"\x02\x00\x00" + _items(_room("subjects") // 2, b"\x00\x00") + b"\x00"
        },
        r"subjects\[\].attributes: more than 64 items",
    ),
    "subjects[].attributes: 65 entries": (
        lambda: {"subjects": b"\x02\x00\x00" + ATTRIBUTES_65 + b"\x00", "summary": PAD},
        r"subjects\[\].attributes: more than 64 items",
    ),
    "all collections: 1000 subjects with 2 attributes each": (
        lambda: {"subjects": _items(1000, b"\x00\x00" + _items(2, b"\x00\x00"))},
        "more than 2048 items in all arrays and maps together",
    ),
    "title: 1 MiB": (
        lambda: {"title": _text(_room("title"))},
        "title: [0-9]+ bytes, more than the limit of 4096",
    ),
    "title: 4097 bytes": (lambda: {"title": _text(4097)}, "title: 4097 bytes"),
    "origin.agency: 5000 bytes": (
        lambda: {"origin": _text(5000) + _text(1) + _text(1)},
        "origin.agency: 5000 bytes",
    ),
    "handling_conditions: 65537 bytes": (
        lambda: {"handling_conditions": b"\x02" + _text(65_537)},
        "handling_conditions: 65537 bytes",
    ),
    "subjects[].attributes: a 5000-byte attribute name": (
        lambda: {"subjects": b"\x02\x00\x00" + _items(1, _text(5000) + b"\x00") + b"\x00"},
        r"subjects\[\].attributes: 5000 bytes",
    ),
    "references[]: a 1 MiB reference": (
        lambda: {"references": _items(1, _text(_room("references")))},
        r"references\[\]: [0-9]+ bytes",
    ),
    "payload.content_type: 5000 bytes": (
        lambda: {"payload": b"\x02" + _text(5000) + _text(0)},
        "payload.content_type: 5000 bytes",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_events_are_refused_before_decoding(case: str) -> None:
    raw, message = HOSTILE[case]
    value = _signed(raw())
    assert len(value) <= envelope.DEFAULT_MAX_SIZE
    with pytest.raises(LimitExceeded, match=message) as caught:
        _open(value)
    assert caught.value.reason == "limit-exceeded"
    with pytest.raises(LimitExceeded, match=message):
        envelope.peek(value)  # anyone's bytes: the display path refuses them as well


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ({"references": _items(3, b"\x00")[:-2]}, TruncatedRecord, "cut short"),
        ({"payload": b"\x02" + _long(100) + b"x"}, TruncatedRecord, "cut short"),
        ({"title": _long(-3)}, MalformedDatum, "title: negative length"),
        ({"references": b"\x02" + _long(-(2**40))}, MalformedDatum, r"references\[\]: negative"),
        ({"tlp": _long(5)}, MalformedDatum, "tlp: enum symbol 5 of 5"),
        ({"payload": _long(2)}, MalformedDatum, "payload: union branch 2 of 2"),
        ({"revision": b"\xff" * 11}, MalformedDatum, "runs past 10 bytes"),
        ({"payload": b"\x00\x00"}, MalformedDatum, "ends at byte"),
    ],
)
def test_malformed_events_are_refused_by_the_pre_scan(
    raw: dict[str, bytes], error: type[RecordRejected], message: str
) -> None:
    data = _event_bytes({"summary": PAD, **raw})
    assert len(data) > SMALL_DATUM + HEADER_SIZE
    with pytest.raises(error, match=message):
        STORE.decode(data, INTELLIGENCE_EVENT, limits=EVENT_LIMITS)
    with pytest.raises(error, match=message):
        scan(STORE._scanner(WRITER, EVENT_LIMITS), _event_bytes(raw), HEADER_SIZE)
    with pytest.raises((MalformedDatum, TruncatedRecord)):  # small: fastavro's own errors
        STORE.decode(_event_bytes(raw), INTELLIGENCE_EVENT, limits=EVENT_LIMITS)


SMALL_CASES = {
    "handling_codes: 17": ({"handling_codes": _items(17, b"\x00")}, "handling_codes: more than 16"),
    "references: 1001 empty": (
        {"references": _items(1001, b"\x00")},
        "references: more than 1000 items",
    ),
    "subjects[].attributes: 65 distinct": (
        {"subjects": b"\x02\x00\x00" + ATTRIBUTES_65 + b"\x00"},
        r"subjects\[\].attributes: more than 64 items",
    ),
}


@pytest.mark.parametrize("case", list(SMALL_CASES), ids=list(SMALL_CASES))
def test_small_events_are_decoded_then_counted_with_the_same_limits(case: str) -> None:
    """Up to SMALL_DATUM bytes the datum is decoded first, then counted: same error, same
    message as the pre-scan gives for the same content in a larger datum."""
    raw, message = SMALL_CASES[case]
    small = _event_bytes(raw)
    assert len(small) <= SMALL_DATUM + HEADER_SIZE
    large = _event_bytes({"summary": PAD, **raw})
    assert len(large) > SMALL_DATUM + HEADER_SIZE
    for data in (small, large):
        with pytest.raises(LimitExceeded, match=message):
            STORE.decode(data, INTELLIGENCE_EVENT, limits=EVENT_LIMITS)


def test_a_small_map_with_repeated_keys_counts_as_decoded() -> None:
    """65 entries with one key decode to one attribute: small, so counted as the event reads."""
    raw = {"subjects": b"\x02\x00\x00" + _items(65, b"\x00\x00") + b"\x00"}
    event = STORE.decode(_event_bytes(raw), INTELLIGENCE_EVENT, limits=EVENT_LIMITS)
    assert event["subjects"][0]["attributes"] == {"": ""}
    with pytest.raises(LimitExceeded, match="more than 64 items"):
        STORE.decode(_event_bytes({**raw, "summary": PAD}), INTELLIGENCE_EVENT, limits=EVENT_LIMITS)


def _full_event(references: int) -> dict[str, Any]:
    event = template("CYBERCRIME", now=NOW)  # one handling code, one recipient
    event["subjects"] = [
        {"kind": "IP_ADDRESS", "value": f"192.0.2.{i % 256}", "attributes": {"seen": "x"}}
        for i in range(1000)
    ]
    event["references"] = [f"ref-{i}" for i in range(references)]
    return event


def test_an_event_as_full_as_the_limits_allow_passes_unchanged() -> None:
    event = _full_event(references=46)  # 1 + 1 + 1000 + 1000 + 46 = 2048 items
    assert _open(envelope.seal(event, KEY)) == event


def test_one_item_more_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="more than 2048 items"):
        _open(envelope.seal(_full_event(references=47), KEY))


def test_long_summary_and_payload_are_bounded_by_the_record_size_only() -> None:
    event = template("CYBERCRIME", now=NOW)
    event["summary"] = "s" * 500_000
    event["payload"] = {"content_type": "application/octet-stream", "data": b"\x00" * 500_000}
    assert _open(envelope.seal(event, KEY)) == event


def test_blocks_with_a_negative_count_and_a_size_are_read_like_fastavro() -> None:
    """Avro lets a writer give a block as -count and its size in bytes: valid, and counted."""
    refs = _long(-2) + _long(6) + _text(2, b"a") + _text(2, b"b") + _long(1) + _text(1) + b"\x00"
    event = STORE.decode(
        _event_bytes({"references": refs}), INTELLIGENCE_EVENT, limits=EVENT_LIMITS
    )
    assert event["references"] == ["aa", "bb", "x"]
    tight = DecodeLimits(items={"references": 2})
    with pytest.raises(LimitExceeded, match="references: more than 2 items"):
        STORE.decode(_event_bytes({"references": refs}), INTELLIGENCE_EVENT, limits=tight)


def test_without_limits_the_store_decodes_as_before() -> None:
    data = _event_bytes({"references": _items(2000, b"\x00")})
    assert len(STORE.decode(data, INTELLIGENCE_EVENT)["references"]) == 2000


def test_a_recursive_schema_is_cut_at_the_nesting_limit() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"]}],
        }
    )
    scanner = compile_scanner(schema, DecodeLimits(max_depth=4))
    scan(scanner, b"\x02\x00", 0)  # two nodes
    with pytest.raises(LimitExceeded, match="nested deeper than 4 levels"):
        scan(scanner, b"\x02" * 10 + b"\x00", 0)


def test_the_scanner_is_compiled_once_per_schema_and_limits() -> None:
    data = _event_bytes({})
    STORE.decode(data, INTELLIGENCE_EVENT, limits=EVENT_LIMITS)
    first = STORE._scanner(WRITER, EVENT_LIMITS)
    STORE.decode(data, INTELLIGENCE_EVENT, limits=EVENT_LIMITS)
    assert STORE._scanner(WRITER, EVENT_LIMITS) is first
    assert STORE._scanner(WRITER, DecodeLimits()) is not first


def test_the_documented_limits_are_the_code_s() -> None:
    """docs/wire-format.md lists every limit of EVENT_LIMITS with its value."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text()
    for path, limit in EVENT_LIMITS.items.items():
        assert f"| `{path}` | {limit} items |" in doc, path
    for path, size in EVENT_LIMITS.string_bytes.items():
        shown = "the record's size" if size is None else f"{size} bytes"
        assert f"| `{path}` | {shown} |" in doc, path
    assert f"| any other array or map | {EVENT_LIMITS.default_items} items |" in doc
    assert f"| all arrays and maps together | {EVENT_LIMITS.total_items} items |" in doc
    assert f"| any other string or bytes | {EVENT_LIMITS.default_string_bytes} bytes |" in doc
    assert f"| nesting depth | {EVENT_LIMITS.max_depth} levels |" in doc


def test_the_small_road_counts_all_collections_together() -> None:
    tight = DecodeLimits(total_items=10)
    data = _event_bytes({"references": _items(9, b"\x00")})  # and one handling code, one recipient
    with pytest.raises(LimitExceeded, match="more than 10 items in all arrays and maps together"):
        STORE.decode(data, INTELLIGENCE_EVENT, limits=tight)
    assert STORE._scanner(WRITER, tight).small == SMALL_DATUM


def test_the_small_road_is_never_wider_than_a_string_limit() -> None:
    """A datum shorter than every string limit cannot hold a string over one."""
    assert STORE._scanner(WRITER, DecodeLimits(string_bytes={"title": 100})).small == 100
    assert STORE._scanner(WRITER, EVENT_LIMITS).small == SMALL_DATUM


def test_a_recursive_schema_always_takes_the_pre_scan() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Tree",
            "fields": [{"name": "kids", "type": {"type": "array", "items": "Tree"}}],
        }
    )
    assert compile_scanner(schema, DecodeLimits(max_depth=4)).small == 0

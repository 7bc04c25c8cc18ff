"""What a maximal hostile event costs a receiver: refused by the decode limits, or accepted.

Run ``python -m bench.bench_limits``. Every record here is signed with a trusted key, so it
passes the signature check and reaches the decoder: the worst case, where the sender holds a
key. Each is as large as a record may be (1 MiB) or as full as the limits allow. Printed for
each: the time of ``open_`` (verify, pre-scan, decode, checks) and of fastavro's decode alone
without limits, best of several runs. docs/wire-format.md quotes the figures.
"""

from __future__ import annotations

import io
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import fastavro

from bus._limits import Scanner, scan
from bus.codec import HEADER_SIZE, INTELLIGENCE_EVENT, SIGNED_EVENT, default_store
from bus.envelope import DEFAULT_MAX_SIZE, EVENT_LIMITS, open_
from bus.errors import RecordRejected
from bus.events import template
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore

__all__ = ["hostile_value", "main"]

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
KEY = SigningKey.generate()
TRUST = TrustStore([TrustedKey(agency="interpol", public_key=KEY.public_key, not_before=NOW)])
MiB = 1 << 20


def _long(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _event_room(fixed: Mapping[str, bytes]) -> int:
    """Bytes left for the hostile field in a 1 MiB value after everything else."""
    return DEFAULT_MAX_SIZE - len(hostile_value(fixed)) - 8


def hostile_value(raw: Mapping[str, bytes], **fields: Any) -> bytes:
    """A signed Kafka value whose event has ``raw`` Avro bytes for some fields.

    The other fields come from a template event (updated with ``fields``), each encoded alone
    with its own schema, so any field can be replaced by bytes no encoder would write.
    """
    store = default_store()
    writer = store.latest(INTELLIGENCE_EVENT)
    event = template("CYBERCRIME", now=NOW)
    event.update(fields)
    parts = [writer.header]
    for field in writer.io_schema["fields"]:
        name = field["name"]
        if name in raw:
            parts.append(raw[name])
            continue
        out = io.BytesIO()
        fastavro.schemaless_writer(out, field["type"], event[name])
        parts.append(out.getvalue())
    event_bytes = b"".join(parts)
    return store.encode(
        SIGNED_EVENT,
        {"event": event_bytes, "key_id": KEY.key_id, "signature": KEY.sign(event_bytes)},
    )


def _items(count: int, item: bytes, *, blocks: int = 1) -> bytes:
    per = count // blocks
    return (_long(per) + item * per) * blocks + b"\x00"


def _cases() -> dict[str, bytes]:
    cases: dict[str, bytes] = {}
    room = _event_room({"references": b"\x00"})
    cases["refused: references, 1M empty strings"] = hostile_value(
        {"references": _items(room, b"\x00")}
    )
    cases["refused: references, 500k blocks of 1"] = hostile_value(
        {"references": _items(room // 2, b"\x00", blocks=room // 2)}
    )
    cases["refused: handling_codes, 1M"] = hostile_value({"handling_codes": _items(room, b"\x00")})
    cases["refused: subjects, 330k minimal"] = hostile_value(
        {"subjects": _items(room // 3, b"\x00\x00\x00")}
    )
    attributes = _items(room // 2, b"\x00\x00")
    cases["refused: one subject, 500k attributes"] = hostile_value(
        {"subjects": b"\x02\x00\x00" + attributes + b"\x00"}
    )
    cases["refused: 1000 subjects x 3 attributes"] = hostile_value(
        {"subjects": _items(1000, b"\x00\x00" + _items(3, b"\x00\x00"))}
    )
    cases["refused, small: references, count 2^62"] = hostile_value(
        {"references": _long(2**62) + bytes(16)}
    )
    cases["refused: title of 1 MiB"] = hostile_value({"title": _long(room) + b"t" * room})
    # Small datums (at most 2 KiB) are decoded first, then counted: the worst of those.
    cases["refused, small: 1500 empty references"] = hostile_value(
        {"references": _items(1500, b"\x00")}
    )
    cases["accepted, small: 520 minimal subjects"] = hostile_value(
        {"subjects": _items(520, b"\x00\x00\x00")}
    )
    # Accepted, as full as the limits allow: 1000 subjects with an attribute each and 46
    # references, next to the template's handling code and recipient (2048 items),
    # first with empty strings, then with strings long enough to fill the record.
    full = {
        "subjects": _items(1000, b"\x00\x00" + _items(1, b"\x00\x00")),
        "references": _items(46, b"\x00"),
    }
    cases["accepted: 2048 items, empty strings"] = hostile_value(full)
    text = _long(490) + b"v" * 490
    attribute = b"\x00" + text  # an empty name, a 490-byte value
    cases["accepted: 2048 items, 1 MiB of strings"] = hostile_value(
        {
            "subjects": _items(1000, b"\x00" + text + _items(1, attribute)),
            "references": _items(46, text),
        }
    )
    cases["accepted: summary of 1 MiB"] = hostile_value({"summary": _long(room) + b"s" * room})
    return cases


def _best(run: Callable[[], object], repeat: int = 7) -> tuple[float, str]:
    best = float("inf")
    outcome = ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            run()
            outcome = "accepted"
        except RecordRejected as exc:  # the pre-scan alone raises it too
            outcome = exc.reason
        best = min(best, time.perf_counter() - start)
    return best, outcome


def main() -> None:
    """Print the cost of each case."""
    print(
        f"python {platform.python_version()}, fastavro {fastavro.__version__}, {platform.machine()}"
    )
    store = default_store()
    writer = store.latest(INTELLIGENCE_EVENT)
    scanner = store._scanner(writer, EVENT_LIMITS)
    print(
        f"{'case':40} {'size':>9} {'open_':>8} {'outcome':>14} "
        f"{'of which: verify':>16} {'pre-scan':>8}   {'fastavro unbounded':>18}"
    )
    for name, value in _cases().items():
        print(_row(name, value, scanner))


def _row(name: str, value: bytes, scanner: Scanner) -> str:
    store = default_store()
    took, outcome = _best(lambda: open_(value, TRUST, now=NOW))
    signed = store.decode(value, SIGNED_EVENT)
    event_bytes, signature = signed["event"], signed["signature"]
    verify, _ = _best(lambda: KEY.public_key.verify(event_bytes, signature))
    prescan, _ = _best(lambda: scan(scanner, event_bytes, HEADER_SIZE))
    alone, _ = _best(lambda: store.decode(event_bytes, INTELLIGENCE_EVENT), repeat=3)
    return (
        f"{name:40} {len(value):>9,} {took * 1e3:6.2f}ms {outcome:>14} "
        f"{verify * 1e3:14.2f}ms {prescan * 1e3:6.2f}ms   {alone * 1e3:16.1f}ms"
    )


if __name__ == "__main__":
    main()

"""Decode limits: a cheap pre-scan that refuses a datum before fastavro reads it.

fastavro reads an Avro array or map of any length. Every item costs at least one byte but also
a Python object and a call, so a 1 MiB datum of one-byte items makes a million objects: measured
here, 110 to 530 ms to decode (docs/wire-format.md), against a few microseconds for an ordinary
event. The pre-scan walks the datum with the writer schema, compiled once into closures, without
building anything: it reads lengths and counts, skips bytes, and stops at the first limit
exceeded. So refusing a hostile datum costs no more than scanning an acceptable one, and what
fastavro reads afterwards is bounded by the same limits.

Small datums take a shorter road: one of at most ``SMALL_DATUM`` bytes (2 KiB) cannot hold
more than that many items, which fastavro decodes in about a millisecond even when hostile, nor
a string longer than any limit; so it is decoded first and its arrays and maps are counted
afterwards (``check``), which for an ordinary event costs about a microsecond where the pre-scan
costs some fifteen. Both roads apply the same limits and raise the same errors for them.

Paths name a place in the datum: record fields by name joined with ``.``, array items with
``[]``, map values with ``{}`` (``subjects[].attributes{}``); union branches add nothing, so
``payload.data`` is the bytes of the non-null branch. Map keys count as strings of the map's own
path (``subjects[].attributes``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bus.errors import BusError, LimitExceeded, MalformedDatum, SchemaError, TruncatedRecord

__all__ = ["SMALL_DATUM", "DecodeLimits", "Scanner", "check", "compile_scanner", "scan"]

Skip = Callable[[bytes, int, list[int]], int]
"""Skips one value at a position and returns the position after it; the list is the budget."""
Check = Callable[[Any, list[int]], None]
"""Counts the arrays and maps of one decoded value against the limits; the list is the budget."""

SMALL_DATUM: Final = 2048
"""Datums up to this size are decoded first and checked after (see the module's docstring)."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DecodeLimits:
    """How much one datum may hold before it is refused unread (``LimitExceeded``).

    ``items`` caps each array or map by path (across all its blocks), else ``default_items``;
    ``total_items`` caps all arrays and maps of the datum together. ``string_bytes`` caps
    strings and bytes by path (``None``: only the record's size bounds it), else
    ``default_string_bytes``. ``max_depth`` caps the nesting of the schema (only a recursive
    schema could reach it). Compared by identity: scanners are cached per limits object.
    """

    items: Mapping[str, int] = field(default_factory=dict)
    default_items: int = 1000
    total_items: int = 2048
    string_bytes: Mapping[str, int | None] = field(default_factory=dict)
    default_string_bytes: int | None = 4096
    max_depth: int = 16


@dataclass(frozen=True, slots=True)
class Scanner:
    """A compiled pre-scan of one writer schema under one ``DecodeLimits``."""

    skip: Skip
    total_items: int
    name: str
    small: int = 0
    """Datums of at most this many bytes may be decoded first and then ``check``-ed (0: none)."""
    check: Check | None = None
    """Counts a decoded datum's arrays and maps (read with the reader schema)."""


_Bounds = tuple[tuple[str, int | None], ...]
"""(path, longest length or None) of each string in an item: one for arrays, two for maps."""

_MAX_VARINT: Final = 10
_UNBOUNDED: Final = 1 << 63


def _long(data: bytes, pos: int) -> tuple[int, int]:
    # Avro long: base-128 varint, low group first, then zig-zag. Raises IndexError at the end.
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    value = byte & 0x7F
    shift = 7
    end = pos + _MAX_VARINT
    pos += 1
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
    raise MalformedDatum(f"an Avro long at byte {end - _MAX_VARINT} runs past {_MAX_VARINT} bytes")


def scan(scanner: Scanner, data: bytes, start: int) -> None:
    """Pre-scan the datum in ``data[start:]``; raise if it breaks a limit or is not well formed.

    ``LimitExceeded`` naming the path and the limit, ``TruncatedRecord`` if the data ends
    inside the datum, ``MalformedDatum`` if bytes follow it or a length, index or varint is
    impossible.
    """
    try:
        end = scanner.skip(data, start, [scanner.total_items])
    except IndexError:
        raise TruncatedRecord(
            f"{scanner.name} datum is cut short: the record ends at byte {len(data)}"
        ) from None
    if end != len(data):
        raise MalformedDatum(
            f"{scanner.name} datum ends at byte {end} but the record has {len(data)} bytes"
        )


def check(scanner: Scanner, datum: Any) -> None:
    """Count the arrays and maps of a decoded small datum; ``LimitExceeded`` as ``scan`` would."""
    if scanner.check is not None:
        scanner.check(datum, [scanner.total_items])


def compile_scanner(schema: Any, limits: DecodeLimits, reader: Any = None) -> Scanner:
    """Compile a fastavro-parsed writer schema (``parse_schema`` output) into a pre-scan.

    ``reader`` is the schema the datum is decoded with, if not the writer's: the after-decode
    check of small datums walks that one.
    """
    name = schema.get("name", "datum") if isinstance(schema, dict) else str(schema)
    skip = _Compiler(limits).compile(schema, "", 0)
    try:
        counter = _Counter(limits).compile(schema if reader is None else reader, "", 0)
    except _NoShortcut:
        return Scanner(skip, limits.total_items, name)
    bounds = [b for b in (limits.default_string_bytes, *limits.string_bytes.values()) if b]
    small = min([SMALL_DATUM, *bounds])
    return Scanner(skip, limits.total_items, name, small, counter)


class _Compiler:
    __slots__ = ("_limits", "_named")

    def __init__(self, limits: DecodeLimits) -> None:
        self._limits = limits
        self._named: dict[str, Any] = {}

    def compile(self, schema: Any, path: str, depth: int) -> Skip:
        if depth > self._limits.max_depth:
            return _too_deep(path, self._limits.max_depth)
        if isinstance(schema, list):
            return _union(path, [self.compile(branch, path, depth) for branch in schema])
        if isinstance(schema, str):
            if schema in self._named:
                # A named type used again: compiled anew one level deeper, so that a recursive
                # schema ends at max_depth instead of looping.
                return self.compile(self._named[schema], path, depth + 1)
            schema = {"type": schema}
        kind = schema["type"]
        if isinstance(kind, (dict, list)):
            return self.compile(kind, path, depth)
        if kind in ("record", "error", "enum", "fixed"):
            self._named[schema["name"]] = schema
        if kind in ("record", "error"):
            prefix = f"{path}." if path else ""
            fields = tuple(
                self.compile(f["type"], prefix + f["name"], depth + 1) for f in schema["fields"]
            )
            return _record(fields)
        if kind == "array":
            if _is_string(schema["items"]):  # inlined: the hot case of many small items
                bounds: _Bounds = ((f"{path}[]", self._bytes(f"{path}[]")),)
                return _strings(path, bounds, self._items(path), self._limits.total_items)
            item = self.compile(schema["items"], f"{path}[]", depth + 1)
            return _collection(path, None, item, self._items(path), self._limits.total_items)
        if kind == "map":
            if _is_string(schema["values"]):
                bounds = ((path, self._bytes(path)), (f"{path}{{}}", self._bytes(f"{path}{{}}")))
                return _strings(path, bounds, self._items(path), self._limits.total_items)
            key = _string(path, self._bytes(path))
            value = self.compile(schema["values"], f"{path}{{}}", depth + 1)
            return _collection(path, key, value, self._items(path), self._limits.total_items)
        if kind == "enum":
            return _index(path, len(schema["symbols"]), "enum symbol")
        if kind == "fixed":
            return _fixed(path, int(schema["size"]))
        if kind in ("string", "bytes"):
            return _string(path, self._bytes(path))
        if kind in ("int", "long"):
            return _varint
        if kind == "boolean":
            return _fixed(path, 1)
        if kind == "float":
            return _fixed(path, 4)
        if kind == "double":
            return _fixed(path, 8)
        if kind == "null":
            return _null
        raise SchemaError(f"{path or 'datum'}: the decode pre-scan knows no Avro type {kind!r}")

    def _items(self, path: str) -> int:
        return self._limits.items.get(path, self._limits.default_items)

    def _bytes(self, path: str) -> int | None:
        return self._limits.string_bytes.get(path, self._limits.default_string_bytes)


class _NoShortcut(BusError):
    """The schema has a shape the after-decode count does not handle: always pre-scan.

    Control flow inside this module only; it never reaches a caller.
    """


class _Counter:
    """Compiles a schema into a ``Check`` that visits only the arrays and maps of a datum."""

    __slots__ = ("_limits", "_named")

    def __init__(self, limits: DecodeLimits) -> None:
        self._limits = limits
        self._named: dict[str, Any] = {}

    def compile(self, schema: Any, path: str, depth: int) -> Check | None:
        """A ``Check``, or ``None`` when the value holds no array or map."""
        if depth > self._limits.max_depth:
            raise _NoShortcut
        if isinstance(schema, list):
            if any(self.compile(branch, path, depth) for branch in schema):
                raise _NoShortcut  # would need to tell the branches apart by value
            return None
        if isinstance(schema, str):
            if schema in self._named:
                return self.compile(self._named[schema], path, depth + 1)
            return None
        kind = schema["type"]
        if isinstance(kind, (dict, list)):
            return self.compile(kind, path, depth)
        if kind in ("record", "error", "enum", "fixed"):
            self._named[schema["name"]] = schema
        if kind in ("record", "error"):
            prefix = f"{path}." if path else ""
            fields = [
                (f["name"], self.compile(f["type"], prefix + f["name"], depth + 1))
                for f in schema["fields"]
            ]
            return _counted_record(tuple((n, c) for n, c in fields if c is not None))
        if kind in ("array", "map"):
            inner = schema["items"] if kind == "array" else schema["values"]
            mark = "[]" if kind == "array" else "{}"
            each = self.compile(inner, path + mark, depth + 1)
            limit = self._limits.items.get(path, self._limits.default_items)
            return _counted(path, limit, self._limits.total_items, each, kind == "map")
        return None


def _counted_record(fields: tuple[tuple[str, Check], ...]) -> Check | None:
    if not fields:
        return None

    def count(value: Any, budget: list[int]) -> None:
        for name, field_count in fields:
            field_count(value[name], budget)

    return count


def _counted(path: str, limit: int, total: int, each: Check | None, is_map: bool) -> Check:
    where = path or "datum"

    def count(value: Any, budget: list[int]) -> None:
        size = len(value)
        if size > limit:
            raise LimitExceeded(f"{where}: more than {limit} items")
        budget[0] -= size
        if budget[0] < 0:
            raise LimitExceeded(f"more than {total} items in all arrays and maps together")
        if each is not None:
            for item in value.values() if is_map else value:
                each(item, budget)

    return count


def _null(data: bytes, pos: int, budget: list[int]) -> int:
    return pos


def _varint(data: bytes, pos: int, budget: list[int]) -> int:
    return _long(data, pos)[1]


def _fixed(path: str, size: int) -> Skip:
    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        end = pos + size
        if end > len(data):
            raise IndexError
        return end

    return skip


def _string(path: str, limit: int | None) -> Skip:
    where = path or "datum"
    bound = _UNBOUNDED if limit is None else limit

    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        length = data[pos]
        if length < 0x80:  # the common cases, strings shorter than 8 KiB: inline
            pos += 1
            if length & 1:
                raise MalformedDatum(f"{where}: negative length")
            length >>= 1
        elif data[pos + 1] < 0x80:
            length = (length & 0x7F) | (data[pos + 1] << 7)
            pos += 2
            if length & 1:
                raise MalformedDatum(f"{where}: negative length")
            length >>= 1
        else:
            length, pos = _long(data, pos)
            if length < 0:
                raise MalformedDatum(f"{where}: negative length {length}")
        if length > bound:
            raise LimitExceeded(f"{where}: {length} bytes, more than the limit of {limit}")
        pos += length
        if pos > len(data):
            raise IndexError
        return pos

    return skip


def _index(path: str, count: int, what: str) -> Skip:
    where = path or "datum"
    top = 2 * count  # zig-zag: index i is the one byte 2i while 2i < 128

    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        byte = data[pos]
        if byte < top and not byte & 1 and byte < 0x80:
            return pos + 1
        index, pos = _long(data, pos)
        if not 0 <= index < count:
            raise MalformedDatum(f"{where}: {what} {index} of {count}")
        return pos

    return skip


def _union(path: str, branches: list[Skip]) -> Skip:
    where = path or "datum"
    count = len(branches)

    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        index, pos = _long(data, pos)
        if not 0 <= index < count:
            raise MalformedDatum(f"{where}: union branch {index} of {count}")
        return branches[index](data, pos, budget)

    return skip


def _record(fields: tuple[Skip, ...]) -> Skip:
    if len(fields) == 3:  # unrolled for small records such as Subject and Origin
        first, second, third = fields

        def skip3(data: bytes, pos: int, budget: list[int]) -> int:
            return third(data, second(data, first(data, pos, budget), budget), budget)

        return skip3

    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        for field_skip in fields:
            pos = field_skip(data, pos, budget)
        return pos

    return skip


def _collection(path: str, key: Skip | None, value: Skip, limit: int, total: int) -> Skip:
    where = path or "datum"

    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        seen = 0
        while True:
            count, pos = _long(data, pos)
            if count == 0:
                return pos
            if count < 0:  # a block of -count items, preceded by its size in bytes
                count = -count
                pos = _long(data, pos)[1]
            seen += count
            if seen > limit:
                raise LimitExceeded(f"{where}: more than {limit} items")
            budget[0] -= count
            if budget[0] < 0:
                raise LimitExceeded(f"more than {total} items in all arrays and maps together")
            if key is None:
                for _ in range(count):
                    pos = value(data, pos, budget)
            else:
                for _ in range(count):
                    pos = value(data, key(data, pos, budget), budget)

    return skip


def _is_string(schema: Any) -> bool:
    if isinstance(schema, dict):
        schema = schema["type"]
    return schema in ("string", "bytes")


def _strings(path: str, bounds: tuple[tuple[str, int | None], ...], limit: int, total: int) -> Skip:
    """An array of strings (one bound) or a map of strings to strings (key and value bounds)."""
    where = path or "datum"
    checks = tuple((name, _UNBOUNDED if bound is None else bound) for name, bound in bounds)

    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        seen = 0
        size = len(data)
        while True:
            count, pos = _long(data, pos)
            if count == 0:
                return pos
            if count < 0:  # a block of -count items, preceded by its size in bytes
                count = -count
                pos = _long(data, pos)[1]
            seen += count
            if seen > limit:
                raise LimitExceeded(f"{where}: more than {limit} items")
            budget[0] -= count
            if budget[0] < 0:
                raise LimitExceeded(f"more than {total} items in all arrays and maps together")
            for _ in range(count):
                for name, bound in checks:
                    length = data[pos]
                    if length < 0x80:
                        pos += 1
                        if length & 1:
                            raise MalformedDatum(f"{name}: negative length")
                        length >>= 1
                    elif data[pos + 1] < 0x80:
                        length = (length & 0x7F) | (data[pos + 1] << 7)
                        pos += 2
                        if length & 1:
                            raise MalformedDatum(f"{name}: negative length")
                        length >>= 1
                    else:
                        length, pos = _long(data, pos)
                        if length < 0:
                            raise MalformedDatum(f"{name}: negative length {length}")
                    if length > bound:
                        raise LimitExceeded(
                            f"{name}: {length} bytes, more than the limit of {bound}"
                        )
                    pos += length
                if pos > size:
                    raise IndexError

    return skip


def _too_deep(path: str, max_depth: int) -> Skip:
    def skip(data: bytes, pos: int, budget: list[int]) -> int:
        raise LimitExceeded(f"{path or 'datum'}: nested deeper than {max_depth} levels")

    return skip

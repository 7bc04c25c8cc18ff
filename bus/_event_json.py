"""The JSON form of events: conversion to and from the in-memory form along the schema.

The JSON form is for people and tools (docs/event-json.md): a JSON object with every field of
``IntelligenceEvent`` by name; enums as their symbol strings; ``event_id`` as a UUID string (any
case on input, canonical lowercase in memory and on output); timestamps as RFC 3339 strings in
UTC (``2026-03-01T09:30:00.000000Z``; any offset is accepted on input); ``bytes`` as standard
base64 with padding; optional fields as ``null`` or the plain value (no Avro-JSON union
wrapping). On input, fields with a schema default may be left out; unknown fields are errors.

The conversion walks the newest ``IntelligenceEvent`` schema, so it follows schema evolution;
it checks what the schema says and raises ``EventError`` naming the field path
(``subjects[1].kind``) of the first problem. The rules the schema cannot express are the
model's: :func:`bus.events.validate`. ``bus.events`` puts the two together in ``from_json`` and
friends; use those.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from types import MappingProxyType
from typing import Any, Final

from bus._time import format_time, parse_time
from bus.codec import INTELLIGENCE_EVENT, SchemaStore, default_store
from bus.errors import EventError

__all__ = ["dump", "load", "named_types", "parse", "shown"]

_INT_RANGE: Final = (-(2**31), 2**31 - 1)
_LONG_RANGE: Final = (-(2**63), 2**63 - 1)
_UUID_TEXT: Final = re.compile(r"\A[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def shown(value: object) -> str:
    """``repr(value)``, cut to 40 characters: what an error message may echo of a value."""
    # Bound what we echo: a message may reach logs, and field contents are intelligence.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def _json_type(value: object) -> str:
    """``a number``, ``an array``...: the JSON type of a value, with its article."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


class _Walker:
    """Converts between the JSON form and the in-memory form along a fastavro-parsed schema."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.named: dict[str, Any] = {}
        self._collect(schema)

    def _collect(self, schema: Any) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch)
        elif isinstance(schema, dict):
            if schema["type"] in ("record", "enum", "fixed"):
                self.named[schema["name"]] = schema
            for field in schema.get("fields", ()):
                self._collect(field["type"])
            for key in ("items", "values"):
                if key in schema:
                    self._collect(schema[key])

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.named:
            return self.named[schema]
        return schema

    # JSON form -> in-memory form, with validation.
    def load(self, schema: Any, value: Any, path: str) -> Any:
        schema = self._resolve(schema)
        kind = _kind(schema)
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if kind == "union":
            return self._load_union(schema, value, path)
        if kind == "null":
            if value is not None:
                raise EventError(f"{path}: must be null, not {_json_type(value)}")
            return None
        if logical == "uuid":
            if not isinstance(value, str) or not _UUID_TEXT.match(value):
                raise EventError(
                    f"{path}: {shown(value)} is not a UUID like "
                    "'0b7e4c8e-9f1d-4c8a-8d2e-3f0c6a1b2c3d'"
                )
            return str(uuid.UUID(value))
        if logical in ("timestamp-micros", "timestamp-millis"):
            return _load_time(value, path)
        if kind == "string":
            if not isinstance(value, str):
                raise EventError(f"{path}: must be a string, not {_json_type(value)}")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise EventError(f"{path}: must be true or false, not {_json_type(value)}")
            return value
        if kind in ("int", "long"):
            low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise EventError(f"{path}: must be an integer from {low} to {high}")
            return value
        if kind in ("float", "double"):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise EventError(f"{path}: must be a number, not {_json_type(value)}")
            return float(value)
        if kind in ("bytes", "fixed"):
            return self._load_bytes(schema, value, path)
        if kind == "enum":
            if not isinstance(value, str) or value not in schema["symbols"]:
                raise EventError(
                    f"{path}: {shown(value)} is not one of {', '.join(schema['symbols'])}"
                )
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise EventError(f"{path}: must be an array, not {_json_type(value)}")
            return [
                self.load(schema["items"], item, f"{path}[{i}]") for i, item in enumerate(value)
            ]
        if kind == "map":
            if not isinstance(value, dict):
                raise EventError(f"{path}: must be an object, not {_json_type(value)}")
            return {
                key: self.load(schema["values"], item, f"{path}.{key}")
                for key, item in value.items()
            }
        if kind == "record":
            return self._load_record(schema, value, path)
        raise EventError(f"{path}: unsupported schema type {kind}")

    def _load_union(self, schema: list[Any], value: Any, path: str) -> Any:
        if value is None and "null" in schema:
            return None
        branches = [branch for branch in schema if branch != "null"]
        first_error: EventError | None = None
        for branch in branches:
            try:
                return self.load(branch, value, path)
            except EventError as error:
                first_error = first_error or error
        if first_error is not None and len(branches) == 1:
            raise first_error
        raise EventError(f"{path}: {_json_type(value)} fits none of the allowed types")

    def _load_bytes(self, schema: Any, value: Any, path: str) -> bytes:
        if not isinstance(value, str):
            raise EventError(f"{path}: must be base64 text, not {_json_type(value)}")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise EventError(f"{path}: is not valid base64 (standard alphabet, padded)") from None
        if _kind(schema) == "fixed" and len(data) != schema["size"]:
            raise EventError(f"{path}: must be {schema['size']} bytes, not {len(data)}")
        return data

    def _load_record(self, schema: Any, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise EventError(f"{path or 'event'}: must be an object, not {_json_type(value)}")
        names = [field["name"] for field in schema["fields"]]
        unknown = [key for key in value if key not in names]
        if unknown:
            where = f"{path}.{unknown[0]}" if path else str(unknown[0])
            raise EventError(f"{where}: unknown field (known: {', '.join(names)})")
        out: dict[str, Any] = {}
        for field in schema["fields"]:
            name = field["name"]
            where = f"{path}.{name}" if path else name
            if name in value:
                out[name] = self.load(field["type"], value[name], where)
            elif "default" in field:
                out[name] = self.load(field["type"], field["default"], where)
            else:
                raise EventError(f"{where}: missing (the field has no default)")
        return out

    # In-memory form -> JSON form.
    def dump(self, schema: Any, value: Any) -> Any:
        schema = self._resolve(schema)
        kind = _kind(schema)
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if value is None:
            return None
        if kind == "union":
            branches = [branch for branch in schema if branch != "null"]
            return self.dump(branches[0], value) if len(branches) == 1 else _plain(value)
        if logical == "uuid":
            return str(value)
        if logical in ("timestamp-micros", "timestamp-millis"):
            return _dump_time(value)
        if kind in ("bytes", "fixed"):
            return base64.b64encode(value).decode("ascii")
        if kind == "array":
            return [self.dump(schema["items"], item) for item in value]
        if kind == "map":
            return {key: self.dump(schema["values"], item) for key, item in value.items()}
        if kind == "record":
            return {
                field["name"]: self.dump(field["type"], value.get(field["name"], None))
                for field in schema["fields"]
            }
        return value


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return _dump_time(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _load_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise EventError(
            f"{path}: must be an RFC 3339 time string like 2026-03-01T09:30:00Z, "
            f"not {_json_type(value)}"
        )
    try:
        moment = parse_time(value)
    except ValueError:
        moment = None
    # The JSON form is strict where the parser is lenient: the date and time part with a T.
    if moment is None or "T" not in value.upper():
        raise EventError(
            f"{path}: {shown(value)} is not an RFC 3339 time with an offset, "
            "like 2026-03-01T09:30:00Z"
        )
    return moment.astimezone(UTC)


def _dump_time(value: datetime | int) -> str:
    if isinstance(value, int):
        value = _EPOCH + timedelta(microseconds=value)
    return format_time(value)


def _walker(store: SchemaStore | None) -> _Walker:
    return _walker_for(store or default_store())


@cache
def _walker_for(store: SchemaStore) -> _Walker:
    return _Walker(store.latest(INTELLIGENCE_EVENT).parsed)


def parse(text: str | bytes) -> Any:
    """Parse JSON text; ``EventError`` says where it is broken (or too deeply nested)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(
            f"event JSON is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise EventError("event JSON is not UTF-8 text") from None
    except RecursionError:
        # json's decoder recurses once per level: hostile input must not escape as a
        # RecursionError (which is no BusError) and stop a command or a consumer.
        raise EventError(f"event JSON {_too_deep(text)}") from None


_MAX_DEPTH: Final = 100
_BRACKETS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(text: str | bytes) -> str:
    """Where ``text`` first nests deeper than ``_MAX_DEPTH`` levels, for the error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - text.rfind("\n", 0, match.start())
                return (
                    f"nests arrays or objects more than {_MAX_DEPTH} levels deep at line {line} "
                    f"column {column}; an event nests a few levels at most"
                )
        elif token in "]}":
            depth -= 1
    return "nests arrays or objects too deeply; an event nests a few levels at most"


def named_types(store: SchemaStore | None = None) -> Mapping[str, Any]:
    """The named types (records, enums, fixed) of the newest ``IntelligenceEvent``, by full name."""
    return MappingProxyType(_walker(store).named)


def load(value: object, *, store: SchemaStore | None = None) -> dict[str, Any]:
    """The in-memory event of a parsed JSON value, checked against the schema only."""
    event: dict[str, Any] = (walker := _walker(store)).load(walker.schema, value, "")
    return event


def dump(event: Any, *, store: SchemaStore | None = None) -> dict[str, Any]:
    """The JSON form of an in-memory event, as Python objects ready for ``json.dumps``."""
    dumped: dict[str, Any] = (walker := _walker(store)).dump(walker.schema, event)
    return dumped

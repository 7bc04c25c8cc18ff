"""The JSON form of events, their validation, and example events.

The JSON form is for people and tools (docs/event-json.md): a JSON object with every field of
``IntelligenceEvent`` by name; enums as their symbol strings; ``event_id`` as a UUID string (any
case on input, canonical lowercase in memory and on output); timestamps as RFC 3339 strings in
UTC (``2026-03-01T09:30:00.000000Z``; any offset is accepted on input); ``bytes`` as standard
base64 with padding; optional fields as ``null`` or the plain value (no Avro-JSON union
wrapping). On input, fields with a schema default may be left out; unknown fields are errors.

``from_json`` returns the in-memory form that ``bus.envelope.seal`` takes (see ``bus.codec``),
and raises ``EventError`` naming the field path (``subjects[1].kind``) of the first problem.
The conversion walks the newest ``IntelligenceEvent`` schema, so it follows schema evolution.
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
from typing import Any, Final

from bus.codec import INTELLIGENCE_EVENT, SchemaStore, default_store
from bus.errors import EventError
from bus.trust import AGENCY_ID

__all__ = [
    "CRIME_AREAS",
    "to_json",
    "from_json",
    "to_jsonable",
    "from_jsonable",
    "validate",
    "template",
]

CRIME_AREAS: Final = (
    "MARITIME_PIRACY",
    "COUNTER_TERRORISM",
    "MAJOR_EVENT_SECURITY",
    "CYBERCRIME",
    "CHILD_SEXUAL_EXPLOITATION",
    "OTHER",
)
"""Symbols of ``CrimeArea`` in schema order."""

_INT_RANGE: Final = (-(2**31), 2**31 - 1)
_LONG_RANGE: Final = (-(2**63), 2**63 - 1)
_UUID_TEXT: Final = re.compile(r"\A[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _show(value: object) -> str:
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
                    f"{path}: {_show(value)} is not a UUID like "
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
                    f"{path}: {_show(value)} is not one of {', '.join(schema['symbols'])}"
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
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or "T" not in value.upper() or moment.tzinfo is None:
        raise EventError(
            f"{path}: {_show(value)} is not an RFC 3339 time with an offset, "
            "like 2026-03-01T09:30:00Z"
        )
    return moment.astimezone(UTC)


def _dump_time(value: datetime | int) -> str:
    if isinstance(value, int):
        value = _EPOCH + timedelta(microseconds=value)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _walker(store: SchemaStore | None) -> _Walker:
    return _walker_for(store or default_store())


@cache
def _walker_for(store: SchemaStore) -> _Walker:
    return _Walker(store.latest(INTELLIGENCE_EVENT).parsed)


def from_jsonable(value: object, *, store: SchemaStore | None = None) -> dict[str, Any]:
    """Check a parsed JSON object and return the in-memory event; ``EventError`` on a problem."""
    event: dict[str, Any] = (walker := _walker(store)).load(walker.schema, value, "")
    validate(event)
    return event


def from_json(text: str | bytes, *, store: SchemaStore | None = None) -> dict[str, Any]:
    """Parse an event in the JSON form; ``EventError`` names the field path of the problem."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(
            f"event JSON is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise EventError("event JSON is not UTF-8 text") from None
    return from_jsonable(value, store=store)


def to_jsonable(event: Mapping[str, Any], *, store: SchemaStore | None = None) -> dict[str, Any]:
    """The JSON form of an in-memory event, as Python objects ready for ``json.dumps``."""
    dumped: dict[str, Any] = (walker := _walker(store)).dump(walker.schema, event)
    return dumped


def to_json(
    event: Mapping[str, Any], *, indent: int | None = 2, store: SchemaStore | None = None
) -> str:
    """The JSON form of an in-memory event as text (UTF-8 safe, keys in schema order)."""
    return json.dumps(to_jsonable(event, store=store), indent=indent, ensure_ascii=False)


def validate(event: Mapping[str, Any]) -> None:
    """Check the rules of the event model that the schema cannot express.

    Raises ``EventError`` naming the field: a lowercase agency id in ``origin.agency`` and
    ``releasable_to``; ``revision`` of at least 1; at least one handling code, none twice, and
    ``handling_conditions`` text when H3 is set; non-empty ``title`` and ``correlation_id``;
    timezone-aware times with ``expires_at`` after ``created_at``.
    """
    agency = event["origin"]["agency"]
    if not AGENCY_ID.match(agency):
        raise EventError(f"origin.agency: {_show(agency)} is not a lowercase agency id")
    for index, recipient in enumerate(event.get("releasable_to", ())):
        if not AGENCY_ID.match(recipient):
            raise EventError(
                f"releasable_to[{index}]: {_show(recipient)} is not a lowercase agency id"
            )
    if event.get("revision", 1) < 1:
        raise EventError("revision: must be 1 or more")
    codes = list(event.get("handling_codes", ["H2"]))  # the schema's default: restrictive
    if not codes:
        raise EventError("handling_codes: give at least one code (H0 if nothing restricts use)")
    if len(set(codes)) != len(codes):
        raise EventError("handling_codes: a code is listed twice")
    if "H3" in codes and not (event.get("handling_conditions") or "").strip():
        raise EventError("handling_conditions: H3 is set, so the conditions text is required")
    for name in ("title", "correlation_id"):
        if not str(event.get(name, "")).strip():
            raise EventError(f"{name}: must not be empty")
    created_at = event["created_at"]
    for name in ("created_at", "occurred_at", "expires_at"):
        moment = event.get(name)
        if isinstance(moment, datetime) and moment.tzinfo is None:
            raise EventError(f"{name}: needs a timezone")
    expires_at = event.get("expires_at")
    if (
        isinstance(expires_at, datetime)
        and isinstance(created_at, datetime)
        and expires_at <= created_at
    ):
        raise EventError("expires_at: must be later than created_at")


_EXAMPLES: Final[Mapping[str, Mapping[str, Any]]] = {
    "MARITIME_PIRACY": {
        "title": "Boarding of a product tanker in the Gulf of Guinea",
        "summary": "Armed group boarded a product tanker at anchor and took two crew members "
        "ashore. Skiff seen heading north-east.",
        "subjects": [
            {"kind": "VESSEL", "value": "MV EXAMPLE STAR", "attributes": {"imo": "9000001"}},
            {"kind": "LOCATION", "value": "3.5N 5.2E", "attributes": {}},
        ],
        "handling_codes": ["H1"],
        "tlp": "AMBER",
    },
    "COUNTER_TERRORISM": {
        "title": "Facilitator travelling on a forged document",
        "summary": "Suspected logistics facilitator expected to transit a hub airport "
        "on a forged travel document.",
        "subjects": [
            {"kind": "PERSON", "value": "DOE, John", "attributes": {"role": "facilitator"}},
            {"kind": "DOCUMENT", "value": "X0000000", "attributes": {"type": "passport"}},
        ],
        "handling_codes": ["H2"],
        "tlp": "AMBER",
        "priority": "HIGH",
    },
    "MAJOR_EVENT_SECURITY": {
        "title": "Drone threat to an international sports final",
        "summary": "Online chatter about flying drones over the stadium during the final.",
        "subjects": [
            {"kind": "LOCATION", "value": "Example Stadium", "attributes": {}},
            {"kind": "URL", "value": "https://forum.example.org/t/123", "attributes": {}},
        ],
        "handling_codes": ["H0"],
        "tlp": "GREEN",
        "info_kind": "STRATEGIC",
    },
    "CYBERCRIME": {
        "title": "Ransomware command-and-control infrastructure",
        "summary": "C2 server and payment wallet used by a ransomware affiliate.",
        "subjects": [
            {"kind": "IP_ADDRESS", "value": "192.0.2.10", "attributes": {"port": "443"}},
            {"kind": "DOMAIN", "value": "c2.example.net", "attributes": {}},
            {"kind": "CRYPTO_WALLET", "value": "bc1qexample0000000000", "attributes": {}},
            {"kind": "FILE_HASH", "value": "sha256:" + "0" * 64, "attributes": {}},
        ],
        "handling_codes": ["H0"],
        "tlp": "GREEN",
    },
    "CHILD_SEXUAL_EXPLOITATION": {
        "title": "Distribution platform account identified",
        "summary": "Account operating a distribution channel; victim identification ongoing.",
        "subjects": [
            {"kind": "EMAIL_ADDRESS", "value": "account@example.com", "attributes": {}},
        ],
        "handling_codes": ["H3"],
        "handling_conditions": "Not to be disclosed to the account provider.",
        "tlp": "RED",
        "priority": "CRITICAL",
    },
    "OTHER": {
        "title": "Example event",
        "summary": "Replace with the information to share.",
        "subjects": [],
        "handling_codes": ["H0"],
        "tlp": "GREEN",
    },
}


def template(
    area: str = "OTHER",
    *,
    agency: str = "interpol",
    now: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A complete, valid example event (in-memory form) for ``area`` (a ``CrimeArea`` symbol)."""
    if area not in _EXAMPLES:
        raise EventError(f"crime_area: {_show(area)} is not one of {', '.join(CRIME_AREAS)}")
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    peer = "europol" if agency != "europol" else "interpol"
    example = _EXAMPLES[area]
    event: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "revision": 1,
        "origin": {"agency": agency, "unit": "operations-centre", "originator_ref": "CASE-0001"},
        "crime_area": area,
        "info_kind": example.get("info_kind", "OPERATIONAL"),
        "handling_codes": list(example["handling_codes"]),
        "handling_conditions": example.get("handling_conditions"),
        "onward_release_consent": False,
        "tlp": example["tlp"],
        "releasable_to": [peer],
        "source_reliability": "B",
        "info_accuracy": "ACCURACY_2",
        "priority": example.get("priority", "MEDIUM"),
        "created_at": created_at,
        "occurred_at": created_at - timedelta(hours=6),
        "expires_at": created_at + timedelta(days=90),
        "title": example["title"],
        "summary": example["summary"],
        "subjects": [
            {**subject, "attributes": dict(subject["attributes"])}
            for subject in example["subjects"]
        ],
        "correlation_id": f"{agency}-{area.lower().replace('_', '-')}-0001",
        "references": [],
        "payload": {
            "content_type": "application/json",
            "data": json.dumps({"note": "example attachment"}).encode("utf-8"),
        },
    }
    validate(event)
    return event

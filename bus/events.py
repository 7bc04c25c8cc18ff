"""The event model: its vocabularies, the rules the schema cannot express, and its JSON form.

An ``IntelligenceEvent`` is defined by its Avro schema (``schemas/IntelligenceEvent.vN.avsc``).
In memory it is the dict that fastavro reads and writes (see ``bus.codec``). This module adds:

- the enum vocabularies (``CRIME_AREAS``, ``TLP_LEVELS``, ``HANDLING_CODES``...), read from the
  newest schema so that the schema stays their one source of truth;
- :func:`validate`, the rules of the model that a schema cannot express;
- the JSON form for people and tools (docs/event-json.md): :func:`from_json` and :func:`to_json`
  (the conversion itself is in ``bus._event_json``); ``from_json`` raises ``EventError`` naming
  the field path (``subjects[1].kind``) of the first problem;
- :func:`template`, a complete valid example per crime area (the examples are in
  ``bus._examples``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from bus import _event_json, _examples
from bus._event_json import shown
from bus.codec import INTELLIGENCE_EVENT, SchemaStore
from bus.errors import EventError
from bus.trust import AGENCY_ID

__all__ = [
    "CRIME_AREAS",
    "HANDLING_CODES",
    "INFO_ACCURACIES",
    "INFO_KINDS",
    "PRIORITIES",
    "SOURCE_RELIABILITIES",
    "SUBJECT_KINDS",
    "TLP_LEVELS",
    "enum_symbols",
    "from_json",
    "from_jsonable",
    "template",
    "to_json",
    "to_jsonable",
    "validate",
]


def enum_symbols(name: str, *, store: SchemaStore | None = None) -> tuple[str, ...]:
    """The symbols of the enum ``name`` (e.g. ``Tlp``) of the newest ``IntelligenceEvent``.

    In schema order. Raises ``EventError`` if the schema has no enum of that name.
    """
    namespace = INTELLIGENCE_EVENT.rpartition(".")[0]
    schema = _event_json.named_types(store).get(f"{namespace}.{name}")
    if not isinstance(schema, dict) or schema.get("type") != "enum":
        raise EventError(f"{INTELLIGENCE_EVENT} has no enum named {name!r}")
    return tuple(schema["symbols"])


CRIME_AREAS: Final = enum_symbols("CrimeArea")
"""Symbols of ``CrimeArea`` in schema order."""
INFO_KINDS: Final = enum_symbols("InfoKind")
"""Symbols of ``InfoKind`` (operational or strategic information)."""
HANDLING_CODES: Final = enum_symbols("HandlingCode")
"""Europol handling codes, ``H0`` to ``H3``."""
TLP_LEVELS: Final = enum_symbols("Tlp")
"""TLP 2.0 levels, from ``CLEAR`` to ``RED``."""
SOURCE_RELIABILITIES: Final = enum_symbols("SourceReliability")
"""Source reliability grades (``A``, ``B``, ``C``, ``X``)."""
INFO_ACCURACIES: Final = enum_symbols("InfoAccuracy")
"""Information accuracy grades (``ACCURACY_1`` to ``ACCURACY_4``)."""
PRIORITIES: Final = enum_symbols("Priority")
"""Priorities, from ``LOW`` to ``CRITICAL``."""
SUBJECT_KINDS: Final = enum_symbols("SubjectKind")
"""Kinds of subject (person, vessel, IP address...)."""


def from_jsonable(value: object, *, store: SchemaStore | None = None) -> dict[str, Any]:
    """Check a parsed JSON object and return the in-memory event; ``EventError`` on a problem."""
    event = _event_json.load(value, store=store)
    validate(event)
    return event


def from_json(text: str | bytes, *, store: SchemaStore | None = None) -> dict[str, Any]:
    """Parse an event in the JSON form; ``EventError`` names the field path of the problem."""
    return from_jsonable(_event_json.parse(text), store=store)


def to_jsonable(event: Mapping[str, Any], *, store: SchemaStore | None = None) -> dict[str, Any]:
    """The JSON form of an in-memory event, as Python objects ready for ``json.dumps``."""
    return _event_json.dump(event, store=store)


def to_json(
    event: Mapping[str, Any], *, indent: int | None = 2, store: SchemaStore | None = None
) -> str:
    """The JSON form of an in-memory event as text (UTF-8 safe, keys in schema order)."""
    return json.dumps(to_jsonable(event, store=store), indent=indent, ensure_ascii=False)


_UUID_TEXT: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
"""A UUID in canonical lowercase text, what the schema's ``uuid`` logical type promises."""


def validate(event: Mapping[str, Any]) -> None:
    """Check the rules of the event model that the schema cannot express.

    Raises ``EventError`` naming the field: ``event_id`` a UUID in canonical lowercase text
    (or a ``uuid.UUID``, before sealing); a lowercase agency id in ``origin.agency`` and
    ``releasable_to``; ``revision`` an integer of at least 1; at least one handling code, each
    a ``HandlingCode`` symbol and none twice, and ``handling_conditions`` text when H3 is set;
    ``crime_area`` and ``tlp`` symbols of their enums; ``onward_release_consent`` a boolean;
    non-empty ``title`` and ``correlation_id``; timezone-aware times with ``expires_at`` after
    ``created_at``.

    A decoded event always passes the type checks; they are here so that everything a
    receiver relies on (the bridge's release policy and audit record, the replay index) is
    checked in one place, and the bridge and the subscriber refuse the same events. Fields
    with a schema default may be left out (sealing fills them in).
    """
    event_id = event.get("event_id")
    if not isinstance(event_id, uuid.UUID) and not (
        isinstance(event_id, str) and _UUID_TEXT.match(event_id)
    ):
        raise EventError(
            f"event_id: {shown(event_id)} is not a UUID in canonical lowercase text "
            "(like 0f8c3de2-5b9a-4c1e-9d7f-2a6b8e4c1d03)"
        )
    origin = event.get("origin")
    agency = origin.get("agency") if isinstance(origin, Mapping) else None
    if not isinstance(agency, str) or not AGENCY_ID.match(agency):
        raise EventError(f"origin.agency: {shown(agency)} is not a lowercase agency id")
    recipients = event.get("releasable_to", [])
    if not isinstance(recipients, list | tuple):
        raise EventError("releasable_to: must be a list of agency ids")
    for index, recipient in enumerate(recipients):
        if not isinstance(recipient, str) or not AGENCY_ID.match(recipient):
            raise EventError(
                f"releasable_to[{index}]: {shown(recipient)} is not a lowercase agency id"
            )
    revision = event.get("revision", 1)
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise EventError("revision: must be an integer of 1 or more")
    for name, vocabulary, default in (
        ("crime_area", CRIME_AREAS, "OTHER"),
        ("tlp", TLP_LEVELS, "RED"),
    ):
        symbol = event.get(name, default)
        if symbol not in vocabulary or not isinstance(symbol, str):
            raise EventError(f"{name}: {shown(symbol)} is not one of {', '.join(vocabulary)}")
    codes = event.get("handling_codes", ["H2"])  # the schema's default: restrictive
    if not isinstance(codes, list | tuple):
        raise EventError("handling_codes: must be a list of handling codes")
    if not codes:
        raise EventError("handling_codes: give at least one code (H0 if nothing restricts use)")
    for index, code in enumerate(codes):
        if not isinstance(code, str) or code not in HANDLING_CODES:
            raise EventError(
                f"handling_codes[{index}]: {shown(code)} is not one of {', '.join(HANDLING_CODES)}"
            )
    if len(set(codes)) != len(codes):
        raise EventError("handling_codes: a code is listed twice")
    conditions = event.get("handling_conditions")
    if conditions is not None and not isinstance(conditions, str):
        raise EventError("handling_conditions: must be text or null")
    if "H3" in codes and not (conditions or "").strip():
        raise EventError("handling_conditions: H3 is set, so the conditions text is required")
    if not isinstance(event.get("onward_release_consent", False), bool):
        raise EventError("onward_release_consent: must be true or false")
    for name in ("title", "correlation_id"):
        text = event.get(name)
        if not isinstance(text, str):
            raise EventError(f"{name}: must be text")
        if not text.strip():
            raise EventError(f"{name}: must not be empty")
    created_at = event.get("created_at")
    if not isinstance(created_at, datetime):
        raise EventError("created_at: must be a time")
    for name in ("created_at", "occurred_at", "expires_at"):
        moment = event.get(name)
        if moment is not None and not isinstance(moment, datetime):
            raise EventError(f"{name}: must be a time or null")
        if isinstance(moment, datetime) and moment.tzinfo is None:
            raise EventError(f"{name}: needs a timezone")
    expires_at = event.get("expires_at")
    if isinstance(expires_at, datetime) and expires_at <= created_at:
        raise EventError("expires_at: must be later than created_at")


def template(
    area: str = "OTHER",
    *,
    agency: str = "interpol",
    now: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A complete, valid example event (in-memory form) for ``area`` (a ``CrimeArea`` symbol)."""
    event = _examples.example(area, agency=agency, now=now, event_id=event_id)
    validate(event)
    return event

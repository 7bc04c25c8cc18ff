"""Example events: one realistic, valid event per crime area, for docs, demos and tests.

The examples use the vocabulary of the agreement (docs/event-json.md) with made-up but
plausible contents; ``bus event template`` prints them. A unit test checks that every crime
area of the schema has one and that each passes the schema and the model's rules.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bus._event_json import shown
from bus.errors import EventError

__all__ = ["example"]

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


def example(
    area: str = "OTHER",
    *,
    agency: str = "interpol",
    now: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A complete example event (in-memory form) for ``area`` (a ``CrimeArea`` symbol).

    ``bus.events.template`` validates it; use that.
    """
    if area not in _EXAMPLES:
        raise EventError(f"crime_area: {shown(area)} is not one of {', '.join(_EXAMPLES)}")
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    peer = "europol" if agency != "europol" else "interpol"
    sample = _EXAMPLES[area]
    event: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "revision": 1,
        "origin": {"agency": agency, "unit": "operations-centre", "originator_ref": "CASE-0001"},
        "crime_area": area,
        "info_kind": sample.get("info_kind", "OPERATIONAL"),
        "handling_codes": list(sample["handling_codes"]),
        "handling_conditions": sample.get("handling_conditions"),
        "onward_release_consent": False,
        "tlp": sample["tlp"],
        "releasable_to": [peer],
        "source_reliability": "B",
        "info_accuracy": "ACCURACY_2",
        "priority": sample.get("priority", "MEDIUM"),
        "created_at": created_at,
        "occurred_at": created_at - timedelta(hours=6),
        "expires_at": created_at + timedelta(days=90),
        "title": sample["title"],
        "summary": sample["summary"],
        "subjects": [
            {**subject, "attributes": dict(subject["attributes"])} for subject in sample["subjects"]
        ],
        "correlation_id": f"{agency}-{area.lower().replace('_', '-')}-0001",
        "references": [],
        "payload": {
            "content_type": "application/json",
            "data": json.dumps({"note": "example attachment"}).encode("utf-8"),
        },
    }
    return event

"""Test events: a valid event of an agency, fresh for each test.

Keys, trust stores and signed configurations are :mod:`bus.testing`'s
(:func:`bus.testing.signed_config`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bus.events import template

__all__ = ["make_event"]


def make_event(agency: str, *, correlation_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid event of ``agency`` with a fresh id; ``fields`` override the template's."""
    event = template("CYBERCRIME", agency=agency, now=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    event["event_id"] = str(uuid.uuid4())
    event["expires_at"] = event["created_at"] + timedelta(days=30)
    if correlation_id is not None:
        event["correlation_id"] = correlation_id
    event.update(fields)
    return event

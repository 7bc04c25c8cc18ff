"""Test helpers for signed events: keys, a trust store and a configuration that uses them."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bus.config import Config, render_toml
from bus.events import template
from bus.signing import SigningKey
from bus.trust import TrustedKey, append_key

__all__ = ["KEY_START", "make_event", "signed_config"]

KEY_START = datetime(2020, 1, 1, tzinfo=UTC)
"""Test keys are valid from here, open-ended."""


def signed_config(config: Config, directory: Path) -> Config:
    """``config`` with a new signing key per agency, all trusted by one trust store.

    Writes ``AGENCY.key.pem`` and ``trust.toml`` into ``directory``, and the configuration
    itself as ``bus.toml`` (so that the CLI and child processes can read it).
    """
    directory.mkdir(parents=True, exist_ok=True)
    trust = directory / "trust.toml"
    agencies = {}
    for name, settings in config.agencies.items():
        key = SigningKey.generate()
        key_file = directory / f"{name}.key.pem"
        key_file.write_bytes(key.to_pem())
        key_file.chmod(0o600)  # SigningKey.load refuses a private key others may read
        append_key(trust, TrustedKey(agency=name, public_key=key.public_key, not_before=KEY_START))
        agencies[name] = replace(settings, signing_key=key_file)
    agencies = {name: replace(s, trust_store=trust) for name, s in agencies.items()}
    result = replace(config, path=directory / "bus.toml", agencies=agencies)
    result.path.write_text(render_toml(result), encoding="utf-8")  # type: ignore[union-attr]
    return result


def make_event(agency: str, *, correlation_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid event of ``agency`` with a fresh id; ``fields`` override the template's."""
    event = template("CYBERCRIME", agency=agency, now=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    event["event_id"] = str(uuid.uuid4())
    event["expires_at"] = event["created_at"] + timedelta(days=30)
    if correlation_id is not None:
        event["correlation_id"] = correlation_id
    event.update(fields)
    return event

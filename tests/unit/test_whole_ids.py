"""Ids and names from files and the wire are matched whole: a trailing newline never passes.

``$`` in a Python regex also matches just before a final ``\\n``, so ``re.match(r"^x$", "x\\n")``
succeeds. Every id check uses ``fullmatch`` or ``\\Z``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus import events
from bus.config import load_config
from bus.errors import ConfigError, EventError, PolicyError
from bus.keyring import generate_agency_key
from bus.policy import parse_policy
from bus.signing import SigningKey
from bus.trust import AGENCY_ID, TrustStore


@pytest.mark.parametrize("text", ["interpol\n", "interpol\r", "\ninterpol", "inter pol", ""])
def test_agency_id_refuses_anything_around_the_id(text: str) -> None:
    assert AGENCY_ID.match(text) is None
    assert AGENCY_ID.search(text) is None
    assert AGENCY_ID.fullmatch(text) is None


def test_agency_id_length_limit_is_63_as_documented() -> None:
    """docs/policy.md and the configuration's message both say at most 63 characters."""
    assert AGENCY_ID.fullmatch("a" * 63)
    assert AGENCY_ID.fullmatch("a" * 64) is None
    documented = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    assert "at most 63 characters" in documented


def test_configuration_refuses_an_agency_id_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    path.write_text('[agencies."interpol\\n"]\nbootstrap_servers = ["127.0.0.1:1"]\n')
    with pytest.raises(ConfigError, match="lowercase"):
        load_config(path)


def test_configuration_refuses_a_bootstrap_server_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    path.write_text('[agencies.interpol]\nbootstrap_servers = ["127.0.0.1:1\\n"]\n')
    with pytest.raises(ConfigError, match="host:port"):
        load_config(path)


def test_trust_store_refuses_an_agency_id_with_a_newline(tmp_path: Path) -> None:
    pem = SigningKey.generate().public_key.to_pem().decode()
    path = tmp_path / "trust.toml"
    path.write_text(
        '[[keys]]\nagency = "interpol\\n"\nnot_before = "2026-01-01T00:00:00Z"\n'
        f'public_key = """\n{pem}"""\n'
    )
    with pytest.raises(ConfigError, match="agency"):
        TrustStore.load(path)


def test_new_keys_refuse_an_agency_id_with_a_newline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="agency"):
        generate_agency_key("interpol\n", tmp_path / "keys")
    assert not (tmp_path / "keys").exists()


def test_policy_refuses_an_agency_id_with_a_newline() -> None:
    with pytest.raises(PolicyError, match="not an agency id"):
        parse_policy({"agencies": ["interpol", "europol\n"]})


def _event_json(**changes: object) -> dict[str, object]:
    value = events.to_jsonable(events.template("CYBERCRIME", now=datetime(2026, 3, 1, tzinfo=UTC)))
    value.update(changes)
    return value


def test_event_refuses_an_origin_or_recipient_with_a_newline() -> None:
    origin = {"agency": "interpol\n", "unit": "u", "originator_ref": "r"}
    with pytest.raises(EventError, match=r"origin\.agency"):
        events.from_jsonable(_event_json(origin=origin))
    with pytest.raises(EventError, match=r"releasable_to\[0\]"):
        events.from_jsonable(_event_json(releasable_to=["europol\n"]))


def test_event_id_with_a_newline_is_an_event_error_not_a_crash() -> None:
    with pytest.raises(EventError, match="event_id"):
        events.from_jsonable(_event_json(event_id=f"{uuid.uuid4()}\n"))

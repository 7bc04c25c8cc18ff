"""``bus.keyring``: an agency's key pair on disk, trusted in the folder's trust store."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.errors import ConfigError
from bus.keyring import BACKDATE, generate_agency_key
from bus.signing import PublicKey, SigningKey
from bus.trust import TrustStore


def test_writes_private_and_public_pem_with_safe_modes_and_trusts_the_key(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    key = generate_agency_key("interpol", keys)
    assert SigningKey.load(keys / "interpol.key.pem").key_id == key.key_id
    assert PublicKey.load(keys / "interpol.pub.pem").key_id == key.key_id
    assert stat.S_IMODE((keys / "interpol.key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert TrustStore.load(keys / "trust.toml").get(key.key_id).agency == "interpol"


def test_keys_of_several_agencies_share_one_trust_store(tmp_path: Path) -> None:
    first = generate_agency_key("interpol", tmp_path)
    second = generate_agency_key("europol", tmp_path)
    store = TrustStore.load(tmp_path / "trust.toml")
    assert {k.key_id: k.agency for k in store} == {
        first.key_id: "interpol",
        second.key_id: "europol",
    }


def test_default_validity_starts_a_day_in_the_past_with_no_end(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    key = generate_agency_key("interpol", tmp_path)
    trusted = TrustStore.load(tmp_path / "trust.toml").get(key.key_id)
    assert before - BACKDATE - timedelta(seconds=1) <= trusted.not_before <= before - BACKDATE
    assert trusted.not_after is None
    trusted.check("interpol", before - timedelta(hours=1))  # an event made just before: fine


def test_explicit_validity_window_is_kept(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2027, 1, 1, tzinfo=UTC)
    key = generate_agency_key("interpol", tmp_path, not_before=start, not_after=end)
    trusted = TrustStore.load(tmp_path / "trust.toml").get(key.key_id)
    assert (trusted.not_before, trusted.not_after) == (start, end)


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    generate_agency_key("interpol", tmp_path)
    pem = (tmp_path / "interpol.key.pem").read_bytes()
    trust = (tmp_path / "trust.toml").read_text()
    with pytest.raises(ConfigError, match=r"interpol\.key\.pem exists"):
        generate_agency_key("interpol", tmp_path)
    assert (tmp_path / "interpol.key.pem").read_bytes() == pem
    assert (tmp_path / "trust.toml").read_text() == trust


def test_a_broken_trust_store_leaves_no_key_files(tmp_path: Path) -> None:
    (tmp_path / "trust.toml").write_text("[[keys]]\nagency = 1\n")
    with pytest.raises(ConfigError, match=r"trust\.toml: keys\[0\]"):
        generate_agency_key("interpol", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.toml"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agency": "Interpol"}, "lowercase agency id"),
        ({"not_before": datetime(2026, 1, 1)}, "UTC offset"),  # naive on purpose
        (
            {
                "not_before": datetime(2026, 1, 1, tzinfo=UTC),
                "not_after": datetime(2025, 1, 1, tzinfo=UTC),
            },
            "not later than",
        ),
    ],
)
def test_bad_arguments_raise_config_error_and_write_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    agency = str(kwargs.pop("agency", "interpol"))
    with pytest.raises(ConfigError, match=message):
        generate_agency_key(agency, tmp_path / "keys", **kwargs)  # type: ignore[arg-type]  # datetimes
    assert not (tmp_path / "keys").exists()

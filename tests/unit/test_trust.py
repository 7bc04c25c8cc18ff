"""``bus.trust``: the trust store file and the rules a key must pass."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.errors import ConfigError, KeyAgencyMismatch, KeyNotValid, KeyRevoked, UnknownKey
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore, append_key

START = datetime(2026, 1, 1, tzinfo=UTC)
KEY = SigningKey.generate()


def _entry(**fields: str) -> str:
    lines = ["[[keys]]"]
    lines += [f"{name} = {value}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


PEM = '"""\n' + KEY.public_key.to_pem().decode() + '"""'


def test_append_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trust.toml"
    first = TrustedKey(agency="interpol", public_key=KEY.public_key, not_before=START)
    other = SigningKey.generate()
    second = TrustedKey(
        agency="europol",
        public_key=other.public_key,
        not_before=START,
        not_after=START + timedelta(days=365),
        revoked_at=START + timedelta(days=30),
    )
    append_key(path, first)
    append_key(path, second)
    store = TrustStore.load(path)
    assert len(store) == 2
    assert store.get(KEY.key_id) == first
    assert store.get(other.key_id) == second
    assert store.for_agency("europol") == (second,)


def test_duplicate_key_is_refused_and_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "trust.toml"
    key = TrustedKey(agency="interpol", public_key=KEY.public_key, not_before=START)
    append_key(path, key)
    before = path.read_text()
    with pytest.raises(ConfigError, match="listed twice"):
        append_key(path, key)
    assert path.read_text() == before


def test_public_key_file_is_relative_to_the_trust_store(tmp_path: Path) -> None:
    (tmp_path / "interpol.pub.pem").write_bytes(KEY.public_key.to_pem())
    path = tmp_path / "trust.toml"
    path.write_text(
        _entry(
            agency='"interpol"',
            public_key_file='"interpol.pub.pem"',
            not_before="2026-01-01T00:00:00Z",  # a TOML date-time works too
        )
    )
    assert KEY.key_id in TrustStore.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[keys]\n", "not valid TOML"),
        ("keys = 1\n", "array of tables"),
        ("[other]\n", "unknown top-level"),
        (
            _entry(agency='"Interpol"', public_key=PEM, not_before='"2026-01-01T00:00:00Z"'),
            "agency",
        ),
        (_entry(agency='"interpol"', not_before='"2026-01-01T00:00:00Z"'), "exactly one"),
        (
            _entry(agency='"interpol"', public_key='"junk"', not_before='"2026-01-01T00:00:00Z"'),
            "PEM",
        ),
        (_entry(agency='"interpol"', public_key=PEM), "not_before"),
        (_entry(agency='"interpol"', public_key=PEM, not_before='"2026-01-01T00:00:00"'), "offset"),
        (_entry(agency='"interpol"', public_key=PEM, not_before='"yesterday"'), "RFC 3339"),
        (
            _entry(
                agency='"interpol"',
                public_key=PEM,
                not_before='"2026-01-01T00:00:00Z"',
                not_after='"2025-01-01T00:00:00Z"',
            ),
            "later than",
        ),
        (
            _entry(
                agency='"interpol"',
                key_id='"ed25519:00"',
                public_key=PEM,
                not_before='"2026-01-01T00:00:00Z"',
            ),
            "does not match",
        ),
        (
            _entry(agency='"interpol"', public_key=PEM, not_before='"2026-01-01T00:00:00Z"', x="1"),
            "unknown fields",
        ),
    ],
)
def test_bad_trust_store_names_file_and_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "trust.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        TrustStore.load(path)
    assert str(path) in str(caught.value)
    if content.startswith("[[keys]]"):
        assert "keys[0]" in str(caught.value)


def test_missing_trust_store() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TrustStore.load("/nonexistent/trust.toml")


def test_unknown_key_id_is_quoted_and_bounded() -> None:
    with pytest.raises(UnknownKey) as caught:
        TrustStore([]).get("x" * 1000 + "\n")
    assert len(str(caught.value)) < 250
    assert "\n" not in str(caught.value)


def test_check_rules() -> None:
    key = TrustedKey(
        agency="interpol",
        public_key=KEY.public_key,
        not_before=START,
        not_after=START + timedelta(days=10),
    )
    key.check("interpol", START)
    key.check("interpol", START + timedelta(days=10) - timedelta(microseconds=1))
    with pytest.raises(KeyNotValid):
        key.check("interpol", START - timedelta(microseconds=1))
    with pytest.raises(KeyNotValid):
        key.check("interpol", START + timedelta(days=10))
    with pytest.raises(KeyAgencyMismatch):
        key.check("europol", START)
    with pytest.raises(KeyAgencyMismatch, match=r"not an agency id \(21 characters\)") as info:
        key.check("Secret Payload Text 1", START)
    assert "Secret" not in str(info.value)
    revoked = TrustedKey(
        agency="interpol", public_key=KEY.public_key, not_before=START, revoked_at=START
    )
    with pytest.raises(KeyRevoked):
        revoked.check("interpol", START - timedelta(days=1))


def _key_entry(key: SigningKey = KEY) -> TrustedKey:
    return TrustedKey(agency="interpol", public_key=key.public_key, not_before=START)


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_a_trust_store_others_may_write_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    """Whoever can change the trust store decides whom the receiver trusts."""
    path = tmp_path / "trust.toml"
    append_key(path, _key_entry())
    path.chmod(mode)
    with pytest.raises(ConfigError, match="writable by group or others") as caught:
        TrustStore.load(path)
    assert f"chmod go-w {path}" in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)
    path.chmod(0o644)
    assert KEY.key_id in TrustStore.load(path)


def test_a_public_key_file_others_may_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "interpol.pub.pem").write_bytes(KEY.public_key.to_pem())
    (tmp_path / "interpol.pub.pem").chmod(0o666)
    path = tmp_path / "trust.toml"
    path.write_text(
        _entry(agency='"interpol"', public_key_file='"interpol.pub.pem"', not_before='"2026-01-01"')
    )
    with pytest.raises(ConfigError, match="public key file is writable by group or others"):
        TrustStore.load(path)


def test_append_key_creates_the_store_with_mode_0644_and_no_temporary_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trust.toml"
    append_key(path, _key_entry())
    append_key(path, _key_entry(SigningKey.generate()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.toml"]
    assert len(TrustStore.load(path)) == 2


def test_append_key_keeps_the_mode_of_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "trust.toml"
    append_key(path, _key_entry())
    path.chmod(0o600)
    append_key(path, _key_entry(SigningKey.generate()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_append_key_replaces_the_store_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write leaves the old store whole, and no temporary file behind."""
    path = tmp_path / "trust.toml"
    append_key(path, _key_entry())
    before = path.read_bytes()
    inode = path.stat().st_ino
    written: list[tuple[str, str]] = []

    def failing_replace(source: str, target: str) -> None:
        written.append((source, target))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ConfigError, match="cannot write the trust store: No space left"):
        append_key(path, _key_entry(SigningKey.generate()))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert path.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trust.toml"]
    [(source, target)] = written
    assert Path(source).parent == tmp_path  # same folder: the rename cannot cross filesystems
    assert Path(target) == path


def test_append_key_refuses_a_store_others_may_write(tmp_path: Path) -> None:
    path = tmp_path / "trust.toml"
    append_key(path, _key_entry())
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="chmod go-w"):
        append_key(path, _key_entry(SigningKey.generate()))


def test_check_by_the_receivers_clock() -> None:
    """``now`` adds the receiver's clock: valid from not_before to not_after plus the grace."""
    key = TrustedKey(
        agency="interpol",
        public_key=KEY.public_key,
        not_before=START,
        not_after=START + timedelta(days=10),
    )
    inside = START + timedelta(days=5)
    key.check("interpol", inside)  # no receiver clock: the event's clock only
    key.check("interpol", inside, now=START)
    key.check("interpol", inside, now=START + timedelta(days=10, minutes=59))
    key.check("interpol", inside, now=START + timedelta(days=12), grace=timedelta(days=3))
    with pytest.raises(KeyNotValid, match="receiver's clock: not valid yet"):
        key.check("interpol", inside, now=START - timedelta(microseconds=1))
    with pytest.raises(KeyNotValid, match="grace of 1 h"):
        key.check("interpol", inside, now=START + timedelta(days=10, hours=1))
    with pytest.raises(KeyNotValid, match="grace of 10 min"):
        key.check("interpol", inside, now=START + timedelta(days=11), grace=timedelta(minutes=10))
    with pytest.raises(KeyNotValid, match="event's clock"):
        key.check("interpol", START - timedelta(days=1), now=inside)
    open_ended = TrustedKey(agency="interpol", public_key=KEY.public_key, not_before=START)
    open_ended.check("interpol", inside, now=START + timedelta(days=10_000))

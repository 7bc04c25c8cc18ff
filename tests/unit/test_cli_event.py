"""``bus keys generate`` and ``bus event template|sign|verify|show``: files, output, exit status."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.cli import main
from bus.codec import default_store
from bus.trust import TrustStore


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    runner = CliRunner()
    for agency in ("interpol", "europol"):
        result = runner.invoke(main, ["keys", "generate", agency, "--dir", str(tmp_path / "k")])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("ed25519:")
    return tmp_path / "k"


def _sign(tmp_path: Path, keys: Path, agency: str = "interpol", area: str = "CYBERCRIME") -> Path:
    runner = CliRunner()
    template = runner.invoke(main, ["event", "template", "--area", area])
    assert template.exit_code == 0
    event = tmp_path / "event.json"
    event.write_text(template.stdout)
    value = tmp_path / f"{agency}.bin"
    result = runner.invoke(
        main,
        ["event", "sign", "--key", str(keys / f"{agency}.key.pem"), str(event), "-o", str(value)],
    )
    assert result.exit_code == 0, result.output
    return value


def test_keys_generate_writes_keys_and_trust(keys: Path) -> None:
    assert {p.name for p in keys.iterdir()} == {
        "interpol.key.pem",
        "interpol.pub.pem",
        "europol.key.pem",
        "europol.pub.pem",
        "trust.toml",
    }
    assert stat.S_IMODE((keys / "interpol.key.pem").stat().st_mode) == 0o600
    assert (keys / "trust.toml").read_text().count("[[keys]]") == 2


def test_keys_generate_backdates_the_key_by_default_and_honours_the_options(
    tmp_path: Path, keys: Path
) -> None:
    """Backdated, so that an event templated before its key was made still verifies."""
    store = TrustStore.load(keys / "trust.toml")
    [trusted] = store.for_agency("interpol")
    assert trusted.not_before <= datetime.now(UTC) - timedelta(hours=23)
    result = CliRunner().invoke(
        main,
        [
            *("keys", "generate", "ecb", "--dir", str(keys)),
            *("--not-before", "2026-01-01T00:00:00Z", "--not-after", "2027-01-01T00:00:00Z"),
        ],
    )
    assert result.exit_code == 0, result.output
    [ecb] = TrustStore.load(keys / "trust.toml").for_agency("ecb")
    assert ecb.key_id == result.stdout.strip()
    assert (ecb.not_before, ecb.not_after) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_keys_generate_rejects_a_time_without_offset(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["keys", "generate", "ecb", "--dir", str(tmp_path), "--not-before", "2026-01-01"],
    )
    assert result.exit_code == 2
    assert "--not-before" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_keys_generate_never_overwrites(keys: Path) -> None:
    result = CliRunner().invoke(main, ["keys", "generate", "interpol", "--dir", str(keys)])
    assert result.exit_code == 2
    assert "exists" in result.stderr


def test_template_is_valid_json_for_each_area() -> None:
    for area in ("maritime_piracy", "COUNTER_TERRORISM", "other"):
        result = CliRunner().invoke(main, ["event", "template", "--area", area])
        assert result.exit_code == 0
        assert json.loads(result.stdout)["crime_area"] == area.upper()


def test_sign_then_verify(tmp_path: Path, keys: Path) -> None:
    value = _sign(tmp_path, keys)
    result = CliRunner().invoke(
        main, ["event", "verify", str(value), "--trust", str(keys / "trust.toml")]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((tmp_path / "event.json").read_text())


def test_sign_to_stdout_gives_the_same_kind_of_value(tmp_path: Path, keys: Path) -> None:
    _sign(tmp_path, keys)
    result = CliRunner().invoke(
        main,
        ["event", "sign", "--key", str(keys / "interpol.key.pem"), str(tmp_path / "event.json")],
    )
    assert result.exit_code == 0
    # One event, one signature: SignedEvent v1, which every receiver reads.
    assert result.stdout_bytes[:10] == default_store().versions("bus.intel.SignedEvent")[0].header


def test_verify_rejects_with_one_line_and_exit_1(tmp_path: Path, keys: Path) -> None:
    spoofed = _sign(tmp_path, keys, agency="europol")  # origin says interpol
    result = CliRunner().invoke(
        main, ["event", "verify", str(spoofed), "--trust", str(keys / "trust.toml")]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "key-agency-mismatch" in result.stderr


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v[:-1], "truncated"),
        (lambda v: b"\x00" + v[1:], "bad-marker"),
        (lambda v: v[:2] + bytes(8) + v[10:], "unknown-fingerprint"),
        (lambda v: v[:-1] + bytes([v[-1] ^ 1]), "bad-signature"),
        (lambda v: v + b"\x00", "malformed-datum"),
    ],
)
def test_verify_bad_records(tmp_path: Path, keys: Path, mutate: object, reason: str) -> None:
    value = _sign(tmp_path, keys)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(mutate(value.read_bytes()))  # type: ignore[operator]
    result = CliRunner().invoke(
        main, ["event", "verify", str(bad), "--trust", str(keys / "trust.toml")]
    )
    assert result.exit_code == 1
    assert f"({reason})" in result.stderr


def test_verify_oversized(tmp_path: Path, keys: Path) -> None:
    value = _sign(tmp_path, keys)
    result = CliRunner().invoke(
        main,
        ["event", "verify", str(value), "--trust", str(keys / "trust.toml"), "--max-size", "100"],
    )
    assert result.exit_code == 1
    assert "(oversized)" in result.stderr


def test_verify_with_a_broken_trust_store_exits_2(tmp_path: Path, keys: Path) -> None:
    value = _sign(tmp_path, keys)
    broken = tmp_path / "trust.toml"
    broken.write_text("[[keys]]\nagency = 1\n")
    result = CliRunner().invoke(main, ["event", "verify", str(value), "--trust", str(broken)])
    assert result.exit_code == 2
    assert "keys[0]" in result.stderr


def test_show_decodes_without_verifying_and_says_so(tmp_path: Path, keys: Path) -> None:
    value = _sign(tmp_path, keys, agency="europol")
    result = CliRunner().invoke(main, ["event", "show", str(value)])
    assert result.exit_code == 0
    assert "NOT VERIFIED" in result.stderr
    assert json.loads(result.stdout)["origin"]["agency"] == "interpol"


def test_sign_invalid_json_names_the_field(tmp_path: Path, keys: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"event_id": "nope"}))
    result = CliRunner().invoke(
        main,
        [
            "event",
            "sign",
            "--key",
            str(keys / "interpol.key.pem"),
            str(event),
            "-o",
            str(tmp_path / "v"),
        ],
    )
    assert result.exit_code == 2
    assert "event_id" in result.stderr


def test_sign_refuses_deeply_nested_json_with_exit_2(tmp_path: Path, keys: Path) -> None:
    """100,000 nested lists: one error line naming the nesting and where, not a traceback."""
    event = tmp_path / "deep.json"
    event.write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(
        main, ["event", "sign", "--key", str(keys / "interpol.key.pem"), str(event)]
    )
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("bus: error: event JSON nests arrays or objects more than")
    assert "at line 1 column 101" in result.stderr


def test_verify_judges_keys_by_this_hosts_clock_or_by_at(tmp_path: Path) -> None:
    """A key that ended in 2026-02: its event of January is rejected now, verified --at then."""
    keys = tmp_path / "k"
    runner = CliRunner()
    window = ("--not-before", "2026-01-01T00:00:00Z", "--not-after", "2026-02-01T00:00:00Z")
    made = runner.invoke(main, ["keys", "generate", "interpol", "--dir", str(keys), *window])
    assert made.exit_code == 0, made.output
    event = json.loads(runner.invoke(main, ["event", "template"]).stdout)
    event["created_at"] = "2026-01-15T12:00:00Z"
    event["expires_at"] = None
    (tmp_path / "event.json").write_text(json.dumps(event))
    value = tmp_path / "value.bin"
    signed = runner.invoke(
        main,
        [
            *("event", "sign", "--key", str(keys / "interpol.key.pem")),
            *(str(tmp_path / "event.json"), "-o", str(value)),
        ],
    )
    assert signed.exit_code == 0, signed.output
    verify = ["event", "verify", str(value), "--trust", str(keys / "trust.toml")]
    rejected = runner.invoke(main, verify)
    assert rejected.exit_code == 1
    assert "rejected (key-not-valid)" in rejected.stderr
    assert "receiver's clock" in rejected.stderr
    accepted = runner.invoke(main, [*verify, "--at", "2026-01-15T12:05:00Z"])
    assert accepted.exit_code == 0, accepted.stderr
    early = runner.invoke(main, [*verify, "--at", "2026-01-15T11:00:00Z"])
    assert early.exit_code == 1
    assert "rejected (event-from-future)" in early.stderr
    assert runner.invoke(main, [*verify, "--at", "yesterday"]).exit_code == 2

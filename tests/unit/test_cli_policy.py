"""``bus policy check`` and ``bus policy explain``: output and exit status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bus import envelope, events
from bus.cli import main
from bus.signing import SigningKey
from bus.trust import TrustedKey, append_key

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "local.toml"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _event_file(tmp_path: Path, **changes: Any) -> Path:
    event = events.template("CYBERCRIME", agency="interpol", now=NOW)
    event.update(changes)
    path = tmp_path / "event.json"
    path.write_text(events.to_json(event), encoding="utf-8")
    return path


def _explain(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(main, ["policy", "explain", "--policy", str(EXAMPLE), *args])


def test_check_valid_policy(runner: CliRunner) -> None:
    """A valid file: exit 0 and one summary line per direction."""
    result = runner.invoke(main, ["policy", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid: 2 agencies" in result.output
    assert "interpol->europol:" in result.output
    assert "europol->interpol:" in result.output


def test_check_invalid_policy(runner: CliRunner, tmp_path: Path) -> None:
    """An invalid file: exit 1, the error names the file and the entry."""
    path = tmp_path / "bad.toml"
    path.write_text(
        'agencies = ["interpol", "europol"]\n[[direction]]\nfrom = "interpol"\nto = "europol"\n'
        'crime_areas = ["PIRACY"]\ntlp = ["GREEN"]\n',
        encoding="utf-8",
    )
    result = runner.invoke(main, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}: [[direction]] #1 (interpol->europol): unknown crime area 'PIRACY'" in (
        result.stderr
    )


def test_explain_allowed_json_event(runner: CliRunner, tmp_path: Path) -> None:
    """An event the policy releases: exit 0, rule 'allowed'."""
    result = _explain(
        runner, "--to", "europol", "--at", "2025-06-01T13:00:00Z", str(_event_file(tmp_path))
    )
    assert result.exit_code == 0, result.output
    assert "interpol -> europol: would cross" in result.stdout
    assert "rule:   allowed" in result.stdout


@pytest.mark.parametrize(
    ("changes", "args", "rule"),
    [
        ({"tlp": "RED"}, [], "tlp"),
        ({"releasable_to": ["fbi"]}, [], "releasable-to"),
        ({"crime_area": "OTHER"}, [], "crime-area"),
        ({}, ["--at", "2030-01-01T00:00:00Z"], "expired"),
        ({}, ["--path", "europol"], "loop-path"),
        ({}, ["--from", "europol"], "no-agreement"),
    ],
)
def test_explain_denied_names_rule(
    runner: CliRunner, tmp_path: Path, changes: dict[str, Any], args: list[str], rule: str
) -> None:
    """A denied event: exit 1, and the rule that decided with its reason."""
    path = _event_file(tmp_path, **changes)
    result = _explain(runner, "--to", "europol", "--at", "2025-06-01T13:00:00Z", *args, str(path))
    assert result.exit_code == 1, result.output
    assert "would NOT cross" in result.stdout
    assert f"rule:   {rule}\n" in result.stdout
    assert "reason: " in result.stdout


def test_explain_json_output(runner: CliRunner, tmp_path: Path) -> None:
    """--json prints one object with the decision, rule and reason, and no event contents."""
    result = _explain(
        runner,
        "--to",
        "europol",
        "--json",
        "--at",
        "2025-06-02T00:00:00Z",
        str(_event_file(tmp_path, tlp="AMBER_STRICT")),
    )
    assert result.exit_code == 1
    decision = json.loads(result.stdout)
    assert decision["allowed"] is False
    assert decision["rule"] == "tlp"
    assert decision["source"] == "interpol"
    assert set(decision) == {
        "event_id",
        "origin",
        "source",
        "destination",
        "allowed",
        "rule",
        "reason",
    }


def _signed(tmp_path: Path, key: SigningKey) -> Path:
    value = envelope.seal(events.template("CYBERCRIME", agency="interpol", now=NOW), key)
    path = tmp_path / "event.bin"
    path.write_bytes(value)
    return path


def _trust(tmp_path: Path, key: SigningKey) -> Path:
    path = tmp_path / "trust.toml"
    append_key(
        path,
        TrustedKey(
            agency="interpol", public_key=key.public_key, not_before=NOW - timedelta(days=1)
        ),
    )
    return path


def test_explain_signed_record_unverified(runner: CliRunner, tmp_path: Path) -> None:
    """A signed record without --trust is decoded, decided, and flagged as not verified."""
    path = _signed(tmp_path, SigningKey.generate())
    result = _explain(runner, "--to", "europol", "--at", "2025-06-01T13:00:00Z", str(path))
    assert result.exit_code == 0, result.output
    assert "NOT VERIFIED" in result.stderr
    assert "would cross" in result.stdout


def test_explain_signed_record_verified(runner: CliRunner, tmp_path: Path) -> None:
    """With --trust a record that verifies is decided on."""
    key = SigningKey.generate()
    result = _explain(
        runner,
        "--to",
        "europol",
        "--at",
        "2025-06-01T13:00:00Z",
        "--trust",
        str(_trust(tmp_path, key)),
        str(_signed(tmp_path, key)),
    )
    assert result.exit_code == 0, result.output
    assert "NOT VERIFIED" not in result.stderr


def test_explain_signed_record_failing_verification(runner: CliRunner, tmp_path: Path) -> None:
    """A record signed by an unknown key would never cross: exit 1 with the reason code."""
    trust = _trust(tmp_path, SigningKey.generate())
    path = _signed(tmp_path, SigningKey.generate())
    result = _explain(runner, "--to", "europol", "--trust", str(trust), str(path))
    assert result.exit_code == 1
    assert "rejected (unknown-key)" in result.stderr


def test_explain_invalid_event_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    """An event that is not valid JSON: exit 2, not a decision."""
    path = tmp_path / "event.json"
    path.write_text("{not json", encoding="utf-8")
    result = _explain(runner, "--to", "europol", str(path))
    assert result.exit_code == 2
    assert "bus: error: event JSON is not valid JSON" in result.stderr


def test_explain_needs_aware_time(runner: CliRunner, tmp_path: Path) -> None:
    """--at without a UTC offset is a usage error."""
    result = _explain(
        runner, "--to", "europol", "--at", "2025-06-01T13:00:00", str(_event_file(tmp_path))
    )
    assert result.exit_code == 2
    assert "no UTC offset" in result.stderr


def test_explain_policy_from_configuration(runner: CliRunner, tmp_path: Path) -> None:
    """Without --policy the configuration's [policy] file is used."""
    config = tmp_path / "bus.toml"
    config.write_text(
        '[agencies.interpol]\nbootstrap_servers = ["127.0.0.1:9092"]\n'
        f'[policy]\nfile = "{EXAMPLE.as_posix()}"\n',
        encoding="utf-8",
    )
    args = ["--to", "europol", "--at", "2025-06-01T13:00:00Z", str(_event_file(tmp_path))]
    result = runner.invoke(main, ["policy", "explain", "--config", str(config), *args])
    assert result.exit_code == 0, result.output


def test_explain_without_any_policy(runner: CliRunner, tmp_path: Path) -> None:
    """No --policy and no [policy] in the configuration: exit 2 saying what to do."""
    config = tmp_path / "bus.toml"
    config.write_text(
        '[agencies.interpol]\nbootstrap_servers = ["127.0.0.1:9092"]\n', encoding="utf-8"
    )
    result = runner.invoke(
        main,
        [
            "policy",
            "explain",
            "--config",
            str(config),
            "--to",
            "europol",
            str(_event_file(tmp_path)),
        ],
    )
    assert result.exit_code == 2
    assert "pass --policy FILE" in result.stderr

"""A worker hosting several directions: its /healthz answer, and what ``bus bridge run`` refuses
before anything starts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from bus.bridge.app import create_app, health, run_worker
from bus.bridge.replicator import Replicator
from bus.cli import main
from bus.config import AgencySettings
from bus.policy import Policy
from bus.trust import TrustStore
from tests.unit.bridge.fakes import bridge_settings


def _replicator(destination: str) -> Replicator:
    settings = bridge_settings()
    settings = replace(
        settings,
        destination=AgencySettings(name=destination, bootstrap_servers=("127.0.0.1:3",)),
    )
    return Replicator(settings, trust=TrustStore([]), policy=Policy(agencies=frozenset()))


def test_one_direction_answers_as_its_replicator_does() -> None:
    replicator = _replicator("europol")
    assert health([replicator]) == replicator.health()


def test_several_directions_are_healthy_only_together_and_each_answers() -> None:
    europol, ameripol = _replicator("europol"), _replicator("ameripol")
    europol.started.set()
    status = health([europol, ameripol])
    assert status["healthy"] is False  # ameripol's has not started
    assert status["direction"] == "interpol->europol,interpol->ameripol"
    assert [d["direction"] for d in status["directions"]] == [
        "interpol->europol",
        "interpol->ameripol",
    ]
    assert status["partitions"] == []
    ameripol.started.set()
    assert health([europol, ameripol])["healthy"] is True


def test_a_worker_needs_a_replicator(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one replicator"):
        create_app(bridge_settings(), [], registry=CollectorRegistry(), datadir=tmp_path)
    with pytest.raises(ValueError, match="at least one replicator"):
        run_worker(None, [])  # type: ignore[arg-type]  # never reaches the app


CONFIG = """
[agencies.interpol]
bootstrap_servers = ["127.0.0.1:9"]
[agencies.europol]
bootstrap_servers = ["127.0.0.1:10"]
[agencies.ameripol]
bootstrap_servers = ["127.0.0.1:11"]
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "europol", "--to", "europol"], "a --to is given twice"),
        (
            ["--to", "europol", "--to", "ameripol", "--audit-key", "k.pem"],
            "--audit-key names one direction's key",
        ),
    ],
)
def test_bus_bridge_run_refuses_ambiguous_directions(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    config = tmp_path / "bus.toml"
    config.write_text(CONFIG, encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["bridge", "run", "--config", str(config), "--from", "interpol", *extra],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert message in result.stderr

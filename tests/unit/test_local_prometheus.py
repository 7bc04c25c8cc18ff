"""``bus.local._prometheus`` without starting anything: target files and recorded pids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from bus.local._prometheus import DEPLOY_PROMETHEUS, JOBS, Target, running, write_targets


def test_targets_are_written_as_file_sd_groups_and_replaced_whole(tmp_path: Path) -> None:
    path = write_targets(
        tmp_path,
        "bridges",
        [
            Target(address="127.0.0.1:6066", labels={"direction": "interpol-europol"}),
            Target(address="127.0.0.1:6067", labels={"direction": "europol-interpol"}),
        ],
    )
    assert path == tmp_path / "prometheus" / "targets" / "bridges.json"
    groups = json.loads(path.read_text())
    assert groups[0] == {"targets": ["127.0.0.1:6066"], "labels": {"direction": "interpol-europol"}}
    assert len(groups) == 2
    write_targets(tmp_path, "bridges", [])
    assert json.loads(path.read_text()) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["bridges.json"]  # no staging left


def test_an_unknown_job_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="job: 'bridge' is not one of"):
        write_targets(tmp_path, "bridge", [])


def test_every_job_is_one_that_the_prometheus_configuration_reads() -> None:
    config = yaml.safe_load((DEPLOY_PROMETHEUS / "prometheus.yml").read_text())
    files = [
        f for job in config["scrape_configs"] for sd in job["file_sd_configs"] for f in sd["files"]
    ]
    files += [
        f
        for am in config["alerting"]["alertmanagers"]
        for sd in am["file_sd_configs"]
        for f in sd["files"]
    ]
    # alertmanager.json twice: scraped, and where alerts go.
    assert sorted(files) == sorted(
        [f"targets/{job}.json" for job in JOBS] + ["targets/alertmanager.json"]
    )


def test_a_recorded_pid_counts_only_while_it_runs_with_this_homes_configuration(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    assert running(tmp_path, "prometheus") is None
    # This very process is alive, but it is not this home's Prometheus: never signalled.
    (folder / "prometheus.pid").write_text(f"{os.getpid()}\n")
    assert running(tmp_path, "prometheus") is None
    (folder / "prometheus.pid").write_text("garbage\n")
    assert running(tmp_path, "prometheus") is None

"""``bus.local._processes`` without a broker: finding, stopping and diagnosing a node's process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus import local
from bus.local._processes import diagnose, stop

# A stand-in for a node's JVM: a process whose command line is what a node's would contain, or
# not; it sleeps until it is signalled.
Spawn = Callable[..., subprocess.Popen[bytes]]


def _spec(tmp_path: Path, **fields: object) -> local.FederationSpec:
    return local.FederationSpec(home=tmp_path, **fields)  # type: ignore[arg-type]  # test input


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        ("java.net.BindException: Address already in use", "--base-port"),
        ("Error: Could not find or load main class kafka.Kafka", "jar cache"),
        ("java.lang.OutOfMemoryError: Java heap space", "--heap-mb"),
        ("InconsistentClusterIdException: The Cluster ID x doesn't match", "bus local reset"),
        ("something else entirely", "see its log"),
    ],
)
def test_diagnose_reads_the_cause_from_the_nodes_logs(tmp_path: Path, log: str, cause: str) -> None:
    node = _spec(tmp_path).nodes()[0]
    node.console_file.parent.mkdir(parents=True)
    node.console_file.write_text(f"starting\n{log}\n")
    assert cause in diagnose(node)


def test_diagnose_without_logs_says_to_see_the_log(tmp_path: Path) -> None:
    assert diagnose(_spec(tmp_path).nodes()[0]) == "see its log"


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start sleeping processes with the given extra arguments; kill what is left at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        started.append(process)
        # Until it prints, /proc may still show the command line of pytest (before exec).
        assert process.stdout is not None
        assert process.stdout.readline() == b"up\n"
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def _record(node: local.Node, pid: int) -> None:
    node.dir.mkdir(parents=True, exist_ok=True)
    node.pid_file.write_text(f"{pid}\n")


def test_down_stops_the_recorded_node_and_removes_its_pid_file(
    tmp_path: Path, spawn: Spawn
) -> None:
    spec = _spec(tmp_path, agencies=("lone",))
    [node] = spec.nodes()
    fake = spawn("kafka.Kafka", str(node.properties_file))
    _record(node, fake.pid)
    assert list(local.iter_node_pids(spec)) == [(node, fake.pid)]
    said: list[str] = []
    local.down(spec, log=said.append)
    assert fake.wait(10) == -signal.SIGTERM
    assert not node.pid_file.exists()
    assert said == [f"lone: stopping (pid {fake.pid})", "lone: stopped"]


def test_a_recorded_pid_now_of_another_process_is_never_signalled(
    tmp_path: Path, spawn: Spawn
) -> None:
    """The pid file names a pid that was reused: its command line is not this node's."""
    spec = _spec(tmp_path, agencies=("lone",))
    [node] = spec.nodes()
    other = spawn("kafka.Kafka", str(tmp_path / "elsewhere" / "server.properties"))
    _record(node, other.pid)
    assert list(local.iter_node_pids(spec)) == []
    local.down(spec)
    stop([(node, other.pid)], log=pytest.fail)
    assert other.poll() is None


def test_a_node_process_without_a_pid_file_is_not_looked_for(tmp_path: Path, spawn: Spawn) -> None:
    """No scan of the machine's processes: only what was recorded is found and stopped."""
    spec = _spec(tmp_path, agencies=("lone",))
    [node] = spec.nodes()
    unrecorded = spawn("kafka.Kafka", str(node.properties_file))
    assert list(local.iter_node_pids(spec)) == []
    said: list[str] = []
    local.down(spec, log=said.append)
    assert said == ["lone: not running"]
    assert unrecorded.poll() is None


def test_down_of_one_node_of_a_cluster_stops_that_node_only_and_of_an_agency_all_of_its_own(
    tmp_path: Path, spawn: Spawn
) -> None:
    spec = _spec(tmp_path, agencies=("a", "b"), brokers=3)
    fakes = {}
    for node in spec.nodes():
        fakes[node.name] = spawn("kafka.Kafka", str(node.properties_file))
        _record(node, fakes[node.name].pid)
    said: list[str] = []
    local.down(spec, log=said.append, only=["a-2"])
    assert fakes["a-2"].wait(10) == -signal.SIGTERM
    assert said == [f"a-2: stopping (pid {fakes['a-2'].pid})", "a-2: stopped"]
    assert [n.name for n, _ in local.iter_node_pids(spec)] == ["a-1", "a-3", "b-1", "b-2", "b-3"]
    local.down(spec, log=said.append, only=["b"])
    assert [n.name for n, _ in local.iter_node_pids(spec)] == ["a-1", "a-3"]
    for name in ("b-1", "b-2", "b-3"):
        assert fakes[name].wait(10) == -signal.SIGTERM

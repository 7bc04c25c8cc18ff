"""``bus.local`` supervision without a broker: layout, restarts and stopping, status."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from bus import local
from bus.cli import main
from bus.errors import LocalClusterError
from bus.local._backoff import BackoffPolicy
from bus.local._control import direction_health, stop_supervised
from bus.local._spec import save_spec
from bus.local._status import ProcessStatus, lag_of, render_table
from bus.local._supervision import (
    SupervisedBridge,
    SupervisedCorrelator,
    alertmanager_port,
    bridge_command,
    bridges,
    check_ports,
    correlator_command,
    correlators,
    is_bridge_process,
    is_correlator_process,
    jmx_ports,
    prometheus_port,
    read_state,
    supervisor_port,
)
from bus.local._supervisor import Supervisor
from bus.local._targets import register_targets
from bus.testing import free_base_port

_QUICK = BackoffPolicy(initial_s=0.05, factor=2, maximum_s=0.2, stable_s=60)


def _spec(tmp_path: Path, agencies: tuple[str, ...] = ("a", "b", "c")) -> local.FederationSpec:
    return local.FederationSpec(home=tmp_path / "home", agencies=agencies, base_port=20000)


def test_one_bridge_worker_per_source_hosting_its_directions_then_a_correlator_per_agency(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    found = [(b.name, b.directions, b.web_port) for b in bridges(spec)]
    assert found == [
        ("bridge.a", ("a-b", "a-c"), 20006),
        ("bridge.b", ("b-a", "b-c"), 20007),
        ("bridge.c", ("c-a", "c-b"), 20008),
    ]
    assert [(c.name, c.web_port) for c in correlators(spec)] == [
        ("correlator.a", 20009),
        ("correlator.b", 20010),
        ("correlator.c", 20011),
    ]
    assert supervisor_port(spec) == 20012
    assert set(local.log_files(spec)) == {
        "a",
        "b",
        "c",
        "bridge.a",
        "bridge.b",
        "bridge.c",
        "correlator.a",
        "correlator.b",
        "correlator.c",
        "supervisor",
        "prometheus",
        "alertmanager",
    }
    [a, *_] = bridges(spec)
    command = bridge_command(spec, a)
    assert command[command.index("--from") :][:5] == ["--from", "a", "--to", "b", "--to"]
    assert command[command.index("--web-port") + 1] == "20006"
    [ca, *_] = correlators(spec)
    command = correlator_command(spec, ca)
    assert command[3:5] == ["correlate", "run"]
    assert command[command.index("--agency") + 1] == "a"
    assert command[command.index("--web-port") + 1] == "20009"


def test_prometheus_alertmanager_and_the_jmx_exporters_take_the_ports_after_the_supervisor(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    assert (prometheus_port(spec), alertmanager_port(spec)) == (20013, 20014)
    assert jmx_ports(spec) == {"a": 20015, "b": 20016, "c": 20017}
    # One contiguous block: the last port is the last JMX exporter's.
    assert spec.base_port + local.port_count(3) - 1 == 20017
    two = local.FederationSpec(home=tmp_path, agencies=("interpol", "europol"), base_port=19092)
    assert jmx_ports(two) == {"interpol": 19103, "europol": 19104}
    assert local.service_urls(two) == {
        "prometheus": "http://127.0.0.1:19101",
        "console": "http://127.0.0.1:19101/consoles/exchange-bus.html",
        "alertmanager": "http://127.0.0.1:19102",
    }


def test_every_process_is_registered_as_a_scrape_target_and_what_is_off_has_none(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, ("a", "b"))
    targets = spec.home / "prometheus" / "targets"

    def read(job: str) -> list[tuple[str, dict[str, str]]]:
        groups = json.loads((targets / f"{job}.json").read_text())
        return [(g["targets"][0], g["labels"]) for g in groups]

    register_targets(spec)
    # One target per worker: the direction labels are the metrics' own source and destination.
    assert read("bridges") == [
        ("127.0.0.1:20004", {"worker": "bridge.a"}),
        ("127.0.0.1:20005", {"worker": "bridge.b"}),
    ]
    assert read("correlators") == [
        ("127.0.0.1:20006", {"worker": "correlator.a"}),
        ("127.0.0.1:20007", {"worker": "correlator.b"}),
    ]
    assert read("supervisor") == [("127.0.0.1:20008", {})]
    assert read("prometheus") == [("127.0.0.1:20009", {})]
    assert read("alertmanager") == [("127.0.0.1:20010", {})]
    assert read("kafka") == [
        ("127.0.0.1:20011", {"agency": "a"}),
        ("127.0.0.1:20012", {"agency": "b"}),
    ]
    register_targets(spec, with_bridges=False, with_correlators=False, with_prometheus=False)
    assert read("bridges") == read("correlators") == read("prometheus") == []
    assert read("alertmanager") == []


def test_ports_past_65535_are_refused_with_what_to_do(tmp_path: Path) -> None:
    spec = local.FederationSpec(home=tmp_path, agencies=("a", "b"), base_port=65530)
    with pytest.raises(LocalClusterError, match="--base-port"):
        check_ports(spec)


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(args: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", *args],
            stdin=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_recorded_pid_counts_as_a_bridge_only_with_its_own_command_line(
    tmp_path: Path, spawn: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    spec = _spec(tmp_path)
    a, b = bridges(spec)[:2]
    process = spawn(bridge_command(spec, a)[2:])
    # The same source with fewer directions (a worker started by hand) is not ours.
    alone = SupervisedBridge(source="a", destinations=("b",), web_port=a.web_port, dir=a.dir)
    ca, cb = correlators(spec)[:2]
    correlator = spawn(correlator_command(spec, ca)[2:])
    time.sleep(0.2)  # /proc/PID/cmdline is the child's once it has exec'd
    assert is_bridge_process(process.pid, spec, a)
    assert not is_bridge_process(process.pid, spec, b)
    assert not is_bridge_process(process.pid, spec, alone)
    other = local.FederationSpec(home=tmp_path / "other", agencies=spec.agencies)
    assert not is_bridge_process(process.pid, other, bridges(other)[0])
    assert is_correlator_process(correlator.pid, spec, ca)
    assert not is_correlator_process(correlator.pid, spec, cb)
    assert not is_correlator_process(process.pid, spec, ca)
    assert not is_correlator_process(correlator.pid, other, correlators(other)[0])


def _state(spec: local.FederationSpec) -> dict[str, dict[str, object]]:
    processes: dict[str, dict[str, object]] = read_state(spec).get("processes", {})
    return processes


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110  # state written by other processes
            await asyncio.sleep(0.05)


async def test_a_bridge_that_exits_is_restarted_and_each_restart_is_counted(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, ("a", "b"))

    # A crashing process exits with status 3 at each of its first three starts, then runs until
    # stopped: so when the test stops the supervisor, every process is running, whatever the
    # machine's load (a process exiting at once could be between two starts at that moment).
    crashing = (
        "import pathlib, sys, time; starts = pathlib.Path(sys.argv[1]); "
        "n = int(starts.read_text()) if starts.exists() else 0; "
        "starts.write_text(str(n + 1)); sys.exit(3) if n < 3 else time.sleep(60)"
    )

    def run(name: str, crashes: bool) -> list[str]:
        if crashes:
            return [sys.executable, "-c", crashing, str(tmp_path / f"{name}.starts")]
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    def command(bridge: SupervisedBridge) -> list[str]:
        return run(bridge.name, crashes=bridge.name == "bridge.a")

    def correlator(correlator: SupervisedCorrelator) -> list[str]:
        return run(correlator.name, crashes=correlator.name == "correlator.b")

    def restarted_and_running(name: str) -> bool:
        recorded = _state(spec).get(name, {})
        return recorded.get("restarts") == 3 and recorded.get("state") == "running"

    supervisor = Supervisor(spec, policy=_QUICK, command=command, correlator_command=correlator)
    async with asyncio.TaskGroup() as group:
        group.create_task(supervisor.run())
        await _until(lambda: restarted_and_running("bridge.a"))
        await _until(lambda: restarted_and_running("correlator.b"))
        running = _state(spec)
        # Running again, it still shows how it last exited.
        assert running["bridge.a"]["last_exit"] == running["correlator.b"]["last_exit"]
        assert running["bridge.a"]["last_exit"] == "exit status 3"
        for steady in (running["bridge.b"], running["correlator.a"]):
            assert steady["state"] == "running"
            assert steady["restarts"] == 0
        supervisor.stop()
    state = _state(spec)
    assert set(state) == {"bridge.a", "bridge.b", "correlator.a", "correlator.b"}
    assert state["bridge.a"]["kind"] == "bridge"
    assert state["bridge.a"]["directions"] == ["a-b"]
    assert state["correlator.a"]["kind"] == "correlator"
    assert {p["state"] for p in state.values()} == {"stopped"}
    assert {p["last_exit"] for p in state.values()} == {"killed by SIGTERM"}
    assert [state[name]["restarts"] for name in sorted(state)] == [3, 0, 0, 3]
    for name in state:
        counted = supervisor.registry.get_sample_value(
            "bus_local_restarts_total", {"process": name}
        )
        assert counted == state[name]["restarts"]
    assert not any(b.pid_file.exists() for b in bridges(spec))
    assert not any(c.pid_file.exists() for c in correlators(spec))


async def test_stopping_kills_a_bridge_that_ignores_sigterm_after_the_timeout(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, ("a", "b"))
    stubborn = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').close(); time.sleep(60)"
    )
    ready = {b.name: tmp_path / f"{b.name}.ready" for b in bridges(spec)}
    supervisor = Supervisor(
        spec,
        policy=_QUICK,
        command=lambda b: [sys.executable, "-c", stubborn, str(ready[b.name])],
        with_correlators=False,
        stop_timeout_s=0.5,
    )
    async with asyncio.TaskGroup() as group:
        group.create_task(supervisor.run())
        # Each child says when its SIGTERM handler is in place.
        await _until(lambda: all(path.exists() for path in ready.values()))
        started = time.monotonic()
        supervisor.stop()
    assert time.monotonic() - started < 10
    assert {p["last_exit"] for p in _state(spec).values()} == {"killed by SIGKILL"}


def test_down_stops_a_bridge_left_without_its_supervisor_by_its_recorded_pid(
    tmp_path: Path, spawn: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    spec = _spec(tmp_path, ("a", "b"))
    ab, ba = bridges(spec)
    ca, cb = correlators(spec)
    ab.dir.mkdir(parents=True)
    orphan = spawn(bridge_command(spec, ab)[2:])
    orphan_correlator = spawn(correlator_command(spec, cb)[2:])
    stranger = spawn(["not", "a", "bridge"])
    ab.pid_file.write_text(f"{orphan.pid}\n")
    ba.pid_file.write_text(f"{stranger.pid}\n")  # a pid reused by another process
    ca.pid_file.write_text(f"{stranger.pid}\n")
    cb.pid_file.write_text(f"{orphan_correlator.pid}\n")
    time.sleep(0.2)
    lines: list[str] = []
    stop_supervised(spec, log=lines.append)
    assert orphan.wait(timeout=10) == -signal.SIGTERM
    assert orphan_correlator.wait(timeout=10) == -signal.SIGTERM
    assert stranger.poll() is None
    assert not any(p.pid_file.exists() for p in (ab, ba, ca, cb))
    assert any("bridge.a" in line and str(orphan.pid) in line for line in lines)
    assert any("correlator.b" in line and str(orphan_correlator.pid) in line for line in lines)


def test_status_of_a_federation_never_started_shows_every_process_stopped_or_off(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, ("a", "b"))
    rows = asyncio.run(local.process_status(spec))
    assert [(r.name, r.kind, r.state, r.ok) for r in rows] == [
        ("a", "cluster", "stopped", False),
        ("b", "cluster", "stopped", False),
        ("bridge.a", "bridge", "off", True),
        ("a-b", "direction", "off", True),
        ("bridge.b", "bridge", "off", True),
        ("b-a", "direction", "off", True),
        ("correlator.a", "correlator", "off", True),
        ("correlator.b", "correlator", "off", True),
        ("supervisor", "supervisor", "off", True),
        ("prometheus", "prometheus", "off", True),
        ("alertmanager", "alertmanager", "off", True),
    ]
    addresses = [r["address"] for r in json.loads(json.dumps([r.as_dict() for r in rows]))]
    # A direction's address is its worker's.
    assert addresses[2:] == [
        f"127.0.0.1:{port}" for port in (20004, 20004, 20005, 20005, *range(20006, 20011))
    ]


def test_the_status_table_has_a_column_per_field_and_a_dash_where_none_applies() -> None:
    rows = [
        ProcessStatus(
            name="interpol",
            kind="cluster",
            state="running",
            ok=True,
            pid=11,
            address="127.0.0.1:19092",
            detail="cluster X",
        ),
        ProcessStatus(
            name="interpol-europol",
            kind="bridge",
            state="running",
            ok=True,
            pid=12345,
            address="127.0.0.1:19096",
            health="healthy",
            lag=7,
            restarts=2,
            detail="6 partitions",
        ),
    ]
    lines = render_table(rows).splitlines()
    assert lines[0].split() == [
        "NAME",
        "KIND",
        "STATE",
        "PID",
        "ADDRESS",
        "HEALTH",
        "LAG",
        "RESTARTS",
        "DETAIL",
    ]
    assert lines[1].split() == [
        "interpol",
        "cluster",
        "running",
        "11",
        "127.0.0.1:19092",
        "-",
        "-",
        "-",
        "cluster",
        "X",
    ]
    assert lines[2].split()[5:8] == ["healthy", "7", "2"]
    # Columns line up: each header starts where its values start.
    assert lines[0].index("HEALTH") == lines[2].index("healthy")


def test_lag_is_the_sum_of_the_bridges_source_lag_gauges() -> None:
    text = (
        "# TYPE bus_bridge_source_lag gauge\n"
        'bus_bridge_source_lag{source="a",destination="b",topic="t",partition="0"} 3.0\n'
        'bus_bridge_source_lag{source="a",destination="b",topic="t",partition="1"} 4.0\n'
        "# TYPE bus_bridge_forwarded_total counter\n"
        'bus_bridge_forwarded_total{source="a",destination="b",topic="t"} 9.0\n'
    )
    assert lag_of(text) == 7
    assert lag_of("# TYPE other gauge\nother 1.0\n") is None
    # A worker of several directions: each direction's own lag, by its labels.
    text += 'bus_bridge_source_lag{source="a",destination="c",topic="t",partition="0"} 5.0\n'
    assert lag_of(text) == 12
    assert lag_of(text, source="a", destination="b") == 7
    assert lag_of(text, source="a", destination="c") == 5
    assert lag_of(text, source="b", destination="a") is None
    correlator = "# TYPE bus_correlate_lag_records gauge\n" + "".join(
        f'bus_correlate_lag_records{{agency="a",topic="{t}"}} {n}.0\n'
        for t, n in (("x", 2), ("y", 3))
    )
    assert lag_of(correlator, metric="bus_correlate_lag_records") == 5


def test_each_direction_has_its_own_answer_whether_the_worker_hosts_one_or_several(
    tmp_path: Path,
) -> None:
    three = _spec(tmp_path)
    a = bridges(three)[0]
    ab = {"healthy": True, "direction": "a->b", "partitions": ["t/0", "t/1"]}
    ac = {"healthy": False, "direction": "a->c", "partitions": []}
    several = {
        "healthy": False,
        "direction": "a->b,a->c",
        "partitions": ["b:t/0", "b:t/1"],
        "directions": [ab, ac],
    }
    assert direction_health(a, several) == {"a-b": ab, "a-c": ac}
    # A worker that answers for fewer directions than it should: the others have no answer.
    assert direction_health(a, {**several, "directions": [ac]}) == {"a-b": None, "a-c": ac}
    assert direction_health(a, None) == {"a-b": None, "a-c": None}
    two = bridges(_spec(tmp_path, ("a", "b")))[0]
    assert direction_health(two, ab) == {"a-b": ab}  # one direction: its own answer


def test_the_supervisor_pid_of_another_process_is_never_signalled(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ("a", "b"))
    pid_file = spec.home / "supervised" / "supervisor.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # this test process is no supervisor
    stop_supervised(spec, log=pytest.fail)
    assert not pid_file.exists()


def test_logs_shows_the_last_lines_of_a_named_process_log(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ("a", "b"))
    log_file = bridges(spec)[0].log_file
    log_file.parent.mkdir(parents=True)
    save_spec(spec)  # what `bus local up` leaves for later commands
    log_file.write_text("".join(f"line {i}\n" for i in range(10)))
    home = ["--home", str(spec.home)]
    result = CliRunner().invoke(main, ["local", "logs", "bridge.a", "-n", "3", *home])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["line 7", "line 8", "line 9"]
    unknown = CliRunner().invoke(main, ["local", "logs", "nobody", *home])
    assert unknown.exit_code == 2
    assert "give one of: a, b, bridge.a, bridge.b, correlator.a, correlator.b, supervisor" in (
        unknown.output
    )


class _Answers(http.server.BaseHTTPRequestHandler):
    """A worker's web port: ``/healthz`` and ``/metrics`` as given, by path."""

    pages: ClassVar[dict[str, tuple[int, str]]] = {}

    def do_GET(self) -> None:
        status, body = self.pages.get(self.path, (404, ""))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(port: int, pages: dict[str, tuple[int, str]]) -> Iterator[None]:
    handler = type("Handler", (_Answers,), {"pages": pages})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_status_shows_each_direction_of_a_worker_with_its_own_health_and_lag(
    tmp_path: Path, spawn: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    spec = local.FederationSpec(
        home=tmp_path / "home", agencies=("a", "b", "c"), base_port=free_base_port(18)
    )
    a, b, _ = bridges(spec)
    ca, cb, _ = correlators(spec)
    a.dir.mkdir(parents=True)
    for supervised, command in (
        (a, bridge_command(spec, a)),
        (b, bridge_command(spec, b)),
        (ca, correlator_command(spec, ca)),
        (cb, correlator_command(spec, cb)),
    ):
        supervised.pid_file.write_text(f"{spawn(command[2:]).pid}\n")
    ab = {"healthy": True, "direction": "a->b", "partitions": ["t/0", "t/1"]}
    ac = {"healthy": False, "direction": "a->c", "partitions": ["t/0"]}
    ac["failing_for_s"] = {"t/0": 31.5}
    health = {"healthy": False, "direction": "a->b,a->c", "directions": [ab, ac]}
    metrics = "".join(
        f'bus_bridge_source_lag{{source="a",destination="{d}",topic="t",partition="0"}} {n}\n'
        for d, n in (("b", 3), ("c", 4))
    )
    correlator = {"healthy": False, "reading": ["t", "b.t"], "last_error": "KafkaError: away"}
    time.sleep(0.2)  # /proc/PID/cmdline is the child's once it has exec'd
    with (
        _serving(a.web_port, {"/healthz": (503, json.dumps(health)), "/metrics": (200, metrics)}),
        _serving(ca.web_port, {"/healthz": (503, json.dumps(correlator))}),
    ):
        rows = {r.name: r for r in asyncio.run(local.process_status(spec))}
    assert (rows["bridge.a"].state, rows["bridge.a"].health, rows["bridge.a"].lag) == (
        "running",
        "unhealthy",
        7,
    )
    assert not rows["bridge.a"].ok
    assert [(rows[d].kind, rows[d].health, rows[d].lag, rows[d].ok) for d in ("a-b", "a-c")] == [
        ("direction", "healthy", 3, True),
        ("direction", "unhealthy", 4, False),
    ]
    assert rows["a-c"].detail == "1 partitions failing: t/0 31.5s; in bridge.a"
    assert rows["a-b"].pid == rows["a-c"].pid == rows["bridge.a"].pid
    # A worker that runs but does not answer yet: it and its directions are starting.
    assert {(rows[n].state, rows[n].health) for n in ("bridge.b", "b-a", "b-c")} == {
        ("starting", "no answer")
    }
    assert (rows["correlator.a"].state, rows["correlator.a"].health) == ("running", "unhealthy")
    assert rows["correlator.a"].detail == "2 feeds; last error: KafkaError: away"
    assert rows["correlator.a"].lag is None  # its /metrics does not answer
    assert (rows["correlator.b"].state, rows["correlator.b"].ok) == ("starting", False)
    assert (rows["bridge.c"].state, rows["correlator.c"].state) == ("off", "off")

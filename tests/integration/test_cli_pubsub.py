"""``bus publish`` and ``bus tail`` against real Kafka, through the command line."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from bus import events
from bus.cli import main
from bus.config import Config
from bus.testing import consume_all, create_topic, free_base_port, produce, unique_topic
from tests.signed import make_event

pytestmark = pytest.mark.integration

AGENCY = "interpol"


def _topic(config: Config, partitions: int = 2) -> str:
    topic = unique_topic("cli")
    bootstrap = ",".join(config.agency(AGENCY).bootstrap_servers)
    asyncio.run(create_topic(bootstrap, topic, partitions=partitions))
    return topic


def _bus(config: Config, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--config", str(config.path)], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_publish_prints_where_each_event_landed_and_tail_prints_them_back(
    signed_federation: Config, tmp_path: Path
) -> None:
    topic = _topic(signed_federation)
    batch = [make_event(AGENCY, correlation_id=f"case-{i}") for i in range(3)]
    source = tmp_path / "events.jsonl"
    source.write_text("".join(events.to_json(e, indent=None) + "\n\n" for e in batch))

    code, out, err = _bus(
        signed_federation, "publish", "--agency", AGENCY, "--topic", topic, str(source)
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event_id"] for line in lines] == [e["event_id"] for e in batch]
    assert all(line["topic"] == topic and line["offset"] >= 0 for line in lines)
    assert all(line["partition"] in (0, 1) for line in lines)

    code, out, err = _bus(
        signed_federation,
        "tail",
        "--agency",
        AGENCY,
        "--topic",
        topic,
        "--from-beginning",
        "--count",
        "3",
    )
    assert code == 0, err
    shown = [events.from_json(line) for line in out.splitlines()]
    assert sorted(e["event_id"] for e in shown) == sorted(e["event_id"] for e in batch)


def test_publish_stops_at_an_invalid_line_naming_it_after_publishing_the_lines_before(
    signed_federation: Config,
) -> None:
    topic = _topic(signed_federation)
    good = events.to_json(make_event(AGENCY), indent=None)
    code, out, err = _bus(
        signed_federation,
        "publish",
        "--agency",
        AGENCY,
        "--topic",
        topic,
        "-",
        input=f'{good}\n{{"title": 1}}\n{good}\n',
    )
    assert code == 2
    assert "<stdin>:2:" in err
    assert len(out.splitlines()) == 1


def test_tail_reports_bad_records_and_quarantines_them_only_as_a_group(
    signed_federation: Config,
) -> None:
    topic = _topic(signed_federation, partitions=1)
    bootstrap = ",".join(signed_federation.agency(AGENCY).bootstrap_servers)
    code, _, err = _bus(
        signed_federation,
        "publish",
        "--agency",
        AGENCY,
        "--topic",
        topic,
        "-",
        input=events.to_json(make_event(AGENCY), indent=None) + "\n",
    )
    assert code == 0, err
    asyncio.run(produce(bootstrap, topic, [b"garbage"]))
    asyncio.run(produce(bootstrap, topic, [b"\xc3\x01"]))
    marker = make_event(AGENCY)
    code, _, err = _bus(
        signed_federation,
        "publish",
        "--agency",
        AGENCY,
        "--topic",
        topic,
        "-",
        input=events.to_json(marker, indent=None) + "\n",
    )
    assert code == 0, err

    args = ("tail", "--agency", AGENCY, "--topic", topic, "--from-beginning", "--count", "2")
    code, out, err = _bus(signed_federation, *args)
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert f"bad-marker: {topic}/0@1" in err
    assert f"truncated: {topic}/0@2" in err
    assert "quarantined" not in err

    code, out, err = _bus(signed_federation, *args, "--group", unique_topic("cli-group"))
    assert code == 0, err
    assert err.count("quarantined at") == 2

    # The quarantine topic is shared by all tests: read all of it, keep this topic's records.
    total = len(asyncio.run(consume_all(bootstrap, signed_federation.topics.quarantine)))
    code, out, err = _bus(
        signed_federation,
        "tail",
        "--agency",
        AGENCY,
        "--topic",
        signed_federation.topics.quarantine,
        "--from-beginning",
        "--count",
        str(total),
    )
    assert code == 0, err
    mine = sorted(
        (q for q in map(json.loads, out.splitlines()) if q["source_topic"] == topic),
        key=lambda q: q["source_offset"],
    )
    assert [(q["source_offset"], q["reason"]) for q in mine] == [
        (1, "bad-marker"),
        (2, "truncated"),
    ]
    assert all(q["consumer"].startswith("cli-group") for q in mine)


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text: str = r.read().decode()
            return text
    except OSError:
        return None


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` with exactly ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_tail_of_a_group_serves_its_counts_on_its_metrics_port_while_it_runs(
    signed_federation: Config, tmp_path: Path
) -> None:
    topic = _topic(signed_federation, partitions=1)
    bootstrap = ",".join(signed_federation.agency(AGENCY).bootstrap_servers)
    port = free_base_port(1)
    batch = [make_event(AGENCY, correlation_id=f"m-{i}") for i in range(5)]
    code, _, err = _bus(
        signed_federation,
        "publish",
        "--agency",
        AGENCY,
        "--topic",
        topic,
        "-",
        input="".join(events.to_json(e, indent=None) + "\n" for e in batch),
    )
    assert code == 0, err
    asyncio.run(produce(bootstrap, topic, [b"garbage"]))
    command = [
        sys.executable,
        "-m",
        "bus",
        "tail",
        "--agency",
        AGENCY,
        "--topic",
        topic,
        "--from-beginning",
        "--group",
        unique_topic("cli-metrics"),
        "--metrics-port",
        str(port),
        "--config",
        str(signed_federation.path),
    ]
    with (tmp_path / "tail.out").open("wb") as out:
        tail = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            text = None
            series = {"agency": AGENCY, "topic": topic}
            while time.monotonic() < deadline:
                assert tail.poll() is None, (tmp_path / "tail.out").read_text()
                text = _scrape(port)
                if text and _sample(text, "bus_consumed_total", **series, outcome="rejected"):
                    break
                time.sleep(0.3)
            assert text is not None, "the metrics port never answered"
            assert _sample(text, "bus_consumed_total", **series, outcome="delivered") == 5
            assert _sample(text, "bus_consumed_total", **series, outcome="rejected") == 1
            assert _sample(text, "bus_quarantined_total", **series, reason="bad-marker") == 1
            assert "process_cpu_seconds_total" in text
        finally:
            tail.send_signal(signal.SIGINT)
            try:
                code = tail.wait(30)
            except subprocess.TimeoutExpired:
                tail.kill()  # not left running into the next tests
                tail.wait()
                raise
    assert code == 130, (tmp_path / "tail.out").read_text()
    assert _scrape(port) is None, "the metrics port outlived the command"

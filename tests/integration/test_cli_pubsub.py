"""``bus publish`` and ``bus tail`` against real Kafka, through the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus import events
from bus.cli import main
from bus.config import Config
from bus.testing import consume_all, create_topic, produce, unique_topic
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

"""``bus demo`` on a federation of its own: exit 0, and a summary that independent readers confirm.

The federation (own home, free ports, two agencies, small heaps) is started with ``local.up``
and its bridges with ``local.start_bridges`` (supervised, as ``bus local up`` does). Its topics
are new, so everything on them is the demo's: the mirrored feeds, ``bus.audit`` and
``bus.quarantine`` are read from their start with ``consume_all`` and compared with the numbers
the demo printed (which it took from the bridges' ``/metrics`` and its own counts).

Europol runs a correlator (``bus correlate run``, a process of its own, as ``bus local``
would), INTERPOL none: the demo's hits at Europol are hits an independent reader of
``bus.correlations`` finds, some of them on identifiers the two agencies wrote differently,
and at INTERPOL the demo says that no correlator was seen.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from bus import local
from bus.audit import DENIED, FORWARDED, decode_audit_record
from bus.codec import default_store
from bus.config import Config, java_home, load_config
from bus.correlate._identifiers import identifiers
from bus.envelope import peek
from bus.records import read_quarantined
from bus.testing import consume_all, free_base_port, register

pytestmark = pytest.mark.integration

AGENCIES = ("interpol", "europol")
_DEMO_TIMEOUT_S = 400
_CORRELATOR = "europol"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.FederationSpec]:
    home = tmp_path_factory.mktemp("exchange-bus-test-demo") / "home"
    n = len(AGENCIES)
    spec = local.FederationSpec(
        home=home,
        agencies=AGENCIES,
        base_port=free_base_port(local.port_count(n)),
        heap_mb=256,
        partitions=2,
        java_home=java_home(),
    )
    try:
        register(asyncio.run(local.up(spec)))  # the helpers reach the mTLS clusters as admin
        local.start_bridges(spec, log=lambda _: None)
        yield spec
    finally:
        local.down(spec)


@pytest.fixture(scope="module")
def correlator(
    federation: local.FederationSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """Europol's correlator, healthy (its feeds read) before the demo starts."""
    port = free_base_port(1)
    log = tmp_path_factory.mktemp("correlator") / "correlator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "bus", "correlate", "run"),
                *("--config", str(federation.config_file), "--agency", _CORRELATOR),
                *("--web-port", str(port), "--loglevel", "warn"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(port):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(json.load(r).get("healthy"))
    except (OSError, ValueError):  # not answering yet, or 503 (HTTPError is an OSError)
        return False


def _bootstrap(config: Config, agency: str) -> str:
    return ",".join(config.agency(agency).bootstrap_servers)


async def _independent_counts(config: Config, d: dict[str, Any]) -> dict[str, Any]:
    source, destination = d["source"], d["destination"]
    mirrored = await consume_all(
        _bootstrap(config, destination),
        config.topics.mirror_of(source),
        expected=d["forwarded"],
        timeout_s=120,
    )
    written = await consume_all(_bootstrap(config, source), config.topics.events)
    audits = [
        decode_audit_record(r.value)
        for r in await consume_all(_bootstrap(config, source), config.topics.audit)
        if r.value is not None
    ]
    quarantined = [
        read_quarantined(r)
        for r in await consume_all(_bootstrap(config, source), config.topics.quarantine)
    ]
    mine = [a for a in audits if a["destination"] == destination]
    return {
        "mirrored": len(mirrored),
        "mirrored_origins": {peek(r.value).event["origin"]["agency"] for r in mirrored if r.value},
        "written": len(written),
        "audit_forwarded": sum(1 for a in mine if a["decision"] == FORWARDED),
        "audit_denied": dict(Counter(a["rule"] for a in mine if a["decision"] == DENIED)),
        "quarantined": dict(
            Counter(
                q.reason
                for q in quarantined
                if (q.consumer or "").startswith(f"{source}->{destination}@")
            )
        ),
    }


async def _hits_and_events(
    config: Config,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every hit on the correlator's cluster, and every event it holds (own and mirrored)."""
    bootstrap = _bootstrap(config, _CORRELATOR)
    hits = [
        default_store().decode(r.value, "bus.correlate.CorrelationHit")
        for r in await consume_all(bootstrap, "bus.correlations")
        if r.value is not None
    ]
    events: dict[str, dict[str, Any]] = {}
    for topic in (config.topics.events, *(config.topics.mirror_of(a) for a in AGENCIES)):
        if topic == config.topics.mirror_of(_CORRELATOR):
            continue
        for r in await consume_all(bootstrap, topic):
            if r.value is not None:
                event = peek(r.value).event
                events[event["event_id"]] = event
    return hits, events


def _written(event: dict[str, Any], key: str) -> set[str]:
    """How ``event`` wrote the identifier ``key`` (its subjects' values and attributes)."""
    forms = set()
    for s in event["subjects"]:
        one = {"subjects": [s]}
        if key in {i.key for i in identifiers(one)}:
            forms.add(json.dumps([s["value"], s["attributes"]], sort_keys=True))
    return forms


def _check_hits(config: Config, summary: dict[str, Any]) -> None:
    by_agency = {c["agency"]: c for c in summary["correlations"]}
    assert set(by_agency) == set(AGENCIES)
    none = by_agency["interpol"]
    assert (none["correlator_seen"], none["hits"], none["error"]) == (False, 0, None)
    mine = by_agency[_CORRELATOR]
    assert mine["error"] is None
    assert mine["correlator_seen"] is True
    assert mine["correlator_read"] > 0
    hits, events = asyncio.run(_hits_and_events(config))
    # The demo counted what was there while it watched; the correlator may have found more since.
    assert 0 < mine["hits"] <= len(hits)
    pairs = {(h["first"]["event_id"], h["second"]["event_id"]): h for h in hits}
    for line in mine["latest"]:
        hit = pairs[(line["first_event_id"], line["second_event_id"])]
        assert (line["kind"], line["identifier"]) == (hit["identifier_kind"], hit["identifier"])
        assert {line["first_origin"], line["second_origin"]} == set(AGENCIES)
    assert len(mine["latest"]) == min(5, mine["hits"])
    varied = 0
    for h in hits:
        assert {h["first"]["origin"], h["second"]["origin"]} == set(AGENCIES)
        key = f"{h['identifier_kind']}:{h['identifier']}"
        first, second = events[h["first"]["event_id"]], events[h["second"]["event_id"]]
        assert _written(first, key), key
        assert _written(second, key), key
        varied += _written(first, key) != _written(second, key)
    assert varied > 0  # some hits join identifiers written differently by the two agencies


def test_demo_exits_0_with_a_summary_that_independent_counts_confirm(
    federation: local.FederationSpec, correlator: subprocess.Popen[bytes]
) -> None:
    bridge_pids = {b.name: b.pid_file.read_text() for b in local.bridges(federation)}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bus", "demo", "--home", str(federation.home)),
            *("--duration", "20", "--rate", "10", "--forge-every", "10", "--seed", "14"),
            *("--no-tty", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=_DEMO_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    print(result.stderr)  # the progress lines and the summary table, for the record (-s)
    assert "summary" in result.stderr  # the table, printed on stderr beside the JSON
    summary = json.loads(result.stdout)
    assert summary["settled"] is True
    config = load_config(federation.config_file)
    directions = summary["directions"]
    assert {(d["source"], d["destination"]) for d in directions} == {
        AGENCIES,
        AGENCIES[::-1],
    }
    for d in directions:
        seen = asyncio.run(_independent_counts(config, d))
        where = f"{d['source']} -> {d['destination']}"
        assert d["published"] > 50, where  # 20 s at 10/s, less the forgeries
        assert seen["written"] == d["published"] + d["forged"], where
        assert d["forged"] == sum(summary["forged"][d["source"]].values()) > 0, where
        assert seen["mirrored"] == d["forwarded"] == d["expected_forwarded"] > 0, where
        assert seen["mirrored_origins"] == {d["source"]}, where
        assert seen["audit_forwarded"] == d["forwarded"], where
        assert seen["audit_denied"] == d["denied"], where
        assert sum(d["denied"].values()) > 0, where
        assert seen["quarantined"] == d["quarantined"], where
        assert sum(d["quarantined"].values()) == d["forged"], where  # every forgery, nothing else
        assert d["forwarded"] + sum(d["denied"].values()) == d["published"], where
        assert d["latency_p50_s"] is not None, where
        assert d["latency_p99_s"] >= d["latency_p50_s"], where
    _check_hits(config, summary)
    assert correlator.poll() is None  # still running: the hits did not come from a crash loop
    # The demo left the federation as it found it: the same bridge processes still run.
    assert {b.name: b.pid_file.read_text() for b in local.bridges(federation)} == bridge_pids

"""``bus demo`` on a federation of its own: exit 0, and a summary that independent readers confirm.

The federation (own home, free ports, two agencies, small heaps) is started with ``local.up``
and its bridges with ``local.start_bridges`` (supervised, as ``bus local up`` does). Its topics
are new, so everything on them is the demo's: the mirrored feeds, ``bus.audit`` and
``bus.quarantine`` are read from their start with ``consume_all`` and compared with the numbers
the demo printed (which it took from the bridges' ``/metrics`` and its own counts).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from bus import local
from bus.audit import DENIED, FORWARDED, decode_audit_record
from bus.config import Config, java_home, load_config
from bus.envelope import peek
from bus.records import read_quarantined
from bus.testing import consume_all, free_base_port, register

pytestmark = pytest.mark.integration

AGENCIES = ("interpol", "europol")
_DEMO_TIMEOUT_S = 400


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


def test_demo_exits_0_with_a_summary_that_independent_counts_confirm(
    federation: local.FederationSpec,
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
    # The demo left the federation as it found it: the same bridge processes still run.
    assert {b.name: b.pid_file.read_text() for b in local.bridges(federation)} == bridge_pids

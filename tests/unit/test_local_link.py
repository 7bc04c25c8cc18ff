"""``bus.local._wire`` and ``_link`` without a namespace: conditions, scheduling, addresses."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import subprocess
import sys

import pytest

from bus.errors import LocalClusterError
from bus.local._link import ADDRESS_RANGE, Link, _subnet, long_link, unavailable
from bus.local._wire import LIMIT, Direction, LinkConditions, _Wire


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rtt_ms": -1}, "not below 0"),
        ({"rtt_ms": 10, "jitter_ms": 20}, "jitter_ms 20: give at most rtt_ms"),
        ({"loss_percent": 101}, "loss_percent 101: give 0..100"),
    ],
)
def test_conditions_refuse_what_no_link_does(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LinkConditions(**fields)  # type: ignore[arg-type]  # test input


def test_conditions_describe_themselves() -> None:
    assert LinkConditions().describe() == "0 ms RTT"
    assert LinkConditions(rtt_ms=25, jitter_ms=5, loss_percent=1).describe() == (
        "25 ms ± 5 ms RTT, 1% loss"
    )
    assert LinkConditions(rtt_ms=25, partitioned=True).describe() == "partitioned"


def test_each_way_is_delayed_by_half_the_round_trip() -> None:
    way = Direction(random.Random(1), LinkConditions(rtt_ms=100))
    assert way.due(10.0) == pytest.approx(10.05)
    assert way.waiting == 1


def test_jitter_varies_the_delay_but_never_reorders_a_direction() -> None:
    way = Direction(random.Random(7), LinkConditions(rtt_ms=40, jitter_ms=20))
    dues = [way.due(i / 10000) for i in range(LIMIT)]
    assert all(d is not None for d in dues)
    delays = [d - i / 10000 for i, d in enumerate(dues) if d is not None]
    assert min(delays) >= 0.010 - 1e-9  # 20 ms each way, ± 10
    assert max(delays) <= 0.030 + 1e-9
    assert max(delays) - min(delays) > 0.005  # it does vary
    assert dues == sorted(dues)  # type: ignore[type-var]  # all floats, checked above


def test_loss_drops_about_the_given_share_and_a_partition_drops_all() -> None:
    way = Direction(random.Random(3), LinkConditions(rtt_ms=0, loss_percent=10))
    lost = 0
    for _ in range(10000):
        lost += way.due(0.0) is None
        way.waiting = 0  # delivered meanwhile
    assert 800 < lost < 1200
    assert way.lost == lost
    way.conditions = LinkConditions(partitioned=True)
    assert all(way.due(0.0) is None for _ in range(100))
    assert way.lost == lost + 100


def test_a_full_wire_drops_what_comes_next() -> None:
    way = Direction(random.Random(1), LinkConditions(rtt_ms=10))
    for _ in range(LIMIT):
        assert way.due(0.0) is not None
    assert way.due(0.0) is None
    assert (way.overflowed, way.waiting) == (1, LIMIT)


def test_a_delivered_packet_is_counted_passed_and_one_the_device_refuses_lost() -> None:
    wire = _Wire(-1, -1, seed=1)
    read, write = os.pipe()
    try:
        wire.out.waiting = 2
        _Wire._deliver(write, b"packet", wire.out)
        assert os.read(read, 100) == b"packet"
        _Wire._deliver(-1, b"packet", wire.out)  # a closed device
    finally:
        os.close(read)
        os.close(write)
    assert wire.out.stats() == {"passed": 1, "lost": 1, "overflowed": 0, "waiting": 0}


def test_the_wire_obeys_commands_and_refuses_bad_ones_with_a_reason() -> None:
    wire = _Wire(-1, -1, seed=1)
    answer = wire.command(json.dumps({"conditions": {"rtt_ms": 25, "loss_percent": 1}}))
    assert answer["ok"]
    assert answer["conditions"]["rtt_ms"] == 25
    assert wire.out.conditions == wire.back.conditions == LinkConditions(rtt_ms=25, loss_percent=1)
    assert wire.command('{"stats": true}')["in"] == wire.back.stats()
    refused = wire.command(json.dumps({"conditions": {"rtt_ms": -5}}))
    assert not refused["ok"]
    assert "not below 0" in refused["error"]
    assert not wire.command("not json")["ok"]
    assert not wire.command(json.dumps({"conditions": {"bandwidth": 1}}))["ok"]


def test_the_wire_without_its_devices_says_how_to_call_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bus.local._wire"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage: python -m bus.local._wire NEAR FAR" in result.stderr


def test_a_subnet_is_a_30_of_the_benchmark_range_clear_of_every_taken_network() -> None:
    rng = random.Random(5)
    taken = [ipaddress.IPv4Network("198.18.0.0/16")]  # half the range
    for _ in range(50):
        net = _subnet(taken, rng)
        assert net.prefixlen == 30
        assert net.subnet_of(ADDRESS_RANGE)  # type: ignore[arg-type]  # both IPv4
        assert not net.overlaps(taken[0])
    with pytest.raises(LocalClusterError, match="no free /30"):
        _subnet([ipaddress.IPv4Network("198.18.0.0/15")], rng)


def test_a_link_names_everything_from_one_token_within_the_kernels_limits() -> None:
    link = Link()
    assert link.namespace == f"bus-link-{link.token}"
    assert len(link.near_device) <= 15
    assert len(link.far_device) <= 15
    assert link.launcher == ("ip", "netns", "exec", link.namespace)
    assert link.conditions == LinkConditions()
    link.close()  # nothing made, nothing to undo
    with pytest.raises(LocalClusterError, match="its wire is not running"):
        link.stats()


def test_without_root_no_link_is_made_and_the_reason_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable() == "long links need root (network namespaces and TUN devices)"
    with pytest.raises(LocalClusterError, match="need root"), long_link():
        pass


@pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")
def test_a_failing_step_undoes_what_was_made(monkeypatch: pytest.MonkeyPatch) -> None:
    link = Link(mtu=1)  # no device takes an MTU of 1: the last steps fail
    with pytest.raises(LocalClusterError, match="mtu"):
        link.open()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert link.namespace not in names.stdout
    devices = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert link.near_device not in devices.stdout

"""``bus.local._spec`` without a broker: the federation's shape, its ports, ``local.toml``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bus import local
from bus.errors import LocalClusterError
from bus.local._spec import save_spec


def _spec(tmp_path: Path, **fields: object) -> local.FederationSpec:
    return local.FederationSpec(home=tmp_path, **fields)  # type: ignore[arg-type]  # test input


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"agencies": ()}, "agencies: give at least one agency"),
        ({"agencies": ("interpol", "europol", "interpol")}, "agencies: each agency once"),
        ({"base_port": 80}, "base_port: 80 is outside"),
        ({"base_port": 65534}, "base_port: 65534 is outside"),
        ({"heap_mb": 64}, "heap_mb: 64 MiB"),
        ({"heap_mb": 4096}, "heap_mb: 4096 MiB"),
        ({"partitions": 0}, "partitions: 0; give at least 1"),
        ({"hosts": {"ameripol": "198.18.0.2"}}, "hosts, launchers: ameripol is not an agency"),
        ({"launchers": {"x": ("ip",)}}, "hosts, launchers: x is not an agency"),
    ],
)
def test_spec_validation_names_the_field(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _spec(tmp_path, **fields)


def test_each_agency_gets_two_consecutive_ports_in_the_order_given(tmp_path: Path) -> None:
    spec = _spec(tmp_path, agencies=("interpol", "europol", "ameripol"), base_port=20000)
    nodes = spec.nodes()
    assert [(n.agency, n.broker_port, n.controller_port) for n in nodes] == [
        ("interpol", 20000, 20001),
        ("europol", 20002, 20003),
        ("ameripol", 20004, 20005),
    ]
    assert nodes[1].bootstrap == "127.0.0.1:20002"
    assert nodes[1].dir == tmp_path / "nodes" / "europol"
    assert (spec.config_file, spec.keys_dir, spec.policy_file) == (
        tmp_path / "bus.toml",
        tmp_path / "keys",
        tmp_path / "policy.toml",
    )


def test_load_spec_without_a_saved_spec_gives_the_defaults(tmp_path: Path) -> None:
    spec = local.load_spec(tmp_path, heap_mb=None)
    assert spec.agencies == local.DEFAULT_AGENCIES
    assert spec.base_port == 19092


def test_load_spec_reads_the_saved_spec_and_applies_overrides(tmp_path: Path) -> None:
    save_spec(_spec(tmp_path, agencies=("a", "b", "c"), base_port=21000, partitions=3))
    spec = local.load_spec(tmp_path, heap_mb=256, base_port=None)
    assert (spec.agencies, spec.base_port, spec.heap_mb, spec.partitions) == (
        ("a", "b", "c"),
        21000,
        256,
        3,
    )


@pytest.mark.parametrize(
    "text",
    ["agencies = [", 'agencies = ["a"]\n', 'agencies = ["a"]\nbase_port = "x"\nheap_mb = 1\n'],
)
def test_a_corrupt_saved_spec_names_the_file_and_the_fix(tmp_path: Path, text: str) -> None:
    (tmp_path / "local.toml").write_text(text)
    with pytest.raises(LocalClusterError) as caught:
        local.load_spec(tmp_path)
    assert str(tmp_path / "local.toml") in str(caught.value)
    assert "bus local reset" in str(caught.value)


def test_a_bad_override_is_a_local_cluster_error(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match="local federation: heap_mb"):
        local.load_spec(tmp_path, heap_mb=10)


def test_a_node_listens_on_its_own_address_and_runs_under_its_own_launcher(
    tmp_path: Path,
) -> None:
    spec = _spec(
        tmp_path,
        base_port=20000,
        hosts={"europol": "198.18.0.2"},
        launchers={"europol": ("ip", "netns", "exec", "far")},
    )
    interpol, europol = spec.nodes()
    assert (interpol.host, interpol.bootstrap) == ("127.0.0.1", "127.0.0.1:20000")
    assert (europol.host, europol.bootstrap) == ("198.18.0.2", "198.18.0.2:20002")
    assert spec.launcher("interpol") == ()
    assert spec.launcher("europol") == ("ip", "netns", "exec", "far")

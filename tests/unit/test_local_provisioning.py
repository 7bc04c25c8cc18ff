"""``bus.local._provisioning``: the keys, trust store and policy that ``bus local up`` provides."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bus.local._provisioning import POLICY_MARKER, ensure_keys, ensure_policy, render_policy
from bus.policy import HANDLING_CODES, load_policy
from bus.trust import TrustStore

AREAS = {
    "MARITIME_PIRACY",
    "COUNTER_TERRORISM",
    "MAJOR_EVENT_SECURITY",
    "CYBERCRIME",
    "CHILD_SEXUAL_EXPLOITATION",
}
DEPLOY_POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "local.toml"


@pytest.mark.parametrize("agencies", [("solo",), ("interpol", "europol"), ("a", "b", "c", "d")])
def test_generated_policy_loads_with_a_direction_per_ordered_pair(
    tmp_path: Path, agencies: tuple[str, ...]
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(render_policy(agencies))
    policy = load_policy(path)
    assert set(policy.directions) == set(itertools.permutations(agencies, 2))
    for direction in policy.directions.values():
        assert direction.crime_areas == AREAS
        assert direction.tlp == {"CLEAR", "GREEN", "AMBER"}
        assert direction.handling_codes == HANDLING_CODES
        assert direction.onward_forwarding is False


def test_generated_policy_for_interpol_and_europol_equals_the_deployed_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(render_policy(("interpol", "europol")))
    assert load_policy(path) == load_policy(DEPLOY_POLICY)


def test_ensure_keys_adds_keys_for_new_agencies_and_keeps_existing_ones(tmp_path: Path) -> None:
    lines: list[str] = []
    ensure_keys(tmp_path, ("interpol", "europol"), log=lines.append)
    first = (tmp_path / "interpol.key.pem").read_bytes()
    bridge = (tmp_path / "bridge.interpol-europol.key.pem").read_bytes()
    ensure_keys(tmp_path, ("interpol", "europol", "ecb"), log=lines.append)
    assert (tmp_path / "interpol.key.pem").read_bytes() == first
    assert (tmp_path / "bridge.interpol-europol.key.pem").read_bytes() == bridge
    store = TrustStore.load(tmp_path / "trust.toml")
    publishers = sorted(k.agency for k in store if k.role == "publisher")
    assert publishers == ["ecb", "europol", "interpol"]
    # One audit key per bridge direction, a bridge key of its source agency.
    bridges = sorted(k.agency for k in store if k.role == "bridge")
    assert bridges == ["ecb", "ecb", "europol", "europol", "interpol", "interpol"]
    # One line per key made (2 + 2 directions, then 1 + 4 directions), none for a key kept.
    assert len(lines) == 9


def test_ensure_policy_writes_once_and_keeps_it_while_agencies_stay(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    lines: list[str] = []
    ensure_policy(path, ("interpol", "europol"), log=lines.append)
    assert path.read_text().startswith(POLICY_MARKER)
    before = path.stat().st_mtime_ns
    ensure_policy(path, ("europol", "interpol"), log=lines.append)
    assert path.stat().st_mtime_ns == before
    assert lines == []


def test_ensure_policy_regenerates_an_unedited_policy_when_agencies_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policy.toml"
    lines: list[str] = []
    ensure_policy(path, ("interpol", "europol"), log=lines.append)
    ensure_policy(path, ("interpol", "europol", "ecb"), log=lines.append)
    assert path.read_text() == render_policy(("interpol", "europol", "ecb"))
    assert ("ecb", "interpol") in load_policy(path).directions
    assert "regenerated" in lines[0]


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text.replace('"AMBER"]', "]"),  # an edit that keeps the marker
        lambda text: text.split("\n", 1)[1],  # the marker removed
        lambda text: "not toml [",
    ],
)
def test_ensure_policy_leaves_an_edited_policy_alone_and_says_so(
    tmp_path: Path, edit: object
) -> None:
    path = tmp_path / "policy.toml"
    ensure_policy(path, ("interpol", "europol"), log=lambda _: None)
    edited = edit(path.read_text())  # type: ignore[operator]
    path.write_text(edited)
    lines: list[str] = []
    ensure_policy(path, ("interpol", "europol", "ecb"), log=lines.append)
    assert path.read_text() == edited
    [line] = lines
    assert "left as it is" in line
    assert "ecb" in line

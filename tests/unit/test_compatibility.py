"""FULL_TRANSITIVE evolution: the repository's schemas, and changes that must be refused."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bus._compatibility import check_full_transitive, incompatibilities
from bus.codec import SchemaStore
from bus.errors import SchemaError

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BASE: dict[str, Any] = json.loads((REPO_SCHEMAS / "IntelligenceEvent.v1.avsc").read_text())


def test_every_schema_version_is_full_transitive_with_all_earlier_ones() -> None:
    """For each name in schemas/, every version reads and is read by every earlier one."""
    chains: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)
    for path in REPO_SCHEMAS.glob("*.avsc"):
        stem, version, _ = path.name.rsplit(".", 2)
        raw = json.loads(path.read_text())
        full = raw["name"] if "." in raw["name"] else f"{raw.get('namespace', '')}.{raw['name']}"
        chains[full].append((int(version.removeprefix("v")), path.name, raw))
        assert stem == raw["name"].rpartition(".")[2], f"{path.name} holds {raw['name']}"
    assert chains
    for chain in chains.values():
        chain.sort()
        check_full_transitive([(file, raw) for _, file, raw in chain])
    SchemaStore.load(REPO_SCHEMAS)  # the store runs the same check


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def _changed(change: str) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    if change == "new field without default":
        schema["fields"].append({"name": "language", "type": "string"})
    elif change == "field removed without default":
        schema["fields"].remove(_field(schema, "title"))
    elif change == "type changed":
        _field(schema, "revision")["type"] = "string"
    elif change == "int widened to long":
        _field(schema, "revision")["type"] = "long"
    elif change == "enum symbol removed, enum default kept":
        _field(schema, "priority")["type"]["symbols"].remove("LOW")
    elif change == "enum default dropped and symbol removed":
        priority = _field(schema, "priority")["type"]
        del priority["default"]
        priority["symbols"].remove("LOW")
    elif change == "record renamed":
        _field(schema, "origin")["type"]["name"] = "Source"
    elif change == "optional made required":
        _field(schema, "handling_conditions")["type"] = "string"
        del _field(schema, "handling_conditions")["default"]
    elif change == "new field without default but enum-typed":
        schema["fields"].append(
            {
                "name": "urgency",
                "type": {"type": "enum", "name": "U", "symbols": ["A"], "default": "A"},
            }
        )
    else:  # pragma: no cover
        raise AssertionError(change)
    return schema


INCOMPATIBLE = [
    "new field without default",
    "field removed without default",
    "type changed",
    "int widened to long",
    "enum default dropped and symbol removed",
    "record renamed",
    "optional made required",
    "new field without default but enum-typed",
]


@pytest.mark.parametrize("change", INCOMPATIBLE)
def test_incompatible_changes_are_refused(change: str, tmp_path: Path) -> None:
    """Each deliberately incompatible v2 fails the check, and the store refuses to load it."""
    v2 = _changed(change)
    with pytest.raises(SchemaError, match="FULL_TRANSITIVE"):
        check_full_transitive([("v1", BASE), ("v2", v2)])
    (tmp_path / "IntelligenceEvent.v1.avsc").write_text(json.dumps(BASE))
    (tmp_path / "IntelligenceEvent.v2.avsc").write_text(json.dumps(v2))
    with pytest.raises(SchemaError):
        SchemaStore.load(tmp_path)


def test_removing_an_enum_symbol_is_compatible_when_the_enum_has_a_default() -> None:
    """Unknown symbols read as the default, so the removal resolves both ways."""
    check_full_transitive(
        [("v1", BASE), ("v2", _changed("enum symbol removed, enum default kept"))]
    )


def test_compatible_additions_pass() -> None:
    v2 = copy.deepcopy(BASE)
    v2["fields"].append({"name": "language", "type": "string", "default": "en"})
    _field(v2, "tlp")["type"]["symbols"].append("BLACK")
    v3 = copy.deepcopy(v2)
    v3["fields"].append({"name": "notes", "type": ["null", "string"], "default": None})
    check_full_transitive([("v1", BASE), ("v2", v2), ("v3", v3)])


def test_transitive_means_all_earlier_versions_not_just_the_previous() -> None:
    """v3 drops a field v2 made optional; v1 had it required: v3 vs v1 fails."""
    v2 = copy.deepcopy(BASE)
    v2["fields"].append({"name": "language", "type": "string", "default": "en"})
    v3 = copy.deepcopy(BASE)
    v3["fields"].remove(_field(v3, "title"))
    v3["fields"].append({"name": "title2", "type": "string", "default": ""})
    with pytest.raises(SchemaError, match="title"):
        check_full_transitive([("v1", BASE), ("v2", v2), ("v3", v3)])


def test_union_and_promotion_rules() -> None:
    assert incompatibilities("long", "int") == []
    assert incompatibilities("int", "long") != []
    assert incompatibilities(["null", "string"], "string") == []
    assert incompatibilities("string", ["null", "string"]) != []
    assert incompatibilities("bytes", "string") == []
    assert (
        incompatibilities({"type": "array", "items": "double"}, {"type": "array", "items": "float"})
        == []
    )
    fixed = {"type": "fixed", "name": "F", "size": 4}
    assert incompatibilities(fixed, {**fixed, "size": 8}) != []

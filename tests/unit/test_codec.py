"""``bus.codec``: single-object encoding, the schema store, and resolution across versions."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
import pytest

from bus import events
from bus.codec import (
    HEADER_SIZE,
    INTELLIGENCE_EVENT,
    MARKER,
    SIGNED_EVENT,
    SchemaStore,
    default_store,
    schema_dir,
)
from bus.errors import BadMarker, EventError, SchemaError, TruncatedRecord, UnknownFingerprint

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _raw(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO_SCHEMAS / name).read_text())
    return loaded


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(item) for item in schema]
    return schema


def test_default_store_loads_every_schema_file() -> None:
    """Every .avsc in schemas/ is in the store, under its full name."""
    store = default_store()
    files = {path.name for path in REPO_SCHEMAS.glob("*.avsc")}
    assert {version.file for version in store} == files
    assert INTELLIGENCE_EVENT in store.names()
    assert SIGNED_EVENT in store.names()


def test_packaged_schemas_are_the_repository_schemas() -> None:
    assert schema_dir().resolve() == REPO_SCHEMAS.resolve()


@pytest.mark.parametrize(
    "name", ["IntelligenceEvent.v1.avsc", "SignedEvent.v1.avsc", "SignedEvent.v2.avsc"]
)
def test_fingerprints_match_the_apache_library(name: str) -> None:
    """Our CRC-64-AVRO fingerprint is the official library's (logical types stripped: PCF)."""
    version = next(v for v in default_store() if v.file == name)
    official = avro.schema.parse(json.dumps(_strip_logical(_raw(name))))
    assert version.fingerprint == official.fingerprint("CRC-64-AVRO")
    assert version.header == MARKER + version.fingerprint


def test_documented_fingerprints() -> None:
    """docs/wire-format.md lists these bytes; a schema change must update the page."""
    store = default_store()
    assert store.latest(INTELLIGENCE_EVENT).fingerprint.hex() == "27bc1eca53544181"
    v1, v2 = store.versions(SIGNED_EVENT)
    assert v1.fingerprint.hex() == "9264cb1f0b869875"
    assert v2.fingerprint.hex() == "2675638a77a64223"


def test_every_field_and_symbol_is_documented() -> None:
    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                walk(branch, where)
        elif isinstance(schema, dict):
            if schema.get("type") in ("record", "enum", "fixed"):
                assert schema.get("doc"), f"{where}: {schema['name']} has no doc"
            if schema.get("type") == "enum":
                assert "default" in schema, f"{where}: enum {schema['name']} has no default"
                for symbol in schema["symbols"]:
                    assert symbol in schema["doc"], f"{schema['name']}.{symbol} undocumented"
            for field in schema.get("fields", ()):
                assert field.get("doc"), f"{where}.{field['name']} has no doc"
                walk(field["type"], f"{where}.{field['name']}")
                if isinstance(field["type"], list) and "null" in field["type"]:
                    assert field.get("default", "missing") is None, f"{field['name']} default"
            for key in ("items", "values"):
                if key in schema:
                    walk(schema[key], where)

    for path in REPO_SCHEMAS.glob("*.avsc"):
        walk(json.loads(path.read_text()), path.name)


def test_encode_decode_round_trip() -> None:
    store = default_store()
    event = events.template("MARITIME_PIRACY")
    data = store.encode(INTELLIGENCE_EVENT, event)
    assert data[:HEADER_SIZE] == store.latest(INTELLIGENCE_EVENT).header
    assert store.decode(data, INTELLIGENCE_EVENT) == event


def test_encode_fills_defaults_and_rejects_unknown_fields() -> None:
    store = default_store()
    event = events.template("OTHER")
    del event["tlp"], event["references"]
    decoded = store.decode(store.encode(INTELLIGENCE_EVENT, event))
    assert decoded["tlp"] == "RED"
    assert decoded["references"] == []
    with pytest.raises(EventError, match="colour"):
        store.encode(INTELLIGENCE_EVENT, {**event, "colour": "red"})


def test_encode_errors_name_the_field_not_the_value() -> None:
    event = events.template("OTHER")
    event["origin"] = {**event["origin"], "unit": 12345678}
    with pytest.raises(EventError) as caught:
        default_store().encode(INTELLIGENCE_EVENT, event)
    assert "unit" in str(caught.value)
    assert "12345678" not in str(caught.value)


def test_header_errors() -> None:
    store = default_store()
    with pytest.raises(TruncatedRecord):
        store.decode(MARKER + b"\x00")
    with pytest.raises(BadMarker):
        store.decode(b"\x00" * 20)
    with pytest.raises(UnknownFingerprint, match="0000000000000000"):
        store.decode(MARKER + b"\x00" * 8 + b"\x00")


def _copy_schemas(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS, directory)
    return directory


def _v2_with_new_field(directory: Path) -> None:
    schema = _raw("IntelligenceEvent.v1.avsc")
    schema["fields"].append(
        {"name": "language", "type": "string", "default": "en", "doc": "Language of the text."}
    )
    tlp = next(f for f in schema["fields"] if f["name"] == "tlp")
    tlp["type"]["symbols"].append("BLACK")
    (directory / "IntelligenceEvent.v2.avsc").write_text(json.dumps(schema))


def test_old_records_read_into_the_newest_version(tmp_path: Path) -> None:
    """A v1 record decodes with a v2 store, the new field taking its default."""
    directory = _copy_schemas(tmp_path)
    _v2_with_new_field(directory)
    store = SchemaStore.load(directory)
    assert [v.version for v in store.versions(INTELLIGENCE_EVENT)] == [1, 2]
    v1_record = default_store().encode(INTELLIGENCE_EVENT, events.template("OTHER"))
    decoded = store.decode(v1_record, INTELLIGENCE_EVENT)
    assert decoded["language"] == "en"


def test_new_records_read_by_an_old_reader_with_enum_default(tmp_path: Path) -> None:
    """A v2 record with a TLP symbol v1 lacks reads, with v1 as reader, as RED."""
    directory = _copy_schemas(tmp_path)
    _v2_with_new_field(directory)
    store = SchemaStore.load(directory)
    v1, v2 = store.versions(INTELLIGENCE_EVENT)
    record = store.encode(
        INTELLIGENCE_EVENT, {**events.template("OTHER"), "tlp": "BLACK", "language": "fr"}
    )
    assert store.decode(record)["tlp"] == "BLACK"
    old: Any = fastavro.schemaless_reader(
        io.BytesIO(record[HEADER_SIZE:]), v2.io_schema, v1.io_schema
    )
    assert old["tlp"] == "RED"
    assert "language" not in old


def test_versions_are_ordered_by_number_not_name(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    schema = _raw("SignedEvent.v2.avsc")
    for number in (3, 10):
        schema["fields"].append(
            {"name": f"extra{number}", "type": ["null", "string"], "default": None, "doc": "x"}
        )
        (directory / f"SignedEvent.v{number}.avsc").write_text(json.dumps(schema))
    versions = SchemaStore.load(directory).versions(SIGNED_EVENT)
    assert [v.version for v in versions] == [1, 2, 3, 10]


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("Broken.v1.avsc", "{", "cannot read"),
        ("Broken.avsc", '{"type": "record", "name": "B", "fields": []}', "named <Name>.v<N>"),
        ("Broken.v1.avsc", '{"type": "record", "name": "B", "fields": [{"name": "a"}]}', "invalid"),
        ("Broken.v1.avsc", '"string"', "one named type"),
    ],
)
def test_bad_schema_files_are_schema_errors(
    tmp_path: Path, file: str, content: str, message: str
) -> None:
    (tmp_path / file).write_text(content)
    with pytest.raises(SchemaError, match=message) as caught:
        SchemaStore.load(tmp_path)
    assert file in str(caught.value)


def test_two_files_with_the_same_version(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "A", "fields": []}
    (tmp_path / "A.v1.avsc").write_text(json.dumps(schema))
    (tmp_path / "Other.v1.avsc").write_text(json.dumps(schema))
    with pytest.raises(SchemaError, match="both version 1"):
        SchemaStore.load(tmp_path)


def test_incompatible_new_version_is_refused_on_load(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    schema = _raw("IntelligenceEvent.v1.avsc")
    schema["fields"].append({"name": "language", "type": "string", "doc": "No default."})
    (directory / "IntelligenceEvent.v2.avsc").write_text(json.dumps(schema))
    with pytest.raises(SchemaError, match="language"):
        SchemaStore.load(directory)


def test_missing_directory() -> None:
    with pytest.raises(SchemaError, match="not a directory"):
        SchemaStore.load("/nonexistent/schemas")


def _with_symbol(schema: Any, enum: str, symbol: str) -> Any:
    """``schema`` with ``symbol`` added to the enum named ``enum`` (a future writer's schema)."""
    if isinstance(schema, dict):
        if schema.get("type") == "enum" and schema.get("name") == enum:
            return {**schema, "symbols": [*schema["symbols"], symbol]}
        return {k: _with_symbol(v, enum, symbol) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_with_symbol(item, enum, symbol) for item in schema]
    return schema


def test_unknown_handling_code_and_tlp_read_as_the_most_restrictive() -> None:
    """A reader meets H4 or a new TLP level: it reads H2 and RED, never H0 or CLEAR."""
    raw = _raw("IntelligenceEvent.v1.avsc")
    future = _with_symbol(_with_symbol(raw, "HandlingCode", "H4"), "Tlp", "TLP_PURPLE")
    event = events.template("CYBERCRIME")
    event["handling_codes"] = ["H4", "H1"]
    event["tlp"] = "TLP_PURPLE"
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(future), event)
    buffer.seek(0)
    read: Any = fastavro.schemaless_reader(
        buffer, fastavro.parse_schema(future), fastavro.parse_schema(raw)
    )
    assert read["handling_codes"] == ["H2", "H1"]
    assert read["tlp"] == "RED"


def test_security_relevant_enum_defaults_are_restrictive() -> None:
    """Unknown symbols and left-out fields read as the most restrictive marking (decision 0004)."""
    fields = {f["name"]: f for f in _raw("IntelligenceEvent.v1.avsc")["fields"]}
    assert fields["handling_codes"]["type"]["items"]["default"] == "H2"
    assert fields["handling_codes"]["default"] == ["H2"]
    assert fields["tlp"]["type"]["default"] == "RED"
    assert fields["tlp"]["default"] == "RED"
    assert fields["crime_area"]["type"]["default"] == "OTHER"  # in no agreement: never released
    assert fields["releasable_to"]["default"] == []
    assert fields["onward_release_consent"]["default"] is False

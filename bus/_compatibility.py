"""Avro schema-resolution compatibility, as the specification defines it.

``incompatibilities(reader, writer)`` lists why data written with ``writer`` cannot be read with
``reader`` (empty: it can). ``check_full_transitive`` applies it both ways between every pair of
versions of one schema, which is what FULL_TRANSITIVE means.

This is our own implementation rather than ``avro.compatibility`` because that one accepts a new
reader field without a default when its type is an enum with a default, which the specification
(and Java) reject: an enum default stands for unknown *symbols*, not for a missing *field*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bus.errors import SchemaError

__all__ = ["incompatibilities", "check_full_transitive"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

# writer type -> reader types that can read it (the specification's promotions).
_PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"int", "long", "float", "double"}),
    "long": frozenset({"long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "string": frozenset({"string", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
}

_NO_DEFAULT = object()


class _Names:
    """Named types of one schema by full name, so that references by name can be followed."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _full_name(schema, namespace)
            self.types[full] = schema
            namespace = full.rpartition(".")[0]
            for field in schema.get("fields", ()):
                self._collect(field["type"], namespace)
        elif kind == "array":
            self._collect(schema["items"], namespace)
        elif kind == "map":
            self._collect(schema["values"], namespace)
        elif isinstance(kind, dict | list):
            self._collect(kind, namespace)

    def resolve(self, schema: Any, namespace: str) -> tuple[Any, str]:
        """Return the schema a reference names (or the schema itself) and its namespace."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            found = self.types.get(full) or self.types.get(schema)
            if found is None:
                raise SchemaError(f"unknown named type {schema!r}")
            return found, full.rpartition(".")[0]
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return self.resolve(schema["type"], namespace)
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"], namespace
        return schema, namespace


def _full_name(schema: Mapping[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_names = _Names(reader)
        self.writer_names = _Names(writer)
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, r_ns: str, w_ns: str, path: str) -> None:
        reader, r_ns = self.reader_names.resolve(reader, r_ns)
        writer, w_ns = self.writer_names.resolve(writer, w_ns)
        r_kind, w_kind = _kind(reader), _kind(writer)
        if w_kind == "union":
            for index, branch in enumerate(writer):
                self.check(reader, branch, r_ns, w_ns, f"{path}<branch {index}>")
            return
        if r_kind == "union":
            before = len(self.problems)
            for branch in reader:
                trial = _Checker.__new__(_Checker)
                trial.reader_names, trial.writer_names = self.reader_names, self.writer_names
                trial.problems, trial._seen = [], set(self._seen)
                trial.check(branch, writer, r_ns, w_ns, path)
                if not trial.problems:
                    return
            del self.problems[before:]
            self.problems.append(f"{path}: no branch of the reader's union reads the {w_kind}")
            return
        if w_kind in _PRIMITIVES:
            if r_kind not in _PROMOTIONS.get(w_kind, frozenset({w_kind})):
                self.problems.append(f"{path}: reader type {r_kind} cannot read writer {w_kind}")
            return
        if r_kind != w_kind and not (r_kind == "error" and w_kind == "record"):
            self.problems.append(f"{path}: reader type {r_kind} cannot read writer {w_kind}")
            return
        if w_kind == "array":
            self.check(reader["items"], writer["items"], r_ns, w_ns, f"{path}[]")
            return
        if w_kind == "map":
            self.check(reader["values"], writer["values"], r_ns, w_ns, f"{path}{{}}")
            return
        r_full, w_full = _full_name(reader, r_ns), _full_name(writer, w_ns)
        aliases = {_alias(alias, r_full) for alias in reader.get("aliases", ())}
        if r_full != w_full and w_full not in aliases:
            self.problems.append(f"{path}: reader names {r_full}, writer names {w_full}")
            return
        if w_kind == "fixed":
            if reader["size"] != writer["size"]:
                self.problems.append(f"{path}: fixed size {writer['size']} -> {reader['size']}")
        elif w_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and reader.get("default") not in reader["symbols"]:
                self.problems.append(
                    f"{path}: reader enum {r_full} lacks {', '.join(missing)} and has no default"
                )
        else:
            self._check_record(reader, writer, r_full, w_full, path)

    def _check_record(self, reader: Any, writer: Any, r_full: str, w_full: str, path: str) -> None:
        if (r_full, w_full) in self._seen:
            return
        self._seen.add((r_full, w_full))
        r_ns, w_ns = r_full.rpartition(".")[0], w_full.rpartition(".")[0]
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            match = next((written[name] for name in names if name in written), None)
            where = f"{path}.{field['name']}" if path else field["name"]
            if match is None:
                if field.get("default", _NO_DEFAULT) is _NO_DEFAULT:
                    self.problems.append(
                        f"{where}: reader field has no default and writer lacks it"
                    )
                continue
            self.check(field["type"], match["type"], r_ns, w_ns, where)


def _alias(alias: str, full: str) -> str:
    if "." in alias:
        return alias
    namespace = full.rpartition(".")[0]
    return f"{namespace}.{alias}" if namespace else alias


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """List why data written with ``writer`` cannot be read with ``reader`` (empty if it can).

    Both are schemas as loaded from JSON (``.avsc`` contents).
    """
    checker = _Checker(reader, writer)
    checker.check(reader, writer, "", "", "")
    return checker.problems


def check_full_transitive(versions: Sequence[tuple[str, Any]]) -> None:
    """Raise ``SchemaError`` unless every version reads, and is read by, every earlier one.

    ``versions`` are ``(label, schema)`` pairs, oldest first; labels name them in the message.
    """
    for later_index, (later_label, later) in enumerate(versions):
        for earlier_label, earlier in versions[:later_index]:
            for reader_label, reader, writer_label, writer in (
                (later_label, later, earlier_label, earlier),
                (earlier_label, earlier, later_label, later),
            ):
                problems = incompatibilities(reader, writer)
                if problems:
                    raise SchemaError(
                        f"{reader_label} cannot read data written with {writer_label} "
                        f"(FULL_TRANSITIVE): {'; '.join(problems)}; make the change compatible "
                        "(new fields need defaults, enums need a default) or use a new name"
                    )

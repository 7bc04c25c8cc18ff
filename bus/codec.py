"""Avro single-object encoding on fastavro, and the store of every schema in ``schemas/``.

A single-object-encoded record is::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
          |   Parsing Canonical Form | Avro binary datum

``SchemaStore`` loads every ``.avsc`` of a directory, groups them by full name, orders the
versions of each by the ``vN`` in the file name (``IntelligenceEvent.v2.avsc``), checks that the
versions are FULL_TRANSITIVE compatible, and then:

- ``encode(name, datum)`` writes with the newest version of ``name``;
- ``decode(data, name)`` finds the writer schema by fingerprint and reads into the newest version
  of the same name (Avro schema resolution). With ``limits`` (a ``DecodeLimits``), a pre-scan
  refuses a datum with too many items, too long strings or too deep nesting before fastavro
  reads it (``LimitExceeded``), so that the cost of a hostile datum stays bounded.

The schemas ship inside the package (``bus/schemas`` is the repository's ``schemas/``, linked in a
checkout and copied into wheels), so ``default_store()`` works from a checkout and when installed.

In memory a record is the dict fastavro reads and writes: enums are ``str``, ``timestamp-micros``
are timezone-aware ``datetime`` (UTC; ``int`` microseconds are accepted on writing), ``bytes`` are
``bytes``, and strings with the ``uuid`` logical type stay ``str`` (canonical lowercase text):
converting them to ``uuid.UUID`` would cost a fifth of the decoding time for nothing, since
``bus.events`` checks their form at the boundary. The logical type does not change the bytes
or the fingerprint (the Parsing Canonical Form drops it).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

import fastavro
import fastavro.validation
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from bus._compatibility import check_full_transitive
from bus._limits import DecodeLimits, Scanner, check, compile_scanner, scan
from bus.errors import (
    BadMarker,
    EventError,
    MalformedDatum,
    SchemaError,
    TruncatedRecord,
    UnknownFingerprint,
)

__all__ = [
    "DecodeLimits",
    "MARKER",
    "HEADER_SIZE",
    "INTELLIGENCE_EVENT",
    "SIGNED_EVENT",
    "SchemaVersion",
    "SchemaStore",
    "default_store",
    "fingerprint_of",
    "schema_dir",
]

MARKER: Final = b"\xc3\x01"
"""The two bytes that start every single-object-encoded record."""
HEADER_SIZE: Final = 10
"""Marker plus 8-byte fingerprint."""
INTELLIGENCE_EVENT: Final = "bus.intel.IntelligenceEvent"
SIGNED_EVENT: Final = "bus.intel.SignedEvent"

_VERSIONED = re.compile(r"(?P<stem>.+)\.v(?P<version>[1-9][0-9]*)\.avsc")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaVersion:
    """One version of one schema, parsed once and ready for the hot path."""

    name: str
    """Full name, e.g. ``bus.intel.IntelligenceEvent``."""
    version: int
    """The ``N`` of ``<Name>.vN.avsc``."""
    file: str
    """File name the version was loaded from."""
    raw: Mapping[str, Any] = field(repr=False)
    """The schema as written in the file."""
    parsed: Any = field(repr=False, compare=False)
    """The schema parsed by fastavro, as written."""
    io_schema: Any = field(repr=False, compare=False)
    """``parsed`` without the ``uuid`` logical type: what records are read and written with."""
    canonical_form: str = field(repr=False)
    """Avro Parsing Canonical Form."""
    fingerprint: bytes
    """CRC-64-AVRO of the canonical form, 8 bytes, little-endian as on the wire."""

    @property
    def header(self) -> bytes:
        """The 10 bytes that start a single-object encoding with this version."""
        return MARKER + self.fingerprint


def fingerprint_of(canonical_form: str) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of a Parsing Canonical Form."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form, "CRC-64-AVRO"))


def _parse_file(path: Path) -> tuple[int, SchemaVersion]:
    match = _VERSIONED.fullmatch(path.name)
    if match is None:
        raise SchemaError(f"{path.name}: schema files are named <Name>.v<N>.avsc; rename it")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path.name}: cannot read the schema: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") not in ("record", "enum", "fixed"):
        raise SchemaError(f"{path.name}: a schema file holds one named type (record, enum, fixed)")
    try:
        parsed: Any = fastavro.parse_schema(raw, named_schemas={})
        canonical = to_parsing_canonical_form(parsed)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaError(f"{path.name}: invalid Avro schema: {exc}") from exc
    version = int(match["version"])
    return version, SchemaVersion(
        name=str(parsed["name"]),
        version=version,
        file=path.name,
        raw=raw,
        parsed=parsed,
        io_schema=fastavro.parse_schema(_without_uuid(raw), named_schemas={}),
        canonical_form=canonical,
        fingerprint=fingerprint_of(canonical),
    )


def _without_uuid(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            key: _without_uuid(value)
            for key, value in schema.items()
            if not (key == "logicalType" and value == "uuid")
        }
    if isinstance(schema, list):
        return [_without_uuid(item) for item in schema]
    return schema


class SchemaStore:
    """Every schema version of a directory, by full name and by fingerprint.

    Build one with ``SchemaStore.load(directory)`` or use ``default_store()``; it is immutable
    and safe to share between threads.
    """

    __slots__ = ("_by_fingerprint", "_by_name", "_readers", "_scanners")

    def __init__(self, versions: Mapping[str, tuple[SchemaVersion, ...]]) -> None:
        self._by_name = dict(versions)
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        # fingerprint -> (writer, reader or None when the writer is the newest version)
        self._readers: dict[bytes, tuple[SchemaVersion, Any]] = {}
        # (fingerprint, id(limits)) -> (limits, its scanner); the limits are kept so the id stays
        # theirs. Filled on first use; a lost race compiles twice, harmlessly.
        self._scanners: dict[tuple[bytes, int], tuple[DecodeLimits, Scanner]] = {}
        for name, chain in self._by_name.items():
            if not chain:
                raise SchemaError(f"{name}: no versions")
            check_full_transitive([(f"{v.file}", v.raw) for v in chain])
            newest = chain[-1]
            for version in chain:
                other = self._by_fingerprint.get(version.fingerprint)
                if other is not None:
                    raise SchemaError(
                        f"{version.file} has the same canonical form as {other.file}; "
                        "a new version must change the schema"
                    )
                self._by_fingerprint[version.fingerprint] = version
                reader = None if version is newest else newest.io_schema
                self._readers[version.fingerprint] = (version, reader)

    @classmethod
    def load(cls, directory: str | Path) -> SchemaStore:
        """Load every ``*.avsc`` of ``directory``.

        Raises ``SchemaError`` naming the file if one is unreadable, misnamed, invalid, or not
        FULL_TRANSITIVE compatible with the other versions of its name.
        """
        base = Path(directory)
        if not base.is_dir():
            raise SchemaError(f"{base}: not a directory of .avsc files")
        grouped: dict[str, dict[int, SchemaVersion]] = {}
        for path in sorted(base.glob("*.avsc")):
            number, version = _parse_file(path)
            versions = grouped.setdefault(version.name, {})
            if number in versions:
                raise SchemaError(
                    f"{path.name} and {versions[number].file} are both version {number} "
                    f"of {version.name}"
                )
            versions[number] = version
        return cls({name: tuple(v[n] for n in sorted(v)) for name, v in grouped.items()})

    def names(self) -> tuple[str, ...]:
        """Full names of every schema in the store."""
        return tuple(self._by_name)

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """Every version of ``name``, oldest first."""
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(f"no schema named {name!r} in the store") from None

    def latest(self, name: str) -> SchemaVersion:
        """The newest version of ``name``: the one records are written and read with."""
        return self.versions(name)[-1]

    def __iter__(self) -> Iterator[SchemaVersion]:
        for chain in self._by_name.values():
            yield from chain

    def by_fingerprint(self, fingerprint: bytes) -> SchemaVersion:
        """The version with this 8-byte fingerprint; ``UnknownFingerprint`` if none."""
        version = self._by_fingerprint.get(fingerprint)
        if version is None:
            raise UnknownFingerprint(
                f"writer-schema fingerprint {fingerprint.hex()} is not in the schema store; "
                "the record was written with a schema this reader does not have"
            )
        return version

    def encode(self, name: str, datum: Mapping[str, Any]) -> bytes:
        """Single-object-encode ``datum`` with the newest version of ``name``.

        Raises ``EventError`` naming the offending field if the datum does not fit the schema.
        """
        version = self.latest(name)
        buffer = io.BytesIO()
        buffer.write(MARKER)
        buffer.write(version.fingerprint)
        try:
            fastavro.schemaless_writer(buffer, version.io_schema, datum, strict_allow_default=True)
        except Exception as exc:  # fastavro raises many types; explain with the validator
            raise EventError(f"{name}: {_explain(version, datum, exc)}") from exc
        return buffer.getvalue()

    def header(self, data: bytes | memoryview) -> SchemaVersion:
        """Check the 10-byte header of a single-object encoding and return its writer version."""
        if len(data) < HEADER_SIZE:
            if bytes(data[:2]) != MARKER[: len(data[:2])]:
                raise BadMarker(f"record starts with {bytes(data[:2]).hex()}, not c301")
            raise TruncatedRecord(
                f"record is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header"
            )
        if data[:2] != MARKER:
            raise BadMarker(
                f"record starts with {bytes(data[:2]).hex()}, not c301: "
                "it is not an Avro single-object encoding"
            )
        return self.by_fingerprint(bytes(data[2:HEADER_SIZE]))

    def decode(
        self,
        data: bytes | memoryview,
        name: str | None = None,
        *,
        limits: DecodeLimits | None = None,
    ) -> dict[str, Any]:
        """Decode a single-object encoding into the newest version of its schema.

        ``name`` (a full name) restricts the writer schema to versions of that name. ``limits``
        pre-scans the datum first and refuses it unread if it breaks one (``LimitExceeded``).
        Raises ``TruncatedRecord``, ``BadMarker``, ``UnknownFingerprint``, ``MalformedDatum`` or
        ``LimitExceeded``.
        """
        writer = self.header(data)
        if name is not None and writer.name != name:
            raise UnknownFingerprint(
                f"record is a {writer.name} (fingerprint {writer.fingerprint.hex()}), "
                f"expected a {name}"
            )
        if limits is None:
            return self._read(writer, data)
        scanner = self._scanner(writer, limits)
        if len(data) - HEADER_SIZE <= scanner.small:
            # Too small to be costly: decode, then count (bus._limits explains).
            datum = self._read(writer, data)
            check(scanner, datum)
            return datum
        scan(scanner, bytes(data), HEADER_SIZE)
        return self._read(writer, data)

    def _scanner(self, writer: SchemaVersion, limits: DecodeLimits) -> Scanner:
        entry = self._scanners.get((writer.fingerprint, id(limits)))
        if entry is None or entry[0] is not limits:
            reader = self._readers[writer.fingerprint][1]
            entry = (limits, compile_scanner(writer.io_schema, limits, reader))
            if len(self._scanners) >= 64:  # callers that make new limits per call: stay small
                self._scanners.clear()
            self._scanners[(writer.fingerprint, id(limits))] = entry
        return entry[1]

    def _read(self, writer: SchemaVersion, data: bytes | memoryview) -> dict[str, Any]:
        _, reader = self._readers[writer.fingerprint]
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            datum = fastavro.schemaless_reader(stream, writer.io_schema, reader)
        except EOFError as exc:
            raise TruncatedRecord(
                f"{writer.name} datum is cut short: the record ends at byte {len(data)} "
                f"while reading with {writer.file}"
            ) from exc
        except Exception as exc:  # fastavro's errors for garbage are of many types
            raise MalformedDatum(
                f"{writer.name} datum cannot be read with {writer.file}: "
                f"{type(exc).__name__} at byte {stream.tell()}"
            ) from exc
        end = stream.tell()
        if end != len(data):
            raise MalformedDatum(
                f"{writer.name} datum ends at byte {end} but the record has {len(data)} bytes"
            )
        if not isinstance(datum, dict):
            raise MalformedDatum(f"{writer.name} datum is not a record")
        return datum


def _explain(version: SchemaVersion, datum: Any, exc: Exception) -> str:
    try:
        fastavro.validation.validate(datum, version.io_schema, raise_errors=True, strict=True)
    except fastavro.validation.ValidationError as invalid:
        return "; ".join(_without_value(str(error)) for error in invalid.errors)
    except Exception as other:
        return f"{type(other).__name__}: {other}"
    return f"{type(exc).__name__}: {exc}"


_VALIDATION_MESSAGE = re.compile(r"^(?P<path>\S+) is <.*> of type <class '(?P<type>[\w.]+)'>", re.S)


def _without_value(message: str) -> str:
    # fastavro's messages quote the value and the whole schema; keep the path and the type only,
    # since values may be intelligence contents.
    match = _VALIDATION_MESSAGE.match(message)
    if match is None:
        return "value does not fit the schema"
    return f"{match['path']}: a {match['type']} does not fit the schema here"


def schema_dir() -> Path:
    """The directory of the schemas that ship with the package."""
    packaged = Path(str(resources.files("bus") / "schemas"))
    if packaged.is_dir():
        return packaged
    # A source tree where the link is missing (e.g. a checkout on a filesystem without symlinks).
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def default_store() -> SchemaStore:
    """The store of the schemas that ship with the package, loaded once."""
    return SchemaStore.load(schema_dir())

"""docs/wire-format.md holds: the official Apache Avro library and ``openssl`` decode and verify
a record made by the ``bus`` command line, following the page's recipe."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from click.testing import CliRunner

from bus.cli import main

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(item) for item in schema]
    return schema


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], capture_output=True, check=False)


def test_openssl_supports_raw_ed25519_verification() -> None:
    """The recipe needs OpenSSL 3 (pkeyutl -rawin with Ed25519)."""
    version = _openssl("version").stdout.decode()
    assert version.startswith("OpenSSL 3"), version


def test_apache_avro_and_openssl_decode_and_verify_a_cli_record(tmp_path: Path) -> None:
    runner = CliRunner()
    key_id = runner.invoke(main, ["keys", "generate", "interpol", "--dir", str(tmp_path)]).stdout
    template = runner.invoke(main, ["event", "template", "--area", "MARITIME_PIRACY"]).stdout
    (tmp_path / "event.json").write_text(template)
    signed_run = runner.invoke(
        main,
        [
            "event",
            "sign",
            "--key",
            str(tmp_path / "interpol.key.pem"),
            str(tmp_path / "event.json"),
        ],
    )
    assert signed_run.exit_code == 0
    value = signed_run.stdout_bytes

    # The page's recipe, with the official library only.
    signed_schema = avro.schema.parse((SCHEMAS / "SignedEvent.v1.avsc").read_text())
    event_json = json.loads((SCHEMAS / "IntelligenceEvent.v1.avsc").read_text())
    event_schema = avro.schema.parse(json.dumps(event_json))
    event_fp = avro.schema.parse(json.dumps(_strip_logical(event_json))).fingerprint("CRC-64-AVRO")

    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == signed_schema.fingerprint("CRC-64-AVRO")
    decoder = avro.io.BinaryDecoder(io.BytesIO(value[10:]))
    signed: Any = avro.io.DatumReader(signed_schema).read(decoder)
    assert decoder.reader.tell() == len(value) - 10
    assert signed["key_id"] == key_id.strip()
    assert len(signed["signature"]) == 64

    event_bytes = signed["event"]
    assert event_bytes[:2] == b"\xc3\x01"
    assert event_bytes[2:10] == event_fp
    event: Any = avro.io.DatumReader(event_schema).read(
        avro.io.BinaryDecoder(io.BytesIO(event_bytes[10:]))
    )
    expected = json.loads(template)
    assert str(event["event_id"]) == expected["event_id"]
    assert event["origin"] == expected["origin"]
    assert event["crime_area"] == "MARITIME_PIRACY"
    assert event["subjects"][0]["kind"] == expected["subjects"][0]["kind"]
    assert event["created_at"].isoformat().replace("+00:00", "Z") == expected["created_at"]

    (tmp_path / "event.bin").write_bytes(event_bytes)
    (tmp_path / "signature.bin").write_bytes(signed["signature"])
    public = str(tmp_path / "interpol.pub.pem")
    verified = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin",
        "-in", str(tmp_path / "event.bin"), "-sigfile", str(tmp_path / "signature.bin"),
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert b"Signature Verified Successfully" in verified.stdout

    der = _openssl("pkey", "-pubin", "-in", public, "-outform", "DER").stdout
    digest = _openssl_digest(der[-32:], tmp_path)
    assert signed["key_id"] == "ed25519:" + digest[:32]

    # And a tampered byte fails openssl too.
    tampered = bytearray(event_bytes)
    tampered[-1] ^= 1
    (tmp_path / "event.bin").write_bytes(bytes(tampered))
    refused = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin",
        "-in", str(tmp_path / "event.bin"), "-sigfile", str(tmp_path / "signature.bin"),
    )  # fmt: skip
    assert refused.returncode != 0


def _openssl_digest(data: bytes, tmp_path: Path) -> str:
    (tmp_path / "raw.bin").write_bytes(data)
    out = _openssl("dgst", "-sha256", "-r", str(tmp_path / "raw.bin")).stdout.decode()
    return out.split()[0]

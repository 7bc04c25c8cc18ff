"""docs/wire-format.md holds: the official Apache Avro library and ``openssl`` decode and verify
a record made by the ``bus`` command line, following the page's recipe."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from click.testing import CliRunner

from bus import envelope, events
from bus.cli import main
from bus.signing import SigningKey

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


def _root_from_proof(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """docs/wire-format.md section 7, as printed there (RFC 9162 2.1.3.2, hashlib only)."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def _length_prefixed(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def test_hashlib_and_openssl_verify_a_batch_record_by_the_recipe(tmp_path: Path) -> None:
    """Section 7's worked example: the proof with hashlib, the batch root's signature with
    openssl, for every record of a batch of 11 (not a power of two)."""
    runner = CliRunner()
    runner.invoke(main, ["keys", "generate", "interpol", "--dir", str(tmp_path)])
    key = SigningKey.load(tmp_path / "interpol.key.pem")
    batch = [events.template("MARITIME_PIRACY") for _ in range(11)]
    values = envelope.seal_batch(batch, key)
    public = str(tmp_path / "interpol.pub.pem")
    signed_schema = avro.schema.parse((SCHEMAS / "SignedEvent.v2.avsc").read_text())

    for index, value in enumerate(values):
        assert value[:2] == b"\xc3\x01"
        assert value[2:10] == signed_schema.fingerprint("CRC-64-AVRO")
        decoder = avro.io.BinaryDecoder(io.BytesIO(value[10:]))
        signed: Any = avro.io.DatumReader(signed_schema).read(decoder)
        assert decoder.reader.tell() == len(value) - 10

        batch_proof = signed["batch"]
        assert (batch_proof["leaf_index"], batch_proof["tree_size"]) == (index, 11)
        leaf = hashlib.sha256(b"\x00" + signed["event"]).digest()
        root = _root_from_proof(
            leaf, batch_proof["leaf_index"], batch_proof["tree_size"], batch_proof["path"]
        )
        assert root is not None
        assert len(batch_proof["path"]) <= (batch_proof["tree_size"] - 1).bit_length()
        batch_root = (
            b"exchange-bus batch v1\x00"
            + root
            + batch_proof["tree_size"].to_bytes(8, "big")
            + _length_prefixed(signed["key_id"])
            + _length_prefixed(batch_proof["origin"])
        )
        (tmp_path / "batch-root.bin").write_bytes(batch_root)
        (tmp_path / "signature.bin").write_bytes(signed["signature"])
        verified = _openssl(
            "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin",
            "-in", str(tmp_path / "batch-root.bin"), "-sigfile", str(tmp_path / "signature.bin"),
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
        assert b"Signature Verified Successfully" in verified.stdout
        assert batch_proof["origin"] == "interpol"

    # One changed byte of the event: another leaf, another root, and openssl refuses.
    tampered = bytearray(signed["event"])
    tampered[-1] ^= 1
    leaf = hashlib.sha256(b"\x00" + bytes(tampered)).digest()
    other_root = _root_from_proof(leaf, 10, 11, batch_proof["path"])
    assert other_root is not None
    assert other_root != root
    (tmp_path / "batch-root.bin").write_bytes(batch_root.replace(root, other_root))
    refused = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin",
        "-in", str(tmp_path / "batch-root.bin"), "-sigfile", str(tmp_path / "signature.bin"),
    )  # fmt: skip
    assert refused.returncode != 0


def test_the_printed_proof_check_is_the_one_in_the_document() -> None:
    """The function above is the page's, line for line (docstring and comments aside)."""
    page = (SCHEMAS.parent / "docs" / "wire-format.md").read_text()
    source = inspect.getsource(_root_from_proof)
    body = source.split('"""')[2].strip("\n")
    page_lines = [line.split("#")[0].rstrip() for line in page.splitlines()]
    for line in body.splitlines():
        assert line.rstrip() in page_lines, line

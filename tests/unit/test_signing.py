"""``bus.signing``: PEM keys, key ids, and interoperable Ed25519 signatures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.errors import BadSignature, ConfigError
from bus.signing import PublicKey, SigningKey, key_id_of


def test_pem_round_trip_keeps_the_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    (tmp_path / "k.pem").chmod(0o600)
    (tmp_path / "p.pem").write_bytes(key.public_key.to_pem())
    assert key.to_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.public_key.to_pem().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = SigningKey.load(tmp_path / "k.pem")
    assert loaded.key_id == key.key_id
    assert PublicKey.load(tmp_path / "p.pem") == key.public_key


def test_key_id_is_sha256_prefix_of_the_raw_public_key() -> None:
    key = SigningKey.generate()
    raw = key.public_key.raw
    assert key.key_id == "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]
    assert key_id_of(raw) == key.key_id


def test_signatures_verify_with_cryptography_and_back() -> None:
    """PyNaCl and OpenSSL (through cryptography) agree: RFC 8032 pure Ed25519."""
    key = SigningKey.generate()
    data = b"\xc3\x01 some event bytes"
    openssl_private = serialization.load_pem_private_key(key.to_pem(), password=None)
    assert isinstance(openssl_private, Ed25519PrivateKey)
    openssl_private.public_key().verify(key.sign(data), data)
    key.public_key.verify(data, openssl_private.sign(data))


def test_verify_rejects_other_data_and_lengths() -> None:
    key = SigningKey.generate()
    signature = key.sign(b"data")
    key.public_key.verify(b"data", signature)
    with pytest.raises(BadSignature, match="does not match"):
        key.public_key.verify(b"datA", signature)
    with pytest.raises(BadSignature, match="63 bytes"):
        key.public_key.verify(b"data", signature[:63])


def test_repr_shows_the_key_id_only() -> None:
    key = SigningKey.generate()
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"


@pytest.mark.parametrize(
    "pem", [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_bad_private_pem_is_a_config_error(pem: bytes) -> None:
    with pytest.raises(ConfigError, match=r"my\.key\.pem"):
        SigningKey.from_pem(pem, source="my.key.pem")


def test_other_algorithms_are_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    private = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match="not Ed25519"):
        SigningKey.from_pem(private)
    with pytest.raises(ConfigError, match="not Ed25519"):
        PublicKey.from_pem(public)


def test_missing_key_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        SigningKey.load("/nonexistent/k.pem")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602])
def test_a_private_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(SigningKey.generate().to_pem())
    path.chmod(mode)
    with pytest.raises(ConfigError, match="open to group or others") as caught:
        SigningKey.load(path)
    assert f"chmod 600 {path}" in str(caught.value)
    path.chmod(0o600)
    SigningKey.load(path)
    path.chmod(0o400)
    SigningKey.load(path)


def test_a_public_key_file_may_be_read_by_anyone(tmp_path: Path) -> None:
    path = tmp_path / "p.pem"
    path.write_bytes(SigningKey.generate().public_key.to_pem())
    path.chmod(0o644)
    PublicKey.load(path)

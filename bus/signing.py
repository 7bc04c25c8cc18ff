"""Ed25519 signing keys, public keys and key ids.

Keys are stored as PEM: private keys as PKCS#8 (``-----BEGIN PRIVATE KEY-----``), public keys as
SubjectPublicKeyInfo (``-----BEGIN PUBLIC KEY-----``), the forms ``openssl genpkey -algorithm
ed25519`` and ``openssl pkey -pubout`` produce. ``cryptography`` reads and writes the PEM;
signing and verifying use libsodium through PyNaCl, which verifies about twice as fast here
(docs/decisions/0002-pynacl-for-ed25519.md). Both implement RFC 8032 pure Ed25519, so the
signatures are the same bytes.

A key id names a public key: ``"ed25519:"`` followed by the lowercase hex of the first 16 bytes
of SHA-256 over the raw 32-byte public key (``key_id_of``).

``SigningKey.load`` refuses a private key file that group or others may read or write (on POSIX
systems): a key others could read may already be someone else's, and refusing says so at once,
where a warning would scroll by in a log. ``chmod 600 FILE`` fixes it; ``openssl genpkey`` writes
files by the umask (often 0644), so run it after ``openssl``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from bus.errors import BadSignature, ConfigError

__all__ = [
    "KEY_ID_PREFIX",
    "SIGNATURE_SIZE",
    "Signer",
    "PublicKey",
    "SigningKey",
    "key_id_of",
]

KEY_ID_PREFIX: Final = "ed25519:"
SIGNATURE_SIZE: Final = 64
_RAW_KEY_SIZE: Final = 32


def key_id_of(raw_public_key: bytes) -> str:
    """Key id of a raw 32-byte Ed25519 public key: ``ed25519:`` + hex(SHA-256(key)[:16])."""
    if len(raw_public_key) != _RAW_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw_public_key)}")
    return KEY_ID_PREFIX + hashlib.sha256(raw_public_key).digest()[:16].hex()


class Signer(Protocol):
    """What ``envelope.seal`` needs from a key: its id and a detached signature."""

    @property
    def key_id(self) -> str:
        """Id of the public key that verifies the signatures."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte signature over ``data``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKey:
    """An Ed25519 public key and its key id."""

    raw: bytes
    """The 32-byte public key (RFC 8032 encoding)."""
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.raw) != _RAW_KEY_SIZE:
            raise ConfigError(f"an Ed25519 public key has 32 bytes, not {len(self.raw)}")
        object.__setattr__(self, "key_id", key_id_of(self.raw))

    @classmethod
    def from_pem(cls, pem: bytes | str, *, source: str = "public key") -> PublicKey:
        """Read an SPKI PEM public key; ``ConfigError`` naming ``source`` if it is not Ed25519."""
        data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{source}: not a PEM public key (SPKI): {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{source}: the public key is not Ed25519")
        return cls(raw=key.public_bytes_raw())

    @classmethod
    def load(cls, path: str | Path) -> PublicKey:
        """Read an SPKI PEM public key file."""
        return cls.from_pem(_read(path), source=str(path))

    def to_pem(self) -> bytes:
        """The key as SPKI PEM."""
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, data: bytes, signature: bytes) -> None:
        """Raise ``BadSignature`` unless ``signature`` is this key's signature over ``data``."""
        if len(signature) != SIGNATURE_SIZE:
            raise BadSignature(
                f"signature is {len(signature)} bytes, an Ed25519 signature is 64 "
                f"(key {self.key_id})"
            )
        try:
            nacl.bindings.crypto_sign_open(signature + data, self.raw)
        except nacl.exceptions.BadSignatureError:
            raise BadSignature(
                f"signature does not match the signed bytes for key {self.key_id}: "
                "the record was altered or signed with another key"
            ) from None


class SigningKey:
    """An Ed25519 private key. Its ``repr`` names the key id only, never the key."""

    __slots__ = ("_public", "_secret")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != _RAW_KEY_SIZE:
            raise ConfigError(f"an Ed25519 private key has 32 bytes, not {len(seed)}")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self._public = PublicKey(raw=public)
        self._secret = secret  # libsodium's 64-byte form: seed followed by the public key

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key (from the operating system's CSPRNG)."""
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_pem(cls, pem: bytes | str, *, source: str = "private key") -> SigningKey:
        """Read an unencrypted PKCS#8 PEM private key; ``ConfigError`` naming ``source``."""
        data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # The library's message says which structure failed, never the key bytes.
            raise ConfigError(f"{source}: not an unencrypted PKCS#8 PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{source}: the private key is not Ed25519")
        return cls(key.private_bytes_raw())

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """Read a PKCS#8 PEM private key file; ``ConfigError`` if group or others may access it."""
        return cls.from_pem(_read(path, private=True), source=str(path))

    def to_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM. Store it with owner-only permissions."""
        key = Ed25519PrivateKey.from_private_bytes(self._secret[:_RAW_KEY_SIZE])
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return self._public

    @property
    def key_id(self) -> str:
        """Id of the matching public key."""
        return self._public.key_id

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature over ``data``."""
        return nacl.bindings.crypto_sign(data, self._secret)[:SIGNATURE_SIZE]

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def _read(path: str | Path, *, private: bool = False) -> bytes:
    try:
        with Path(path).open("rb") as file:
            if private:
                _refuse_shared(path, os.fstat(file.fileno()).st_mode)
            return file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the key file: {exc.strerror}") from exc


def _refuse_shared(path: str | Path, mode: int) -> None:
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: the private key file is open to group or others "
            f"(mode {stat.S_IMODE(mode):04o}); make it readable by its owner only: "
            f"chmod 600 {path} (and consider the key exposed if others could read it)"
        )

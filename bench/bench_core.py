"""Per-core throughput of the pure core against its raw ceilings.

Run ``python -m bench.bench_core``. Measures, on one thread, for a realistic ~1 KB event:

- ``seal`` (Avro-encode + Ed25519-sign + frame) against fastavro encoding alone and
  Ed25519 signing alone;
- ``open_`` (split + Ed25519-verify + Avro-decode + trust checks) against Ed25519 verification
  alone and fastavro decoding alone;
- PyNaCl (libsodium) against ``cryptography`` (OpenSSL) for sign and verify.

The target is each combined path at >= 80% of the throughput of its slower primitive. Figures
are printed, never asserted: tests do not time things.
"""

from __future__ import annotations

import io
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import nacl.bindings
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.codec import INTELLIGENCE_EVENT, default_store
from bus.envelope import open_, seal
from bus.events import template
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore

__all__ = ["main", "realistic_event"]


def realistic_event() -> dict[str, Any]:
    """A cyber-crime event of about 1 KB once encoded."""
    event = template("CYBERCRIME", now=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    event["summary"] = (
        "Command-and-control server and payment wallet used by a ransomware affiliate "
        "against hospitals in three member states; the server rotates domains weekly and "
        "the affiliate negotiates through a Tor-hosted chat portal. Seizure is being prepared."
    )
    event["subjects"].append(
        {"kind": "URL", "value": "http://portal.example.onion/chat", "attributes": {}}
    )
    event["references"] = ["interpol-cyber-2026-0042", "europol-ec3-2026-0117"]
    event["payload"] = {
        "content_type": "application/stix+json;version=2.1",
        "data": b'{"type":"bundle","id":"bundle--0","objects":[' + b"0" * 300 + b"]}",
    }
    event["expires_at"] = event["created_at"] + timedelta(days=30)
    return event


def _rate(function: Callable[[], object], *, seconds: float = 0.4, repeats: int = 5) -> float:
    """Best calls per second over ``repeats`` runs of about ``seconds`` each."""
    calls = 1
    while True:  # calibrate
        start = time.perf_counter()
        for _ in range(calls):
            function()
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            break
        calls *= 2
    calls = max(1, int(calls * seconds / elapsed))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best = max(best, calls / (time.perf_counter() - start))
    return best


def main(rounds: int = 7) -> None:
    """Measure and print the figures."""
    store = default_store()
    schema = store.latest(INTELLIGENCE_EVENT).io_schema  # what the store reads and writes with
    event = realistic_event()
    key = SigningKey.generate()
    trust = TrustStore(
        [
            TrustedKey(
                agency="interpol",
                public_key=key.public_key,
                not_before=datetime(2026, 1, 1, tzinfo=UTC),
            )
        ]
    )
    value = seal(event, key)
    event_bytes = store.encode(INTELLIGENCE_EVENT, event)
    datum = event_bytes[10:]
    signature = key.sign(event_bytes)

    seed = nacl.signing.SigningKey.generate()
    verify_key = seed.verify_key
    raw_public = bytes(verify_key)
    nacl_signature = seed.sign(event_bytes).signature
    openssl_key = Ed25519PrivateKey.generate()
    openssl_public = openssl_key.public_key()
    openssl_signature = openssl_key.sign(event_bytes)

    def encode() -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, event)
        return buffer.getvalue()

    def decode() -> object:
        return fastavro.schemaless_reader(io.BytesIO(datum), schema, None)

    functions: dict[str, Callable[[], object]] = {
        "fastavro encode": encode,
        "fastavro decode": decode,
        "ed25519 sign (pynacl)": lambda: seed.sign(event_bytes),
        "ed25519 verify (pynacl)": lambda: nacl.bindings.crypto_sign_open(
            nacl_signature + event_bytes, raw_public
        ),
        "ed25519 sign (cryptography)": lambda: openssl_key.sign(event_bytes),
        "ed25519 verify (cryptography)": lambda: openssl_public.verify(
            openssl_signature, event_bytes
        ),
        "seal (encode+sign)": lambda: seal(event, key),
        "open_ (verify+decode)": lambda: open_(value, trust),
    }
    # Interleave rounds so that a busy machine slows every figure alike; keep each best.
    rates = dict.fromkeys(functions, 0.0)
    for _ in range(rounds):
        for name, function in functions.items():
            rates[name] = max(rates[name], _rate(function, seconds=0.2, repeats=1))
    assert signature  # the key signs what it is given; keeps the variable meaningful
    print(
        f"python {platform.python_version()}, fastavro {fastavro.__version__}, one thread, "
        f"best of {rounds} interleaved rounds"
    )
    print(f"event: {len(event_bytes)} bytes encoded, Kafka value {len(value)} bytes")
    for name, rate in rates.items():
        print(f"  {name:32} {rate:>10,.0f} /s  {1e6 / rate:7.1f} us")
    seal_ceiling = min(rates["fastavro encode"], rates["ed25519 sign (pynacl)"])
    open_ceiling = min(rates["fastavro decode"], rates["ed25519 verify (pynacl)"])
    print(
        f"seal  at {rates['seal (encode+sign)'] / seal_ceiling:6.1%} of its slower primitive "
        "(target >= 80%)"
    )
    print(
        f"open_ at {rates['open_ (verify+decode)'] / open_ceiling:6.1%} of its slower primitive "
        "(target >= 80%)"
    )
    print(
        "pynacl / cryptography: sign "
        f"{rates['ed25519 sign (pynacl)'] / rates['ed25519 sign (cryptography)']:.2f}x, verify "
        f"{rates['ed25519 verify (pynacl)'] / rates['ed25519 verify (cryptography)']:.2f}x"
    )


if __name__ == "__main__":
    main()

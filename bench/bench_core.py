"""Per-core throughput of the pure core against its raw ceilings.

Run ``python -m bench.bench_core``. Measures, on one thread, for a realistic ~1 KB event:

- ``seal`` (Avro-encode + Ed25519-sign + frame) against fastavro encoding alone and
  Ed25519 signing alone;
- ``open_`` (split + Ed25519-verify + Avro-decode + trust checks) against Ed25519 verification
  alone and fastavro decoding alone;
- PyNaCl (libsodium) against ``cryptography`` (OpenSSL) for sign and verify;
- batch signatures (``SignedEvent`` v2) at batches of 1, 16 and 256, per event, against one
  Ed25519 sign and one verify of the same run: building the tree and signing its root
  (``merkle.tree`` + ``batch_root`` + sign, from encoded events), the whole ``seal_batch``
  (encoding included), verifying a record's proof with a ``RootCache`` fresh for each batch
  (leaf hash, proof, signed root, one signature per batch), and the whole ``open_`` of every
  record of a batch (decoding and trust checks included).

The target is each combined path at >= 80% of the throughput of its slower primitive. Figures
are printed, never asserted: tests do not time things.
"""

from __future__ import annotations

import functools
import io
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import nacl.bindings
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus import merkle
from bus.batch import RootCache, batch_root
from bus.codec import INTELLIGENCE_EVENT, default_store
from bus.envelope import UnverifiedEvent, open_, peek, seal, seal_batch
from bus.events import template
from bus.signing import PublicKey, SigningKey
from bus.trust import TrustedKey, TrustStore

__all__ = ["main", "realistic_event"]

BATCH_SIZES = (1, 16, 256)


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
    per_call = dict.fromkeys(functions, 1)
    for size in BATCH_SIZES:
        batch = [{**event, "event_id": str(uuid.uuid4())} for _ in range(size)]
        encoded = [store.encode(INTELLIGENCE_EVENT, e) for e in batch]
        values = seal_batch(batch, key)
        parts = [peek(v) for v in values]
        trusted = trust.get(key.key_id)
        functions[f"batch {size:3}: tree+sign"] = _tree_and_sign(encoded, key)
        functions[f"batch {size:3}: seal_batch"] = functools.partial(seal_batch, batch, key)
        functions[f"batch {size:3}: proof+verify"] = _proofs_and_verify(parts, trusted.public_key)
        functions[f"batch {size:3}: open_"] = functools.partial(_open_all, values, trust)
        for kind in ("tree+sign", "seal_batch", "proof+verify", "open_"):
            per_call[f"batch {size:3}: {kind}"] = size
    # Interleave rounds so that a busy machine slows every figure alike; keep each best.
    # Per round too, so that each batch figure has a ratio to its baseline of the same moment.
    rates = dict.fromkeys(functions, 0.0)
    rounds_of: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            rate = _rate(function, seconds=0.2, repeats=1) * per_call[name]  # events per second
            rates[name] = max(rates[name], rate)
            rounds_of[name].append(rate)
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
        "batch signatures, per event: best rate, and the speed-up over one Ed25519 operation "
        "(or v1 seal/open_) as the median [min-max] of the ratios within each round:"
    )
    baselines = {
        "tree+sign": "ed25519 sign (pynacl)",
        "seal_batch": "seal (encode+sign)",
        "proof+verify": "ed25519 verify (pynacl)",
        "open_": "open_ (verify+decode)",
    }
    for size in BATCH_SIZES:
        for kind, baseline in baselines.items():
            name = f"batch {size:3}: {kind}"
            ratios = sorted(
                a / b for a, b in zip(rounds_of[name], rounds_of[baseline], strict=True)
            )
            print(
                f"  batch {size:3} {kind:13} {1e6 / rates[name]:7.1f} us/event  "
                f"{statistics.median(ratios):6.1f}x [{ratios[0]:.1f}-{ratios[-1]:.1f}] "
                f"vs {baseline}"
            )
    print(
        "pynacl / cryptography: sign "
        f"{rates['ed25519 sign (pynacl)'] / rates['ed25519 sign (cryptography)']:.2f}x, verify "
        f"{rates['ed25519 verify (pynacl)'] / rates['ed25519 verify (cryptography)']:.2f}x"
    )


def _tree_and_sign(encoded: list[bytes], key: SigningKey) -> Callable[[], object]:
    def run() -> object:
        root, proofs = merkle.tree([merkle.leaf_hash(e) for e in encoded])
        signed = batch_root(root=root, tree_size=len(encoded), key_id=key.key_id, origin="interpol")
        return key.sign(signed), proofs

    return run


def _proofs_and_verify(parts: list[UnverifiedEvent], public_key: PublicKey) -> Callable[[], object]:
    def run() -> object:
        roots = RootCache()  # fresh per batch: one signature check per batch
        for part in parts:
            proof = part.batch
            assert proof is not None
            root = merkle.root_from_proof(
                merkle.leaf_hash(part.event_bytes), proof.leaf_index, proof.tree_size, proof.path
            )
            assert root is not None
            signed = batch_root(
                root=root, tree_size=proof.tree_size, key_id=part.key_id, origin=proof.origin
            )
            roots.verify(public_key, signed, part.signature)
        return roots

    return run


def _open_all(values: list[bytes], trust: TrustStore) -> object:
    roots = RootCache()
    return [open_(value, trust, roots=roots) for value in values]


if __name__ == "__main__":
    main()

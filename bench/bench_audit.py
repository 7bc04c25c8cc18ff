"""What the audit chain costs the bridge per audit record (no Kafka).

Run ``python -m bench.bench_audit``. For transactions of 1, 10, 100 and 500 audit records
(realistic ``AuditRecord`` v2 values), the time per record of ``bus.audit_chain.link``: the
chain hash and chain fields of each record, with the last one of each transaction signed by the
bridge key (what the bridge does), and without any signature (the chain alone); and one Ed25519
signature, what signing every record would add to each. Best of several runs.

Figures are printed, never asserted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from bus.audit import encode_audit_record
from bus.audit_chain import ChainHead, chain_id, link
from bus.signing import SigningKey

CHAIN = chain_id("interpol", "europol", "intel.events", 0)


def _bodies(count: int) -> list[bytes]:
    return [
        encode_audit_record(
            {
                "event_id": str(uuid.uuid4()),
                "origin": "interpol",
                "source": "interpol",
                "destination": "europol",
                "decision": "FORWARDED",
                "rule": "allowed",
                "reason": "every rule passed: europol is in releasable_to, TLP GREEN",
                "decided_at": datetime.now(UTC),
                "source_topic": "intel.events",
                "source_partition": 0,
                "source_offset": i,
                "bridge_id": "interpol->europol@host:1234",
            }
        )
        for i in range(count)
    ]


def _per_record(run: Callable[[], int], repeats: int = 5) -> float:
    """Best microseconds per record over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        records = run()
        best = min(best, (time.perf_counter() - started) / records * 1e6)
    return best


def main() -> None:
    """Measure and print the figures."""
    key = SigningKey.generate()
    bodies = _bodies(500)
    for size in (1, 10, 100, 500):

        def chained(signer: SigningKey | None, size: int = size) -> int:
            head, done = ChainHead(), 0
            while done < 5000:
                _, head = link(bodies[:size], chain=CHAIN, head=head, signer=signer)
                done += size
            return done

        signed = _per_record(lambda: chained(key))
        alone = _per_record(lambda: chained(None))
        print(
            f"{size:4d} records/transaction: {signed:6.1f} µs/record with the signed head, "
            f"{alone:6.1f} µs/record chain alone"
        )

    def sign() -> int:
        for _ in range(2000):
            key.sign(bytes(80))
        return 2000

    print(f"one Ed25519 signature: {_per_record(sign):.1f} µs")


if __name__ == "__main__":
    main()

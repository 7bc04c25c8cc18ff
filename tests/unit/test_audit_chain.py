"""The audit chain: what bus audit verify finds in a partition of bus.audit (bus.audit_chain)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bus.audit import decode_audit_record, encode_audit_record
from bus.audit_chain import (
    ChainHead,
    ChainRecord,
    chain_id,
    chain_record,
    link,
    verify_partition,
)
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHAIN = chain_id("interpol", "europol", "intel.events", 0)


def _body(offset: int) -> bytes:
    return encode_audit_record(
        {
            "event_id": str(uuid.UUID(int=offset + 1)),
            "origin": "interpol",
            "source": "interpol",
            "destination": "europol",
            "decision": "FORWARDED" if offset % 2 else "DENIED",
            "rule": "allowed" if offset % 2 else "tlp",
            "reason": "why",
            "decided_at": NOW + timedelta(seconds=offset),
            "source_topic": "intel.events",
            "source_partition": 0,
            "source_offset": offset,
            "bridge_id": "interpol->europol@test",
        }
    )


def _trust(key: SigningKey, *, agency: str = "interpol", role: str = "bridge") -> TrustStore:
    return TrustStore(
        [
            TrustedKey(
                agency=agency, public_key=key.public_key, not_before=NOW - timedelta(1), role=role
            )
        ]
    )


def _genuine(key: SigningKey, transactions: tuple[int, ...] = (3, 2, 4)) -> list[bytes]:
    """The values a bridge writes: ``transactions`` batches, the head of each signed."""
    head = ChainHead()
    values: list[bytes] = []
    for size in transactions:
        batch, head = link(
            [_body(len(values) + i) for i in range(size)], chain=CHAIN, head=head, signer=key
        )
        values += batch
    return values


def _records(values: Sequence[bytes | None]) -> list[ChainRecord]:
    return [
        chain_record(v, partition=0, offset=o, decode=decode_audit_record)
        for o, v in enumerate(values)
    ]


def _found(values: Sequence[bytes | None], key: SigningKey) -> list[tuple[str, int]]:
    summary = verify_partition(_records(values), trust=_trust(key), agency="interpol")
    return [(b.kind, b.offset) for b in summary.breaks]


def test_an_untouched_chain_verifies_with_one_signature_per_transaction() -> None:
    key = SigningKey.generate()
    summary = verify_partition(_records(_genuine(key)), trust=_trust(key), agency="interpol")
    assert summary.breaks == []
    assert (summary.records, summary.signatures) == (9, 3)
    assert summary.chains == {CHAIN: (0, 8)}


def test_a_chain_continues_from_its_head_and_reads_back_as_audit_records() -> None:
    key = SigningKey.generate()
    values = _genuine(key)
    record = decode_audit_record(values[4])
    assert (record["chain"], record["sequence"], record["signature"]) == (
        CHAIN,
        4,
        record["signature"],
    )
    assert record["signature"] is not None  # the head of the second transaction
    assert record["key_id"] == key.key_id
    assert decode_audit_record(values[3])["signature"] is None


def test_an_altered_unsigned_record_is_reported_at_its_offset() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = list(_genuine(key))
    record = decode_audit_record(values[6] or b"")
    record["reason"] = "rewritten"  # in the middle of the third transaction
    values[6] = encode_audit_record(record)
    assert _found(values, key) == [("unverifiable", 5), ("altered", 6)]


def test_an_altered_record_is_reported_at_its_offset() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = list(_genuine(key))
    record = decode_audit_record(values[4] or b"")
    record["decision"] = "FORWARDED"  # was DENIED; the head of the second transaction
    values[4] = encode_audit_record(record)
    assert ("altered", 4) in _found(values, key)
    assert {kind for kind, _ in _found(values, key)} <= {"altered", "unverifiable"}


def test_an_altered_signed_head_is_reported_at_its_offset() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = list(_genuine(key))
    record = decode_audit_record(values[2] or b"")
    record["rule"] = "allowed"
    values[2] = encode_audit_record(record)
    assert ("altered", 2) in _found(values, key)


def test_a_deleted_record_is_reported_where_the_gap_is() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = list(_genuine(key))
    del values[3]  # the first of the second transaction; offsets shift down by one
    assert _found(values, key) == [("deleted", 3)]


def test_a_deleted_first_record_is_reported_while_the_partition_starts_at_zero() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = [*_genuine(key)[1:]]
    assert _found(values, key) == [("deleted", 0)]
    records = _records(values)
    retained = verify_partition(records, trust=_trust(key), agency="interpol", log_start=5)
    assert retained.breaks == []  # retention trimmed the partition: a chain may start mid-way


def test_reordered_records_are_reported() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = list(_genuine(key))
    values[4], values[5] = values[5], values[4]
    assert _found(values, key) == [("reordered", 5)]


def test_injected_records_are_reported() -> None:
    key = SigningKey.generate()
    genuine = _genuine(key)
    forger = SigningKey.generate()
    forged, _ = link([_body(100)], chain=CHAIN, head=ChainHead(), signer=forger)
    unsigned, _ = link(
        [_body(101)], chain=CHAIN, head=ChainHead(sequence=9, hash=bytes(32)), signer=None
    )
    plain = _body(102)  # no chain at all (what a v1 writer or a plain producer writes)
    values: list[bytes | None] = [*genuine, forged[0], unsigned[0], plain, b"junk", genuine[2]]
    assert _found(values, key) == [
        ("injected", 9),  # signed by a key that is no bridge key of interpol's
        ("injected", 10),
        ("injected", 11),
        ("injected", 12),
        ("injected", 13),  # a replayed copy of a genuine record
    ]


def test_a_publisher_key_or_another_agencys_bridge_key_signs_no_audit_chain() -> None:
    key = SigningKey.generate()
    values: list[bytes | None] = list(_genuine(key, (2,)))
    for trust in (_trust(key, role="publisher"), _trust(key, agency="europol")):
        summary = verify_partition(_records(values), trust=trust, agency="interpol")
        assert [b.kind for b in summary.breaks] == ["injected", "altered"]


def test_a_bridge_key_never_verifies_an_event() -> None:
    key = SigningKey.generate()
    trusted = _trust(key).get(key.key_id)
    from bus.errors import KeyNotValid

    with pytest.raises(KeyNotValid, match="never signs events"):
        trusted.check("interpol", NOW, now=NOW)


@pytest.mark.parametrize(
    ("sequence", "signature", "key_id"),
    [(0, None, None), (63, None, None), (64, b"s" * 64, "ed25519:ab"), (2**40, b"", "k")],
)
def test_the_chain_fields_are_encoded_exactly_as_avro_would(
    sequence: int, signature: bytes | None, key_id: str | None
) -> None:
    import io

    import fastavro

    from bus.audit_chain import _TAIL_SCHEMA, chain_tail

    out = io.BytesIO()
    fields = {
        "chain": CHAIN,
        "sequence": sequence,
        "prev_hash": bytes(range(32)),
        "signature": signature,
        "key_id": key_id,
    }
    fastavro.schemaless_writer(out, _TAIL_SCHEMA, fields)
    assert chain_tail(CHAIN, sequence, bytes(range(32)), signature, key_id) == out.getvalue()


def test_bus_tail_shows_a_chained_audit_record_as_json() -> None:
    import json
    from types import SimpleNamespace

    from bus.cli.pubsub import _audit_line

    key = SigningKey.generate()
    value = _genuine(key, (1,))[0]
    record = SimpleNamespace(topic="bus.audit", partition=0, offset=7, value=value)
    line = json.loads(json.dumps(_audit_line(record)))
    assert line["sequence"] == 0
    assert line["prev_hash"] == bytes(32).hex()
    assert line["key_id"] == key.key_id

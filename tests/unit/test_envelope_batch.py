"""``bus.envelope`` with batch signatures (``SignedEvent`` v2): ``seal_batch``, ``open_`` with and
without a ``RootCache``, the bounds, and that every record of a batch verifies alone."""

from __future__ import annotations

import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import _framing, envelope, events, merkle
from bus.batch import (
    BATCH_DOMAIN,
    MAX_PROOF_LENGTH,
    MAX_TREE_SIZE,
    RootCache,
    batch_root,
    shared_roots,
)
from bus.codec import HEADER_SIZE, INTELLIGENCE_EVENT, SIGNED_EVENT, default_store
from bus.errors import (
    BadProof,
    BadSignature,
    KeyAgencyMismatch,
    KeyRevoked,
    LimitExceeded,
    MalformedDatum,
    RecordRejected,
    TruncatedRecord,
)
from bus.signing import SigningKey
from bus.trust import TrustedKey, TrustStore

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
START = datetime(2026, 1, 1, tzinfo=UTC)
INTERPOL = SigningKey.generate()
EUROPOL = SigningKey.generate()
TRUST = TrustStore(
    [
        TrustedKey(agency="interpol", public_key=INTERPOL.public_key, not_before=START),
        TrustedKey(agency="europol", public_key=EUROPOL.public_key, not_before=START),
    ]
)
V1, V2 = default_store().versions(SIGNED_EVENT)


def _events(count: int, agency: str = "interpol") -> list[dict[str, Any]]:
    made = []
    for _ in range(count):
        event = events.template("CYBERCRIME", now=NOW)
        event["origin"]["agency"] = agency
        event["event_id"] = str(uuid.uuid4())
        made.append(event)
    return made


def _open(value: bytes, **options: Any) -> envelope.VerifiedEvent:
    return envelope.open_(value, TRUST, now=NOW, **options)


def _record(
    event_bytes: bytes,
    *,
    origin: str = "interpol",
    tree_size: int = 1,
    leaf_index: int = 0,
    path: tuple[bytes, ...] = (),
    signature: bytes = b"\x00" * 64,
    key_id: str = INTERPOL.key_id,
) -> bytes:
    """A v2 value built field by field, with whatever (possibly wrong) contents."""
    return V2.header + b"".join(
        (
            _framing.varint(len(event_bytes)),
            event_bytes,
            _framing.varint(len(key_id)),
            key_id.encode(),
            _framing.varint(len(signature)),
            signature,
            b"\x02",
            _framing.varint(len(origin)),
            origin.encode(),
            _zigzag(tree_size),
            _zigzag(leaf_index),
            (_zigzag(len(path)) + b"".join(path) if path else b""),
            b"\x00",
        )
    )


def _zigzag(value: int) -> bytes:
    """An Avro long, negative ones too."""
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def _signed_record(event_bytes: bytes, *, origin: str, key: SigningKey = INTERPOL) -> bytes:
    root = merkle.leaf_hash(event_bytes)
    signature = key.sign(batch_root(root=root, tree_size=1, key_id=key.key_id, origin=origin))
    return _record(event_bytes, origin=origin, signature=signature, key_id=key.key_id)


BATCH_EVENTS = _events(5)
BATCH = envelope.seal_batch(BATCH_EVENTS, INTERPOL)


def test_every_record_of_a_batch_opens_alone_to_its_event() -> None:
    for event, value in zip(BATCH_EVENTS, BATCH, strict=True):
        verified = _open(value)
        assert verified.event == event
        assert verified.key_id == INTERPOL.key_id
        assert verified.agency == "interpol"
        assert verified.event_bytes == default_store().encode(INTELLIGENCE_EVENT, event)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 33])
def test_batches_of_any_size_open_in_any_order(size: int) -> None:
    batch = _events(size)
    values = envelope.seal_batch(batch, INTERPOL)
    assert [_open(v).event for v in reversed(values)] == list(reversed(batch))


def test_batch_records_are_signed_event_v2_and_single_records_v1() -> None:
    assert all(value[:HEADER_SIZE] == V2.header for value in BATCH)
    assert envelope.seal(BATCH_EVENTS[0], INTERPOL)[:HEADER_SIZE] == V1.header


def test_hand_framing_of_v2_equals_fastavro_both_ways() -> None:
    """fastavro reads the hand-written v2 value, and writes the same bytes back."""
    for index, value in enumerate(BATCH):
        datum = default_store().decode(value, SIGNED_EVENT)
        assert datum["batch"]["leaf_index"] == index
        assert datum["batch"]["tree_size"] == len(BATCH)
        assert datum["batch"]["origin"] == "interpol"
        assert default_store().encode(SIGNED_EVENT, datum) == value
        unverified = envelope.peek(value)
        assert unverified.batch is not None
        assert list(unverified.batch.path) == datum["batch"]["path"]


def test_v1_records_read_as_v2_with_no_batch() -> None:
    """FULL_TRANSITIVE: a v1 value resolves into v2 with batch null, and opens as before."""
    value = envelope.seal(BATCH_EVENTS[0], INTERPOL)
    assert default_store().decode(value, SIGNED_EVENT)["batch"] is None
    assert envelope.peek(value).batch is None
    assert _open(value).event == BATCH_EVENTS[0]


def test_the_reader_accepts_other_valid_block_layouts_of_the_path() -> None:
    """Avro lets a writer split an array into blocks, with a negative count and a byte size."""
    value = BATCH[2]
    proof = envelope.peek(value).batch
    assert proof is not None
    assert len(proof.path) == 3
    head = value[: value.rindex(b"\x02\x10interpol")]  # up to the batch union
    zig = _framing.varint
    blocks = (
        zig(1) + proof.path[0]
        # -2 items (zig-zag 3), then their size in bytes
        + bytes((3,)) + zig(64) + proof.path[1] + proof.path[2]
        + b"\x00"
    )  # fmt: skip
    suffix = b"\x02\x10interpol" + zig(len(BATCH)) + zig(2) + blocks
    assert _open(head + suffix).event == BATCH_EVENTS[2]


def test_a_root_cache_checks_one_signature_per_batch() -> None:
    roots = RootCache()
    for value in BATCH:
        _open(value, roots=roots)
    assert (roots.misses, roots.hits, len(roots)) == (1, len(BATCH) - 1, 1)
    other = envelope.seal_batch(_events(3), INTERPOL)
    for value in other:
        _open(value, roots=roots)
    assert (roots.misses, len(roots)) == (2, 2)


def test_a_cached_root_never_spares_the_trust_checks() -> None:
    """Revocation is judged per record, whatever the cache holds."""
    roots = RootCache()
    _open(BATCH[0], roots=roots)
    revoked = TrustStore(
        [
            TrustedKey(
                agency="interpol",
                public_key=INTERPOL.public_key,
                not_before=START,
                revoked_at=NOW - timedelta(days=1),
            )
        ]
    )
    with pytest.raises(KeyRevoked):
        envelope.open_(BATCH[1], revoked, now=NOW, roots=roots)


def test_a_cached_root_does_not_let_a_changed_signature_through() -> None:
    roots = RootCache()
    _open(BATCH[0], roots=roots)
    changed = bytearray(BATCH[1])
    signature_at = bytes(changed).index(envelope.peek(BATCH[1]).signature)
    changed[signature_at] ^= 1
    with pytest.raises(BadSignature):
        _open(bytes(changed), roots=roots)


def test_the_root_cache_is_a_bounded_lru() -> None:
    roots = RootCache(capacity=2)
    batches = [envelope.seal_batch(_events(2), INTERPOL) for _ in range(3)]
    for batch in batches:
        _open(batch[0], roots=roots)
    assert len(roots) == 2
    assert roots.capacity == 2
    _open(batches[2][1], roots=roots)  # newest: still cached
    assert roots.hits == 1
    _open(batches[0][1], roots=roots)  # oldest: evicted, checked again
    assert roots.misses == 4
    with pytest.raises(ValueError, match="capacity"):
        RootCache(capacity=0)


def test_a_root_cache_shared_by_threads_stays_correct_and_bounded() -> None:
    roots = RootCache(capacity=8)
    batches = [envelope.seal_batch(_events(4), INTERPOL) for _ in range(20)]
    values = [value for batch in batches for value in batch] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        opened = list(pool.map(lambda v: _open(v, roots=roots).event["event_id"], values))
    expected = [envelope.peek(v).event["event_id"] for v in values]
    assert opened == expected
    assert len(roots) <= 8
    assert roots.hits + roots.misses == len(values)
    assert roots.misses >= 20


def test_shared_roots_is_one_cache_per_process() -> None:
    assert shared_roots() is shared_roots()
    assert isinstance(shared_roots(), RootCache)


def test_the_signed_root_layout() -> None:
    root = bytes(range(32))
    signed = batch_root(root=root, tree_size=258, key_id="ed25519:ab", origin="interpol")
    assert signed == (
        b"exchange-bus batch v1\x00"
        + root
        + (258).to_bytes(8, "big")
        + b"\x00\x0aed25519:ab"
        + b"\x00\x08interpol"
    )
    assert signed.startswith(BATCH_DOMAIN)


def test_a_batch_signature_verifies_over_the_root_of_the_batch() -> None:
    parts = [envelope.peek(v) for v in BATCH]
    root, _ = merkle.tree([merkle.leaf_hash(p.event_bytes) for p in parts])
    signed = batch_root(root=root, tree_size=5, key_id=INTERPOL.key_id, origin="interpol")
    INTERPOL.public_key.verify(signed, parts[0].signature)
    assert len({p.signature for p in parts}) == 1


def test_an_event_signature_never_passes_for_a_batch_signature_or_back() -> None:
    """Domain separation: signed event bytes start with C3 01, batch roots with the prefix."""
    event_bytes = envelope.peek(BATCH[0]).event_bytes
    v1 = envelope.seal(BATCH_EVENTS[0], INTERPOL)
    v1_signature = envelope.peek(v1).signature
    with pytest.raises(BadSignature):
        _open(_record(event_bytes, signature=v1_signature))
    single = envelope.seal_batch([BATCH_EVENTS[0]], INTERPOL)[0]
    batch_signature = envelope.peek(single).signature
    as_v1 = _framing.frame_v1(V1.header, event_bytes, INTERPOL.key_id.encode(), batch_signature)
    with pytest.raises(BadSignature):
        _open(as_v1)


def test_a_batch_signed_for_another_origin_is_refused() -> None:
    """The origin in the signed root must be the event's (and so the key's) agency."""
    event_bytes = envelope.peek(BATCH[0]).event_bytes
    assert _open(_signed_record(event_bytes, origin="interpol")).agency == "interpol"
    with pytest.raises(KeyAgencyMismatch, match="another origin"):
        _open(_signed_record(event_bytes, origin="europol"))


def test_a_key_of_another_agency_cannot_batch_sign_for_the_origin() -> None:
    with pytest.raises(KeyAgencyMismatch):
        _open(envelope.seal_batch(_events(2, "interpol"), EUROPOL)[0])


@pytest.mark.parametrize(
    ("tree_size", "leaf_index", "path_length", "error"),
    [
        (0, 0, 0, BadProof),
        (1, 1, 0, BadProof),
        (4, -1, 2, BadProof),
        (4, 4, 2, BadProof),
        (4, 1, 1, BadProof),
        (4, 1, 3, BadProof),
        (5, 1, 4, BadProof),
        (MAX_TREE_SIZE + 1, 0, 17, LimitExceeded),
        (MAX_TREE_SIZE, 0, MAX_PROOF_LENGTH + 1, LimitExceeded),
    ],
)
def test_impossible_proofs_are_refused_before_any_signature_check(
    tree_size: int, leaf_index: int, path_length: int, error: type[RecordRejected]
) -> None:
    event_bytes = envelope.peek(BATCH[0]).event_bytes
    value = _record(
        event_bytes,
        tree_size=tree_size,
        leaf_index=leaf_index,
        path=(b"\x11" * 32,) * path_length,
    )
    with pytest.raises(error) as raised:
        _open(value)
    assert raised.value.reason in ("bad-proof", "limit-exceeded")


def test_a_proof_for_another_tree_size_fails_the_signature() -> None:
    """Leaf 2 of 3 and leaf 1 of 2 share a proof shape; the signed tree size tells them apart."""
    batch = envelope.seal_batch(_events(3), INTERPOL)
    proof = envelope.peek(batch[2]).batch
    assert proof is not None
    parts = envelope.peek(batch[2])
    forged = _record(
        parts.event_bytes, tree_size=2, leaf_index=1, path=proof.path, signature=parts.signature
    )
    with pytest.raises(BadSignature):
        _open(forged)


@pytest.mark.parametrize(
    ("suffix", "error"),
    [
        (b"\x04", MalformedDatum),  # union branch 2
        (b"\x01", MalformedDatum),  # union branch -1
        (b"", TruncatedRecord),
        (b"\x02\x10interpol\x02\x00\x02" + b"\x11" * 31, TruncatedRecord),
        (b"\x02\x10interpol\x02\x00\x02" + b"\x11" * 32, TruncatedRecord),  # no end of array
        (b"\x02\x03", MalformedDatum),  # negative origin length
        (b"\x02\x04\xff\xfe\x02\x00\x00", MalformedDatum),  # origin not UTF-8
        (b"\x00\x00", MalformedDatum),  # a byte after the null branch
    ],
)
def test_broken_v2_framing_is_a_wire_error(suffix: bytes, error: type[RecordRejected]) -> None:
    value = BATCH[0]
    start = value.rindex(b"\x02\x10interpol")
    with pytest.raises(error):
        _open(value[:start] + suffix)
    with pytest.raises(error):
        envelope.peek(value[:start] + suffix)


def test_seal_batch_refuses_mixed_origins_and_oversized_batches() -> None:
    with pytest.raises(ValueError, match="one origin"):
        envelope.seal_batch([*_events(1, "interpol"), *_events(1, "europol")], INTERPOL)
    with pytest.raises(ValueError, match="65536"):
        envelope.seal_batch(_events(1) * (MAX_TREE_SIZE + 1), INTERPOL)
    assert envelope.seal_batch([], INTERPOL) == []


def test_messages_never_contain_signatures_hashes_or_payload() -> None:
    event = _events(1)[0]
    event["summary"] = "SECRET-SUMMARY-TEXT"
    value = envelope.seal_batch([event, *_events(2)], INTERPOL)[0]
    parts = envelope.peek(value)
    assert parts.batch is not None
    secrets = [parts.signature.hex(), *(h.hex() for h in parts.batch.path), "SECRET"]
    tampered = [
        value[:-40] + bytes(b ^ 1 for b in value[-40:]),  # the proof
        _record(parts.event_bytes, tree_size=3, leaf_index=7, path=parts.batch.path),
        _signed_record(parts.event_bytes, origin="europol"),
    ]
    for bad in tampered:
        with pytest.raises(RecordRejected) as raised:
            _open(bad)
        for secret in secrets:
            assert secret not in str(raised.value)


def _flips_fail(value: bytes, roots: RootCache, positions: range | list[int]) -> None:
    for index in positions:
        for bit in range(8):
            changed = bytearray(value)
            changed[index] ^= 1 << bit
            with pytest.raises(RecordRejected):
                _open(bytes(changed), roots=roots)


def test_every_single_bit_flip_of_a_batch_record_fails_even_with_a_warm_cache() -> None:
    """Exhaustively, for a middle record of a batch of three, with its root already cached."""
    batch = envelope.seal_batch(_events(3), INTERPOL)
    roots = RootCache()
    for value in batch:
        _open(value, roots=roots)
    _flips_fail(batch[1], roots, range(len(batch[1])))


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 40), data=st.data())
def test_a_flip_of_any_bit_of_any_record_fails_verification(size: int, data: st.DataObject) -> None:
    batch = envelope.seal_batch(_events(size), INTERPOL)
    roots = RootCache()
    for value in batch:
        _open(value, roots=roots)
    value = batch[data.draw(st.integers(0, size - 1), label="record")]
    position = data.draw(st.integers(0, len(value) - 1), label="byte")
    _flips_fail(value, roots, [position])


def test_fastavro_reads_v2_with_the_v1_reader_schema() -> None:
    """FULL_TRANSITIVE the other way: a v1 reader resolves a v2 value, ignoring batch."""
    datum = fastavro.schemaless_reader(
        io.BytesIO(BATCH[0][HEADER_SIZE:]), V2.io_schema, V1.io_schema
    )
    assert isinstance(datum, dict)
    assert set(datum) == {"event", "key_id", "signature"}

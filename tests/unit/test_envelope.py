"""``bus.envelope``: seal and open_, every kind of bad input, and the byte-level properties."""

from __future__ import annotations

import copy
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import envelope, events
from bus.codec import HEADER_SIZE, INTELLIGENCE_EVENT, default_store
from bus.errors import (
    BadMarker,
    BadSignature,
    EventError,
    EventFromFuture,
    KeyAgencyMismatch,
    KeyNotValid,
    KeyRevoked,
    MalformedDatum,
    OversizedRecord,
    RecordRejected,
    TruncatedRecord,
    UnknownFingerprint,
    UnknownKey,
)
from bus.signing import SigningKey
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, TrustedKey, TrustStore

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


def _event(**changes: Any) -> dict[str, Any]:
    event = events.template("CYBERCRIME", now=NOW)
    event.update(changes)
    return event


VALUE = envelope.seal(_event(), INTERPOL)


def _store(key: TrustedKey) -> TrustStore:
    return TrustStore([key])


def test_open_returns_the_sealed_event_and_its_signer() -> None:
    """A sealed event opens to the same dict, with the signer's key id and agency."""
    event = _event()
    verified = envelope.open_(envelope.seal(event, INTERPOL), TRUST)
    assert verified.event == event
    assert verified.key_id == INTERPOL.key_id
    assert verified.agency == "interpol"
    assert verified.event_bytes == default_store().encode(INTELLIGENCE_EVENT, event)


def test_signature_covers_exactly_the_event_bytes() -> None:
    """The signature verifies over SignedEvent.event as carried, header included."""
    verified = envelope.open_(VALUE, TRUST)
    signature = default_store().decode(VALUE)["signature"]
    INTERPOL.public_key.verify(verified.event_bytes, signature)


def test_hand_framing_equals_fastavro_encoding() -> None:
    """The hand-written SignedEvent v1 framing produces the bytes fastavro would."""
    parts = envelope.peek(VALUE)
    v1 = default_store().versions("bus.intel.SignedEvent")[0]
    buffer = io.BytesIO()
    fastavro.schemaless_writer(
        buffer,
        v1.io_schema,
        {"event": parts.event_bytes, "key_id": parts.key_id, "signature": parts.signature},
    )
    assert v1.header + buffer.getvalue() == VALUE


def test_seal_accepts_uuid_objects() -> None:
    """A uuid.UUID event_id is written as its canonical text."""
    identifier = uuid.uuid4()
    verified = envelope.open_(envelope.seal(_event(event_id=identifier), INTERPOL), TRUST)
    assert verified.event["event_id"] == str(identifier)


def test_seal_rejects_a_bad_event_id() -> None:
    with pytest.raises(EventError, match="event_id"):
        envelope.seal(_event(event_id="not-a-uuid"), INTERPOL)


def test_seal_rejects_an_event_that_does_not_fit_the_schema() -> None:
    with pytest.raises(EventError, match="tlp"):
        envelope.seal(_event(tlp=3), INTERPOL)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"", TruncatedRecord),
        (b"\xc3", TruncatedRecord),
        (VALUE[:9], TruncatedRecord),
        (VALUE[:HEADER_SIZE], TruncatedRecord),
        (VALUE[:-1], TruncatedRecord),
        (VALUE[: len(VALUE) // 2], TruncatedRecord),
        (b"\x00\x01" + VALUE[2:], BadMarker),
        (b"{}", BadMarker),
        (VALUE[:2] + b"\x00" * 8 + VALUE[10:], UnknownFingerprint),
        (VALUE + b"\x00", MalformedDatum),
        (VALUE[:HEADER_SIZE] + b"\x01" + VALUE[11:], MalformedDatum),
    ],
    ids=[
        "empty",
        "one-byte",
        "short-header",
        "header-only",
        "last-byte-missing",
        "half",
        "wrong-marker",
        "json",
        "unknown-fingerprint",
        "trailing-byte",
        "negative-length",
    ],
)
def test_malformed_values_are_rejected_with_their_own_error(
    value: bytes, error: type[RecordRejected]
) -> None:
    with pytest.raises(error):
        envelope.open_(value, TRUST)


def test_an_event_instead_of_a_signed_event_is_rejected() -> None:
    """A bare IntelligenceEvent is not a Kafka value: its fingerprint is of another type."""
    bare = default_store().encode(INTELLIGENCE_EVENT, _event())
    with pytest.raises(UnknownFingerprint, match=r"expected a bus\.intel\.SignedEvent"):
        envelope.open_(bare, TRUST)


def _resigned(event_bytes: bytes, key: SigningKey, signature: bytes | None = None) -> bytes:
    return default_store().encode(
        "bus.intel.SignedEvent",
        {
            "event": event_bytes,
            "key_id": key.key_id,
            "signature": key.sign(event_bytes) if signature is None else signature,
        },
    )


def test_garbage_datum_signed_by_a_trusted_key_is_malformed() -> None:
    """Verification passes, then decoding fails: MalformedDatum, not a crash."""
    header = default_store().latest(INTELLIGENCE_EVENT).header
    value = _resigned(header + b"\xff" * 40, INTERPOL)
    with pytest.raises((MalformedDatum, TruncatedRecord)):
        envelope.open_(value, TRUST)


@pytest.mark.parametrize("length", [0, 63, 65, 128])
def test_wrong_signature_length(length: int) -> None:
    parts = envelope.peek(VALUE)
    value = _resigned(parts.event_bytes, INTERPOL, b"\x00" * length)
    with pytest.raises(BadSignature, match=f"{length} bytes"):
        envelope.open_(value, TRUST)


def test_unknown_key() -> None:
    stranger = SigningKey.generate()
    with pytest.raises(UnknownKey, match=stranger.key_id):
        envelope.open_(envelope.seal(_event(), stranger), TRUST)


def test_another_agencys_key_cannot_sign_for_the_origin() -> None:
    """Europol's trusted key signing an event whose origin is Interpol: origin spoofing."""
    with pytest.raises(KeyAgencyMismatch, match="europol"):
        envelope.open_(envelope.seal(_event(), EUROPOL), TRUST)


def test_key_id_of_another_key_fails_the_signature() -> None:
    """Claiming Interpol's key id while signing with another key."""
    parts = envelope.peek(VALUE)
    forged = default_store().encode(
        "bus.intel.SignedEvent",
        {
            "event": parts.event_bytes,
            "key_id": INTERPOL.key_id,
            "signature": EUROPOL.sign(parts.event_bytes),
        },
    )
    with pytest.raises(BadSignature):
        envelope.open_(forged, TRUST)


def test_expired_key() -> None:
    trusted = TrustedKey(
        agency="interpol",
        public_key=INTERPOL.public_key,
        not_before=START,
        not_after=NOW - timedelta(seconds=1),
    )
    with pytest.raises(KeyNotValid, match="valid from"):
        envelope.open_(VALUE, _store(trusted))


def test_key_not_yet_valid() -> None:
    trusted = TrustedKey(
        agency="interpol", public_key=INTERPOL.public_key, not_before=NOW + timedelta(1)
    )
    with pytest.raises(KeyNotValid):
        envelope.open_(VALUE, _store(trusted))


def test_revoked_key_fails_even_for_earlier_events() -> None:
    """Revocation is not dated: a compromised key can write any created_at."""
    trusted = TrustedKey(
        agency="interpol",
        public_key=INTERPOL.public_key,
        not_before=START,
        revoked_at=NOW + timedelta(days=10),
    )
    with pytest.raises(KeyRevoked):
        envelope.open_(VALUE, _store(trusted))


def test_rotation_overlap_both_keys_verify() -> None:
    new = SigningKey.generate()
    store = TrustStore(
        [
            TrustedKey(
                agency="interpol",
                public_key=INTERPOL.public_key,
                not_before=START,
                not_after=NOW + timedelta(days=1),
            ),
            TrustedKey(agency="interpol", public_key=new.public_key, not_before=NOW - timedelta(1)),
        ]
    )
    for key in (INTERPOL, new):
        value = envelope.seal(_event(), key)
        assert envelope.open_(value, store, now=NOW).key_id == key.key_id


def test_oversized_record() -> None:
    with pytest.raises(OversizedRecord, match=f"{len(VALUE)} bytes"):
        envelope.open_(VALUE, TRUST, max_size=len(VALUE) - 1)
    assert envelope.open_(VALUE, TRUST, max_size=len(VALUE)).agency == "interpol"


def test_big_payload_is_within_the_default_limit_until_it_is_not() -> None:
    event = _event(payload={"content_type": "application/octet-stream", "data": b"\0" * 2_000_000})
    with pytest.raises(OversizedRecord):
        envelope.open_(envelope.seal(event, INTERPOL), TRUST)


def test_messages_never_contain_key_material() -> None:
    """No error message quotes a private or public key."""
    private = INTERPOL.to_pem().decode()
    secrets = [line for line in private.splitlines() if "-----" not in line]
    public = INTERPOL.public_key.raw.hex()
    messages = []
    for value in (VALUE[:-1], envelope.seal(_event(), EUROPOL), VALUE[:-3] + b"\0\0\0"):
        with pytest.raises(RecordRejected) as caught:
            envelope.open_(value, TRUST)
        messages.append(str(caught.value))
    assert all(secret not in message for secret in secrets for message in messages)
    assert all(public not in message for message in messages)
    assert "SigningKey(key_id=" in repr(INTERPOL)
    assert all(secret not in repr(INTERPOL) for secret in secrets)


def test_peek_does_not_verify() -> None:
    stranger = SigningKey.generate()
    unverified = envelope.peek(envelope.seal(_event(), stranger))
    assert unverified.key_id == stranger.key_id
    assert unverified.event["origin"]["agency"] == "interpol"


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_single_changed_byte_fails_verification(position: int, flip: int) -> None:
    """Change any one byte of the value: open_ rejects it, with a RecordRejected."""
    index = position % len(VALUE)
    changed = bytearray(VALUE)
    changed[index] ^= flip
    with pytest.raises(RecordRejected):
        envelope.open_(bytes(changed), TRUST)


def test_every_single_bit_flip_fails_verification() -> None:
    """Exhaustively: each of the value's bits, flipped alone, makes it fail."""
    for index in range(len(VALUE)):
        for bit in range(8):
            changed = bytearray(VALUE)
            changed[index] ^= 1 << bit
            with pytest.raises(RecordRejected):
                envelope.open_(bytes(changed), TRUST)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_rejected_cleanly(data: bytes) -> None:
    """Arbitrary input never escapes as anything but a RecordRejected."""
    for value in (data, VALUE[:HEADER_SIZE] + data):
        with pytest.raises(RecordRejected):
            envelope.open_(value, TRUST)


_TEXT = st.text(max_size=40)
_AGENCY = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
_MOMENT = st.datetimes(
    min_value=datetime(2026, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_SUBJECT = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["PERSON", "VESSEL", "IP_ADDRESS", "OTHER"]),
        "value": _TEXT,
        "attributes": st.dictionaries(_TEXT, _TEXT, max_size=3),
    }
)


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    event = events.template(draw(st.sampled_from(events.CRIME_AREAS)), now=NOW)
    event.update(
        event_id=str(draw(st.uuids())),
        revision=draw(st.integers(min_value=1, max_value=2**31 - 1)),
        origin={"agency": "interpol", "unit": draw(_TEXT), "originator_ref": draw(_TEXT)},
        handling_codes=draw(st.lists(st.sampled_from(["H0", "H1", "H2"]), unique=True, min_size=1)),
        handling_conditions=draw(st.none() | _TEXT),
        onward_release_consent=draw(st.booleans()),
        tlp=draw(st.sampled_from(events.TLP_LEVELS)),
        releasable_to=draw(st.lists(_AGENCY, max_size=4)),
        created_at=draw(_MOMENT),
        occurred_at=draw(st.none() | _MOMENT),
        expires_at=None,
        title=draw(_TEXT.filter(str.strip)),
        summary=draw(st.text(max_size=500)),
        subjects=draw(st.lists(_SUBJECT, max_size=4)),
        correlation_id=draw(_TEXT.filter(str.strip)),
        references=draw(st.lists(_TEXT, max_size=3)),
        payload=draw(
            st.none()
            | st.fixed_dictionaries({"content_type": _TEXT, "data": st.binary(max_size=200)})
        ),
    )
    return event


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events())
def test_any_valid_event_round_trips(event: dict[str, Any]) -> None:
    """seal then open_ gives back the event; its JSON form gives it back too."""
    original = copy.deepcopy(event)
    # The receiver's clock: when the event was made (it may lie ahead of the real clock).
    verified = envelope.open_(envelope.seal(event, INTERPOL), TRUST, now=event["created_at"])
    assert verified.event == original
    assert events.from_json(events.to_json(verified.event)) == original


# --- the receiver's clock ------------------------------------------------------------------

END = NOW + timedelta(hours=1)
"""End of the key in the clock tests; the event (created at NOW) is inside its window."""


def _ending(key: SigningKey = INTERPOL, **window: datetime) -> TrustStore:
    return TrustStore(
        [
            TrustedKey(
                agency="interpol",
                public_key=key.public_key,
                not_before=window.get("not_before", START),
                not_after=window.get("not_after", END),
            )
        ]
    )


def test_the_clock_defaults_are_an_hour_of_grace_and_five_minutes_of_skew() -> None:
    assert (timedelta(hours=1), timedelta(minutes=5)) == (DEFAULT_GRACE, DEFAULT_MAX_SKEW)


def test_a_key_expired_by_the_receivers_clock_passes_within_the_grace() -> None:
    store = _ending()
    for late in (timedelta(0), timedelta(minutes=30), DEFAULT_GRACE - timedelta(microseconds=1)):
        assert envelope.open_(VALUE, store, now=END + late).agency == "interpol"
    assert envelope.open_(VALUE, store, now=END + timedelta(hours=5), grace=timedelta(hours=6))


def test_a_key_expired_by_the_receivers_clock_fails_beyond_the_grace() -> None:
    store = _ending()
    for now, grace in (
        (END + DEFAULT_GRACE, DEFAULT_GRACE),
        (END + timedelta(days=30), DEFAULT_GRACE),
        (END + timedelta(minutes=11), timedelta(minutes=10)),
        (END, timedelta(0)),
    ):
        with pytest.raises(KeyNotValid, match="by the receiver's clock, past the end") as caught:
            envelope.open_(VALUE, store, now=now, grace=grace)
        assert INTERPOL.key_id in str(caught.value)


def test_by_default_the_receivers_clock_is_the_real_clock() -> None:
    """A key that ended two hours ago: an event dated inside its window no longer verifies."""
    real = datetime.now(UTC)
    event = _event(created_at=real - timedelta(hours=3))
    store = _ending(not_after=real - timedelta(hours=2))
    value = envelope.seal(event, INTERPOL)
    with pytest.raises(KeyNotValid, match="receiver's clock"):
        envelope.open_(value, store)
    assert envelope.open_(value, store, grace=timedelta(hours=3)).agency == "interpol"


def test_a_key_not_yet_valid_by_the_receivers_clock_fails() -> None:
    """The event claims a time in the key's window, but for the receiver the key has not begun."""
    store = _ending(not_before=NOW - timedelta(minutes=1))
    with pytest.raises(KeyNotValid, match="by the receiver's clock: not valid yet"):
        envelope.open_(VALUE, store, now=NOW - timedelta(minutes=2), max_skew=timedelta(hours=1))
    assert envelope.open_(VALUE, store, now=NOW - timedelta(minutes=1)).agency == "interpol"


def test_the_message_says_which_clock_judged() -> None:
    with pytest.raises(KeyNotValid, match="by the event's clock"):
        envelope.open_(VALUE, _ending(not_after=NOW), now=NOW)


def test_an_event_from_beyond_the_skew_is_rejected() -> None:
    with pytest.raises(EventFromFuture, match="ahead of the receiver's clock") as caught:
        envelope.open_(VALUE, TRUST, now=NOW - DEFAULT_MAX_SKEW - timedelta(microseconds=1))
    assert caught.value.reason == "event-from-future"
    with pytest.raises(EventFromFuture):
        envelope.open_(VALUE, TRUST, now=NOW - timedelta(minutes=2), max_skew=timedelta(minutes=1))
    long_valid = _ending(not_before=NOW - timedelta(days=400))
    with pytest.raises(EventFromFuture):
        envelope.open_(VALUE, long_valid, now=NOW - timedelta(days=300))


def test_an_event_from_within_the_skew_passes() -> None:
    for ahead in (DEFAULT_MAX_SKEW, timedelta(minutes=1), timedelta(0), -timedelta(days=300)):
        assert envelope.open_(VALUE, TRUST, now=NOW - ahead).agency == "interpol"
    assert envelope.open_(VALUE, TRUST, now=NOW - timedelta(hours=1), max_skew=timedelta(hours=1))


def test_rotation_events_signed_just_before_the_old_keys_end_cross_within_the_grace() -> None:
    """Old key ends at END, the new one began a day before: a last event of the old key that
    is still in flight after END verifies; once the grace is over, only the new key does."""
    new = SigningKey.generate()
    store = TrustStore(
        [
            TrustedKey(
                agency="interpol", public_key=INTERPOL.public_key, not_before=START, not_after=END
            ),
            TrustedKey(
                agency="interpol", public_key=new.public_key, not_before=END - timedelta(days=1)
            ),
        ]
    )
    last_of_old = envelope.seal(_event(created_at=END - timedelta(seconds=1)), INTERPOL)
    first_of_new = envelope.seal(_event(created_at=END + timedelta(seconds=1)), new)
    in_flight = END + timedelta(minutes=20)
    assert envelope.open_(last_of_old, store, now=in_flight).key_id == INTERPOL.key_id
    assert envelope.open_(first_of_new, store, now=in_flight).key_id == new.key_id
    later = END + DEFAULT_GRACE + timedelta(seconds=1)
    with pytest.raises(KeyNotValid):
        envelope.open_(last_of_old, store, now=later)
    assert envelope.open_(first_of_new, store, now=later).key_id == new.key_id


def test_revocation_has_no_grace() -> None:
    revoked = TrustedKey(
        agency="interpol", public_key=INTERPOL.public_key, not_before=START, revoked_at=NOW
    )
    with pytest.raises(KeyRevoked):
        envelope.open_(VALUE, _store(revoked), now=NOW, grace=timedelta(days=7))

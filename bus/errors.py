"""Every error the bus raises, in one tree.

::

    BusError
    ├── ConfigError                 a configuration, key or policy file is wrong
    │   └── PolicyError             a release-policy file is invalid
    ├── LocalClusterError           a local Kafka node could not be installed, started or stopped
    ├── TransportError              Kafka could not be reached or refused a request
    │   ├── PublishError            the cluster did not take an event
    │   └── TxFailed                (bridge) a transaction failed or its outcome is unknown
    │       └── Fenced              (bridge) another producer took over the transactional id
    ├── EventError                  an event (JSON or decoded) breaks the event model
    ├── SchemaError                 a schema is invalid, or an evolution is incompatible
    ├── CheckpointError             (bridge) a checkpoint record cannot be trusted
    ├── QuarantineRecordError       a record of the quarantine topic is not a quarantine record
    └── RecordRejected              a record on a topic cannot be accepted: it goes to quarantine
        ├── WireError               its bytes are not a record of ours
        │   ├── TruncatedRecord
        │   ├── OversizedRecord
        │   ├── BadMarker
        │   ├── UnknownFingerprint
        │   ├── MalformedDatum
        │   ├── UnreadableRecord    the Kafka client itself cannot read it (e.g. a header name
        │   │                       that is not UTF-8); skipped by offset
        │   └── LimitExceeded       too many items, too long a string, too deep: refused unread
        ├── VerificationError       its signature does not make it trustworthy
        │   ├── BadSignature
        │   ├── BadProof            a batch-signed record's inclusion proof cannot be one
        │   ├── UnknownKey
        │   ├── KeyAgencyMismatch   a key of one agency signed for another (origin spoofing)
        │   ├── KeyNotValid         the key was not valid when the event was created, or is
        │   │                       not (or no longer, past the grace) by the receiver's clock
        │   ├── KeyRevoked
        │   └── EventFromFuture     created_at is later than the receiver's clock plus the skew
        ├── EventRejected           verified, but the event itself is unacceptable
        │   ├── OriginMismatch      (subscriber) not from the agency its mirrored topic is of
        │   ├── RevisionConflict    the same event id and revision with another body
        │   └── NotReleasable       (subscriber) not releasable to the subscriber's agency
        └── UnexpectedFailure       judging it raised an unexpected error (a bug, or a library
                                    failing on hostile input): quarantined, never fatal

Every ``RecordRejected`` carries a stable ``reason`` code: it is the value of the quarantine
header ``bus_reason`` and the ``reason`` label of the quarantine metrics. Messages say what
happened and where (topic/partition/offset, key id, file and key) and what to do; they never
contain key material, payload contents or other values read off the wire (they name the field
instead, or give a type and a length).

The errors marked (bridge) are the bridge's own: its replicator handles them (it reopens the
log, or stops at a checkpoint it cannot trust), so ``bus`` does not re-export them. aiokafka's
errors become a ``TransportError`` at the boundary (``bus._kafka``). Those marked (subscriber)
are the receiving side's checks of a mirrored topic (``bus.subscriber``).

A mistake in the calling code (an argument out of range, a naive datetime, a closed publisher)
is Python's own ``ValueError``, ``TypeError`` or ``RuntimeError`` naming the parameter: a bug
to fix, not a condition to handle, as in the standard library.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BusError",
    "ConfigError",
    "PolicyError",
    "LocalClusterError",
    "TransportError",
    "PublishError",
    "TxFailed",
    "Fenced",
    "EventError",
    "SchemaError",
    "CheckpointError",
    "QuarantineRecordError",
    "RecordRejected",
    "WireError",
    "TruncatedRecord",
    "OversizedRecord",
    "BadMarker",
    "UnknownFingerprint",
    "MalformedDatum",
    "UnreadableRecord",
    "LimitExceeded",
    "VerificationError",
    "BadSignature",
    "BadProof",
    "UnknownKey",
    "KeyAgencyMismatch",
    "KeyNotValid",
    "KeyRevoked",
    "EventFromFuture",
    "EventRejected",
    "OriginMismatch",
    "NotReleasable",
    "UnexpectedFailure",
    "RevisionConflict",
]


class BusError(Exception):
    """Root of every error raised by the bus."""


class ConfigError(BusError):
    """A configuration, key, trust-store or policy file is missing or wrong."""


class PolicyError(ConfigError):
    """A release-policy file is invalid: the message names the file and the entry."""


class LocalClusterError(BusError):
    """A Kafka node of the local federation could not be installed, started or stopped."""


class TransportError(BusError):
    """Kafka could not be reached, or refused a request."""


class PublishError(TransportError):
    """The cluster did not take an event; it was not published."""


class TxFailed(TransportError):
    """A bridge transaction failed or its outcome is unknown; reopen the log before writing
    again (the checkpoint read on reopening tells whether the commit landed)."""


class Fenced(TxFailed):
    """Another producer with the same transactional id took over (or the transaction timed
    out on the broker): this producer must never write again."""


class EventError(BusError):
    """An event breaks the event model (missing or mistyped field, unknown symbol, bad uuid)."""


class SchemaError(BusError):
    """A schema is invalid, or a schema change is not FULL_TRANSITIVE compatible."""


class CheckpointError(BusError):
    """A bridge checkpoint record is not one, or holds an impossible offset: the bridge stops
    that partition rather than guess where to resume; the message names the checkpoint topic
    and offset. ``reason`` labels the alarm: ``undecodable``, ``foreign`` (another key or
    direction), ``ahead-of-source`` or ``behind-retention``."""

    def __init__(self, message: str, *, reason: str = "undecodable") -> None:
        super().__init__(message)
        self.reason = reason


class QuarantineRecordError(BusError):
    """A record of the quarantine topic lacks its reason headers or has a malformed one."""


class RecordRejected(BusError):
    """A record cannot be accepted; it is quarantined with ``reason`` and never forwarded."""

    reason: ClassVar[str] = "rejected"


class WireError(RecordRejected):
    """The record's bytes are not a single-object-encoded record of ours."""

    reason: ClassVar[str] = "wire"


class TruncatedRecord(WireError):
    """The record ends before its header or its datum does."""

    reason: ClassVar[str] = "truncated"


class OversizedRecord(WireError):
    """The record is larger than the configured maximum."""

    reason: ClassVar[str] = "oversized"


class BadMarker(WireError):
    """The record does not start with the single-object marker ``C3 01``."""

    reason: ClassVar[str] = "bad-marker"


class UnknownFingerprint(WireError):
    """No schema in the store has the record's writer-schema fingerprint."""

    reason: ClassVar[str] = "unknown-fingerprint"


class MalformedDatum(WireError):
    """The Avro datum after the header cannot be read with its writer schema."""

    reason: ClassVar[str] = "malformed-datum"


class UnreadableRecord(WireError):
    """The Kafka client cannot read the record (say, a header name that is not UTF-8).

    It is skipped by its offset and quarantined with its coordinates only: nothing of it could
    be read.
    """

    reason: ClassVar[str] = "unreadable"


class LimitExceeded(WireError):
    """The datum holds more items, longer strings or deeper nesting than the decode limits.

    Found by a pre-scan that stops at the first excess, so refusing a hostile record costs no
    more than reading an acceptable one (``bus.codec.DecodeLimits``, docs/wire-format.md).
    """

    reason: ClassVar[str] = "limit-exceeded"


class VerificationError(RecordRejected):
    """The record's signature does not make it trustworthy."""

    reason: ClassVar[str] = "verification"


class BadSignature(VerificationError):
    """The signature is malformed or does not match the signed bytes."""

    reason: ClassVar[str] = "bad-signature"


class BadProof(VerificationError):
    """A batch-signed record's inclusion proof cannot prove its event for its leaf index and
    tree size (index outside the tree, proof of the wrong length): RFC 9162 2.1.3.2 refuses it
    before any signature is checked. A proof of the right shape that leads to another root
    fails the signature instead (``BadSignature``)."""

    reason: ClassVar[str] = "bad-proof"


class UnknownKey(VerificationError):
    """The key id is not in the trust store."""

    reason: ClassVar[str] = "unknown-key"


class KeyAgencyMismatch(VerificationError):
    """The key belongs to another agency than the one named in the event's origin."""

    reason: ClassVar[str] = "key-agency-mismatch"


class KeyNotValid(VerificationError):
    """The key was not yet, or no longer, valid when the event was created.

    Or, by the receiver's own clock, it is not yet valid, or it ended longer ago than the grace
    that lets records already in flight cross. The message says which clock.
    """

    reason: ClassVar[str] = "key-not-valid"


class KeyRevoked(VerificationError):
    """The key has been revoked."""

    reason: ClassVar[str] = "key-revoked"


class EventFromFuture(VerificationError):
    """The event's ``created_at`` is later than the receiver's clock plus the allowed skew.

    An event dated ahead (by a clock that runs fast, or on purpose) would look fresh to expiry
    checks, ordering and readers long after it was made.
    """

    reason: ClassVar[str] = "event-from-future"


class EventRejected(RecordRejected):
    """The signature verified, but the event itself is unacceptable (e.g. a replay, or fields
    the release policy cannot decide on): not a verification failure."""

    reason: ClassVar[str] = "event-rejected"


class OriginMismatch(EventRejected):
    """A mirrored topic (``<agency>.<topic>``) carries an event whose signed origin is
    another agency: the topic is written only by that agency's bridge, so the record did not
    come from where its topic says."""

    reason: ClassVar[str] = "origin-mismatch"


class NotReleasable(EventRejected):
    """A mirrored event whose ``releasable_to`` does not name the receiving agency: it should
    never have crossed, so it is not delivered."""

    reason: ClassVar[str] = "not-releasable"


class UnexpectedFailure(RecordRejected):
    """Verifying, decoding or deciding about a record raised something unexpected (a bug, or a
    library failing on hostile input). The record is quarantined and the consumer goes on; the
    message names the exception type and the stage, the log has the traceback."""

    reason: ClassVar[str] = "internal-error"


class RevisionConflict(EventRejected):
    """An event with the same id and revision as one already forwarded or delivered, but with
    other signed bytes: two different bodies were signed under one version of one event."""

    reason: ClassVar[str] = "revision-conflict"

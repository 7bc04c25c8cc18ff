"""The record verifier: is this record a verified event this agency may accept, and if not, why?

::

    verifier = RecordVerifier.for_agency(config, "europol")
    outcome = verifier.judge(record)        # a VerifiedEvent, or the RecordRejected saying why
    admission = await verifier.admit(record, quarantine)  # the same, rejects quarantined first

The subscriber (``bus.subscriber``), the Faust and aiokafka helpers (``bus.streams``) and any
stream processor judge a record the same way, here. ``judge`` never raises ``Exception``:

1. a stand-in for a record the Kafka client could not read (``bus._fetch``) is
   ``UnreadableRecord``; a record without a value is ``TruncatedRecord``;
2. the value is verified and decoded by ``bus.envelope.open_`` against the trust store, with
   the keys judged by this host's clock (``key_grace`` past a key's end for records in flight;
   ``created_at`` at most ``max_clock_skew`` ahead); v1 records and batch-signed v2 records
   alike (``roots`` keeps the batch signatures already checked);
3. the event is validated (``bus.events.validate``): one that breaks the event model is
   ``EventRejected``;
4. on a mirrored topic (``<agency>.<topic>``, ``<agency>`` another agency of the configuration:
   only that agency's bridge writes it, ``Config.mirror_source``), unless the release checks
   are off, the event's signed origin must be that agency (``OriginMismatch``) and its
   ``releasable_to`` must name this agency (``NotReleasable``);
5. anything else raised is ``UnexpectedFailure`` (reason ``internal-error``), logged once with
   its traceback; ``BaseException`` (cancellation, ``KeyboardInterrupt``) is not caught.

Replays and revisions (``docs/decisions/0008-replays-and-revisions.md``): with a
``dedup_capacity``, the verifier remembers the last event ids handled (``remember``, called
once an event was handled) and ``repeat`` classifies the next arrival of each: new, a
duplicate (same revision, same bytes), a rollback (lower revision), or ``RevisionConflict``
(same revision, other bytes), which is a rejection like the others.

``admit`` is the async path: judge, classify, and quarantine a rejected record
(``bus.quarantine.Quarantine.put``, which returns once the cluster acknowledged the copy), in
that order; the caller may then commit past the record.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from prometheus_client import CollectorRegistry

from bus import envelope, events
from bus._reloading import ReloadingTrustStore
from bus._revisions import EventIdentity, Repeat, RevisionIndex
from bus.batch import RootCache, shared_roots
from bus.config import Config
from bus.envelope import VerifiedEvent
from bus.errors import (
    ConfigError,
    EventError,
    EventRejected,
    NotReleasable,
    OriginMismatch,
    RecordRejected,
    RevisionConflict,
    TruncatedRecord,
    UnexpectedFailure,
)
from bus.metrics import TrustMetrics
from bus.quarantine import Quarantine, Quarantined
from bus.records import SourceRecord, unreadable_error
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW, KeyResolver

__all__ = [
    "Admission",
    "DEFAULT_DEDUP_CAPACITY",
    "Outcome",
    "RecordVerifier",
    "check_release",
    "mirrors_of",
]

DEFAULT_DEDUP_CAPACITY: Final = 100_000
"""Event ids a consumer with a group remembers against replays and rollbacks."""

DEDUP_WINDOW_S: Final = 30 * 24 * 3600.0
"""How long a handled revision is remembered (the bridge's replay window)."""

MAX_CLOCK_SETTING_S: Final = 7 * 24 * 3600.0
"""A grace or skew of more than a week would make key validity windows meaningless."""


class Outcome(enum.Enum):
    """What became of a record (the ``outcome`` label of ``bus_consumed_total``)."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    ROLLBACK = "rollback"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """The verdict on one record: delivered (``verified``), skipped, or rejected (``error``,
    and where it was quarantined when a quarantine was given)."""

    outcome: Outcome
    verified: VerifiedEvent | None = None
    error: RecordRejected | None = None
    quarantined: Quarantined | None = None


def where(record: SourceRecord) -> str:
    """``topic/partition@offset``: how messages name a record."""
    return f"{record.topic}/{record.partition}@{record.offset}"


class RecordVerifier:
    """Judges records read on ``agency``'s cluster (module docs); get one from ``for_agency``.

    ``mirrors`` maps each mirrored topic to the agency it is mirrored from (``mirrors_of``); a
    callable answering the same per topic is accepted too (``for_agency`` passes
    ``Config.mirror_source``, so topics read later, say by a pattern, are covered).
    ``dedup_capacity`` 0 turns the replay classification off. ``log`` is where an unexpected
    failure's traceback goes, and ``role`` how its message names the reader.
    """

    def __init__(
        self,
        *,
        agency: str,
        trust: KeyResolver,
        mirrors: Mapping[str, str] | Callable[[str], str | None] | None = None,
        key_grace: timedelta = DEFAULT_GRACE,
        max_clock_skew: timedelta = DEFAULT_MAX_SKEW,
        roots: RootCache | None = None,
        dedup_capacity: int = 0,
        log: logging.Logger | None = None,
        role: str = "verifier",
    ) -> None:
        if dedup_capacity < 0:
            raise ConfigError(f"dedup_capacity {dedup_capacity}: give 0 (off) or more")
        self.agency = agency
        self.trust = trust
        if mirrors is None:
            self._mirror_source: Callable[[str], str | None] = lambda topic: None
        elif callable(mirrors):
            self._mirror_source = mirrors
        else:
            self._mirror_source = dict(mirrors).get
        self._key_grace = key_grace
        self._max_clock_skew = max_clock_skew
        self._roots = shared_roots() if roots is None else roots
        self._seen = (
            # Consumers deliver expired events too: their entries must not go before.
            RevisionIndex(capacity=dedup_capacity, window_s=DEDUP_WINDOW_S, forget_expired=False)
            if dedup_capacity
            else None
        )
        self._last_identity: tuple[VerifiedEvent, EventIdentity] | None = None
        self._log = log or logging.getLogger("bus.verifier")
        self._role = role

    @classmethod
    def for_agency(
        cls,
        config: Config,
        agency: str,
        *,
        trust: KeyResolver | None = None,
        require_release: bool = True,
        dedup_capacity: int = 0,
        key_grace_s: float = DEFAULT_GRACE.total_seconds(),
        max_clock_skew_s: float = DEFAULT_MAX_SKEW.total_seconds(),
        roots: RootCache | None = None,
        registry: CollectorRegistry | None = None,
        log: logging.Logger | None = None,
        role: str = "verifier",
    ) -> RecordVerifier:
        """A verifier for ``agency``'s readers with the subscriber's defaults.

        ``trust`` defaults to the agency's ``trust_store``, followed as the file changes (a
        rotation or revocation applies without a restart; reloads are counted in
        ``registry``). ``require_release`` (default ``True``) applies the release checks on
        every mirrored topic of ``config``; turn it off to read a feed that carries
        onward-forwarded events of third agencies. ``key_grace_s`` (default one hour) and
        ``max_clock_skew_s`` (default five minutes) are those of ``bus.trust``.
        ``ConfigError`` if the agency is unknown, has no trust store, or a setting is out of
        range.
        """
        settings = config.agency(agency)
        for name, seconds in (
            ("key_grace_s", key_grace_s),
            ("max_clock_skew_s", max_clock_skew_s),
        ):
            if not 0 <= seconds <= MAX_CLOCK_SETTING_S:
                raise ConfigError(f"{name} {seconds}: give 0 to {MAX_CLOCK_SETTING_S:.0f} seconds")
        if trust is None:
            if settings.trust_store is None:
                raise ConfigError(
                    f"{config.path or 'configuration'}: agencies.{agency}.trust_store is not "
                    f"set; a {role} needs a trust store to verify events"
                )
            trust = ReloadingTrustStore(
                settings.trust_store, on_reload=TrustMetrics.on(registry).count_reload
            )
        mirrors = functools.partial(config.mirror_source, reader=agency)
        return cls(
            agency=agency,
            trust=trust,
            mirrors=mirrors if require_release else None,
            key_grace=timedelta(seconds=key_grace_s),
            max_clock_skew=timedelta(seconds=max_clock_skew_s),
            roots=roots,
            dedup_capacity=dedup_capacity,
            log=log,
            role=role,
        )

    def mirror_source(self, topic: str) -> str | None:
        """The agency whose mirrored feed ``topic`` is (release checks apply), else ``None``."""
        return self._mirror_source(topic)

    def judge(
        self, record: SourceRecord, *, opened: VerifiedEvent | RecordRejected | None = None
    ) -> VerifiedEvent | RecordRejected:
        """The verified, valid (and, on a mirrored topic, released) event, or why not.

        ``opened``: what ``open`` said of the record's value already (a deserializer's work,
        ``bus.streams.Judged``); the release checks of ``record.topic`` are still applied.
        Never raises ``Exception``: what is unexpected becomes ``UnexpectedFailure``.
        """
        unreadable = unreadable_error(record)
        if unreadable is not None:
            return unreadable
        if opened is None:
            opened = self.open(record.value, where=where(record))
        if isinstance(opened, RecordRejected):
            return opened
        try:
            mirrored_from = self._mirror_source(record.topic)
            if mirrored_from is not None:
                check_release(opened, mirrored_from=mirrored_from, agency=self.agency)
        except RecordRejected as exc:
            return exc
        except Exception as exc:  # nothing escapes judging; BaseException is not caught
            return self._unexpected(exc, "checking the release of", where(record))
        return opened

    def open(
        self, value: bytes | None, *, where: str = "a record"
    ) -> VerifiedEvent | RecordRejected:
        """The verified, valid event of a record's ``value``, or why not: what does not depend
        on the topic it was read from (no release checks). Never raises ``Exception``."""
        stage = "verifying"
        try:
            if value is None:
                return TruncatedRecord("record has no value (null)")
            verified = envelope.open_(
                value,
                self.trust,
                grace=self._key_grace,
                max_skew=self._max_clock_skew,
                roots=self._roots,
            )
            stage = "validating"
            events.validate(verified.event)
        except RecordRejected as exc:
            return exc
        except EventError as exc:
            return EventRejected(f"the verified event breaks the event model: {exc}")
        except Exception as exc:  # nothing escapes judging; BaseException is not caught
            return self._unexpected(exc, stage, where)
        return verified

    def _unexpected(self, exc: Exception, stage: str, where: str) -> UnexpectedFailure:
        self._log.error(
            "%s: %s raised while %s the record; it is rejected as internal-error",
            where,
            type(exc).__name__,
            stage,
            exc_info=exc,
        )
        return UnexpectedFailure(
            f"{type(exc).__name__} raised while {stage} the record (a bug or a library "
            f"failing on this input; the {self._role}'s log has the traceback)"
        )

    def repeat(self, record: SourceRecord, verified: VerifiedEvent) -> Repeat | RecordRejected:
        """How ``verified`` (read as ``record``) relates to the events handled already:
        ``Repeat.NEW`` (always, without dedup), ``REPLAY``, ``ROLLBACK``, or the rejection of a
        ``RevisionConflict`` (or of an id or revision unusable for telling replays apart)."""
        if self._seen is None:
            return Repeat.NEW
        try:
            identity = self._identity(verified)
        except EventError as exc:
            return EventRejected(f"{where(record)}: {exc}")
        repeat, entry = self._seen.classify(identity, now=time.time())
        if repeat is not Repeat.CONFLICT:
            return repeat
        assert entry is not None
        return RevisionConflict(
            f"{where(record)}: event {identity.event_id} revision {identity.revision} has other "
            f"signed bytes (sha256 {identity.digest.hex()[:16]}...) than the one already "
            f"handled (sha256 {entry.digest.hex()[:16]}...)"
        )

    def remember(self, verified: VerifiedEvent) -> None:
        """Enter ``verified`` as handled (a no-op without dedup): its replays are skipped."""
        if self._seen is not None:
            self._seen.remember(self._identity(verified), now=time.time())

    def _identity(self, verified: VerifiedEvent) -> EventIdentity:
        """``EventIdentity.of`` the event, computed once for the last one classified (a
        subscriber remembers each event right after classifying it: one SHA-256, not two)."""
        last = self._last_identity
        if last is not None and last[0] is verified:
            return last[1]
        identity = EventIdentity.of(verified.event, verified.event_bytes)
        self._last_identity = (verified, identity)
        return identity

    def classify(
        self, record: SourceRecord, *, opened: VerifiedEvent | RecordRejected | None = None
    ) -> tuple[Outcome, VerifiedEvent | RecordRejected]:
        """``admit`` without the quarantine, and synchronous: judge ``record`` (``opened`` as
        for ``judge``) and classify it against what was handled. ``(Outcome.REJECTED, the
        rejection)``, or the outcome and the verified event. Never raises ``Exception``; a
        rejected record must still be quarantined (``quarantined``) before it is skipped."""
        verified = self.judge(record, opened=opened)
        if isinstance(verified, RecordRejected):
            return Outcome.REJECTED, verified
        if self._seen is None:
            return Outcome.DELIVERED, verified
        repeat = self.repeat(record, verified)
        if isinstance(repeat, RecordRejected):
            return Outcome.REJECTED, repeat
        return _OUTCOMES[repeat], verified

    async def admit(
        self,
        record: SourceRecord,
        quarantine: Quarantine | None,
        *,
        opened: VerifiedEvent | RecordRejected | None = None,
    ) -> Admission:
        """Judge ``record`` (``opened`` as for ``judge``) and classify it against what was
        handled; a rejected record is quarantined (when ``quarantine`` is given) before this
        returns.

        Raises only what ``Quarantine.put`` raises (``PublishError`` when the cluster did not
        take the copy: then the caller must not commit past the record).
        """
        outcome, verdict = self.classify(record, opened=opened)
        if isinstance(verdict, RecordRejected):
            return await self.quarantined(record, verdict, quarantine)
        return Admission(outcome=outcome, verified=verdict)

    @staticmethod
    async def quarantined(
        record: SourceRecord, error: RecordRejected, quarantine: Quarantine | None
    ) -> Admission:
        """The ``Admission`` of a rejected ``record``, once it was quarantined (when
        ``quarantine`` is given); raises what ``Quarantine.put`` raises."""
        quarantined = None if quarantine is None else await quarantine.put(record, error)
        return Admission(outcome=Outcome.REJECTED, error=error, quarantined=quarantined)


_OUTCOMES: Final = {
    Repeat.NEW: Outcome.DELIVERED,
    Repeat.REPLAY: Outcome.DUPLICATE,
    Repeat.ROLLBACK: Outcome.ROLLBACK,
}


def check_release(verified: VerifiedEvent, *, mirrored_from: str, agency: str) -> None:
    """The receiving side's checks of an event read from ``mirrored_from``'s mirrored feed:
    ``OriginMismatch`` or ``NotReleasable`` when it may not be accepted by ``agency``."""
    origin = verified.agency  # the signed origin, its key checked against it
    if origin != mirrored_from:
        raise OriginMismatch(
            f"event {verified.event['event_id']} was signed by {origin}, but the topic is "
            f"{mirrored_from}'s mirrored feed (only {mirrored_from}'s bridge writes it); "
            "a reader of onward-forwarded feeds turns this check off with require_release=False"
        )
    if agency not in verified.event.get("releasable_to", ()):
        raise NotReleasable(
            f"event {verified.event['event_id']} of {origin} is not releasable to {agency} "
            "(its releasable_to does not name it), so it is not delivered"
        )


def mirrors_of(config: Config, agency: str, topics: Sequence[str]) -> dict[str, str]:
    """Which of ``topics``, read on ``agency``'s cluster, are mirrors, and of which agency:
    ``<other agency>.<any topic>`` (``Config.mirror_source``), whatever topic was mirrored."""
    mirrors = {}
    for topic in topics:
        mirrored_from = config.mirror_source(topic, reader=agency)
        if mirrored_from is not None:
            mirrors[topic] = mirrored_from
    return mirrors

"""What one bridge worker needs to know: which direction, which topics, how hard to try."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from bus.config import AgencySettings, Config, TopicSettings, bridge_identity
from bus.envelope import DEFAULT_MAX_SIZE
from bus.errors import ConfigError
from bus.trust import DEFAULT_GRACE, DEFAULT_MAX_SKEW

__all__ = ["BridgeSettings"]

# A grace or skew of more than a week would make key validity windows meaningless.
_MAX_CLOCK_SETTING_S: Final = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSettings:
    """One direction (source -> destination) of the bridge, for one worker process.

    Several workers with the same source and destination share the source partitions (one
    consumer group); each source partition has its own transactional producer.
    """

    source: AgencySettings
    destination: AgencySettings
    topics: TopicSettings
    source_topics: tuple[str, ...]
    """The source's topics to move (never a mirrored ``<agency>.`` topic)."""
    bridge_id: str
    """Names this worker in audit records, hop headers and quarantine headers."""
    max_batch: int = 500
    """Most records of one fetch; one destination transaction per partition per fetch."""
    max_record_size: int = DEFAULT_MAX_SIZE
    retry_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    operation_timeout_s: float = 30.0
    """Longest wait for one write or commit before it counts as failed (outcome unknown)."""
    transaction_timeout_ms: int = 60_000
    verify_threads: int = 0
    """Threads that verify and decide (PyNaCl releases the GIL); 0 does it on the loop."""
    key_grace_s: float = DEFAULT_GRACE.total_seconds()
    """How long past a key's ``not_after``, by this worker's clock, events signed with it still
    cross: records in flight during a rotation (``bus.trust.DEFAULT_GRACE``, one hour)."""
    max_clock_skew_s: float = DEFAULT_MAX_SKEW.total_seconds()
    """How far ahead of this worker's clock an event's ``created_at`` may be
    (``bus.trust.DEFAULT_MAX_SKEW``, five minutes); later ones are quarantined as
    ``event-from-future``."""
    replay_capacity: int = 200_000
    """Most event ids whose forwarded revision a worker remembers (least recently used out)."""
    replay_window_s: float = 30 * 24 * 3600.0
    """How long what was forwarded is remembered (also the forwarded topics' retention)."""
    checkpoint_recheck_s: float = 30.0
    """How often a lane stopped by an untrusted checkpoint re-reads it, to go on once an
    operator has corrected it."""

    def __post_init__(self) -> None:
        if self.source.name == self.destination.name:
            raise ConfigError(f"bridge {self.source.name}->{self.destination.name}: same agency")
        if not self.source_topics:
            raise ConfigError(f"bridge {self.name}: no source topic to move")
        if self.max_batch < 1:
            raise ConfigError(f"bridge {self.name}: max_batch must be at least 1")
        if self.replay_capacity < 1 or self.replay_window_s <= 0:
            raise ConfigError(
                f"bridge {self.name}: replay_capacity must be at least 1 and replay_window_s "
                "positive"
            )
        for name in ("key_grace_s", "max_clock_skew_s"):
            if not 0 <= getattr(self, name) <= _MAX_CLOCK_SETTING_S:
                raise ConfigError(
                    f"bridge {self.name}: {name} must be between 0 and "
                    f"{_MAX_CLOCK_SETTING_S:.0f} seconds (a week)"
                )

    @property
    def key_grace(self) -> timedelta:
        """``key_grace_s`` as a ``timedelta``."""
        return timedelta(seconds=self.key_grace_s)

    @property
    def max_clock_skew(self) -> timedelta:
        """``max_clock_skew_s`` as a ``timedelta``."""
        return timedelta(seconds=self.max_clock_skew_s)

    @property
    def name(self) -> str:
        """``<source>-><destination>``."""
        return f"{self.source.name}->{self.destination.name}"

    @property
    def group_id(self) -> str:
        """The consumer group every worker of this direction joins on the source cluster."""
        return f"bus-bridge.{self.source.name}.{self.destination.name}"

    @property
    def worker_app_id(self) -> str:
        """The Faust app id: its group, and the prefix of its topics, on the source cluster.

        Under ``<group_id>.``, where the direction's ACLs allow it (docs/security.md), and
        not ``group_id`` itself: Faust's consumer would join the replicator's group.
        """
        return f"{self.group_id}.worker"

    def backoff_s(self, attempt: int) -> float:
        """The wait before retry number ``attempt``: ``retry_backoff_s`` doubled with each
        attempt, at most ``max_backoff_s``."""
        return float(min(self.max_backoff_s, self.retry_backoff_s * 2 ** min(attempt, 10)))

    def mirror_topic(self, topic: str) -> str:
        """Where ``topic``'s released records land on the destination: ``<source>.<topic>``."""
        return f"{self.source.name}.{topic}"

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        source: str,
        destination: str,
        topics: tuple[str, ...] = (),
        bridge_id: str | None = None,
        **options: float,
    ) -> BridgeSettings:
        """The settings of ``source -> destination`` from the federation's configuration.

        Refuses to consume a mirrored topic: that, with the hop headers, keeps events from
        looping between the clusters. Over TLS, the bridge connects to both clusters as its
        own principal: the identity ``bridge.<source>.<destination>`` of each agency.
        """
        identity = bridge_identity(source, destination)
        src = config.agency(source).as_identity(identity)
        dst = config.agency(destination).as_identity(identity)
        chosen = topics or (config.topics.events,)
        for topic in chosen:
            mirrored = [a for a in config.agencies if topic.startswith(f"{a}.")]
            if mirrored or topic in (config.topics.quarantine, config.topics.audit):
                raise ConfigError(
                    f"bridge {source}->{destination}: topic {topic!r} is "
                    + (
                        f"a mirrored feed of {mirrored[0]}; a bridge never consumes a mirror"
                        if mirrored
                        else "a bus topic of the source cluster, not a feed of events"
                    )
                )
        return cls(
            source=src,
            destination=dst,
            topics=config.topics,
            source_topics=tuple(chosen),
            bridge_id=bridge_id or f"{source}->{destination}@{socket.gethostname()}:{os.getpid()}",
            **options,  # type: ignore[arg-type]  # numeric tuning knobs, checked in __post_init__
        )

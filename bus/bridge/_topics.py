"""The topics a bridge direction needs, created when missing."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus._kafka import client_options, new_topic
from bus.bridge._checkpoint import audit_checkpoint_topic, checkpoint_topic
from bus.bridge._replays import forwarded_topic
from bus.bridge.settings import BridgeSettings
from bus.errors import TransportError

__all__ = ["ensure_topics"]

log = logging.getLogger("bus.bridge")

_COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.1",
}


async def ensure_topics(s: BridgeSettings) -> dict[str, int]:
    """Create what the bridge writes to and is missing.

    On the destination: each mirrored topic (with its source topic's partition count), its
    checkpoints and its forwarded events; on the source: the audit checkpoints. Each with the
    cluster's default replication factor and ``min.insync.replicas`` (``_kafka.new_topic``).
    Returns the partition counts of the source's audit and quarantine topics.
    """
    source_admin = AIOKafkaAdminClient(**client_options(s.source))
    await source_admin.start()
    try:
        described = await source_admin.describe_topics(list(s.source_topics))
        partitions: dict[str, int] = {}
        bus_partitions: dict[str, int] = {}
        for info in described:
            if info["error_code"] != 0:
                raise TransportError(
                    f"bridge {s.name}: source topic {info['topic']!r} is not available "
                    f"on {s.source.name} (error {info['error_code']})"
                )
            partitions[info["topic"]] = len(info["partitions"])
        for info in await source_admin.describe_topics([s.topics.audit, s.topics.quarantine]):
            if info["error_code"] != 0:
                raise TransportError(
                    f"bridge {s.name}: topic {info['topic']!r} is missing on "
                    f"{s.source.name} (error {info['error_code']}); create it"
                )
            bus_partitions[info["topic"]] = len(info["partitions"])
        await _create_missing(
            source_admin,
            s.source.name,
            [
                new_topic(audit_checkpoint_topic(s.destination.name, t), n, _COMPACTED)
                for t, n in partitions.items()
            ],
        )
    finally:
        await source_admin.close()
    dest_admin = AIOKafkaAdminClient(**client_options(s.destination))
    await dest_admin.start()
    try:
        wanted = []
        for topic, count in partitions.items():
            wanted.append(new_topic(s.mirror_topic(topic), count))
            wanted.append(new_topic(checkpoint_topic(s.source.name, topic), count, _COMPACTED))
            # What was forwarded: kept for the replay window, the last entry per event id.
            forgetting = {
                **_COMPACTED,
                "cleanup.policy": "compact,delete",
                "retention.ms": str(int(s.replay_window_s * 1000)),
            }
            wanted.append(new_topic(forwarded_topic(s.source.name, topic), count, forgetting))
        await _create_missing(dest_admin, s.destination.name, wanted)
    finally:
        await dest_admin.close()
    return bus_partitions


async def _create_missing(admin: AIOKafkaAdminClient, agency: str, topics: list[NewTopic]) -> None:
    existing = set(await admin.list_topics())
    wanted = [t for t in topics if t.name not in existing]
    if not wanted:
        return
    response = await admin.create_topics(wanted)
    for name, code, *_ in response.topic_errors:
        if code not in (0, 36):  # 36: created meanwhile by another worker
            raise TransportError(f"creating topic {name!r} on {agency} failed with error {code}")
    log.info("created %s on %s", ", ".join(t.name for t in wanted), agency)

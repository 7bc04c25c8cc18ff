"""Quiet logs for expected transient conditions of the Kafka client.

aiokafka logs conditions that are part of normal life at ERROR or WARNING, and repeats them in
a loop until they pass: a topic not yet in the metadata just after it was created, a group or
transaction coordinator not yet elected, a cluster that restarts. A user sees a flood of ERROR
lines for something that fixes itself in seconds.

:class:`TransientLogFilter` recognises those messages by their format string (not by their
text, which carries topic names and addresses), lets the first of each kind through as one
WARNING that says what is being waited for, and suppresses its repeats for ``window_s``
seconds; the next one after the window says how many were suppressed. Every other message
passes unchanged. ``bus`` commands and the bridge worker install it with :func:`install`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

__all__ = ["KNOWN_TRANSIENTS", "TransientLogFilter", "install"]

KNOWN_TRANSIENTS: Final[dict[tuple[str, str], str]] = {
    # (logger, format string) -> what the client is waiting for
    ("aiokafka.cluster", "Topic %s not found in cluster metadata"): (
        "a topic is not in the cluster's metadata yet (just created, or not created yet)"
    ),
    ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"): (
        "the consumer group's coordinator is not available yet (cluster starting or restarting)"
    ),
    ("aiokafka.producer.sender", "FindCoordinator Request failed: %s"): (
        "the transaction coordinator is not available yet (cluster starting or restarting)"
    ),
    ("aiokafka", 'Unable connect to "%s:%s": %s'): (
        "a cluster does not accept connections (starting, restarting or down)"
    ),
    ("aiokafka", "Unable connect to node with id %s: %s"): (
        "a broker does not accept connections (starting, restarting or down)"
    ),
    ("aiokafka", 'Unable to request metadata from "%s:%s": %s'): (
        "a cluster does not answer metadata requests (starting, restarting or down)"
    ),
    ("aiokafka", "Unable to request metadata from node with id %s: %r"): (
        "a broker does not answer metadata requests (starting, restarting or down)"
    ),
    ("aiokafka", "Unable to update metadata from %s"): (
        "no broker of a cluster answers metadata requests (restarting or down)"
    ),
    ("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s"): (
        "a broker cannot serve a fetch yet (leader moving, restarting or down)"
    ),
    ("aiokafka.consumer.fetcher", "Failed fetch offsets from %s: %s"): (
        "a broker cannot answer an offset request yet (leader moving, restarting or down)"
    ),
    ("aiokafka.consumer.group_coordinator", "Heartbeat send request failed: %s. Will retry."): (
        "the consumer group's coordinator does not answer heartbeats (restarting or down)"
    ),
}

DEFAULT_WINDOW_S: Final = 60.0


class TransientLogFilter(logging.Filter):
    """Demote known transient client messages to one WARNING per kind and window; count repeats.

    ``suppressed`` counts, per (logger, format string), the messages dropped since the start.
    """

    def __init__(
        self,
        *,
        known: dict[tuple[str, str], str] = KNOWN_TRANSIENTS,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._known = dict(known)
        self._window_s = window_s
        self._clock = clock
        self._last_shown: dict[tuple[str, str], float] = {}
        self._pending: Counter[tuple[str, str]] = Counter()
        self.suppressed: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()  # the client may log from a thread of its own

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        key = (record.name, record.msg)
        waiting_for = self._known.get(key)
        if waiting_for is None:
            return True
        now = self._clock()
        with self._lock:
            last = self._last_shown.get(key)
            if last is not None and now - last < self._window_s:
                self.suppressed[key] += 1
                self._pending[key] += 1
                return False
            self._last_shown[key] = now
            repeats = self._pending.pop(key, 0)
        original = record.getMessage()
        note = (
            f"; {repeats} more like it in the last {self._window_s:.0f} s were not shown"
            if repeats
            else f"; repeats are not shown for {self._window_s:.0f} s"
        )
        record.msg = "waiting: %s (%s)%s"
        record.args = (waiting_for, original, note)
        if record.levelno > logging.WARNING:
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


def install(*, window_s: float = DEFAULT_WINDOW_S) -> TransientLogFilter:
    """Attach one :class:`TransientLogFilter` to the loggers of the known messages (idempotent).

    Filters sit on the loggers, not on handlers, so they hold whatever logging set-up follows
    (Faust's worker configures its own handlers). Returns the filter in place.
    """
    for logger_name, _ in KNOWN_TRANSIENTS:
        for existing in logging.getLogger(logger_name).filters:
            if isinstance(existing, TransientLogFilter):
                return existing
    installed = TransientLogFilter(window_s=window_s)
    for logger_name in {name for name, _ in KNOWN_TRANSIENTS}:
        logging.getLogger(logger_name).addFilter(installed)
    return installed

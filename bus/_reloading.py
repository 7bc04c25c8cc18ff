"""A trust store that follows its file: the bridge and subscribers see a rotation or a
revocation without a restart.

:class:`ReloadingTrustStore` is a ``KeyResolver``. On a key lookup, at most every
``check_every_s`` seconds, it compares the file's identity (inode, size, modification time in
nanoseconds) with the one it loaded; if it changed, it loads the file again and swaps the new
store in at once (lookups in other threads see the old store or the new one, never a mix). The
writers (``bus keys ...``, ``bus.trust.append_key``) replace the file atomically, so a reload
never reads half a file. A file that does not load (broken by hand, made group-writable) keeps
the old store in use: logged as an error, counted as ``bus_trust_reloads_total{outcome="failed"}``
and not retried until the file changes again. (The check on lookup is a ``stat`` call at most
every ``check_every_s``: nothing on the hot path otherwise.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bus.errors import ConfigError
from bus.trust import TrustedKey, TrustStore

__all__ = ["ReloadingTrustStore"]

log = logging.getLogger("bus.trust")

_Identity = tuple[int, int, int] | None


def _identity(path: Path) -> _Identity:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ReloadingTrustStore:
    """The trust store in ``path``, reloaded when the file changes (a ``KeyResolver``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        check_every_s: float = 2.0,
        on_reload: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Loads the file now: ``ConfigError`` if it does not load (a receiver without a trust
        store must not start). ``on_reload`` is told the outcome of each reload, ``ok`` or
        ``failed`` (``bus.metrics.TrustMetrics.count_reload`` counts it)."""
        self.path = Path(path)
        self.check_every_s = check_every_s
        self._clock = clock
        self._on_reload = on_reload or (lambda outcome: None)
        self._lock = threading.Lock()
        self._seen = _identity(self.path)
        self._store = TrustStore.load(self.path)
        self._next_check = clock() + check_every_s

    @property
    def store(self) -> TrustStore:
        """The store in use now (after a check for a change, if one is due)."""
        self.refresh()
        return self._store

    def get(self, key_id: str) -> TrustedKey:
        """The key with this id in the current store; ``UnknownKey`` if there is none.

        A key id the store does not know makes it look at the file at once (one ``stat``), so
        the first event signed with a just-rotated key is not refused while the periodic check
        is not yet due.
        """
        if self._clock() >= self._next_check:
            self.refresh()
        if key_id not in self._store:
            self.refresh(if_changed=True)
        return self._store.get(key_id)

    def refresh(self, *, force: bool = False, if_changed: bool = False) -> bool:
        """Reload the file if it changed since the last load (or attempt) and a check is due
        (``if_changed``: whether due or not; ``force``: even if unchanged); True if reloaded.

        Called on lookups, and by the bridge's worker every second, so a revocation applies
        within about a second even between events.
        """
        with self._lock:
            now = self._clock()
            if not force and not if_changed and now < self._next_check:
                return False
            self._next_check = now + self.check_every_s
            seen = _identity(self.path)
            if seen == self._seen and not force:
                return False
            self._seen = seen
            try:
                store = TrustStore.load(self.path)
            except ConfigError as exc:
                self._on_reload("failed")
                log.error(  # noqa: TRY400  # the message says it all; no traceback for a bad file
                    "trust store %s changed but does not load, so the previous one (%d keys) "
                    "stays in use: %s",
                    self.path,
                    len(self._store),
                    exc,
                )
                return False
            before = {key.key_id: key for key in self._store}
            self._store = store
            self._on_reload("ok")
            changed = sum(1 for key in store if before.get(key.key_id) != key)
            log.info(
                "trust store %s reloaded: %d keys, %d new or changed, %d removed",
                self.path,
                len(store),
                changed,
                sum(1 for key_id in before if key_id not in store),
            )
            return True

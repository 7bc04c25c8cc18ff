"""Progress lines for the long steps of ``bus local up``: what is being waited for, how far.

Plain lines (no terminal control), so that they read the same in a terminal, a CI log and
``make up``'s output.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

__all__ = ["reporting"]


@contextlib.asynccontextmanager
async def reporting(
    report: Callable[[float], None], *, every_s: float = 5.0
) -> AsyncIterator[None]:
    """Call ``report(elapsed_s)`` every ``every_s`` seconds while the block runs.

    The reporter is a task scoped to the block and cancelled when it ends (not a TaskGroup:
    that would wrap the block's own exception in an ExceptionGroup).
    """
    started = time.monotonic()

    async def tick() -> None:
        while True:
            await asyncio.sleep(every_s)
            report(time.monotonic() - started)

    task = asyncio.ensure_future(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""A subscriber process for the kill tests: ``python -m tests.integration.subscriber_child``.

Arguments: CONFIG AGENCY TOPIC GROUP OUT EXPECTED DELAY_S. Appends the id of every event it
handled to OUT, one per line, with an unbuffered ``write`` per event: the line is in the
kernel before the handler returns, so a SIGKILL cannot lose it (fsync would only matter for a
machine crash). Exits by itself once OUT holds EXPECTED distinct ids.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from bus.config import load_config
from bus.subscriber import Delivery, open_subscriber


async def main(argv: list[str], handled: set[str]) -> None:
    config_path, agency, topic, group, out, expected, delay = argv
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    config = load_config(Path(config_path))

    async def handle(delivery: Delivery) -> None:
        await asyncio.sleep(float(delay))
        os.write(fd, f"{delivery.event_id}\n".encode())
        handled.add(delivery.event_id)

    try:
        async with open_subscriber(
            config,
            agency,
            group_id=group,
            topics=[topic],
            from_beginning=True,
            consumer_options={"group_instance_id": f"{group}-child", "session_timeout_ms": 6000},
        ) as subscriber:
            print("ready", flush=True)
            if len(handled) >= int(expected):
                return
            async for delivery in subscriber:
                await handle(delivery)
                if len(handled) >= int(expected):
                    subscriber.done(delivery)
                    break
    finally:
        os.close(fd)


if __name__ == "__main__":
    out = Path(sys.argv[5])
    asyncio.run(main(sys.argv[1:], set(out.read_text().split()) if out.exists() else set()))

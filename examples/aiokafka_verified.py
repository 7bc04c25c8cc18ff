"""A plain aiokafka consumer that receives verified events of Interpol's feed mirrored to
Europol's cluster.

Run it against a running federation (``make up``)::

    python examples/aiokafka_verified.py

It prints one JSON line per verified event and commits after each record; rejected records
go to ``bus.quarantine`` with their reason. Settings from the environment as in
``faust_verified.py``: ``BUS_CONFIG``, ``BUS_AGENCY``, ``BUS_TOPICS``, ``BUS_APP_ID`` (the
consumer group).
"""

from __future__ import annotations

import asyncio
import json
import os

from aiokafka import AIOKafkaConsumer

from bus.config import load_config
from bus.streams import open_gate


async def main() -> None:
    config = load_config()
    agency = os.environ.get("BUS_AGENCY", "europol")
    topics = os.environ.get("BUS_TOPICS", "interpol.intel.events").split(",")
    group = os.environ.get("BUS_APP_ID", "example-verified")
    async with open_gate(config, agency, consumer=group) as gate:
        consumer = AIOKafkaConsumer(
            *topics,
            **gate.client_options(client_id=group),
            group_id=group,
            isolation_level="read_committed",  # bridges write mirrored feeds in transactions
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            value_deserializer=gate.deserializer,  # verifies while fetching; never raises
        )
        await consumer.start()
        try:
            async for record in consumer:
                delivery = await gate.admit(record)  # None: quarantined, or a replay
                if delivery is not None:
                    line = {
                        "event_id": delivery.event_id,
                        "origin": delivery.verified.agency,
                        "topic": delivery.topic,
                        "partition": delivery.partition,
                        "offset": delivery.offset,
                    }
                    print(json.dumps(line), flush=True)
                    gate.done(delivery)
                await consumer.commit()  # after admit: a rejected record is quarantined by now
        finally:
            await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main())

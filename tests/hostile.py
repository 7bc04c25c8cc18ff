"""Writers of records that no well-behaved client would write, for the hostile-input tests.

Any client can put any bytes in a record, including where the Kafka protocol promises text
(header names are UTF-8 by the protocol, but the broker does not check them). aiokafka's
producer only takes ``str`` header names, so these writers build the batch with a placeholder
name of the same length and patch the bytes in, recomputing the batch's CRC-32C.
"""

from __future__ import annotations

import secrets
import string
import struct
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.record.util import calc_crc32c

__all__ = ["send_with_raw_header_names"]

# Record batch v2: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8,
# crc uint32 (CRC-32C of everything after it).
_CRC_AT = 17
_CRC_FROM = 21


def _placeholder(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters) for _ in range(length))


async def send_with_raw_header_names(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    *,
    value: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    key: bytes | None = None,
) -> int:
    """Write one record whose header names are the raw ``bytes`` given; return its offset.

    Each name must be at least 8 bytes long, so that its placeholder is unique in the batch.
    """
    swaps: list[tuple[bytes, bytes]] = []
    named: list[tuple[str, bytes]] = []
    for name, header_value in headers:
        if len(name) < 8:
            raise ValueError("raw header names need at least 8 bytes")
        placeholder = _placeholder(len(name))
        swaps.append((placeholder.encode(), name))
        named.append((placeholder, header_value))
    batch = producer.create_batch()
    batch.append(key=key, value=value, timestamp=None, headers=named)
    batch.close()
    build = batch._build  # the builder's one hook; aiokafka has no public raw-batch API

    def patched() -> bytearray:
        data = bytearray(build())
        for placeholder, name in swaps:
            at = bytes(data).index(placeholder)
            data[at : at + len(name)] = name
        struct.pack_into(">I", data, _CRC_AT, calc_crc32c(bytes(data[_CRC_FROM:])))
        return data

    batch._build = patched  # the hook above, replaced on this one batch
    metadata = await (await producer.send_batch(batch, topic, partition=partition))
    return int(metadata.offset)

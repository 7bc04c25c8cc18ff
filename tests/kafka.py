"""The test session's federation: local nodes the tests start, or clusters given to them.

The helpers for topics, records and federations are :mod:`bus.testing`'s, shared with the
benchmarks; what is here concerns only how a test session finds its clusters.
"""

from __future__ import annotations

import os

from bus.config import AgencySettings, Config, TopicSettings

# Re-exported for test modules that import them from here (tests/integration/*).
from bus.testing import (
    Federation,
    consume_all,
    create_topic,
    free_base_port,
    produce,
    unique_topic,
)

__all__ = [
    "ENV_EXTERNAL",
    "Federation",
    "consume_all",
    "create_topic",
    "external_config",
    "free_base_port",
    "produce",
    "state_dir_marker",
    "unique_topic",
]

ENV_EXTERNAL = "BUS_TEST_BOOTSTRAP_SERVERS"


def external_config() -> Config | None:
    """Clusters given in ``BUS_TEST_BOOTSTRAP_SERVERS="interpol=host:port;europol=host:port"``."""
    value = os.environ.get(ENV_EXTERNAL, "").strip()
    if not value:
        return None
    agencies = {}
    for entry in value.split(";"):
        name, _, servers = entry.partition("=")
        agencies[name.strip()] = AgencySettings(
            name=name.strip(),
            bootstrap_servers=tuple(s.strip() for s in servers.split(",") if s.strip()),
        )
    return Config(path=None, agencies=agencies, topics=TopicSettings())


def state_dir_marker() -> str:
    """A string in every test federation's path, so CI can find its leftovers."""
    return "exchange-bus-test"

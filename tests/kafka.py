"""The test session's federation: local nodes the tests start, or clusters given to them.

The helpers for topics, records and federations are :mod:`bus.testing`'s, shared with the
benchmarks; what is here concerns only how a test session finds its clusters.
"""

from __future__ import annotations

import os

from bus.config import AgencySettings, Config, TopicSettings

__all__ = ["ENV_EXTERNAL", "external_config", "state_dir_marker"]

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
    """A string in every test federation's path, so a person can tell its nodes apart in ``ps``."""
    return "exchange-bus-test"

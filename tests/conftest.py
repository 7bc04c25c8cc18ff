"""Session-wide fixtures: a federation of real Kafka clusters, one per agency.

By default the tests start their own local federation through the same code as ``bus local
up`` (in a temporary state folder, on free ports) and stop it at the end. To run against
clusters you started yourself, give their bootstrap servers:
``BUS_TEST_BOOTSTRAP_SERVERS="interpol=127.0.0.1:19092;europol=127.0.0.1:19094"``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from bus import local
from bus.config import Config, java_home
from tests.kafka import Federation, external_config, free_base_port, register, state_dir_marker
from tests.signed import signed_config

# A third agency, so that onward forwarding and loops between three clusters are tested.
TEST_AGENCIES = ("interpol", "europol", "ameripol")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Real Kafka clusters for the whole test session."""
    external = external_config()
    if external is not None:
        yield Federation(config=external, spec=None)
        return
    spec = local.FederationSpec(
        home=tmp_path_factory.mktemp(state_dir_marker()),
        agencies=TEST_AGENCIES,
        base_port=free_base_port(2 * len(TEST_AGENCIES)),
        heap_mb=512,
        java_home=java_home(),
    )
    # A terminated test run still stops its nodes: SIGTERM unwinds like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = asyncio.run(local.up(spec))  # over mTLS, with ACLs: the default
        register(config)
        yield Federation(config=config, spec=spec)
    finally:
        local.down(spec)
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def signed_federation(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The federation's configuration with a signing key per agency and a shared trust store.

    It is also written to disk (``config.path``) for the CLI and child processes.
    """
    return signed_config(federation.config, tmp_path_factory.mktemp("keys"))

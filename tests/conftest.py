"""Session-wide fixtures: a federation of real Kafka clusters, one per agency.

By default the tests start their own local federation through the same code as ``bus local
up`` (in a temporary state folder, on free ports) and stop it at the end. To run against
clusters you started yourself, give their bootstrap servers:
``BUS_TEST_BOOTSTRAP_SERVERS="interpol=127.0.0.1:19092;europol=127.0.0.1:19094"``.

Tests with random moments take the ``seed`` fixture: ``BUS_TEST_SEED`` if set (``make soak``
varies it), else a fixed default, so that a run is repeatable; a failing test prints it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator
from types import FrameType

import pytest

from bus.config import Config
from bus.testing import Federation, running_federation, signed_config
from tests.kafka import external_config, state_dir_marker

# A third agency, so that onward forwarding and loops between three clusters are tested.
TEST_AGENCIES = ("interpol", "europol", "ameripol")

ENV_SEED = "BUS_TEST_SEED"
DEFAULT_SEED = 20261129


def _seed() -> int:
    return int(os.environ.get(ENV_SEED, DEFAULT_SEED))


@pytest.fixture
def seed() -> int:
    """The seed of the test's random moments (``BUS_TEST_SEED``, else a fixed default)."""
    return _seed()


def pytest_report_header() -> str:
    return f"{ENV_SEED}={_seed()}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test that used random moments says how to repeat them."""
    report = yield
    if report.failed and "seed" in getattr(item, "fixturenames", ()):
        report.sections.append(("random moments", f"repeat with {ENV_SEED}={_seed()}"))
    return report


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Real Kafka clusters for the whole test session."""
    external = external_config()
    if external is not None:
        yield Federation(config=external, spec=None)
        return
    # A terminated test run still stops its nodes: SIGTERM unwinds like Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Over mTLS, with ACLs (the default); registered, so the helpers connect as the admin.
        with running_federation(
            tmp_path_factory.mktemp(state_dir_marker()), TEST_AGENCIES
        ) as federation:
            yield federation
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def signed_federation(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The federation's configuration with a signing key per agency and a shared trust store.

    It is also written to disk (``config.path``) for the CLI and child processes.
    """
    return signed_config(federation.config, tmp_path_factory.mktemp("keys"))

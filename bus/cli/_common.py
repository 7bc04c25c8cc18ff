"""What the commands share: how errors reach the terminal, and the options several commands take.

An option that more than one command takes (``--config``, ``--key``, ``--trust``, ``--policy``)
is defined here once, so that its name, type and meaning are the same everywhere.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from prometheus_client import CollectorRegistry

from bus._reloading import ReloadingTrustStore
from bus._time import parse_time
from bus.config import Config, default_home, load_config
from bus.errors import BusError, ConfigError
from bus.metrics import TrustMetrics

__all__ = [
    "config_option",
    "fail_on_bus_error",
    "key_option",
    "load_cli_config",
    "policy_option",
    "rfc3339_time",
    "trust_option",
]

P = ParamSpec("P")
R = TypeVar("R")
Decorated = TypeVar("Decorated", bound=Callable[..., Any] | click.Command)


def fail_on_bus_error(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a BusError into one line on stderr and exit status 2 (1 is kept for 'no')."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except BusError as exc:
            click.echo(f"bus: error: {exc}", err=True)
            sys.exit(2)

    return wrapper


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (default: $BUS_CONFIG, else the local federation's bus.toml).",
)

key_option = click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The origin agency's private key (PKCS#8 PEM).",
)

policy_option = click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Policy file (default: [policy] file of the configuration).",
)


def trust_option(*, help: str, required: bool = False) -> Callable[[Decorated], Decorated]:
    """``--trust FILE`` (parameter ``trust_path``); ``help`` says what the command uses it for."""
    return click.option(
        "--trust",
        "trust_path",
        required=required,
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def load_cli_config(path: Path | None) -> Config:
    """The configuration a command runs with."""
    return load_config(path)


def rfc3339_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback: an RFC 3339 time with its UTC offset (``2026-01-01T00:00:00Z``)."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} {exc}") from None


def worker_trust(
    config: Config, agency: str, trust_path: Path | None
) -> tuple[Path, CollectorRegistry, ReloadingTrustStore]:
    """A worker's trust store (``--trust``, else ``agency``'s ``trust_store``), followed so
    that a rotation or a revocation applies without a restart, and the metrics registry it
    counts its reloads in (the worker's ``/metrics``)."""
    trust_file = trust_path or config.agency(agency).trust_store
    if trust_file is None:
        raise ConfigError(
            f"{config.path}: agencies.{agency}.trust_store is not set; pass --trust FILE"
        )
    registry = CollectorRegistry()
    trust = ReloadingTrustStore(trust_file, on_reload=TrustMetrics.on(registry).count_reload)
    return Path(trust_file), registry, trust


def worker_datadir(config: Config, name: str) -> Path:
    """The folder Faust wants even without tables: beside the configuration, not the cwd."""
    datadir = (config.path.parent if config.path else default_home()) / name
    datadir.mkdir(parents=True, exist_ok=True)
    return datadir

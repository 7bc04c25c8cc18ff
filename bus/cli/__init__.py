"""The ``bus`` command line.

Each command group lives in a module of its own (``bus.cli.local``, ``bus.cli.keys``, ...);
this module assembles them. Environment variables are read here and in ``bus.config`` only.
"""

from __future__ import annotations

import importlib

import click

from bus import _transient_logs

__all__ = ["main"]

# (module, attribute) of every command group, in the order `bus --help` lists them.
_GROUPS = [
    ("bus.cli.local", "local"),
    ("bus.cli.keys", "keys"),
    ("bus.cli.event", "event"),
    ("bus.cli.policy", "policy"),
    ("bus.cli.pubsub", "publish"),
    ("bus.cli.pubsub", "tail"),
    ("bus.cli.bridge", "bridge"),
    ("bus.cli.correlate", "correlate"),
    ("bus.cli.demo", "demo"),
    ("bus.cli.audit", "audit"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="exchange-bus", prog_name="bus")
def main() -> None:
    """Exchange Bus: signed intelligence events across the agencies' Kafka clusters."""
    # The Kafka client's expected transient conditions: one WARNING each, not a flood of ERRORs.
    _transient_logs.install()


for _module, _attr in _GROUPS:
    main.add_command(getattr(importlib.import_module(_module), _attr))

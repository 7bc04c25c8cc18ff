"""``bus.errors``: one tree. Every exception class the package defines derives from BusError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import bus
from bus import errors
from bus.errors import BusError, EventRejected, RecordRejected, VerificationError


def _bus_modules() -> list[str]:
    """Every module of the package but ``bus.__main__`` (importing it runs the CLI)."""
    walked = (m.name for m in pkgutil.walk_packages(bus.__path__, prefix="bus."))
    return ["bus", *(name for name in walked if name != "bus.__main__")]


def test_every_exception_class_defined_under_bus_derives_from_bus_error() -> None:
    modules = _bus_modules()
    # The walk reaches every layer, down to the bridge's and the CLI's private modules.
    assert {"bus.errors", "bus.bridge._txlog", "bus.bridge.replicator", "bus.cli.pubsub"} <= set(
        modules
    )
    outside = []
    for name in modules:
        module = importlib.import_module(name)
        for _, member in inspect.getmembers(module, inspect.isclass):
            if (
                member.__module__ == name
                and issubclass(member, BaseException)
                and not issubclass(member, BusError)
            ):
                outside.append(f"{name}.{member.__qualname__}")
    assert outside == []


def test_the_tree_in_the_module_docstring_draws_every_error() -> None:
    tree = (errors.__doc__ or "").split("::")[1].split("\n\n")[1]
    drawn = re.findall(r"^    (?:[│ ]*[├└]── )?(\w+)", tree, flags=re.MULTILINE)
    assert sorted(drawn) == sorted(errors.__all__)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), BusError)


def test_an_unacceptable_verified_event_is_rejected_but_not_a_verification_failure() -> None:
    assert issubclass(EventRejected, RecordRejected)
    assert not issubclass(EventRejected, VerificationError)
    assert EventRejected.reason == "event-rejected"

"""``bus._transient_logs``: the Kafka client's expected transient conditions, quiet."""

from __future__ import annotations

import logging

import pytest

from bus._transient_logs import KNOWN_TRANSIENTS, TransientLogFilter, install

_TOPIC = ("aiokafka.cluster", "Topic %s not found in cluster metadata")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_first_transient_message_shows_as_one_warning_saying_what_is_awaited() -> None:
    f = TransientLogFilter(clock=_Clock())
    record = _record(*_TOPIC, "bus.audit")
    assert f.filter(record)
    assert record.levelno == logging.WARNING
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert message.startswith(f"waiting: {KNOWN_TRANSIENTS[_TOPIC]}")
    assert "Topic bus.audit not found in cluster metadata" in message


def test_repeats_within_the_window_are_suppressed_and_counted_then_reported() -> None:
    clock = _Clock()
    f = TransientLogFilter(window_s=60, clock=clock)
    assert f.filter(_record(*_TOPIC, "a"))
    shown = [f.filter(_record(*_TOPIC, "a")) for _ in range(25)]
    assert not any(shown)
    assert f.suppressed[_TOPIC] == 25
    clock.now += 60
    record = _record(*_TOPIC, "a")
    assert f.filter(record)
    assert "25 more like it in the last 60 s were not shown" in record.getMessage()


def test_each_kind_of_transient_message_is_shown_once_on_its_own() -> None:
    f = TransientLogFilter(clock=_Clock())
    coordinator = ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s")
    assert f.filter(_record(*_TOPIC, "a"))
    assert f.filter(_record(*coordinator, "GroupCoordinatorNotAvailableError"))
    assert not f.filter(_record(*coordinator, "GroupCoordinatorNotAvailableError"))


@pytest.mark.parametrize(
    ("name", "msg"),
    [
        ("aiokafka.cluster", "Topic %s is not authorized for this client"),
        ("bus.bridge", "Topic %s not found in cluster metadata"),
    ],
)
def test_other_messages_pass_unchanged(name: str, msg: str) -> None:
    f = TransientLogFilter(clock=_Clock())
    for _ in range(3):
        record = _record(name, msg, "x")
        assert f.filter(record)
        assert record.levelno == logging.ERROR
        assert record.msg == msg


def test_install_attaches_one_filter_to_each_logger_of_the_known_messages() -> None:
    first = install()
    try:
        assert install() is first
        for name, _ in KNOWN_TRANSIENTS:
            filters = logging.getLogger(name).filters
            assert [f for f in filters if isinstance(f, TransientLogFilter)] == [first]
    finally:
        for name in {name for name, _ in KNOWN_TRANSIENTS}:
            logging.getLogger(name).removeFilter(first)

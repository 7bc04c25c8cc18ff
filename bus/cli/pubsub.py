"""``bus publish`` and ``bus tail``: put events on an agency's cluster and watch them arrive.

``bus publish --agency A [--topic T] FILE|-`` reads events in the JSON form
(docs/event-json.md), one per line (blank lines are skipped), signs each with A's key from
the configuration and publishes it. Each event must be complete and valid; nothing is filled
in. It prints one JSON line per acknowledged event: ``{"event_id", "topic", "partition",
"offset"}``. Events are sent in chunks; an invalid line stops the command with status 2 after
the events before it were published (and printed).

``bus tail --agency A [--topic T] [--from-beginning] [--count N] [--group G] [-e]`` prints every
verified event as one line of JSON (the JSON form, so its output can be fed to ``bus
publish``). A record that cannot be accepted is reported as one line on stderr with its reason
code. Without ``--group`` tail is a viewer: it reads every partition, commits nothing and
writes nothing. With ``--group`` it is a real consumer of that group: it commits what it
printed and quarantines rejected records (as every subscriber of a group does). With
``--until-end`` (``-e``, as ``kcat -e``) it exits once it has read every partition to the end it
had when tail started (for scripts).

``bus tail ... --metrics-port N`` serves the process's Prometheus metrics (``bus_consumed_total``,
``bus_quarantined_total``, the Python process's own) at ``http://127.0.0.1:N/metrics`` while it
runs, so that a subscriber group run from the command line is scraped like a bridge
(``--metrics-host`` to listen elsewhere; docs/operations.md lists the metrics).

``bus tail --topic bus.audit`` prints the bridge's decisions as JSON lines. Over mutual TLS
the applications' identity may not read them: ``--identity admin`` connects with the agency's
``[agencies.A.tls.identities."admin"]`` instead (any ``--identity`` the configuration has).
``bus tail --topic bus.quarantine`` (the configured quarantine topic) prints the quarantine
records instead: one JSON line each with the reason, the message, the source topic, partition
and offset, and when and by whom it was quarantined; never the record's contents.

Every reader here gets past any record: one the Kafka client cannot parse is reported on stderr
with its coordinates and skipped (``bus._fetch``), batches compressed with any codec Kafka
supports are read, and transient Kafka errors are retried (``bus._kafka.is_transient``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import click
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client import REGISTRY, start_http_server

from bus import events
from bus._fetch import Unreadable, fetch
from bus._kafka import client_options, is_transient, translated
from bus._quote import bounded
from bus._time import format_time
from bus.audit import decode_audit_record
from bus.cli._common import config_option, fail_on_bus_error, load_cli_config
from bus.config import Config
from bus.errors import (
    ConfigError,
    EventError,
    QuarantineRecordError,
    RecordRejected,
    TransportError,
    TruncatedRecord,
)
from bus.publisher import COMPRESSION_TYPES, open_publisher
from bus.records import read_quarantined
from bus.subscriber import Rejection, assign_all, open_subscriber

__all__ = ["publish", "tail"]

_CHUNK = 1000
_EXIT_INTERRUPTED = 130


def _read_chunk(stream: BinaryIO, size: int) -> list[bytes]:
    lines = []
    for _ in range(size):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
    return lines


@click.command()
@click.option("--agency", required=True, help="The agency whose key signs and whose cluster.")
@click.option("--topic", default=None, help="Topic (default: the configured events topic).")
@click.option(
    "--compression", type=click.Choice(COMPRESSION_TYPES), default=None, help="Batch compression."
)
@config_option
@click.argument("source", type=click.File("rb"), default="-")
@fail_on_bus_error
def publish(
    agency: str,
    topic: str | None,
    compression: str | None,
    config_path: Path | None,
    source: BinaryIO,
) -> None:
    """Sign and publish the events of SOURCE (JSON lines; - for stdin).

    Prints {"event_id", "topic", "partition", "offset"} per event once the cluster has it.
    """
    config = load_cli_config(config_path)
    name = getattr(source, "name", "-")
    name = "<stdin>" if name in ("-", "<stdin>") else name
    _run(_publish(config, agency, topic, compression, source, name))


async def _publish(
    config: Config,
    agency: str,
    topic: str | None,
    compression: str | None,
    source: BinaryIO,
    name: str,
) -> None:
    line_number = 0
    async with open_publisher(config, agency, topic=topic, compression=compression) as publisher:
        while lines := await asyncio.to_thread(_read_chunk, source, _CHUNK):
            chunk: list[dict[str, Any]] = []
            failure: EventError | None = None
            for line in lines:
                line_number += 1
                if not line.strip():
                    continue
                try:
                    chunk.append(events.from_json(line))
                except EventError as exc:
                    failure = EventError(f"{name}:{line_number}: {exc}")
                    break
            for published in await publisher.publish_many(chunk):
                click.echo(
                    json.dumps(
                        {
                            "event_id": published.event_id,
                            "topic": published.topic,
                            "partition": published.partition,
                            "offset": published.offset,
                        }
                    )
                )
            if failure is not None:
                raise failure


@click.command()
@click.option("--agency", required=True, help="The agency whose cluster to read.")
@click.option("--topic", default=None, help="Topic (default: the configured events topic).")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest records.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N events.")
@click.option("--group", default=None, help="Consume as this group: commit and quarantine.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus metrics at /metrics on this port while tailing.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics server listens on (loopback unless asked).",
)
@click.option(
    "-e",
    "--until-end",
    is_flag=True,
    help="Exit once every partition was read to its end as of the start (as kcat -e).",
)
@click.option(
    "--identity",
    default=None,
    help="Connect with this TLS identity of the agency (admin, to read bus.audit) instead of "
    "the applications'.",
)
@config_option
@fail_on_bus_error
def tail(
    agency: str,
    topic: str | None,
    from_beginning: bool,
    count: int | None,
    group: str | None,
    metrics_port: int | None,
    metrics_host: str,
    until_end: bool,
    identity: str | None,
    config_path: Path | None,
) -> None:
    """Print verified events as JSON lines; report rejected records on stderr."""
    config = load_cli_config(config_path)
    if identity is not None:
        # Over mutual TLS the applications may not read bus.audit (docs/security.md): the
        # operator reads it as the admin. Without TLS there are no identities to choose.
        chosen = config.agency(agency).as_identity(identity)
        config = replace(config, agencies={**config.agencies, agency: chosen})
    topic = topic or config.topics.events
    bus_topics = {config.topics.quarantine: _quarantine_line, config.topics.audit: _audit_line}
    if topic in bus_topics:
        if group is not None:
            raise ConfigError(f"--group: {topic} is only viewed, never consumed")
        if metrics_port is not None:
            raise ConfigError(f"--metrics-port: viewing {topic} counts nothing to serve")
        _run(
            _tail_records(
                config, agency, topic, from_beginning, count, bus_topics[topic], until_end
            )
        )
        return
    with serving_metrics(metrics_host, metrics_port):
        _run(_tail(config, agency, topic, from_beginning, count, group, until_end))


@contextmanager
def serving_metrics(host: str, port: int | None) -> Iterator[None]:
    """Serve the global registry's metrics at ``http://host:port/metrics`` (None: don't)."""
    if port is None:
        yield
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(
            f"--metrics-port: cannot listen on {host}:{port} ({exc.strerror}); pick a free port"
        ) from exc
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _report(rejection: Rejection) -> None:
    where = ""
    if rejection.quarantined is not None:
        q = rejection.quarantined
        where = f" (quarantined at {q.topic}/{q.partition}@{q.offset})"
    click.echo(f"bus: rejected: {rejection.reason}: {rejection.error}{where}", err=True)


async def _tail(
    config: Config,
    agency: str,
    topic: str,
    from_beginning: bool,
    count: int | None,
    group: str | None,
    until_end: bool,
) -> None:
    printed = 0
    async with open_subscriber(
        config,
        agency,
        group_id=group,
        topics=[topic],
        from_beginning=from_beginning,
        on_rejected=_report,
        until_end=until_end,
    ) as subscriber:
        async for delivery in subscriber:
            click.echo(events.to_json(delivery.event, indent=None))
            printed += 1
            if count is not None and printed >= count:
                subscriber.done(delivery)
                break


def _quarantine_line(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """A quarantine record as JSON: why and where from, never its contents."""
    q = read_quarantined(record)
    return {
        "reason": q.reason,
        "error": q.error,
        "source_topic": q.source_topic,
        "source_partition": q.source_partition,
        "source_offset": q.source_offset,
        "quarantined_at": format_time(q.quarantined_at, timespec="auto"),
        "consumer": q.consumer,
        "size": len(q.value or b""),
        "topic": q.topic,
        "partition": q.partition,
        "offset": q.offset,
    }


def _audit_line(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """An audit record (one bridge decision) as JSON; ``RecordRejected`` if it is not one."""
    if record.value is None:
        raise TruncatedRecord(f"{record.topic}/{record.partition}@{record.offset}: no value")
    audit = decode_audit_record(record.value)
    audit["decided_at"] = format_time(audit["decided_at"], timespec="auto")
    for name in ("prev_hash", "signature"):  # the audit chain's (v2): bytes, shown as hex
        if isinstance(audit.get(name), bytes):
            audit[name] = audit[name].hex()
    return {**audit, "topic": record.topic, "partition": record.partition, "offset": record.offset}


async def _tail_records(
    config: Config,
    agency: str,
    topic: str,
    from_beginning: bool,
    count: int | None,
    line: Callable[[ConsumerRecord[bytes, bytes]], dict[str, Any]],
    until_end: bool,
) -> None:
    """Print the records of a bus topic (quarantine, audit) as JSON lines, without a group."""
    settings = config.agency(agency)
    consumer = AIOKafkaConsumer(
        **client_options(settings, client_id=f"bus-tail-{agency}"),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    try:
        with translated(f"reading {topic} on {agency}'s cluster failed"):
            await consumer.start()
            await assign_all(consumer, [topic], agency, from_beginning=from_beginning)
        assigned = sorted(consumer.assignment())
        ends = await consumer.end_offsets(assigned) if until_end else {}
        printed = 0
        failures = 0
        while count is None or printed < count:
            if until_end and await _reached(consumer, ends):
                return
            try:
                with translated(f"reading {topic} on {agency}'s cluster failed"):
                    batch = await fetch(consumer, timeout_ms=1000)
            except TransportError as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                click.echo(f"bus: {bounded(str(exc), 1000)}; retrying", err=True)
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 10)))
                continue
            failures = 0
            for records in batch.values():
                for record in records:
                    if isinstance(record, Unreadable):
                        click.echo(f"bus: skipped in {topic}: {record.error}", err=True)
                        continue
                    try:
                        shown = line(record)
                    except (QuarantineRecordError, RecordRejected) as exc:
                        click.echo(f"bus: not a record of {topic}: {exc}", err=True)
                        continue
                    click.echo(json.dumps(shown))
                    printed += 1
                    if count is not None and printed >= count:
                        return
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> bool:
    """Whether the consumer's position is at or past ``ends`` on every partition."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


_RECANCEL_S = 5.0
"""After Ctrl-C, how often the command is cancelled again until it has ended."""


async def _interruptible(main: Coroutine[Any, Any, None]) -> None:
    """``main``, cancelled at SIGINT, and again every ``_RECANCEL_S`` until it has ended.

    One cancellation is not enough: Python 3.11's ``asyncio.wait_for`` drops a cancellation
    that arrives as the call it awaits completes (fixed in 3.12), and a client's clean-up (a
    group's last commit, leaving the group) can wait long on a cluster that is away. Either
    would leave ``bus tail`` running after Ctrl-C.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    interrupted = False

    def cancel() -> None:
        nonlocal interrupted
        interrupted = True
        if not task.done():
            task.cancel()
            loop.call_later(_RECANCEL_S, cancel)

    if threading.current_thread() is not threading.main_thread():
        # Signals reach only the main thread (a command run by a test or an embedding app).
        await task
        return
    loop.add_signal_handler(signal.SIGINT, cancel)
    try:
        await task
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; Ctrl-C ends it cleanly (context managers close) with status 130."""
    try:
        asyncio.run(_interruptible(main))
    except KeyboardInterrupt:
        sys.exit(_EXIT_INTERRUPTED)
    except BrokenPipeError:
        # `bus tail | head`: the reader left; nothing more to say.
        sys.stderr.close()
        sys.exit(0)

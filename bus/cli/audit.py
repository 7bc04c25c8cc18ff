"""``bus audit``: verify the audit chains of an agency's ``bus.audit``, and answer from them what
left, to whom, when and under which rule (docs/audit.md)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, write_to_textfile

from bus._fetch import Unreadable, fetch
from bus._kafka import client_options, translated
from bus._time import format_time
from bus.audit import decode_audit_record
from bus.audit_chain import ChainRecord, ChainSummary, chain_record, verify_partition
from bus.cli._common import config_option, fail_on_bus_error, load_cli_config, rfc3339_time
from bus.config import Config
from bus.errors import ConfigError, TransportError
from bus.metrics import AuditMetrics
from bus.subscriber import assign_all
from bus.trust import TrustStore

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """The bridges' audit trail: verify its chains, show what left."""


@dataclass(frozen=True, slots=True)
class _Partition:
    partition: int
    log_start: int
    records: list[tuple[int, bytes | None]]


async def _read_all(config: Config, agency: str, topic: str, timeout_s: float) -> list[_Partition]:
    """Every committed record of ``topic`` on ``agency``'s cluster, per partition, up to the end
    offsets it had when reading started."""
    consumer = AIOKafkaConsumer(
        **client_options(config.agency(agency), client_id=f"bus-audit-{agency}"),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    where = f"reading {topic} on {agency}'s cluster failed"
    try:
        with translated(where):
            await consumer.start()
            await assign_all(consumer, [topic], agency, from_beginning=True)
            assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            starts = await consumer.beginning_offsets(assigned)
            ends = await consumer.end_offsets(assigned)
        found: dict[TopicPartition, list[tuple[int, bytes | None]]] = {tp: [] for tp in assigned}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            with translated(where):
                positions = {tp: await consumer.position(tp) for tp in assigned}
            if all(positions[tp] >= ends[tp] for tp in assigned):
                break
            if loop.time() > deadline:
                raise TransportError(f"{where}: not at the end after {timeout_s:.0f} s")
            with translated(where):
                batch = await fetch(consumer, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    value = None if isinstance(record, Unreadable) else record.value
                    found[tp].append((record.offset, value))
        return [_Partition(tp.partition, starts[tp], found[tp]) for tp in assigned]
    finally:
        await consumer.stop()


def _chain_records(partition: _Partition) -> Iterator[ChainRecord]:
    for offset, value in partition.records:
        yield chain_record(
            value, partition=partition.partition, offset=offset, decode=decode_audit_record
        )


def _trust(config: Config, agency: str, trust_path: Path | None) -> TrustStore:
    path = trust_path or config.agency(agency).trust_store
    if path is None:
        raise ConfigError(
            f"{config.path}: agencies.{agency}.trust_store is not set; pass --trust FILE"
        )
    return TrustStore.load(path)


@audit.command()
@click.option("--agency", required=True, help="Whose bus.audit to verify.")
@click.option("--topic", default=None, help="The audit topic (default: the configured one).")
@click.option(
    "--trust",
    "trust_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Trust store with the bridge keys (default: the agency's trust_store).",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write bus_audit_chain_breaks_total here (Prometheus text format, for "
    "node-exporter's textfile collector).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per break, then a summary.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1))
@config_option
@fail_on_bus_error
def verify(
    agency: str,
    topic: str | None,
    trust_path: Path | None,
    metrics_file: Path | None,
    as_json: bool,
    timeout: float,
    config_path: Path | None,
) -> None:
    """Check every audit chain in AGENCY's bus.audit: report each altered, deleted, reordered,
    injected or unverifiable record with its partition and offset (exit 1), or a summary
    (exit 0)."""
    config = load_cli_config(config_path)
    topic = topic or config.topics.audit
    trust = _trust(config, agency, trust_path)
    partitions = asyncio.run(_read_all(config, agency, topic, timeout))
    summaries: list[tuple[int, ChainSummary]] = []
    for partition in partitions:
        summary = verify_partition(
            _chain_records(partition), trust=trust, agency=agency, log_start=partition.log_start
        )
        summaries.append((partition.partition, summary))
    breaks = [b for _, s in summaries for b in s.breaks]
    if metrics_file is not None:
        registry = CollectorRegistry()
        counter = AuditMetrics.on(registry).chain_breaks
        for number, summary in summaries:
            counter.labels(agency, topic, str(number)).inc(len(summary.breaks))
        write_to_textfile(str(metrics_file), registry)
    records = sum(s.records for _, s in summaries)
    chains = sum(len(s.chains) for _, s in summaries)
    signatures = sum(s.signatures for _, s in summaries)
    for b in breaks:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "kind": b.kind,
                        "topic": topic,
                        "partition": b.partition,
                        "offset": b.offset,
                        "chain": b.chain,
                        "message": b.message,
                    }
                )
            )
        else:
            click.echo(f"{b.kind.upper()} {topic}/{b.message}")
    text = (
        f"{topic} on {agency}: {records} records in {len(partitions)} partitions, {chains} "
        f"chains, {signatures} chain signatures verified, {len(breaks)} breaks"
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "records": records,
                    "chains": chains,
                    "signatures": signatures,
                    "breaks": len(breaks),
                }
            )
        )
    else:
        click.echo(text, err=bool(breaks))
    if breaks:
        raise SystemExit(1)


@audit.command()
@click.option("--agency", required=True, help="Whose bus.audit to read (the data owner's).")
@click.option("--to", "destination", default=None, help="Only decisions about this agency.")
@click.option("--since", callback=rfc3339_time, help="Only decisions at or after, RFC 3339.")
@click.option("--event", "event_id", default=None, help="Only decisions about this event id.")
@click.option(
    "--decision",
    type=click.Choice(["FORWARDED", "DENIED"], case_sensitive=False),
    default=None,
    help="Only forwarded or only denied events.",
)
@click.option("--topic", default=None, help="The audit topic (default: the configured one).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1))
@config_option
@fail_on_bus_error
def show(
    agency: str,
    destination: str | None,
    since: datetime | None,
    event_id: str | None,
    decision: str | None,
    topic: str | None,
    timeout: float,
    config_path: Path | None,
) -> None:
    """What left AGENCY (or was kept), to whom, when and under which rule: one JSON line per
    decision, oldest first, then a count per destination and decision on stderr.

    It shows what the records say; `bus audit verify` says whether they can be trusted.
    """
    config = load_cli_config(config_path)
    topic = topic or config.topics.audit
    partitions = asyncio.run(_read_all(config, agency, topic, timeout))
    rows: list[dict[str, Any]] = []
    for partition in partitions:
        for offset, value in partition.records:
            if value is None:
                continue
            try:
                record = decode_audit_record(value)
            except Exception:  # verify reports what does not decode
                continue
            if destination is not None and record["destination"] != destination:
                continue
            if event_id is not None and str(record["event_id"]) != event_id:
                continue
            if decision is not None and record["decision"] != decision.upper():
                continue
            if since is not None and record["decided_at"] < since:
                continue
            rows.append(
                {
                    "decided_at": record["decided_at"],
                    "event_id": str(record["event_id"]),
                    "origin": record["origin"],
                    "to": record["destination"],
                    "decision": record["decision"],
                    "rule": record["rule"],
                    "reason": record["reason"],
                    "source": f"{record['source_topic']}/{record['source_partition']}"
                    f"@{record['source_offset']}",
                    "audit": f"{topic}/{partition.partition}@{offset}",
                }
            )
    rows.sort(key=lambda row: (row["decided_at"], row["audit"]))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        counts[(row["to"], row["decision"])] += 1
        click.echo(json.dumps({**row, "decided_at": format_time(row["decided_at"])}))
    for (to, what), n in sorted(counts.items()):
        click.echo(f"{agency} -> {to}: {n} {what.lower()}", err=True)

"""What ``bus local status`` shows: every process of the local federation, as a table or JSON.

One :class:`ProcessStatus` per Kafka node (kind ``cluster``: one per agency, or
``<agency>-<id>`` for each node of a larger cluster), per bridge worker (kind ``bridge``,
``bridge.<source>``) followed by one row per direction it hosts (kind ``direction``,
``<source>-<destination>``), per correlator (kind ``correlator``), for the supervisor,
Prometheus and Alertmanager (health: their ``/-/healthy`` endpoints). A worker's health is its
``/healthz`` verdict, a direction's its own answer in it (``directions``); a bridge's lag is the
sum of its ``bus_bridge_source_lag`` gauges on ``/metrics`` (a direction's, those with its
``source`` and ``destination``), a correlator's of its ``bus_correlate_lag_records``. Restarts
and backoff are per process, from the supervisor's ``state.json``. Collecting talks to the
processes; rendering (:func:`render_table`) is pure.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from bus._time import format_time
from bus.local import _prometheus
from bus.local._control import bridge_health, direction_health, supervisor_running
from bus.local._federation import status as cluster_status
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    SERVICES,
    SupervisedBridge,
    SupervisedCorrelator,
    alertmanager_port,
    bridges,
    correlators,
    prometheus_port,
    read_state,
    supervisor_port,
    worker_pid,
)

__all__ = ["ProcessStatus", "collect", "render_table"]

_LAG_METRIC: Final = "bus_bridge_source_lag"
_CORRELATOR_LAG_METRIC: Final = "bus_correlate_lag_records"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    """One process of the local federation, as ``bus local status`` shows it.

    ``ok`` is False when the process should run and does not, or runs but is not healthy;
    bridges and correlators that were never asked for (``bus local up --no-bridges``,
    ``--no-correlators``) are ``off`` and ok. A ``direction`` row is one direction of the
    bridge worker above it: the worker's state, pid and address, the direction's own health,
    lag and partitions (its restarts are the worker's).
    """

    name: str
    kind: str
    """``cluster``, ``bridge``, ``direction``, ``correlator``, ``supervisor``, ``prometheus``
    or ``alertmanager``."""
    state: str
    """``running``, ``stopped``, ``unreachable``, ``starting``, ``backoff`` or ``off``."""
    ok: bool
    pid: int | None = None
    address: str = ""
    health: str | None = None
    """Bridges, Prometheus, Alertmanager: ``healthy``, ``unhealthy`` or ``no answer``."""
    lag: int | None = None
    """Bridges, directions: records of the source not yet moved, over all partitions;
    correlators: records of their feeds not yet read."""
    restarts: int | None = None
    detail: str = ""
    certificates: tuple[tuple[str, str], ...] = ()
    """Clusters over mTLS: each certificate of the agency and when it expires (RFC 3339)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def collect(spec: FederationSpec) -> list[ProcessStatus]:
    """Every cluster, bridge and the supervisor of ``spec``, as they are now."""
    result = []
    for s in await cluster_status(spec):
        state = "running" if s.reachable else ("unreachable" if s.running else "stopped")
        memory = f"rss {s.rss_mib:.0f} MiB" if s.rss_mib is not None else ""
        detail = " ".join(
            part
            for part in (
                f"cluster {s.cluster_id}" if s.cluster_id else "",
                memory,
                f"{len(s.topics)} topics" if s.topics else "",
            )
            if part
        )
        result.append(
            ProcessStatus(
                name=s.node.name,
                kind="cluster",
                state=state,
                ok=s.reachable,
                pid=s.pid,
                address=s.node.bootstrap,
                detail=detail,
                certificates=tuple(
                    (name, format_time(not_after, timespec="auto"))
                    for name, not_after in s.certificates
                ),
            )
        )
    supervisor = supervisor_running(spec)
    recorded = read_state(spec) if supervisor is not None else {}
    processes: dict[str, Any] = recorded.get("processes", {})
    total_restarts = 0
    for bridge in bridges(spec):
        rows = await asyncio.to_thread(
            _bridge_status, spec, bridge, processes.get(bridge.name, {}), supervised=supervisor
        )
        total_restarts += rows[0].restarts or 0
        result.extend(rows)
    for correlator in correlators(spec):
        row = await asyncio.to_thread(
            _correlator_status,
            spec,
            correlator,
            processes.get(correlator.name, {}),
            supervised=supervisor,
        )
        total_restarts += row.restarts or 0
        result.append(row)
    result.append(
        ProcessStatus(
            name="supervisor",
            kind="supervisor",
            state="running" if supervisor is not None else "off",
            ok=True,
            pid=supervisor,
            address=f"{HOST}:{supervisor_port(spec)}",
            restarts=total_restarts if supervisor is not None else None,
            detail="restarts what it runs; /metrics" if supervisor is not None else "",
        )
    )
    for name in SERVICES:
        result.append(
            await asyncio.to_thread(
                _service_status, spec, name, processes.get(name, {}), supervised=supervisor
            )
        )
    return result


def _service_status(
    spec: FederationSpec, name: str, recorded: dict[str, Any], *, supervised: int | None
) -> ProcessStatus:
    """Prometheus or Alertmanager: its recorded pid, and whether it answers ``/-/healthy``."""
    port = prometheus_port(spec) if name == "prometheus" else alertmanager_port(spec)
    url = f"http://{HOST}:{port}"
    pid = _prometheus.running(spec.home, name)
    restarts = recorded.get("restarts")
    last_exit = recorded.get("last_exit")
    common: dict[str, Any] = {
        "name": name,
        "kind": name,
        "pid": pid,
        "address": f"{HOST}:{port}",
        "restarts": restarts,
    }
    if pid is None:
        if not recorded:  # not asked for (`--no-prometheus`), or nothing supervises
            return ProcessStatus(state="off", ok=True, detail="not started", **common)
        waiting = recorded.get("state") == "backoff"
        return ProcessStatus(
            state="backoff" if waiting else "stopped",
            ok=False,
            detail=f"last exit: {last_exit}" if last_exit else "",
            **common,
        )
    healthy = _prometheus.answers(url, "/-/healthy")
    detail = url + ("/consoles/exchange-bus.html" if name == "prometheus" else "")
    if last_exit:
        detail += f"; last exit: {last_exit}"
    return ProcessStatus(
        state="running",
        ok=healthy,
        health="healthy" if healthy else "no answer",
        detail=detail,
        **common,
    )


def _off_or_down(recorded: dict[str, Any], *, supervised: int | None) -> dict[str, Any]:
    """A supervised process that does not run: never started, stopped or waiting to restart."""
    if supervised is None or not recorded:
        return {"state": "off", "ok": True, "detail": "not started"}
    last_exit = recorded.get("last_exit")
    return {
        "state": "backoff" if recorded.get("state") == "backoff" else "stopped",
        "ok": False,
        "detail": f"last exit: {last_exit}" if last_exit else "",
    }


def _bridge_status(
    spec: FederationSpec,
    bridge: SupervisedBridge,
    recorded: dict[str, Any],
    *,
    supervised: int | None,
) -> list[ProcessStatus]:
    """The worker's row, then one per direction it hosts."""
    pid = worker_pid(spec, bridge)
    last_exit = recorded.get("last_exit")
    common: dict[str, Any] = {"pid": pid, "address": f"{HOST}:{bridge.web_port}"}
    names = ", ".join(bridge.directions)
    if pid is None:
        down = _off_or_down(recorded, supervised=supervised)
        worker = ProcessStatus(
            name=bridge.name,
            kind="bridge",
            restarts=recorded.get("restarts"),
            **common | down | {"detail": f"{names}; {down['detail']}".rstrip("; ")},
        )
        return [worker] + [
            ProcessStatus(
                name=name,
                kind="direction",
                state=down["state"],
                ok=down["ok"],
                detail=f"in {bridge.name}",
                **common,
            )
            for name in bridge.directions
        ]
    health = bridge_health(bridge)
    if health is None:
        return [
            ProcessStatus(
                name=name,
                kind=kind,
                state="starting",
                ok=False,
                health="no answer",
                restarts=recorded.get("restarts") if kind == "bridge" else None,
                detail=names if kind == "bridge" else f"in {bridge.name}",
                **common,
            )
            for name, kind in [(bridge.name, "bridge")]
            + [(d, "direction") for d in bridge.directions]
        ]
    metrics = _metrics(bridge.url)
    detail = names + (f"; last exit: {last_exit}" if last_exit else "")
    rows = [
        ProcessStatus(
            name=bridge.name,
            kind="bridge",
            state="running",
            ok=bool(health.get("healthy")),
            health="healthy" if health.get("healthy") else "unhealthy",
            lag=lag_of(metrics) if metrics is not None else None,
            restarts=recorded.get("restarts"),
            detail=detail,
            **common,
        )
    ]
    for name, answer in direction_health(bridge, health).items():
        source, _, destination = name.partition("-")
        healthy = answer is not None and bool(answer.get("healthy"))
        partitions = (answer or {}).get("partitions") or []
        failing = (answer or {}).get("failing_for_s") or {}
        text = f"{len(partitions)} partitions"
        if failing:
            text += " failing: " + ", ".join(f"{tp} {s}s" for tp, s in failing.items())
        rows.append(
            ProcessStatus(
                name=name,
                kind="direction",
                state="running",
                ok=healthy,
                health="healthy" if healthy else ("unhealthy" if answer else "no answer"),
                lag=lag_of(metrics, source=source, destination=destination)
                if metrics is not None
                else None,
                detail=f"{text}; in {bridge.name}",
                **common,
            )
        )
    return rows


def _correlator_status(
    spec: FederationSpec,
    correlator: SupervisedCorrelator,
    recorded: dict[str, Any],
    *,
    supervised: int | None,
) -> ProcessStatus:
    pid = worker_pid(spec, correlator)
    common: dict[str, Any] = {
        "name": correlator.name,
        "kind": "correlator",
        "pid": pid,
        "address": f"{HOST}:{correlator.web_port}",
        "restarts": recorded.get("restarts"),
    }
    if pid is None:
        return ProcessStatus(**common | _off_or_down(recorded, supervised=supervised))
    health = bridge_health(correlator)
    if health is None:
        return ProcessStatus(state="starting", ok=False, health="no answer", **common)
    healthy = bool(health.get("healthy"))
    reading = health.get("reading") or []
    detail = f"{len(reading)} feeds"
    if health.get("last_error"):
        detail += f"; last error: {health['last_error']}"
    if recorded.get("last_exit"):
        detail += f"; last exit: {recorded['last_exit']}"
    metrics = _metrics(correlator.url)
    return ProcessStatus(
        state="running",
        ok=healthy,
        health="healthy" if healthy else "unhealthy",
        lag=lag_of(metrics, metric=_CORRELATOR_LAG_METRIC) if metrics is not None else None,
        detail=detail,
        **common,
    )


def _metrics(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
            text: str = response.read().decode()
            return text
    except OSError:
        return None


def lag_of(
    metrics_text: str,
    *,
    metric: str = _LAG_METRIC,
    source: str | None = None,
    destination: str | None = None,
) -> int | None:
    """The sum of the ``metric`` samples (a bridge's ``bus_bridge_source_lag`` by default),
    only those of the direction from ``source`` to ``destination`` when given (None when there
    are none)."""
    wanted = {
        key: value
        for key, value in (("source", source), ("destination", destination))
        if value is not None
    }
    samples = [
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == metric
        for sample in family.samples
        if all(sample.labels.get(key) == value for key, value in wanted.items())
    ]
    return int(sum(samples)) if samples else None


_COLUMNS: Final = (
    ("NAME", "name"),
    ("KIND", "kind"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("ADDRESS", "address"),
    ("HEALTH", "health"),
    ("LAG", "lag"),
    ("RESTARTS", "restarts"),
    ("DETAIL", "detail"),
)


def render_table(rows: Sequence[ProcessStatus]) -> str:
    """A plain-text table, one line per process; ``-`` where a value does not apply."""

    def cell(row: ProcessStatus, field: str) -> str:
        value = getattr(row, field)
        return "-" if value is None or value == "" else str(value)

    table = [[title for title, _ in _COLUMNS]]
    table += [[cell(row, field) for _, field in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table]
    return "\n".join(line.rstrip() for line in lines)

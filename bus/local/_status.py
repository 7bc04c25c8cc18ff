"""What ``bus local status`` shows: every process of the local federation, as a table or JSON.

One :class:`ProcessStatus` per Kafka node (kind ``cluster``: one per agency, or
``<agency>-<id>`` for each node of a larger cluster), per bridge, for the supervisor, Prometheus and
Alertmanager (health: their ``/-/healthy`` endpoints). A bridge's health is
its ``/healthz`` verdict, its lag the sum of its ``bus_bridge_source_lag`` gauges on
``/metrics``; its restarts come from the supervisor's ``state.json``. Collecting talks to the
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
from bus.local._federation import status as cluster_status
from bus.local._spec import HOST, FederationSpec
from bus.local._supervision import (
    SERVICES,
    SupervisedBridge,
    alertmanager_port,
    bridges,
    is_bridge_process,
    prometheus_port,
    read_pid,
    read_state,
    supervisor_port,
)
from bus.local._supervisor import bridge_health, supervisor_running

__all__ = ["ProcessStatus", "collect", "render_table"]

_LAG_METRIC: Final = "bus_bridge_source_lag"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    """One process of the local federation, as ``bus local status`` shows it.

    ``ok`` is False when the process should run and does not, or runs but is not healthy;
    bridges that were never asked for (``bus local up --no-bridges``) are ``off`` and ok.
    """

    name: str
    kind: str
    """``cluster``, ``bridge``, ``supervisor``, ``prometheus`` or ``alertmanager``."""
    state: str
    """``running``, ``stopped``, ``unreachable``, ``starting``, ``backoff`` or ``off``."""
    ok: bool
    pid: int | None = None
    address: str = ""
    health: str | None = None
    """Bridges, Prometheus, Alertmanager: ``healthy``, ``unhealthy`` or ``no answer``."""
    lag: int | None = None
    """Bridges: records of the source not yet moved, over all partitions."""
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
        row = await asyncio.to_thread(
            _bridge_status, spec, bridge, processes.get(bridge.name, {}), supervised=supervisor
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


def _bridge_status(
    spec: FederationSpec,
    bridge: SupervisedBridge,
    recorded: dict[str, Any],
    *,
    supervised: int | None,
) -> ProcessStatus:
    pid = read_pid(bridge.pid_file)
    if pid is not None and not is_bridge_process(pid, spec, bridge):
        pid = None
    restarts = recorded.get("restarts")
    last_exit = recorded.get("last_exit")
    common: dict[str, Any] = {
        "name": bridge.name,
        "kind": "bridge",
        "pid": pid,
        "address": f"{HOST}:{bridge.web_port}",
        "restarts": restarts,
    }
    if pid is None:
        if supervised is None:
            return ProcessStatus(state="off", ok=True, detail="not started", **common)
        waiting = recorded.get("state") == "backoff"
        return ProcessStatus(
            state="backoff" if waiting else "stopped",
            ok=False,
            detail=f"last exit: {last_exit}" if last_exit else "",
            **common,
        )
    health = bridge_health(bridge)
    if health is None:
        return ProcessStatus(state="starting", ok=False, health="no answer", **common)
    healthy = bool(health.get("healthy"))
    partitions = health.get("partitions") or []
    failing = health.get("failing_for_s") or {}
    detail = f"{len(partitions)} partitions"
    if failing:
        detail += " failing: " + ", ".join(f"{tp} {s}s" for tp, s in failing.items())
    if last_exit:
        detail += f"; last exit: {last_exit}"
    return ProcessStatus(
        state="running",
        ok=healthy,
        health="healthy" if healthy else "unhealthy",
        lag=_lag(bridge),
        detail=detail,
        **common,
    )


def _lag(bridge: SupervisedBridge) -> int | None:
    try:
        with urllib.request.urlopen(f"{bridge.url}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return lag_of(text)


def lag_of(metrics_text: str) -> int | None:
    """The sum of the bridge's ``bus_bridge_source_lag`` samples (None when there are none)."""
    samples = [
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == _LAG_METRIC
        for sample in family.samples
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

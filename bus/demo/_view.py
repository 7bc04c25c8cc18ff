"""The demo's terminal view: one row per direction, then one per agency with its correlation
hits, as ``rich`` tables (live or printed once).

Pure rendering of a :class:`~bus.demo._run.Summary`; the CLI puts the table in a ``rich.live``
view on a terminal and prints plain progress lines otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group
from rich.table import Table

from bus.demo._hits import Correlations
from bus.demo._run import Summary

__all__ = ["progress_line", "render", "render_hits", "view"]


def _by_key(counts: Mapping[str, int]) -> str:
    return "\n".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "0"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(summary: Summary, *, title: str | None = None) -> Table:
    """The summary as a table: per direction, published, forwarded, denied by rule,
    quarantined by reason, end-to-end latency p50/p99 and lag."""
    state = "publishing" if summary.publishing else ("settled" if summary.settled else "settling")
    table = Table(
        title=title or f"Exchange Bus demo: {summary.elapsed_s:.0f} s, {state}",
        show_lines=True,
    )
    for column, justify in (
        ("direction", "left"),
        ("published\n(+forged)", "right"),
        ("forwarded\n(policy expects)", "right"),
        ("denied by rule", "left"),
        ("quarantined by reason", "left"),
        ("latency\np50 / p99", "right"),
        ("lag", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]  # rich's Literal
    for d in summary.directions:
        b = d.bridge
        table.add_row(
            f"{d.source} -> {d.destination}",
            f"{d.published} (+{d.forged})",
            f"{b.forwarded} ({d.expected_forwarded})",
            _by_key(b.denied),
            _by_key(b.quarantined),
            f"{_ms(b.latency(0.5))} / {_ms(b.latency(0.99))}",
            str(b.lag),
        )
    return table


def _short(event_id: str) -> str:
    return event_id[:8]


def _latest(c: Correlations) -> str:
    if not c.latest:
        return "-"
    return "\n".join(
        f"{h.kind} {h.identifier}: {h.first_origin} {_short(h.first_event_id)} ~ "
        f"{h.second_origin} {_short(h.second_event_id)}"
        for h in reversed(c.latest)
    )


def render_hits(summary: Summary) -> Table:
    """Per agency, its correlator's state, its hits since the start and the latest few
    (identifier kind and value, each side's origin and event id's first 8 characters)."""
    table = Table(title="Correlation hits (bus.correlations)", show_lines=True)
    for column, justify in (
        ("agency", "left"),
        ("correlator", "left"),
        ("hits", "right"),
        ("latest (newest first)", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]  # rich's Literal
    for c in summary.correlations:
        hits = str(c.hits) if c.seen or c.hits else "-"
        if c.unreadable:
            hits += f"\n({c.unreadable} unreadable)"
        table.add_row(c.agency, c.status, hits, _latest(c))
    return table


def view(summary: Summary, *, title: str | None = None) -> Group:
    """The live view: the directions' table, then the correlation hits'."""
    return Group(render(summary, title=title), render_hits(summary))


def _hits_part(c: Correlations) -> str:
    if c.error is not None:
        return f"{c.agency}: hits unreadable ({c.error})"
    if not c.seen:
        return f"{c.agency}: no correlator seen"
    return f"{c.agency}: {c.hits} hits"


def progress_line(summary: Summary) -> str:
    """One line for a log or a terminal that is not one."""
    parts = [
        f"{d.source}->{d.destination}: published {d.published}+{d.forged} forwarded "
        f"{d.bridge.forwarded} denied {sum(d.bridge.denied.values())} quarantined "
        f"{sum(d.bridge.quarantined.values())} lag {d.bridge.lag}"
        for d in summary.directions
    ]
    parts += [_hits_part(c) for c in summary.correlations]
    return f"[{summary.elapsed_s:5.0f} s] " + "; ".join(parts)

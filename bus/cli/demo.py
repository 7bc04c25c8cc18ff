"""``bus demo``: realistic traffic across the running local federation, with a live view."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from bus import local
from bus.cli._common import fail_on_bus_error
from bus.config import Config, default_home, load_config
from bus.demo import Direction, Summary, progress_line, run_demo, view
from bus.errors import LocalClusterError

__all__ = ["demo"]

_PROGRESS_EVERY_S = 5.0


def _directions(home: Path, agencies: tuple[str, ...] | None) -> tuple[Path, list[Direction]]:
    spec = local.load_spec(home)
    if not spec.spec_file.exists() or not spec.config_file.exists():
        raise LocalClusterError(
            f"no local federation in {home}: start one with `bus local up` (or `make up`)"
        )
    wanted = agencies or spec.agencies
    missing = [a for a in wanted if a not in spec.agencies]
    if missing:
        raise LocalClusterError(
            f"the federation in {home} runs {', '.join(spec.agencies)}, not "
            f"{', '.join(missing)}: restart it with `bus local down` and "
            f"`bus local up --agencies {','.join(wanted)}`"
        )
    if len(wanted) < 2:
        raise LocalClusterError(f"--agencies {','.join(wanted)}: the demo needs two or more")
    directions = [
        Direction(source=b.source, destination=destination, url=b.url)
        for b in local.bridges(spec)
        for destination in b.destinations
        if b.source in wanted and destination in wanted
    ]
    return spec.config_file, directions


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State folder of the federation (default: $BUS_HOME, else ~/.local/state/exchange-bus).",
)
@click.option(
    "--agencies",
    default=None,
    help="Comma-separated agencies to mesh (default: every agency of the running federation).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds to publish for (default: until Ctrl-C).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Events per second per agency.",
)
@click.option(
    "--forge-every",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="Every N-th record an agency writes is forged or tampered (0: none).",
)
@click.option("--seed", type=int, default=None, help="Seed of the traffic (repeatable runs).")
@click.option(
    "--settle-timeout",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="Seconds to wait, after publishing, for the bridges to decide on every record.",
)
@click.option(
    "--tty/--no-tty",
    default=None,
    help="Live view (default: when stdout is a terminal); --no-tty prints progress lines.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON on stdout.")
@fail_on_bus_error
def demo(
    home: Path | None,
    agencies: str | None,
    duration: float | None,
    rate: float,
    forge_every: int,
    seed: int | None,
    settle_timeout: float,
    tty: bool | None,
    as_json: bool,
) -> None:
    """Publish realistic events at every agency of the running federation and watch them cross.

    Needs `bus local up` (clusters and bridges). Every agency publishes signed events across the
    five areas with a mix of TLP, handling codes and releasability, plus a few forged and
    tampered records; the view shows, per direction, what was published, forwarded, denied (by
    rule) and quarantined (by reason), the end-to-end latency and the lag, read from the
    bridges' /metrics; and per agency the correlation hits its correlator (`bus correlate run`)
    writes to bus.correlations, or that no correlator was seen (some events of different
    agencies name the same vessel, phone or address, written differently). Ctrl-C stops
    publishing; the demo then waits for the bridges and prints the summary. Exit status 1 if
    the bridges did not decide on every record in time.
    """
    wanted = tuple(a.strip() for a in agencies.split(",") if a.strip()) if agencies else None
    config_file, directions = _directions(home or default_home(), wanted)
    config = load_config(config_file)
    live = sys.stdout.isatty() if tty is None else tty
    console = Console(stderr=as_json, force_terminal=live or None, no_color=not live)
    summary = asyncio.run(
        _run(config, directions, duration, rate, forge_every, seed, settle_timeout, console, live)
    )
    console.print(view(summary, title="Exchange Bus demo: summary"))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    if not summary.settled:
        behind = ", ".join(
            f"{d.source} -> {d.destination} ({d.bridge.processed}/{d.written})"
            for d in summary.directions
            if not d.settled
        )
        click.echo(
            f"bus: error: the bridges did not decide on every record within "
            f"{settle_timeout:.0f} s: {behind}; see `bus local status` and `bus local logs`",
            err=True,
        )
        sys.exit(1)


async def _run(
    config: Config,
    directions: list[Direction],
    duration: float | None,
    rate: float,
    forge_every: int,
    seed: int | None,
    settle_timeout: float,
    console: Console,
    live: bool,
) -> Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        if live:
            with Live(console=console, refresh_per_second=2, transient=True) as live_view:
                return await run_demo(
                    config,
                    directions,
                    duration_s=duration,
                    rate=rate,
                    forge_every=forge_every,
                    seed=seed,
                    settle_timeout_s=settle_timeout,
                    stop=stop,
                    on_update=lambda s: live_view.update(view(s)),
                )
        printed = [0.0]

        def progress(summary: Summary) -> None:
            if summary.elapsed_s - printed[0] >= _PROGRESS_EVERY_S:
                printed[0] = summary.elapsed_s
                click.echo(progress_line(summary), err=True)

        return await run_demo(
            config,
            directions,
            duration_s=duration,
            rate=rate,
            forge_every=forge_every,
            seed=seed,
            settle_timeout_s=settle_timeout,
            stop=stop,
            on_update=progress,
        )
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)

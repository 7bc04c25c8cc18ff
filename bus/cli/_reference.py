"""docs/cli.md: every command's ``--help``, rendered from the commands themselves.

``python -m bus.cli._reference > docs/cli.md`` (``make docs``) writes it; a unit test fails when
the file differs from what this renders, so the reference never goes stale.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from bus.cli import main

__all__ = ["render_reference"]

_WIDTH = 100

_HEADER = """\
# Command-line reference

Generated from the commands' own `--help` by `make docs` (`python -m bus.cli._reference`);
`tests/unit/test_cli_reference.py` fails when this file is stale. Start with the
[README](../README.md).
"""


def _walk(
    command: click.Command, name: str, parent: click.Context | None
) -> Iterator[tuple[str, str]]:
    # As `bus ... --help` builds it (inherited settings such as -h), parsing no arguments.
    ctx = command.make_context(
        name,
        [],
        parent=parent,
        resilient_parsing=True,
        terminal_width=_WIDTH,
        max_content_width=_WIDTH,
    )
    yield ctx.command_path, command.get_help(ctx)
    if isinstance(command, click.Group):
        for sub in command.list_commands(ctx):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                yield from _walk(child, sub, ctx)


def render_reference(root: click.Command = main) -> str:
    """The markdown of docs/cli.md: one section per command, its help as click prints it."""
    sections = [_HEADER]
    for path, text in _walk(root, "bus", None):
        sections.append(f"## `{path}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    print(render_reference(), end="")

"""docs/cli.md is the commands' own help, as ``make docs`` renders it."""

from __future__ import annotations

from pathlib import Path

from bus.cli._reference import render_reference

_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_what_the_commands_help_says() -> None:
    assert _DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/cli.md is stale: run `make docs` and commit it"
    )


def test_the_reference_has_a_section_for_every_command_and_subcommand() -> None:
    text = render_reference()
    for path in ("bus", "bus local up", "bus local status", "bus demo", "bus tail", "bus policy"):
        assert f"## `{path}`" in text

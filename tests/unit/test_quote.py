"""Bounded quotations of input: cut with a marker, never longer than the limit."""

from __future__ import annotations

import pytest

from bus._quote import MAX_QUOTE, bounded


def test_a_short_string_is_quoted_whole() -> None:
    assert bounded("x" * MAX_QUOTE) == "x" * MAX_QUOTE


@pytest.mark.parametrize("length", [MAX_QUOTE + 1, 10_000, 5_000_000])
def test_a_long_string_is_cut_to_the_limit_with_a_marker_of_its_length(length: int) -> None:
    quoted = bounded("x" * length)
    assert len(quoted) == MAX_QUOTE
    assert quoted.endswith(f"...[{length} chars, cut]")
    assert quoted.startswith("xxx")


def test_a_tiny_limit_still_bounds() -> None:
    assert len(bounded("y" * 1000, 5)) == 5
    assert bounded("y" * 1000, 0) == ""
    with pytest.raises(ValueError, match="limit"):
        bounded("y", -1)

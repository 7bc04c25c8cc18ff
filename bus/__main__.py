"""``python -m bus``: the same as the ``bus`` command."""

from bus.cli import main

main()

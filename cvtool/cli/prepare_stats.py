"""`cvtool prepare stats` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool prepare stats --help")


def stats_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool prepare stats is not implemented yet")

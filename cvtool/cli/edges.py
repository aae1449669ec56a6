"""`cvtool edges` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool edges --help")


def edges_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool edges is not implemented yet")

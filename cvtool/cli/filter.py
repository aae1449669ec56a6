"""`cvtool filter` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool filter --help")


def filter_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool filter is not implemented yet")

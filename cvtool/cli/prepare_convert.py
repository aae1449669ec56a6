"""`cvtool prepare convert` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool prepare convert --help")


def convert_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool prepare convert is not implemented yet")

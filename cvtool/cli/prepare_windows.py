"""`cvtool prepare windows` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool prepare windows --help")


def windows_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool prepare windows is not implemented yet")

"""`cvtool prepare detection` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool prepare detection --help")


def detection_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool prepare detection is not implemented yet")

"""`cvtool hog` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool hog --help")


def hog_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool hog is not implemented yet")

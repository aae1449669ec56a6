"""`cvtool detect` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool detect --help")


def detect_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool detect is not implemented yet")

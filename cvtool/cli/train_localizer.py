"""`cvtool train localizer` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool train localizer --help")


def train_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool train localizer is not implemented yet")

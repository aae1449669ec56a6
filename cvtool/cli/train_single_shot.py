"""`cvtool train single-shot` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool train single-shot --help")


def train_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool train single-shot is not implemented yet")

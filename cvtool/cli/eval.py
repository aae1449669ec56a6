"""`cvtool eval` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool eval --help")


def eval_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool eval is not implemented yet")

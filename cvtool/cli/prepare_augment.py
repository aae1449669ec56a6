"""`cvtool prepare augment` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool prepare augment --help")


def augment_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool prepare augment is not implemented yet")

"""`cvtool prepare localization` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool prepare localization --help")


def localization_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool prepare localization is not implemented yet")

"""`cvtool selective-search` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool selective-search --help")


def selective_search_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool selective-search is not implemented yet")

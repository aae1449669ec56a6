"""`cvtool train hog-svm` (not implemented yet)."""

from __future__ import annotations

import typer

from cvtool.cli.common import examples, usage_error

EPILOG = examples("cvtool train hog-svm --help")


def train_command() -> None:
    """Not implemented yet."""
    raise usage_error("cvtool train hog-svm is not implemented yet")

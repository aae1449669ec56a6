"""Exceptions that carry cvtool's exit-code convention.

* :class:`UsageError` -- the command line or a setting is wrong (exit 2).
* :class:`CvtoolError` / :class:`BadInputError` -- a runtime failure, such as an
  unreadable image or a malformed annotation file (exit 1).

Core functions raise these (or ``ValueError`` for bad arguments to pure array
functions); the CLI turns them into one-line messages on stderr.
"""

from __future__ import annotations


class CvtoolError(Exception):
    """A runtime failure: the CLI prints the message and exits with 1."""

    exit_code = 1


class BadInputError(CvtoolError):
    """An input file or record is unusable (corrupt, malformed, out of range)."""


class UsageError(CvtoolError):
    """A usage error (bad option value, no inputs): the CLI exits with 2."""

    exit_code = 2

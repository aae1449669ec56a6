"""Reading input files safely: regular files only, of bounded size.

``/dev/zero`` as an input would be read until the kernel kills the process, and
a FIFO would block forever waiting for a writer.  :func:`read_bounded_regular_file`
refuses both before reading: the path is checked with ``stat``, opened with
``O_NONBLOCK`` (so opening a FIFO cannot block), checked again with ``fstat`` on
the open descriptor (no race with a swapped file), and at most ``max_bytes + 1``
bytes are read (a file that grows while being read is refused too).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cvtool.errors import BadInputError

DEFAULT_MAX_FILE_BYTES = 2 * 1024 ** 3
"""Largest input file read (2 GiB), unless a caller passes another ``max_bytes``."""

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _check_regular(path: Path, st: os.stat_result, max_bytes: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise BadInputError(f"{path}: is {_kind(st.st_mode)}, expected a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise BadInputError(f"{path}: {st.st_size} bytes exceeds the input size limit of {max_bytes} bytes")


def read_bounded_regular_file(path: str | os.PathLike[str], max_bytes: int | None = DEFAULT_MAX_FILE_BYTES, *,
                              head: int | None = None) -> bytes:
    """Return the bytes of a regular file of at most ``max_bytes`` bytes.

    Parameters
    ----------
    path : path-like
        The file (symbolic links are followed).
    max_bytes : int or None
        Refuse larger files (``None``: no limit, still regular files only).
    head : int, optional
        Return only the first ``head`` bytes (the checks are the same).

    Returns
    -------
    bytes

    Raises
    ------
    BadInputError
        Missing, unreadable, not a regular file (folder, FIFO, device, socket),
        or larger than ``max_bytes``.  Messages name the path, never the contents.
    """
    path = Path(path)
    try:
        _check_regular(path, os.stat(path), max_bytes)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        _check_regular(path, st, max_bytes)
        chunks: list[bytes] = []
        total = 0
        limit = None if max_bytes is None else max_bytes + 1
        if head is not None:
            limit = head if limit is None else min(limit, head)
        want = min(st.st_size + 1, 1 << 30)  # usually the whole file in one read
        while limit is None or total < limit:
            if limit is not None:
                want = min(want, limit - total)
            chunk = os.read(fd, want)
            want = 1 << 24
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise BadInputError(f"{path}: grew past the input size limit of {max_bytes} bytes while being read")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)

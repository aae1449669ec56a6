"""One training run per run folder: a lock file holding the owner's PID.

``train`` commands write several files into their ``--out`` folder over many
minutes (weights, metrics, the manifest, R-CNN's proposal cache).  Two runs
pointed at the same folder would interleave those writes and one run would
silently vanish, so a run first creates ``RUN/.cvtool-run.lock``
and holds an ``flock`` on it, with its PID and host written inside.  A second
run is refused with the holder's PID; the kernel drops the lock of a process
that ends in any way (SIGKILL included), so a dead run's lock is taken over.

The lock is re-entrant within a process (the CLI takes it before checking the
folder, :func:`cvtool.runner.loop.fit` takes it again) and is removed when the
outermost holder lets go.  Importing this module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from cvtool.errors import UsageError
from cvtool.io.atomic import write_error

LOCK_NAME = ".cvtool-run.lock"

_held: dict[str, int] = {}  # resolved lock path -> nesting depth in this process


def read_lock(folder: str | os.PathLike[str]) -> dict | None:
    """The lock record of ``folder`` (``pid``, ``host``, ``command``), or None when unlocked/unreadable."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _acquire(path: Path, command: str) -> int | None:
    """An fd holding ``path``'s exclusive lock, or None when another process holds it."""
    import fcntl

    for _attempt in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never through a planted link
        except OSError as exc:  # read-only or full disk: one line naming the lock file
            raise write_error(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder before us may have unlinked the file we opened: lock the current one
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command}).encode()
            try:
                os.ftruncate(fd, 0)
                written = os.write(fd, record)
                if written != len(record):
                    raise OSError(errno.ENOSPC, "short write")
            except OSError as exc:
                os.close(fd)
                raise write_error(path, exc) from None
            return fd
        os.close(fd)
    raise UsageError(f"{path.parent}: could not take the run lock {path}; try again")  # pragma: no cover


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike[str], *, command: str = "train") -> Iterator[Path]:
    """Hold ``folder``'s run lock for the block (the folder is created if needed).

    The lock is an ``flock`` on ``folder/.cvtool-run.lock``, which the kernel
    releases when its process ends however it ends, so the lock of a killed run
    is taken over without any guessing from PIDs.

    Parameters
    ----------
    folder : path-like
        The run folder (``--out`` or ``--resume``).
    command : str
        Recorded in the lock for the refusal message of a second run.

    Raises
    ------
    UsageError
        Another process holds the lock (exit 2: the command line names a
        folder that is in use, like an output that exists without ``--overwrite``;
        the same command later, or with another ``--out``, succeeds).
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = str(path.resolve())
    if _held.get(key):
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    fd = _acquire(path, command)
    if fd is None:
        rec = read_lock(folder) or {}
        raise UsageError(f"{folder} is in use by another run (PID {rec.get('pid', '?')}, "
                         f"{rec.get('command', 'cvtool')}); wait for it to finish or choose another --out")
    _held[key] = 1
    try:
        yield path
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked, so a waiting process re-checks the inode
        os.close(fd)
        if created:  # a folder this run made and left empty (e.g. refused settings) goes again
            with contextlib.suppress(OSError):
                folder.rmdir()

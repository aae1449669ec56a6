"""Atomic file writes: a temp file in the destination folder, then a rename.

A job killed at any moment leaves either the old file, the complete new file or
nothing under the final name -- never a half-written file.  Temporary files are
named ``.NAME.cvtool-tmp-PID-RANDOM`` so they can be found and removed.

When ``overwrite`` is false the final step is ``os.link`` (which fails if the
name exists) instead of ``os.replace``, so two processes writing into the same
folder can never clobber each other's file: the second gets
:class:`FileExistsError`.

A failing write (full disk, file-size limit, quota, permissions) raises
:class:`WriteError`, an :class:`OSError` whose message is one line naming the
final file; the temp file is removed first.

Writes can be stopped from outside (:func:`stop_writes`): an interrupted folder
job, or a worker whose parent died, deletes the temp files its threads have
open and forbids new ones, so that no file appears after the job has ended.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_MARKER = ".cvtool-tmp-"

_HINTS = {
    errno.EFBIG: " (the file-size limit, ulimit -f)",
    errno.ENOSPC: " (disk full)",
}
if hasattr(errno, "EDQUOT"):
    _HINTS[errno.EDQUOT] = " (disk quota)"


class WriteError(OSError):
    """Writing a file failed; ``str()`` is one line naming the final file.

    Keeps the ``errno`` of the failure (``ENOSPC``, ``EFBIG``, ``EDQUOT``,
    ``EACCES``, ...) and the final path as ``filename`` (never the temp name).
    """

    def __str__(self) -> str:
        reason = self.strerror or "write failed"
        return f"cannot write {self.filename}: {reason}{_HINTS.get(self.errno, '')}"


class WritesStopped(BaseException):
    """Raised in a thread whose writes were stopped (:func:`stop_writes`).

    A ``BaseException`` so that ``except Exception`` in per-file error handling
    cannot turn it into an ordinary failure and carry on writing.
    """


def write_error(path: str | os.PathLike[str], exc: OSError) -> OSError:
    """Return ``exc`` as a :class:`WriteError` naming ``path`` (unchanged if it already is one).

    For writers outside :func:`atomic_open` (e.g. a ``torch.save`` or a zip
    stream on a temp file): ``raise write_error(final_path, exc) from None``.
    cvtool's own :class:`FileExistsError` (no errno; it carries the
    ``--overwrite`` advice) is returned unchanged.
    """
    if isinstance(exc, WriteError) or (isinstance(exc, FileExistsError) and exc.errno is None):
        return exc
    return WriteError(exc.errno, exc.strerror or str(exc) or type(exc).__name__, os.fspath(path))


def relocate_write_error(exc: OSError, tmp_dir: str | os.PathLike[str],
                         final_dir: str | os.PathLike[str]) -> OSError:
    """``exc`` renamed from a file inside the temp folder ``tmp_dir`` to its place in ``final_dir``.

    For writers that fill a temp folder and rename it at the end: the user
    should read the name the file would have had.  Other errors return unchanged.
    """
    tmp, name = os.fspath(tmp_dir), exc.filename
    if isinstance(name, str) and (name == tmp or name.startswith(tmp + os.sep)):
        return WriteError(exc.errno, exc.strerror, os.fspath(final_dir) + name[len(tmp):])
    return exc


@contextlib.contextmanager
def naming_write_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn any ``OSError`` raised in the block into a :class:`WriteError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) from None


class _NamedRawFile(io.FileIO):
    """A raw file whose write errors name the final file rather than the temp file."""

    final_path = ""

    def write(self, data):  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as exc:
            raise write_error(self.final_path, exc) from None


# Temp files being written by this process, with the writing thread, and the
# threads (or all of them: None) whose writes have been stopped.
_registry_lock = threading.Lock()
_open_temps: dict[Path, threading.Thread] = {}
_stopped: set[threading.Thread | None] = set()


def _check_not_stopped(thread: threading.Thread) -> None:
    if thread in _stopped or None in _stopped:
        raise WritesStopped("writes stopped: the job was interrupted")


def stop_writes(thread: threading.Thread | None = None) -> list[Path]:
    """Stop the atomic writes of one thread (or of every thread: ``None``).

    Deletes the temp files those threads have open and makes their later
    :func:`atomic_open` calls (and commits of files being written) raise
    :class:`WritesStopped`, so nothing appears under a final name afterwards.
    Used when a folder job is interrupted while a worker thread is stuck in a
    long computation, and by worker processes whose parent died.  Returns the
    deleted temp paths.
    """
    removed = []
    with _registry_lock:
        _stopped.add(thread)
        for tmp, writer in list(_open_temps.items()):
            if thread is None or writer is thread:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                    removed.append(tmp)
                del _open_temps[tmp]
    return removed


def temp_path_for(path: Path) -> Path:
    """Return a unique temporary path beside ``path`` (same folder, hidden name)."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} exists; pass --overwrite to replace it or --skip-existing to keep it")


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:
        # File systems without hard links: fall back to a checked rename.
        if path.exists():
            raise _exists_error(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, overwrite: bool = False,
                encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file that becomes ``path`` when the block exits cleanly.

    Parameters
    ----------
    path : path-like
        Final file name.  Its parent folders are created.
    mode : {'wb', 'w'}
        Binary or text mode.
    overwrite : bool
        Replace an existing file.  When false an existing file raises
        :class:`FileExistsError` (checked again at commit time, race-free).
    encoding : str, optional
        Text encoding for ``mode='w'`` (default UTF-8).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    WriteError
        An ``OSError``: creating, writing or renaming the file failed (full
        disk, file-size limit, quota, permissions).  The message names
        ``path``; the temp file is removed and nothing appears under ``path``.
        Errors raised by the caller's own code inside the block pass unchanged.
    WritesStopped
        :func:`stop_writes` was called for this thread.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    if not overwrite and path.exists():
        raise _exists_error(path)
    me = threading.current_thread()
    tmp = temp_path_for(path)
    fh: IO | None = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Registered and created under the lock: stop_writes() either deletes it or forbids it.
            with _registry_lock:
                if _stopped:
                    _check_not_stopped(me)
                _open_temps[tmp] = me
                raw = _NamedRawFile(tmp, "x")  # O_EXCL: never through a planted link
        except OSError as exc:
            raise write_error(path, exc) from None
        raw.final_path = os.fspath(path)
        fh = io.BufferedWriter(raw)
        if mode == "w":
            fh = io.TextIOWrapper(fh, encoding=encoding or "utf-8", newline="\n")
        yield fh
        fh.close()  # flushes: a full disk often surfaces here
        with _registry_lock:
            if _stopped:
                _check_not_stopped(me)
            try:
                _commit(tmp, path, overwrite)
            except OSError as exc:
                raise write_error(path, exc) from None
            del _open_temps[tmp]
    except BaseException:
        if fh is not None:
            with contextlib.suppress(Exception):
                fh.close()
        with _registry_lock:
            if _open_temps.pop(tmp, None) is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", overwrite=overwrite) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files under ``folder`` left by writers that no longer run.

    A temp file's name carries its writer's PID; files of live processes (a
    concurrent cvtool writing into the same folder) are left alone.  Returns
    the removed paths.
    """
    removed = []
    for p in leftover_temp_files(folder):
        try:
            pid = int(p.name.split(TMP_MARKER, 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def leftover_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """List temporary files left under ``folder`` by killed writers (recursive)."""
    return sorted(p for p in Path(folder).rglob(f"*{TMP_MARKER}*") if p.is_file())

"""Atomic file writes: a temp file in the destination folder, then a rename.

A job killed at any moment leaves either the old file, the complete new file or
nothing under the final name -- never a half-written file.  Temporary files are
named ``.NAME.cvtool-tmp-PID-RANDOM`` so they can be found and removed.

When ``overwrite`` is false the final step is ``os.link`` (which fails if the
name exists) instead of ``os.replace``, so two processes writing into the same
folder can never clobber each other's file: the second gets
:class:`FileExistsError`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_MARKER = ".cvtool-tmp-"


def temp_path_for(path: Path) -> Path:
    """Return a unique temporary path beside ``path`` (same folder, hidden name)."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists; pass --overwrite to replace it or --skip-existing to keep it"
        ) from None
    except OSError:
        # File systems without hard links: fall back to a checked rename.
        if path.exists():
            raise FileExistsError(
                f"{path} exists; pass --overwrite to replace it or --skip-existing to keep it"
            ) from None
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
    OSError
        The write failed (full disk, file-size limit); the temp file is removed
        and nothing appears under ``path``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(
            f"{path} exists; pass --overwrite to replace it or --skip-existing to keep it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    kwargs = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": "\n"}
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        _commit(tmp, path, overwrite)
    except BaseException:
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

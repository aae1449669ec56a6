"""Expand command-line inputs into a sorted, de-duplicated list of image files.

An input may be

* a file (taken whatever its extension: the user named it),
* a folder (its images; ``recursive=True`` descends into sub-folders),
* a quoted glob such as ``'photos/**/*.jpg'`` (expanded here, not by the shell),
* ``@list.txt``: a text file with one input per line (``#`` comments allowed),
* ``-``: inputs read from standard input, one per line.

Each result keeps the path relative to the input it came from, so outputs can
mirror the input tree under ``--out``.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from cvtool.errors import UsageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
"""File extensions (lower case) taken from folders and globs."""

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True, order=True)
class InputFile:
    """One input image.

    Attributes
    ----------
    path : Path
        The file as given or found (not resolved, so messages show what the user typed).
    rel : PurePosixPath
        Path relative to the folder or glob base it came from; for a file named
        directly, just its name.  Outputs mirror this under ``--out``.
    """

    rel: PurePosixPath
    path: Path


def _is_image(p: Path, extensions: frozenset[str]) -> bool:
    return p.suffix.lower() in extensions and not p.name.startswith(".")


def _from_folder(folder: Path, recursive: bool, extensions: frozenset[str]) -> list[InputFile]:
    found: list[InputFile] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                p = Path(dirpath) / name
                if _is_image(p, extensions):
                    found.append(InputFile(PurePosixPath(p.relative_to(folder).as_posix()), p))
    else:
        for p in folder.iterdir():
            if p.is_file() and _is_image(p, extensions):
                found.append(InputFile(PurePosixPath(p.name), p))
    return found


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _read_list(fh: TextIO) -> list[str]:
    out = []
    for line in fh:
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def expand_inputs(
    specs: Sequence[str],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    stdin: TextIO | None = None,
) -> list[InputFile]:
    """Expand inputs into image files, sorted by relative path, without duplicates.

    Parameters
    ----------
    specs : sequence of str
        Files, folders, globs, ``@list.txt`` files or ``-`` (see module docstring).
    recursive : bool
        Descend into sub-folders of folder inputs.  Globs use ``**`` for that.
    extensions : iterable of str
        Extensions taken from folders and globs (lower case, with the dot).
    stdin : text stream, optional
        Where ``-`` reads from (default ``sys.stdin``).

    Returns
    -------
    list of InputFile
        Sorted by ``rel`` then ``path``; a file reached twice is kept once.

    Raises
    ------
    UsageError
        A path does not exist, a list file cannot be read, a glob matches
        nothing, or nothing at all was found.
    """
    exts = frozenset(e.lower() for e in extensions)
    pending = list(specs)
    results: list[InputFile] = []
    seen_lists: set[str] = set()
    while pending:
        spec = pending.pop(0)
        if spec == "-":
            pending[0:0] = _read_list(stdin or sys.stdin)
            continue
        if spec.startswith("@") and len(spec) > 1:
            list_path = Path(spec[1:])
            key = str(list_path.resolve())
            if key in seen_lists:
                continue
            seen_lists.add(key)
            try:
                with open(list_path, encoding="utf-8") as fh:
                    entries = _read_list(fh)
            except OSError as exc:
                raise UsageError(f"cannot read input list {list_path}: {exc.strerror}") from None
            # Relative entries are relative to the list file's folder.
            pending[0:0] = [e if os.path.isabs(e) or e == "-" else str(list_path.parent / e) for e in entries]
            continue
        p = Path(spec)
        if p.is_dir():
            results.extend(_from_folder(p, recursive, exts))
        elif p.is_file() or p.exists():
            results.append(InputFile(PurePosixPath(p.name), p))
        elif _GLOB_CHARS & set(spec):
            base = _glob_base(spec)
            matches = [Path(m) for m in glob.glob(spec, recursive=True)]
            matches = [m for m in matches if m.is_file() and _is_image(m, exts)]
            if not matches:
                raise UsageError(f"no image matches the pattern {spec!r}")
            for m in matches:
                try:
                    rel = m.relative_to(base).as_posix()
                except ValueError:
                    rel = m.name
                results.append(InputFile(PurePosixPath(rel), m))
        else:
            raise UsageError(f"no such file or folder: {spec}")
    unique: dict[str, InputFile] = {}
    for item in sorted(results):
        key = os.path.realpath(item.path)
        unique.setdefault(key, item)
    files = sorted(unique.values())
    if not files:
        where = ", ".join(specs) if specs else "(no inputs given)"
        raise UsageError(f"no images found in {where} (extensions: {', '.join(sorted(exts))})")
    return files

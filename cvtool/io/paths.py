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

import fnmatch
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from cvtool.errors import BadInputError, UsageError

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


@dataclass(frozen=True)
class InputProblem:
    """A folder that could not be listed or an entry that cannot be an input.

    Attributes
    ----------
    path : Path
        The folder or entry, as found.
    reason : str
        Why it was skipped (no file contents, one line).
    """

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _is_image(p: Path, extensions: frozenset[str]) -> bool:
    return p.suffix.lower() in extensions and not p.name.startswith(".")


def _scandir(folder: Path, problems: list[InputProblem]) -> list[os.DirEntry]:
    """Entries of ``folder``, or none with a problem recorded when it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as exc:
        problems.append(InputProblem(folder, f"cannot list folder ({exc.strerror or exc})"))
        return []


def _entry_problem(entry: os.DirEntry) -> str | None:
    """Why an image-named folder entry cannot be read, or None for a regular file."""
    try:
        if entry.is_symlink():
            try:
                os.stat(entry.path)
            except OSError as exc:
                return f"broken symbolic link ({exc.strerror or exc})"
        if entry.is_file():
            return None
        if entry.is_dir():
            return ""  # a folder named like an image: not an input, not a problem
        mode = entry.stat().st_mode
    except OSError as exc:
        return f"cannot stat ({exc.strerror or exc})"
    import stat

    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"is {kind}, not an image file"


def _broken_folder_link(entry: os.DirEntry) -> str | None:
    """Why a folder entry that ``--recursive`` would walk cannot be, or None.

    A broken symbolic link (its target gone, e.g. an unmounted disk, or a link
    to itself) whose name, or its target's name, has no suffix may well have
    been a folder of images: report it rather than leave it out without a
    word.  A broken ``notes.txt`` stays a non-image, ignored like any other.
    """
    try:
        if not entry.is_symlink():
            return None
        os.stat(entry.path)
        return None  # resolves: a file or folder, handled by the caller
    except OSError as exc:
        why = f"broken symbolic link ({exc.strerror or exc})"
    try:
        target = os.readlink(entry.path)
    except OSError:
        target = ""
    if not os.path.splitext(entry.name)[1] or not os.path.splitext(os.path.basename(target.rstrip("/\\")))[1]:
        return why + "; not walked"
    return None


def _from_folder(folder: Path, recursive: bool, extensions: frozenset[str],
                 problems: list[InputProblem]) -> list[InputFile]:
    found: list[InputFile] = []
    pending = [folder]
    walked = {os.path.realpath(folder)}
    while pending:
        current = pending.pop()
        subdirs = []
        for entry in _scandir(current, problems):
            p = Path(entry.path)
            if entry.name.startswith("."):
                continue
            if recursive:
                try:
                    is_dir = entry.is_dir()  # a linked sub-folder (data on another disk) is walked, as ** does
                except OSError:
                    is_dir = False
                if is_dir:
                    real = os.path.realpath(p)
                    if real not in walked:  # each real folder once: a link back to an ancestor ends
                        walked.add(real)
                        subdirs.append(p)
                    continue
                if not _is_image(p, extensions):
                    why = _broken_folder_link(entry)  # a linked folder whose target is gone
                    if why:
                        problems.append(InputProblem(p, why))
                    continue
            if not _is_image(p, extensions):
                continue
            why = _entry_problem(entry)
            if why is None:
                found.append(InputFile(PurePosixPath(p.relative_to(folder).as_posix()), p))
            elif why:
                problems.append(InputProblem(p, why))
        pending.extend(sorted(subdirs, reverse=True))
    return found


def _glob(pattern: str, problems: list[InputProblem]) -> list[Path]:
    """Expand a glob like :func:`glob.glob` with ``recursive=True`` (``**`` spans folders,
    ``*`` skips hidden names), but record folders that cannot be listed."""
    parts = Path(pattern).parts
    k = 0
    while k < len(parts) and not (_GLOB_CHARS & set(parts[k])):
        k += 1
    base = Path(*parts[:k]) if k else Path(".")
    out: list[Path] = []
    found: list[InputProblem] = []  # "**" may list a folder twice: reported once below

    def walk(folder: Path, rest: tuple[str, ...], shown: Path | None, ancestors: frozenset = frozenset()) -> None:
        part, tail = rest[0], rest[1:]
        join = (lambda name: shown / name) if shown is not None else (lambda name: Path(name))
        if part == "**":
            if tail:
                walk(folder, tail, shown)  # "**" matching no folder at all
            for entry in _scandir(folder, found):
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()  # symbolic links to folders followed, as glob.glob does
                    key = (entry.stat().st_dev, entry.stat().st_ino) if is_dir else None
                except OSError:
                    is_dir = False
                if is_dir and key not in ancestors:  # a link back to an ancestor: no endless loop
                    walk(Path(entry.path), rest, join(entry.name), ancestors | {key})
                elif not tail:
                    out.append(join(entry.name))
            return
        if _GLOB_CHARS & set(part):
            names = [e.name for e in _scandir(folder, found)
                     if not (e.name.startswith(".") and not part.startswith("."))
                     and fnmatch.fnmatchcase(e.name, part)]
        else:
            names = [part] if os.path.lexists(folder / part) else []
        for name in names:
            if tail:
                if (folder / name).is_dir():
                    walk(folder / name, tail, join(name))
            else:
                out.append(join(name))

    if k == len(parts):
        return [base] if os.path.lexists(base) else []
    walk(base, parts[k:], base if k else None)
    seen: set[Path] = set()
    for problem in found:
        if problem.path not in seen:
            seen.add(problem.path)
            problems.append(problem)
    return out


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


MAX_LIST_LINE = 65_536
"""Longest line of an ``@list.txt`` file or of standard input (a path is at most 4096 bytes)."""
MAX_LIST_CHARS = 256 * 1024 ** 2
"""Most characters read from one list (several million paths)."""


def _read_list(fh: TextIO, where: str) -> list[str]:
    """Non-empty, non-comment lines; bounded, so ``@/dev/zero`` or a binary file fails fast."""
    out = []
    total = 0
    n = 0
    try:
        while True:
            line = fh.readline(MAX_LIST_LINE + 1)
            if not line:
                break
            n += 1
            total += len(line)
            if len(line) > MAX_LIST_LINE:
                raise UsageError(f"{where}: line {n} is longer than {MAX_LIST_LINE} characters (not a list of paths?)")
            if total > MAX_LIST_CHARS:
                raise UsageError(f"{where}: more than {MAX_LIST_CHARS} characters (not a list of paths?)")
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: not UTF-8 text (invalid byte at position {exc.start} of line {n + 1})") from None
    return out


def expand_inputs(
    specs: Sequence[str],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    stdin: TextIO | None = None,
    problems: list[InputProblem] | None = None,
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
    problems : list, optional
        Folders that cannot be listed (permissions, I/O errors), image-named
        entries that cannot be inputs (broken symbolic links, FIFOs, devices)
        and, with ``recursive``, broken symbolic links that may have been
        folders (no suffix on the link or its target, see
        :func:`_broken_folder_link`) are
        appended here as :class:`InputProblem` and expansion goes on; the caller
        reports them and counts them as failures.  Without a list the first
        problem raises :class:`~cvtool.errors.BadInputError`: nothing is skipped
        silently.

    Returns
    -------
    list of InputFile
        Sorted by ``rel`` then ``path``; a file reached twice is kept once.

    Raises
    ------
    UsageError
        A path does not exist, a list file cannot be read, a glob matches
        nothing, or nothing at all was found.
    BadInputError
        A folder cannot be listed or an entry cannot be read, and ``problems``
        is None; or nothing was found and there were problems.
    """
    found_problems: list[InputProblem] = [] if problems is None else problems
    n_before = len(found_problems)
    exts = frozenset(e.lower() for e in extensions)
    pending = list(specs)
    results: list[InputFile] = []
    seen_lists: set[str] = set()
    while pending:
        spec = pending.pop(0)
        if spec == "-":
            pending[0:0] = _read_list(stdin or sys.stdin, "standard input")
            continue
        if spec.startswith("@") and len(spec) > 1:
            list_path = Path(spec[1:])
            key = str(list_path.resolve())
            if key in seen_lists:
                continue
            seen_lists.add(key)
            try:
                with open(list_path, encoding="utf-8") as fh:
                    entries = _read_list(fh, f"input list {list_path}")
            except OSError as exc:
                raise UsageError(f"cannot read input list {list_path}: {exc.strerror}") from None
            # Relative entries are relative to the list file's folder.
            pending[0:0] = [e if os.path.isabs(e) or e == "-" else str(list_path.parent / e) for e in entries]
            continue
        p = Path(spec)
        if p.is_dir():
            results.extend(_from_folder(p, recursive, exts, found_problems))
        elif p.is_file() or p.exists():
            results.append(InputFile(PurePosixPath(p.name), p))
        elif _GLOB_CHARS & set(spec):
            base = _glob_base(spec)
            matches = []
            for m in _glob(spec, found_problems):
                if not _is_image(m, exts):
                    continue
                if m.is_file():
                    matches.append(m)
                elif not m.is_dir():
                    why = "broken symbolic link" if m.is_symlink() and not m.exists() else "not a regular file"
                    found_problems.append(InputProblem(m, why))
            if not matches and len(found_problems) == n_before:
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
    new_problems = found_problems[n_before:]
    if new_problems and (problems is None or not files):
        more = f" (and {len(new_problems) - 1} more)" if len(new_problems) > 1 else ""
        raise BadInputError(f"{new_problems[0]}{more}")
    if not files:
        where = ", ".join(specs) if specs else "(no inputs given)"
        raise UsageError(f"no images found in {where} (extensions: {', '.join(sorted(exts))})")
    return files

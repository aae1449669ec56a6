"""Special files as inputs and folders that cannot be listed (#12, #13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtool.errors import BadInputError
from cvtool.io.files import DEFAULT_MAX_FILE_BYTES
from cvtool.io.images import read_image
from cvtool.io.paths import InputProblem, expand_inputs

CVTOOL = str(Path(sys.executable).parent / "cvtool")


def _png(path: Path, value: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((6, 9), value, np.uint8))
    return path


def _limited(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run with 2 GiB of address space and a timeout.

    Everything that reads a special file runs through here: a regression must fail
    the test, not exhaust the machine's memory (/dev/zero) or hang it (a FIFO)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                          env={**os.environ, "NO_COLOR": "1"})


def _read_in_child(path: Path | str, cwd: Path) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom cvtool.errors import BadInputError\nfrom cvtool.io.images import read_image\n"
            "try:\n    read_image(sys.argv[1])\nexcept BadInputError as exc:\n    print(exc); sys.exit(1)\n")
    return _limited([sys.executable, "-c", code, str(path)], cwd)


# ------------------------------------------------------------------ special files


def test_dev_zero_refused_before_reading(tmp_path):
    res = _read_in_child("/dev/zero", tmp_path)
    assert (res.returncode, res.stdout.strip()) == (1, "/dev/zero: is a character device, expected a regular file")
    res = _limited([CVTOOL, "filter", "/dev/zero", "--out", "o", "gray", "-j", "1"], tmp_path)
    assert res.returncode == 1
    assert "/dev/zero: is a character device" in res.stderr and "Traceback" not in res.stderr


def test_fifo_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    res = _read_in_child(fifo, tmp_path)  # the old reader blocked forever in open()
    assert (res.returncode, res.stdout.strip()) == (1, f"{fifo}: is a FIFO (named pipe), expected a regular file")
    res = _limited([CVTOOL, "filter", str(fifo), "--out", "o", "gray", "-j", "1"], tmp_path, timeout=60)
    assert res.returncode == 1
    assert "pipe.png: is a FIFO (named pipe), expected a regular file" in res.stderr


def test_folder_as_file_and_size_limit(tmp_path):
    with pytest.raises(BadInputError, match="is a folder"):
        read_image(tmp_path)
    p = _png(tmp_path / "a.png")
    size = p.stat().st_size
    assert read_image(p, max_bytes=size).shape == (6, 9)
    with pytest.raises(BadInputError, match=f"{size} bytes exceeds the input size limit of {size - 1} bytes"):
        read_image(p, max_bytes=size - 1)
    # the default limit is 2 GiB, checked from fstat: a sparse 2 GiB + 1 file is refused unread
    sparse = tmp_path / "huge.png"
    with open(sparse, "wb") as fh:
        fh.truncate(DEFAULT_MAX_FILE_BYTES + 1)
    res = _read_in_child(sparse, tmp_path)
    assert (res.returncode, res.stdout.strip()) == (
        1, f"{sparse}: {DEFAULT_MAX_FILE_BYTES + 1} bytes exceeds the input size limit of 2147483648 bytes")


def test_errors_never_echo_file_contents(tmp_path):
    secret = tmp_path / "notes.png"
    secret.write_bytes(b"P5\nSECRET-TOKEN-123 hunter2\n" + b"x" * 100)
    with pytest.raises(BadInputError) as exc:
        read_image(secret)
    assert "SECRET" not in str(exc.value) and "hunter2" not in str(exc.value)


# -------------------------------------------------------- unreadable folders


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "in"
    _png(root / "a.png")
    _png(root / "ok" / "b.png")
    _png(root / "locked" / "c.png")
    return root


@pytest.fixture()
def locked_scandir(monkeypatch, tree):
    """Make ``in/locked`` unlistable (root ignores permission bits, so fake it)."""
    real = os.scandir
    locked = os.path.realpath(tree / "locked")

    def fake(path="."):
        if os.path.realpath(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", fake)
    return tree / "locked"


def test_unreadable_subfolder_is_reported(tree, locked_scandir):
    problems: list[InputProblem] = []
    files = expand_inputs([str(tree)], recursive=True, problems=problems)
    assert [str(f.rel) for f in files] == ["a.png", "ok/b.png"]
    assert [(p.path, p.reason) for p in problems] == [(locked_scandir, "cannot list folder (Permission denied)")]
    with pytest.raises(BadInputError, match="locked: cannot list folder"):
        expand_inputs([str(tree)], recursive=True)
    problems = []
    files = expand_inputs([str(tree / "**" / "*.png")], problems=problems)
    assert sorted(str(f.rel) for f in files) == ["a.png", "ok/b.png"]
    assert [p.path for p in problems] == [locked_scandir]


def test_unreadable_subfolder_counts_as_failure_in_cli(tree, locked_scandir, tmp_path, cli):
    out = tmp_path / "out"
    res = cli(["filter", tree, "-r", "--out", out, "gray", "-j", "1", "--json"])
    assert res.exit_code == 1
    assert "locked: cannot list folder (Permission denied)" in res.output
    assert (out / "a.png").exists() and (out / "ok" / "b.png").exists()
    summary = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")][-1]
    assert summary["summary"] == {"total": 3, "ok": 2, "skipped": 0, "failed": 1}
    assert summary["failures"][0]["path"].endswith("locked")
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"] == summary["summary"]


def test_broken_links_and_fifos_in_folders_are_named(tmp_path):
    root = tmp_path / "in"
    _png(root / "a.png")
    (root / "sub").mkdir()
    os.symlink(root / "gone.png", root / "dangling.png")
    os.symlink(root / "gone.png", root / "sub" / "deep.png")
    os.mkfifo(root / "pipe.jpg")
    (root / "loop.png").symlink_to("loop.png")
    problems: list[InputProblem] = []
    files = expand_inputs([str(root)], recursive=True, problems=problems)
    assert [str(f.rel) for f in files] == ["a.png"]
    reasons = {p.path.name: p.reason for p in problems}
    assert reasons["dangling.png"].startswith("broken symbolic link")
    assert reasons["deep.png"].startswith("broken symbolic link")
    assert reasons["loop.png"].startswith("broken symbolic link")
    assert reasons["pipe.jpg"] == "is a FIFO, not an image file"
    # non-recursive: the top-level ones only
    problems = []
    expand_inputs([str(root)], problems=problems)
    assert sorted(p.path.name for p in problems) == ["dangling.png", "loop.png", "pipe.jpg"]
    res = _limited([CVTOOL, "filter", str(root), "--out", str(tmp_path / "out"), "gray", "-j", "1"], tmp_path)
    assert res.returncode == 1
    assert "dangling.png: broken symbolic link" in res.stderr and "pipe.jpg: is a FIFO" in res.stderr
    assert (tmp_path / "out" / "a.png").exists()


def test_only_problems_and_no_files_is_an_error(tmp_path, monkeypatch):
    root = tmp_path / "in"
    root.mkdir()
    real = os.scandir

    def fake(path="."):
        if os.path.realpath(path) == os.path.realpath(root):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", fake)
    with pytest.raises(BadInputError, match="in: cannot list folder"):
        expand_inputs([str(root)], problems=[])


def test_glob_matches_like_the_standard_library(tmp_path, monkeypatch):
    import glob

    for rel in ["a.png", "x/b.png", "x/y/c.PNG", "x/.hidden/d.png", ".e.png", "z/f.jpg"]:
        _png(tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    for pattern in ["*.png", "**/*.png", "x/**/*.png", "x/*/*.PNG", "*/b.png", str(tmp_path / "**" / "*.jpg")]:
        want = sorted(os.path.normpath(p) for p in glob.glob(pattern, recursive=True))
        got = sorted(os.path.normpath(str(f.path)) for f in expand_inputs([pattern], extensions=[".png", ".jpg"]))
        assert got == want, pattern


def test_list_files_are_bounded(tmp_path):
    # @/dev/zero used to read one endless line into memory; now it fails at the first long line
    res = _limited([sys.executable, "-c", "from cvtool.io.paths import expand_inputs; expand_inputs(['@/dev/zero'])"],
                   tmp_path)
    assert res.returncode == 1
    assert "input list /dev/zero: line 1 is longer than 65536 characters" in res.stderr
    binary = tmp_path / "list.txt"
    binary.write_bytes(b"a.png\n\xff\xfe\n")
    from cvtool.errors import UsageError

    with pytest.raises(UsageError, match="not UTF-8 text"):
        expand_inputs([f"@{binary}"])
    import io

    a = _png(tmp_path / "a.png")
    assert [f.path for f in expand_inputs(["-"], stdin=io.StringIO(f"# c\n{a}\n"))] == [a]


def test_glob_follows_linked_folders_without_looping(tmp_path, monkeypatch):
    import glob

    _png(tmp_path / "real" / "a.png")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")  # a cycle
    monkeypatch.chdir(tmp_path)
    got = {str(f.rel) for f in expand_inputs(["top/**/*.png"])}
    assert "linked/a.png" in got
    assert {os.path.realpath(p) for p in glob.glob("top/*/*.png")} == {os.path.realpath(tmp_path / "real" / "a.png")}


def test_recursive_folder_follows_linked_sub_folders_without_looping(tmp_path):
    """``--recursive`` walks a sub-folder that is a symbolic link (as ``**`` does) and
    stops at a link back to a folder already walked; before, the linked folder's images
    were left out without a word (exit 0)."""
    _png(tmp_path / "top" / "a.png")
    _png(tmp_path / "real" / "b.png")
    (tmp_path / "top" / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")   # a cycle
    (tmp_path / "real" / "up").symlink_to(tmp_path / "top")      # back to the root
    problems: list[InputProblem] = []
    got = sorted(str(f.rel) for f in expand_inputs([str(tmp_path / "top")], recursive=True, problems=problems))
    assert got == ["a.png", "linked/b.png"] and problems == []
    assert [str(f.rel) for f in expand_inputs([str(tmp_path / "top")])] == ["a.png"]  # not recursive


def test_recursive_reports_broken_folder_links(tmp_path):
    """Under ``--recursive`` a broken link that may have been a folder (no suffix on its name or
    its target: an unmounted disk) and a link to itself are reported and counted as failures;
    before, they were left out without a word (exit 0).  A broken ``notes.txt`` stays an ignored
    non-image (#12)."""
    root = tmp_path / "in"
    _png(root / "a.png")
    _png(root / "sub" / "b.png")
    (root / "disk").symlink_to(tmp_path / "unmounted" / "photos")   # target gone
    (root / "sub" / "self").symlink_to("self")                       # a link to itself
    (root / "old.v2").symlink_to(tmp_path / "gone")                  # target has no suffix: a folder?
    (root / "notes.txt").symlink_to(tmp_path / "gone.txt")           # a non-image file: ignored
    (root / "readme.md").write_text("x")
    problems: list[InputProblem] = []
    files = expand_inputs([str(root)], recursive=True, problems=problems)
    assert [str(f.rel) for f in files] == ["a.png", "sub/b.png"]
    reasons = {p.path.relative_to(root).as_posix(): p.reason for p in problems}
    assert sorted(reasons) == ["disk", "old.v2", "sub/self"]
    assert reasons["disk"].startswith("broken symbolic link (No such file or directory)")
    assert reasons["sub/self"].startswith("broken symbolic link (Too many levels of symbolic links)")
    with pytest.raises(BadInputError, match=r"in/(disk|old\.v2|sub/self): broken symbolic link .*\(and 2 more\)"):
        expand_inputs([str(root)], recursive=True)
    problems = []  # not recursive: folders are not walked, so nothing is lost
    assert [str(f.rel) for f in expand_inputs([str(root)], problems=problems)] == ["a.png"] and problems == []
    out = tmp_path / "out"
    res = _limited([CVTOOL, "filter", str(root), "-r", "--out", str(out), "gray", "-j", "1"], tmp_path)
    assert res.returncode == 1, res.stderr
    assert "in/disk: broken symbolic link" in res.stderr and "sub/self: broken symbolic link" in res.stderr
    assert "notes.txt" not in res.stderr + res.stdout
    assert (out / "a.png").exists() and (out / "sub" / "b.png").exists()

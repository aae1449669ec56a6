"""What users read: one-line usage errors (exit 2) and --help at 80 columns (#12, #13)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest


@pytest.fixture()
def photo(tmp_path):
    from skimage import data

    path = tmp_path / "in" / "coins.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), data.coins()[:64, :80])
    return path


def _one_error_line(res, *needles):
    lines = res.stderr.splitlines()
    assert res.exit_code == 2, (res.exit_code, res.stderr, res.stdout)
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in res.output and "Value error" not in lines[0]


# (command line after the inputs/out, text the line must name: the option and the bad value)
BAD_OPTIONS = [
    (["edges", "{img}", "--out", "{out}", "canny", "--ksize", "abc"], ["--ksize", "abc"]),
    (["edges", "{img}", "--out", "{out}", "canny", "--sigma", "nan"], ["--sigma", "nan"]),
    (["edges", "{img}", "--out", "{out}", "canny", "--low", "inf", "--high", "inf"], ["--low", "inf"]),
    (["edges", "{img}", "--out", "{out}", "canny", "--mode", "sideways"], ["--mode", "sideways", "magnitude"]),
    (["edges", "{img}", "--out", "{out}", "canny", "--spread", "2"], ["--spread", "2", "<= 1"]),
    (["edges", "{img}", "--out", "{out}", "canny", "--no-such-flag"], ["--no-such-flag"]),
    (["edges", "{img}", "--out", "{out}", "canny", "--jobs", "-1"], ["--jobs", "-1", ">= 0"]),
    (["filter", "{img}", "--out", "{out}", "gaussian", "--alpha", "maybe"], ["--alpha", "maybe", "keep"]),
    (["filter", "{img}", "--out", "{out}", "gaussian", "--max-pixels", "0"], ["--max-pixels", "0"]),
    (["filter", "{img}", "--out", "{out}", "gaussian", "--seed", "x1"], ["--seed", "x1"]),
    (["hog", "{img}", "--out", "{out}", "--bins", "1"], ["--bins", "1", ">= 2"]),
    (["hog", "{img}", "--out", "{out}", "--format", "csv"], ["--format", "csv", "npz"]),
    (["hog", "{img}"], ["--out"]),
    (["hog"], ["INPUTS"]),
    (["hog", "{img}", "--out"], ["--out"]),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "slow"], ["--mode", "slow"]),
    (["selective-search", "{img}", "--out", "{out}", "--sigma", "-inf"], ["--sigma", "-inf"]),
    (["prepare", "detection", "--out", "{out}", "--format", "csv"], ["--format", "csv"]),
    (["prepare", "localization", "--out", "{out}", "--noise", "inf"], ["--noise", "inf"]),
    (["prepare", "localization", "--out", "{out}", "--mnist", "{missing}"], ["--mnist", "missing"]),
    (["prepare", "stats", "{missing}"], ["DATASET", "missing"]),
    (["train", "single-shot", "--data", "{img}", "--epochs", "many"], ["--epochs", "many"]),
    (["detect", "{img}", "--model", "{missing}", "--out", "{out}"], ["--model", "missing"]),
    (["eval", "--gt", "{missing}", "--pred", "{img}"], ["--gt", "missing"]),
    (["no-such-command"], ["no-such-command"]),
]


@pytest.mark.parametrize("argv,needles", BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_option_is_one_error_line_exit_2(cli, photo, tmp_path, argv, needles):
    subs = {"{img}": str(photo), "{out}": str(tmp_path / "out"), "{missing}": str(tmp_path / "missing")}
    res = cli([subs.get(a, a) for a in argv])
    _one_error_line(res, *needles)


def test_help_still_works_and_no_args_prints_help(cli):
    res = cli(["edges", "--help"])
    assert res.exit_code == 0 and "Usage: cvtool edges" in res.stdout
    res = cli(["prepare"])
    assert res.exit_code == 2 and "Usage: cvtool prepare" in res.stdout


def test_console_script_prints_one_line(tmp_path, photo):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cvtool", "edges", str(photo), "--out", str(tmp_path / "o"),
                          "canny", "--ksize", "abc"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == "error: --ksize 'abc' is not an integer\n"


# ---------------------------------------------------------------------------
# --help at 80 columns
# ---------------------------------------------------------------------------


def _commands():
    import typer

    from cvtool.cli.app import app

    out = []

    def walk(cmd, path):
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + [name])

    walk(typer.main.get_command(app), [])
    return out


@pytest.mark.parametrize("path,cmd", _commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_help_readable_at_80_columns(cli, path, cmd):
    res = cli(path + ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "…" not in text
    assert "<bool>" not in text
    assert max(len(line) for line in text.splitlines()) <= 80, [ln for ln in text.splitlines() if len(ln) > 80]
    flat = "".join(text.split())  # wrapping may break after a hyphen: compare without white space
    for p in cmd.params:
        if p.param_type_name != "option" or p.hidden or p.name in ("install_completion", "show_completion",
                                                                     "help", "version"):
            continue
        for opt in p.opts + p.secondary_opts:  # every option name printed whole
            assert re.search(rf"(^|[\s,/]){re.escape(opt)}($|[\s,])", text, re.M), (opt, text)
        default = p.default
        if default is not None and not p.is_flag and p.show_default is not False:
            # the option's own help entry carries "[default: ...]"
            record = p.get_help_record(res_ctx(cmd, path))
            assert record is not None and "[default:" in record[1], (p.name, record)
            assert "".join(record[1].split()) in flat, (p.name, record[1])


def res_ctx(cmd, path):
    from typer._click import Context

    return Context(cmd, info_name=" ".join(["cvtool", *path]))


def test_help_shows_brackets_in_help_text_literally(cli):
    res = cli(["prepare", "localization", "--help"], env={"COLUMNS": "80"})
    flat = " ".join(res.stdout.split())
    assert "[default: one per object]" in flat
    assert "train-images-idx3-ubyte[.gz]" in flat


# ---------------------------------------------------------------------------
# run.json records exactly the command's arguments
# ---------------------------------------------------------------------------


def _run_json(folder):
    import json

    return json.loads((folder / "run.json").read_text())


def _expected_args(path):
    """The command's parameters with their defaults, as JSON values (enums by value, paths as strings)."""
    from enum import Enum
    from pathlib import Path

    cmd = next(c for p_, c in _commands() if p_ == path)
    out = {}
    for p in cmd.params:
        if p.name in ("help",):
            continue
        v = p.default
        if isinstance(v, Enum):
            v = v.value
        elif isinstance(v, Path):
            v = str(v)
        out[p.name] = v
    return out


def test_run_json_args_are_the_commands_parameters(cli, photo, tmp_path):
    out = tmp_path / "edges"
    res = cli(["edges", photo, "--out", out, "sobel", "--mode", "x", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    manifest = _run_json(out)
    expected = _expected_args(["edges"])
    expected.update({"args": [str(photo), "sobel"], "out": str(out), "mode": "x", "jobs": 1, "quiet": True})
    assert manifest["args"] == expected
    assert "0x" not in (out / "run.json").read_text()
    assert manifest["libraries"]["cv2"] == cv2.__version__
    assert manifest["parallel"] == {"backend": "loky", "workers": 1, "threads_per_worker": cv2.getNumThreads()}


def test_run_json_hog_no_imported_names_leak(cli, photo, tmp_path):
    out = tmp_path / "hog"
    res = cli(["hog", photo, "--out", out, "--quiet"])
    assert res.exit_code == 0, res.output
    text = (out / "run.json").read_text()
    manifest = _run_json(out)
    assert set(manifest["args"]) == set(_expected_args(["hog"]))
    assert manifest["args"]["block_norm"] == "L2-Hys" and manifest["args"]["inputs"] == [str(photo)]
    assert "0x" not in text and "now_iso" not in text and "<class" not in text


def test_run_json_records_opencv_when_workers_did_the_work(photo, tmp_path):
    """With process workers the main process never imports cv2 itself; run.json still names its version."""
    import json
    import subprocess
    import sys

    for i in range(3):
        cv2.imwrite(str(photo.parent / f"more{i}.png"), np.full((20, 30), 40 * i, np.uint8))
    out = tmp_path / "f"
    proc = subprocess.run([sys.executable, "-m", "cvtool", "filter", str(photo.parent), "--out", str(out),
                           "median:k=3", "--jobs", "2", "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["libraries"]["cv2"] == cv2.__version__
    assert manifest["parallel"]["workers"] == 2
    assert manifest["counts"]["ok"] == 4

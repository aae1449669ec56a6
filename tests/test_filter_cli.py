"""`cvtool filter` / `cvtool edges` from the command line: bad inputs, limits, overwrite rules, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtool.filters.parse import apply_pipeline, parse_pipeline
from cvtool.io.atomic import leftover_temp_files
from cvtool.io.images import read_image

GOOD = ("colour.jpg", "grey.png", "deep16.png", "rgba.png", "café_日本.png")
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture()
def mixed(tmp_path, real_color_bgr, real_gray):
    """A folder of good images of every kind and bad files of every kind."""
    src = tmp_path / "in"
    src.mkdir()
    small = real_color_bgr[::8, ::8]  # 64x64
    gray = real_gray[::8, ::8]
    cv2.imwrite(str(src / "colour.jpg"), small)
    cv2.imwrite(str(src / "grey.png"), gray)
    cv2.imwrite(str(src / "deep16.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(src / "rgba.png"), np.dstack([small, np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))]))
    (src / "café_日本.png").write_bytes(cv2.imencode(".png", small)[1].tobytes())
    bad = {"empty.png": "empty file", "truncated.jpg": "truncated JPEG", "text.png": "not a recognised image"}
    (src / "empty.png").write_bytes(b"")
    jpg = cv2.imencode(".jpg", small)[1].tobytes()
    (src / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "text.png").write_text("this is not an image\n", encoding="utf-8")
    if not RUNNING_AS_ROOT:  # root reads a mode-000 file, so the case only exists for other users
        locked = src / "locked.png"
        locked.write_bytes(cv2.imencode(".png", gray)[1].tobytes())
        locked.chmod(0)
        bad["locked.png"] = "cannot read"
    yield src, bad
    for p in src.iterdir():
        p.chmod(0o644)


def test_bad_inputs_are_named_and_good_ones_processed(cli, mixed, tmp_path):
    src, bad = mixed
    out = tmp_path / "out"
    ops = ["gaussian:sigma=1", "equalize"]
    res = cli(["filter", src, "--out", out, *ops, "--jobs", "1", "--quiet"])
    assert res.exit_code == 1
    for name, reason in bad.items():
        line = next((ln for ln in res.stderr.splitlines() if name in ln), "")
        assert reason in line, (name, res.stderr)
        assert not (out / name).exists()
    steps = parse_pipeline(ops)
    for name in GOOD:
        got = read_image(out / name)
        want = apply_pipeline(read_image(src / name), steps, key=name)
        if name.endswith(".jpg"):
            assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 3  # lossy re-encode
        else:
            np.testing.assert_array_equal(got, want)
    assert read_image(out / "deep16.png").dtype == np.uint16
    assert read_image(out / "rgba.png").shape[2] == 4
    assert leftover_temp_files(out) == []
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert manifest["command"] == "filter" and manifest["counts"]["ok"] == len(GOOD)
    assert manifest["counts"]["failed"] == len(bad) and manifest["args"]["args"][-len(ops):] == ops
    assert sorted(p.name for p in out.iterdir()) == sorted([*GOOD, "run.json"])


def test_pixel_limit(cli, mixed, tmp_path):
    src, _ = mixed
    res = cli(["filter", src / "grey.png", "--out", tmp_path / "a", "invert", "--max-pixels", "4000"])
    assert res.exit_code == 1 and "exceeds the limit of 4000" in res.stderr and "--max-pixels" in res.stderr
    assert not (tmp_path / "a" / "grey.png").exists()
    res = cli(["filter", src / "grey.png", "--out", tmp_path / "a", "invert", "--max-pixels", "4096"])
    assert res.exit_code == 0 and (tmp_path / "a" / "grey.png").exists()


def test_overwrite_and_skip_existing(cli, mixed, tmp_path):
    src, _ = mixed
    out = tmp_path / "o"
    args = ["filter", src / "grey.png", src / "colour.jpg", "--out", out, "invert", "-q"]
    assert cli(args).exit_code == 0
    first = (out / "grey.png").read_bytes()
    res = cli(args)
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    res = cli([*args, "--skip-existing", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout.splitlines()[-1])["summary"]["skipped"] == 2
    res = cli(["filter", src / "grey.png", "--out", out, "gaussian", "--overwrite", "-q"])
    assert res.exit_code == 0 and (out / "grey.png").read_bytes() != first


def test_json_is_jsonl_with_summary(cli, mixed, tmp_path):
    src, bad = mixed
    res = cli(["filter", src, "--out", tmp_path / "j", "median:k=3", "--json", "-j", "1"])
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert {r["rel"] for r in records[:-1]} == set(GOOD)
    assert all(r["status"] == "ok" and "out" in r and "dtype" in r for r in records[:-1])
    summary = records[-1]
    assert summary["summary"]["failed"] == len(bad) and len(summary["failures"]) == len(bad)


@pytest.mark.parametrize("argv, words", [
    (["gausian:sigma=1"], ["'gausian'", "gaussian"]),
    (["median:k=4"], ["k='4'", "odd"]),
    (["gaussian", "threshold:magic"], ["'magic'", "fixed, otsu, adaptive"]),
    ([], ["no operation"]),
    (["--alpha", "keep"], ["no operation"]),
])
def test_bad_operations_exit_2_before_any_work(cli, mixed, tmp_path, argv, words):
    src, _ = mixed
    out = tmp_path / "never"
    res = cli(["filter", src, "--out", out, *argv])
    assert res.exit_code == 2
    for w in words:
        assert w in res.stderr
    assert not out.exists()


def test_missing_input_that_looks_like_an_operation(cli, tmp_path):
    res = cli(["filter", "photos", "--out", tmp_path / "o", "gaussian"])
    assert res.exit_code == 2 and "'photos' is neither an existing file or folder nor an operation" in res.stderr
    res = cli(["filter", "nothere.png", "--out", tmp_path / "o", "gaussian"])
    assert res.exit_code == 2 and "nothere.png" in res.stderr


def test_nan_float_image_is_a_clear_failure(cli, tmp_path):
    src = tmp_path / "f.tif"
    img = np.full((8, 8), 0.5, np.float32)
    img[3, 3] = np.nan
    cv2.imwrite(str(src), img)
    res = cli(["filter", src, "--out", tmp_path / "o", "gaussian", "-q"])
    assert res.exit_code == 1 and "NaN" in res.stderr and "f.tif" in res.stderr
    res = cli(["edges", src, "--out", tmp_path / "e", "sobel", "-q"])
    assert res.exit_code == 1 and "NaN" in res.stderr


def test_list_and_help(cli):
    res = cli(["filter", "--list"])
    assert res.exit_code == 0 and "gaussian" in res.stdout and "sigma" in res.stdout and "clahe" in res.stdout
    assert "Examples" in cli(["filter", "--help"]).stdout
    assert "Examples" in cli(["edges", "--help"]).stdout


def test_noise_does_not_depend_on_jobs(cli, mixed, tmp_path):
    src, _ = mixed
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"n{jobs}"
        res = cli(["filter", src / "grey.png", src / "café_日本.png", src / "deep16.png", "--out", out,
                   "noise:gaussian:sigma=20", "noise:salt-pepper", "--seed", "5", "--jobs", jobs, "-q"])
        assert res.exit_code == 0
        outs.append({p.name: p.read_bytes() for p in out.iterdir() if p.name != "run.json"})
    assert outs[0] == outs[1] and len(outs[0]) == 3
    a = read_image(tmp_path / "n1" / "grey.png")
    assert not np.array_equal(a, read_image(src / "grey.png"))


def test_format_option(cli, mixed, tmp_path):
    src, _ = mixed
    res = cli(["filter", src / "colour.jpg", "--out", tmp_path / "f", "gray", "--format", "png", "-q"])
    assert res.exit_code == 0 and read_image(tmp_path / "f" / "colour.png").ndim == 2


def test_edges_cli(cli, mixed, tmp_path):
    src, bad = mixed
    out = tmp_path / "e"
    res = cli(["edges", src, "--out", out, "sobel", "-j", "1", "-q", "--json"])
    assert res.exit_code == 1
    names = {Path(n).stem for n in GOOD}
    assert {p.stem for p in out.glob("*.png")} == names  # every output is a .png
    for p in out.glob("*.png"):
        img = read_image(p)
        assert img.dtype == np.uint8 and img.ndim == 2
    res = cli(["edges", src / "deep16.png", "--out", tmp_path / "e16", "canny", "--depth", "16", "--low", "20",
               "--high", "60"])
    assert res.exit_code == 0 and read_image(tmp_path / "e16" / "deep16.png").dtype == np.uint16
    res = cli(["edges", src / "grey.png", "--out", tmp_path / "x", "sobelx"])
    assert res.exit_code == 2 and "'sobelx'" in res.stderr and "canny" in res.stderr
    res = cli(["edges", src / "grey.png", "--out", tmp_path / "x", "canny", "--low", "10"])
    assert res.exit_code == 2 and "--high" in res.stderr

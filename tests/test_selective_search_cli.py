"""`cvtool selective-search` from the command line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cvtool.proposals import selective_search


def _scene(seed: int, h: int = 80, w: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.clip(np.full((h, w, 3), 90.0) + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)
    for _ in range(3):
        x, y = rng.integers(0, w - 30), rng.integers(0, h - 25)
        img[y:y + rng.integers(10, 25), x:x + rng.integers(10, 30)] = rng.integers(0, 256, 3)
    return img


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _scene(1))
    cv2.imwrite(str(folder / "b.png"), _scene(2)[:, :, 0])          # grey
    return folder


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writes_ranked_records_and_manifest(cli, images, tmp_path):
    out = tmp_path / "out"
    res = cli(["selective-search", images, "--out", out, "--mode", "single", "--seed", "5", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    recs = _records(out / "proposals.jsonl")
    assert [r["file"] for r in recs] == ["a.png", "b.png"]
    assert (recs[0]["width"], recs[0]["height"]) == (100, 80)
    expected = selective_search(cv2.imread(str(images / "a.png")), mode="single", seed=5).boxes
    np.testing.assert_allclose(recs[0]["boxes"], expected)
    assert "grey image" in res.output                                   # stated on stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["command"] == "selective-search" and manifest["seed"] == 5
    assert manifest["counts"]["ok"] == 2


def test_same_seed_same_file(cli, images, tmp_path):
    args = ["selective-search", images / "a.png", "--mode", "fast", "--max", "50", "--jobs", "1"]
    assert cli(args + ["--out", tmp_path / "o1"]).exit_code == 0
    assert cli(args + ["--out", tmp_path / "o2"]).exit_code == 0
    assert cli(args + ["--out", tmp_path / "o3", "--seed", "9"]).exit_code == 0
    first = (tmp_path / "o1" / "proposals.jsonl").read_text()
    assert first == (tmp_path / "o2" / "proposals.jsonl").read_text()
    assert first != (tmp_path / "o3" / "proposals.jsonl").read_text()
    assert len(_records(tmp_path / "o1" / "proposals.jsonl")[0]["boxes"]) == 50


def test_overwrite_and_skip_existing(cli, images, tmp_path):
    out = tmp_path / "out"
    base = ["selective-search", "--out", out, "--mode", "single", "--jobs", "1"]
    assert cli(base + [images / "a.png"]).exit_code == 0
    res = cli(base + [images / "a.png"])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert cli(base + [images / "a.png", "--overwrite"]).exit_code == 0
    before = _records(out / "proposals.jsonl")
    res = cli(base + [images, "--skip-existing"])
    assert res.exit_code == 0, res.output
    after = _records(out / "proposals.jsonl")
    assert [r["file"] for r in after] == ["a.png", "b.png"] and after[0] == before[0]


def test_draw_and_segments(cli, images, tmp_path):
    out = tmp_path / "out"
    res = cli(["selective-search", images / "a.png", "--out", out, "--mode", "single", "--k", "80",
               "--draw", "3", "--segments", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    drawn = cv2.imread(str(out / "draw" / "a.png"))
    original = cv2.imread(str(images / "a.png"))
    assert drawn.shape == original.shape and (drawn != original).any()
    labels = cv2.imread(str(out / "segments" / "a.png" / "hsv_k80.png"), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16
    from cvtool.proposals.segmentation import felzenszwalb

    expected = felzenszwalb(cv2.cvtColor(original, cv2.COLOR_BGR2HSV), k=80, sigma=0.8)
    np.testing.assert_array_equal(labels, expected)
    assert cv2.imread(str(out / "segments" / "a.png" / "hsv_k80_colour.png")).shape == original.shape


def test_json_summary(cli, images, tmp_path):
    res = cli(["selective-search", images, "--out", tmp_path / "o", "--mode", "single", "--json",
               "--quiet", "--jobs", "1"])
    assert res.exit_code == 0
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0]["file"] == "a.png" and lines[0]["num_boxes"] > 0 and lines[0]["num_strategies"] == 1
    assert lines[-1]["summary"]["ok"] == 2


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "--k 0 is out of range: must be >= 0.001"),
    (["--sigma", "-1"], "--sigma -1 is out of range: must be >= 0"),
    (["--max", "0"], "--max 0 is out of range: must be >= 1"),
    (["--max-aspect", "0.5"], "--max-aspect 0.5 is out of range: must be >= 1"),
    (["--similarity", "xyz"], "similarity set 'xyz'"),
    (["--resize", "2"], "--resize 2 is out of range: must be >= 4"),
    (["--draw", "-1"], "--draw -1 is out of range: must be >= 0"),
    (["--workers", "0"], "--workers 0 is out of range: must be >= 1"),
])
def test_bad_parameters_exit_2(cli, images, tmp_path, args, message):
    res = cli(["selective-search", images / "a.png", "--out", tmp_path / "o", "--mode", "single"] + args)
    assert res.exit_code == 2
    assert message in res.output


def test_single_only_options_refused_in_other_modes(cli, images, tmp_path):
    res = cli(["selective-search", images / "a.png", "--out", tmp_path / "o", "--mode", "fast", "--k", "50"])
    assert res.exit_code == 2 and "--k" in res.output and "--mode single" in res.output
    res = cli(["selective-search", images / "a.png", "--out", tmp_path / "o", "--mode", "medium"])
    assert res.exit_code == 2


def test_bad_files_are_reported_and_skipped(cli, images, tmp_path):
    (images / "broken.png").write_bytes(b"not an image")
    cv2.imwrite(str(images / "tiny.png"), np.zeros((3, 3, 3), np.uint8))
    cv2.imwrite(str(images / "huge.png"), np.zeros((1000, 4200, 3), np.uint8))
    out = tmp_path / "out"
    res = cli(["selective-search", images, "--out", out, "--mode", "single", "--jobs", "1"])
    assert res.exit_code == 1
    assert "broken.png" in res.output and "not a recognised image" in res.output
    assert "3x3; selective search needs at least 4x4" in res.output
    assert "4200x1000 = 4200000 pixels, over the limit of 4000000; pass --resize" in res.output
    assert [r["file"] for r in _records(out / "proposals.jsonl")] == ["a.png", "b.png"]
    res = cli(["selective-search", images / "huge.png", "--out", tmp_path / "o2", "--mode", "single",
               "--resize", "420", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    rec = _records(tmp_path / "o2" / "proposals.jsonl")[0]
    assert (rec["width"], rec["height"]) == (4200, 1000) and rec["boxes"][0] == [0, 0, 4200, 1000]

"""prepare localization: boxes match the pasted digit, splits are disjoint, npz == PNGs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cvtool.datasets.arrays import load_arrays


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "run.json"}


@pytest.fixture(scope="module")
def loc_dataset(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    out = tmp_path_factory.mktemp("loc") / "d"
    res = CliRunner().invoke(app, ["prepare", "localization", "--out", str(out), "--npz", "--count", "300",
                                   "--jobs", "1", "--chunk", "64", "--seed", "5", "--quiet"])
    assert res.exit_code == 0, res.output
    return out


def test_layout_and_coco(loc_dataset):
    out = loc_dataset
    assert (out / "classes.txt").read_text().split() == [str(d) for d in range(10)]
    assert json.loads((out / "run.json").read_text())["seed"] == 5
    for split in ("train", "val", "test"):
        doc = json.loads((out / split / "annotations.json").read_text())
        assert len(doc["images"]) == len(doc["annotations"])  # one object per canvas
        for im in doc["images"]:
            assert (out / split / im["file_name"]).is_file()
            assert im["file_name"].startswith("images/") and im["file_name"].endswith(".png")
        for a in doc["annotations"]:
            x, y, w, h = a["bbox"]
            assert (w, h) == (28, 28)  # default: the 28x28 frame
            assert 0 <= x and x + w <= 75 and 0 <= y and y + h <= 75
    assert len(json.loads((out / "train" / "annotations.json").read_text())["images"]) == 300


def test_npz_matches_pngs_and_boxes_hold_the_digit(loc_dataset):
    from cvtool.io.images import read_image

    arr = load_arrays(loc_dataset, split="val")
    with np.load(loc_dataset / "val.npz", allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8 and z["boxes"].dtype == np.float32
        assert z["labels"].dtype == np.int64 and z["box_image"].dtype == np.int64
        assert z["category_names"].dtype.kind == "U"
    for i in range(0, len(arr), 17):
        png = read_image(loc_dataset / "val" / "images" / f"{i:06d}.png")
        np.testing.assert_array_equal(png, arr.images[i])
        (b,), _ = arr.boxes_of(i)
        x1, y1, x2, y2 = b.astype(int)
        ink = arr.images[i] > 0
        inside = np.zeros_like(ink)
        inside[y1:y2, x1:x2] = True
        assert ink.any() and not (ink & ~inside).any()  # every lit pixel is inside the box


def test_splits_use_disjoint_digits(loc_dataset):
    from cvtool.prepare.sources import load_sklearn_digits, split_objects

    pool = load_sklearn_digits()
    splits = split_objects(pool, None, seed=5)
    sets = [set(v.tolist()) for v in splits.values()]
    assert sum(map(len, sets)) == len(pool) == len(set().union(*sets))
    # the val canvases show exactly val digits: compare each crop to the val pool
    arr = load_arrays(loc_dataset, split="val")
    val = pool.alpha[splits["val"]]
    for i in range(0, len(arr), 23):
        (b,), _ = arr.boxes_of(i)
        x1, y1 = int(b[0]), int(b[1])
        crop = arr.images[i][y1:y1 + 28, x1:x1 + 28]
        assert np.any(np.all(val == crop, axis=(1, 2)))


def test_same_seed_same_bytes_whatever_jobs(tmp_path, cli):
    common = ["prepare", "localization", "--count", "120", "--chunk", "25", "--seed", "9", "--npz",
              "--tight", "--scale", "0.8-1.2", "--noise", "5", "--clutter", "2", "--quiet"]
    assert cli(common + ["--out", tmp_path / "a", "--jobs", "1"]).exit_code == 0
    assert cli(common + ["--out", tmp_path / "b", "--jobs", "2"]).exit_code == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    other = [("10" if a == "9" else a) for a in common]
    assert cli(other + ["--out", tmp_path / "c", "--jobs", "1"]).exit_code == 0
    assert _files(tmp_path / "c")["train.npz"] != a["train.npz"]


def test_existing_output_needs_overwrite(tmp_path, cli):
    args = ["prepare", "localization", "--out", tmp_path / "d", "--count", "20", "--jobs", "1", "--quiet"]
    assert cli(args).exit_code == 0
    res = cli(args)
    assert res.exit_code == 2 and "exists" in res.output
    assert cli(args + ["--overwrite"]).exit_code == 0


def test_tight_box_is_the_ink_extent(tmp_path, cli):
    res = cli(["prepare", "localization", "--out", tmp_path, "--count", "40", "--tight", "--scale", "0.7-1.5",
               "--canvas", "90x70", "--npz", "--no-png", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    arr = load_arrays(tmp_path)
    assert arr.images.shape == (40, 70, 90)
    boxes, _ = arr.single_boxes()
    for img, b in zip(arr.images, boxes):
        ys, xs = np.nonzero(img)
        np.testing.assert_array_equal(b, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])

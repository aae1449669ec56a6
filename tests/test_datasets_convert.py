"""`cvtool prepare convert`: splits, formats, round trip through the CLI, overwrite and error rules."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from cvtool.datasets import load_dataset


def _prepare_like(root, rng):
    """root/{train,val}/images/*.png + annotations.json, root/classes.txt."""
    for split, n in (("train", 3), ("val", 2)):
        (root / split / "images").mkdir(parents=True)
        images, anns = [], []
        for i in range(1, n + 1):
            Image.new("RGB", (64, 48)).save(root / split / "images" / f"{i:06d}.png")
            images.append({"id": i, "file_name": f"images/{i:06d}.png", "width": 64, "height": 48})
            for _ in range(2):
                x, y = rng.uniform(0, 40), rng.uniform(0, 30)
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 3)),
                             "bbox": [x, y, rng.uniform(2, 64 - x), rng.uniform(2, 48 - y)], "iscrowd": 0})
        doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        (root / split / "annotations.json").write_text(json.dumps(doc))
    (root / "classes.txt").write_text("a\nb\n")


def test_convert_round_trip_via_cli(cli, tmp_path):
    src = tmp_path / "src"
    _prepare_like(src, np.random.default_rng(0))
    r = cli(["prepare", "convert", src, "--to", "yolo", "--out", tmp_path / "y", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["splits"]["train"]["annotations"] == 6 and summary["images"] == 5
    y_img = tmp_path / "y" / "train" / "images" / "000001.png"
    assert y_img.is_file() and os.stat(y_img).st_ino == os.stat(src / "train" / "images" / "000001.png").st_ino
    assert cli(["prepare", "convert", tmp_path / "y", "--to", "voc", "--out", tmp_path / "v",
                "--images", "copy"]).exit_code == 0
    assert cli(["prepare", "convert", tmp_path / "v", "--to", "coco", "--out", tmp_path / "c"]).exit_code == 0
    for split in ("train", "val"):
        a = load_dataset(src, split=split)
        y = load_dataset(tmp_path / "y", split=split)
        c = load_dataset(tmp_path / "c", split=split)
        np.testing.assert_allclose(y.ann_boxes, a.ann_boxes, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(c.ann_boxes, np.rint(a.ann_boxes))
        assert [im.file_name for im in c.images] == [im.file_name for im in a.images]
    manifest = json.loads((tmp_path / "c" / "run.json").read_text())
    assert manifest["command"] == "prepare convert" and manifest["counts"]["annotations"] == 10


def test_convert_overwrite_and_usage_errors(cli, tmp_path):
    src = tmp_path / "src"
    _prepare_like(src, np.random.default_rng(1))
    out = tmp_path / "o"
    assert cli(["prepare", "convert", src, "--to", "coco", "--out", out]).exit_code == 0
    r = cli(["prepare", "convert", src, "--to", "coco", "--out", out])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert cli(["prepare", "convert", src, "--to", "coco", "--out", out, "--overwrite"]).exit_code == 0
    r = cli(["prepare", "convert", src, "--to", "coco", "--out", src / "inside"])
    assert r.exit_code == 2 and "inside" in r.output
    r = cli(["prepare", "convert", src, "--to", "pascal", "--out", out])
    assert r.exit_code == 2 and "pascal" in r.output
    r = cli(["prepare", "convert", src, "--from", "text", "--to", "coco", "--out", tmp_path / "t",
             "--image-size", "axb"])
    assert r.exit_code == 2 and "WIDTHxHEIGHT" in r.output


def test_convert_bad_source_writes_nothing(cli, tmp_path):
    src = tmp_path / "src"
    _prepare_like(src, np.random.default_rng(2))
    doc = json.loads((src / "val" / "annotations.json").read_text())
    doc["annotations"][0]["bbox"] = [60, 40, 30, 30]  # sticks out of the 64x48 image
    (src / "val" / "annotations.json").write_text(json.dumps(doc))
    out = tmp_path / "o"
    r = cli(["prepare", "convert", src, "--to", "voc", "--out", out])
    assert r.exit_code == 1 and "annotation id 1" in r.output and "--clip" in r.output
    assert not (out / "train").exists()
    r = cli(["prepare", "convert", src, "--to", "voc", "--out", out, "--clip"])
    assert r.exit_code == 0
    v = load_dataset(out, split="val")
    assert v.ann_boxes[:, 2].max() <= 64 and v.ann_boxes[:, 3].max() <= 48


def test_convert_text_source(cli, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "00001.txt").write_text("object 25 16 38 56\nobject 129 123 41 62\n")
    r = cli(["prepare", "convert", tmp_path / "gt", "--from", "text", "--box-format", "xywh",
             "--image-size", "200x200", "--to", "coco", "--out", tmp_path / "c", "--images", "none"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "c" / "annotations.json").read_text())
    assert doc["annotations"][0]["bbox"] == [25.0, 16.0, 38.0, 56.0]
    assert doc["images"][0]["width"] == 200 and doc["categories"] == [{"id": 1, "name": "object"}]

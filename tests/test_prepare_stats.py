"""prepare stats: counts and histograms against hand-computed values and np.histogram."""

from __future__ import annotations

import json

import numpy as np

from cvtool.datasets.core import Category, Dataset, ImageRecord
from cvtool.prepare.stats import ASPECT_EDGES, SIZE_EDGES, dataset_stats


def _dataset():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 45, 25], [0, 0, 100, 50], [1, 1, 3, 9]], dtype=np.float64)
    return Dataset(images=[ImageRecord(1, "a.png", 100, 50), ImageRecord(2, "b.png", 100, 50),
                           ImageRecord(7, "c.png", 64, 64)],
                   categories=[Category(1, "cat"), Category(3, "dog")],
                   ann_image_ids=np.array([1, 1, 2, 1]), ann_boxes=boxes, ann_labels=np.array([1, 3, 3, 1]),
                   ann_iscrowd=np.array([False, False, False, True]), ann_difficult=np.zeros(4, bool))


def test_counts_and_histograms():
    ds = _dataset()
    s = dataset_stats(ds)
    assert (s["images"], s["images_without_boxes"], s["boxes"], s["crowd_boxes"]) == (3, 1, 4, 1)
    assert s["boxes_per_image"] == {"min": 0.0, "median": 1.0, "mean": round(4 / 3, 3), "max": 3.0}
    assert s["image_sizes"] == {"100x50": 2, "64x64": 1}
    assert s["classes"] == [{"id": 1, "name": "cat", "boxes": 2, "images": 1},
                            {"id": 3, "name": "dog", "boxes": 2, "images": 2}]
    sizes = [10, np.sqrt(800), np.sqrt(5000), 4]
    aspects = [1, 2, 2, 0.25]
    assert [b["count"] for b in s["box_size"]["histogram"]] == np.histogram(sizes, SIZE_EDGES)[0].tolist()
    assert [b["count"] for b in s["box_aspect"]["histogram"]] == np.histogram(aspects, ASPECT_EDGES)[0].tolist()
    assert s["box_aspect"]["min"] == 0.25 and s["box_size"]["max"] == round(np.sqrt(5000), 3)
    assert s["coco_size_classes"] == {"small": 3, "medium": 1, "large": 0}


def test_cli_json_and_text(tmp_path, cli):
    from cvtool.datasets.coco import write_coco

    write_coco(_dataset(), tmp_path / "ann.json")
    res = cli(["prepare", "stats", tmp_path / "ann.json", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["boxes"] == 4 and doc["images_without_boxes"] == 1
    res = cli(["prepare", "stats", tmp_path / "ann.json"])
    assert res.exit_code == 0 and "images 3 (1 without boxes), boxes 4 (1 crowd)" in res.stdout
    assert cli(["prepare", "stats", tmp_path / "ann.json", "--format", "xml"]).exit_code == 2
    (tmp_path / "bad.json").write_text("{not json")
    res = cli(["prepare", "stats", tmp_path / "bad.json"])
    assert res.exit_code == 1 and "bad.json" in res.output

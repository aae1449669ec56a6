"""COCO reader/writer, detection results (COCO JSON, JSONL) and load_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cvtool.datasets import load_dataset
from cvtool.datasets.coco import read_coco, write_coco
from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions
from cvtool.datasets.results import (FileMatcher, detection_record, read_coco_results, read_detections_jsonl,
                                     read_predictions, write_coco_results, write_jsonl)
from cvtool.detections import Detections
from cvtool.errors import BadInputError

SHARED = Path(__file__).resolve().parent / "data" / "coco100"  # copy of ../shared/reference (see tests/data/README.md)


def _doc(**over):
    doc = {
        "images": [{"id": 1, "file_name": "images/a.png", "width": 100, "height": 80},
                   {"id": 2, "file_name": "images/b.png", "width": 50, "height": 50}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40], "area": 777.5, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 5, "bbox": [0.5, 0.25, 10, 10], "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4]},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
    }
    doc.update(over)
    return doc


def _write(tmp_path, doc, name="ann.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def test_read_coco_fields_against_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    p = _write(tmp_path, _doc())
    ds = read_coco(p)
    ref = COCO(str(p))
    for i, ann_id in enumerate(ds.ann_ids):
        a = ref.anns[int(ann_id)]
        x, y, w, h = a["bbox"]
        np.testing.assert_allclose(ds.ann_boxes[i], [x, y, x + w, y + h])
        assert ds.ann_labels[i] == a["category_id"] and ds.ann_image_ids[i] == a["image_id"]
        assert ds.ann_iscrowd[i] == bool(a.get("iscrowd", 0))
    np.testing.assert_allclose(ds.areas(), [777.5, 100.0, 12.0])  # kept where given, else box area
    assert ds.root == tmp_path and ds.category_names == {3: "cat", 5: "dog"}


def test_coco_write_read_round_trip(tmp_path):
    ds = read_coco(_write(tmp_path, _doc()))
    out = write_coco(ds, tmp_path / "out" / "ann.json")
    back = read_coco(out)
    np.testing.assert_array_equal(back.ann_boxes, ds.ann_boxes)
    np.testing.assert_array_equal(back.ann_ids, [10, 11, 12])
    np.testing.assert_array_equal(back.areas(), ds.areas())
    np.testing.assert_array_equal(back.ann_iscrowd, ds.ann_iscrowd)
    with pytest.raises(FileExistsError):
        write_coco(ds, out)
    write_coco(ds, out, overwrite=True)
    # area written as the box area when the dataset carries none
    plain = Dataset(images=ds.images, categories=ds.categories, ann_image_ids=ds.ann_image_ids,
                    ann_boxes=ds.ann_boxes, ann_labels=ds.ann_labels, ann_iscrowd=ds.ann_iscrowd,
                    ann_difficult=ds.ann_difficult)
    written = json.loads(write_coco(plain, tmp_path / "plain.json").read_text())
    assert [a["area"] for a in written["annotations"]] == [1200.0, 100.0, 12.0]
    assert [a["id"] for a in written["annotations"]] == [1, 2, 3]


def test_reads_shared_reference_set():
    ds = load_dataset(SHARED / "ground_truth.json")
    assert len(ds.images) == 100 and ds.num_annotations == 830
    pred = read_predictions(SHARED / "detections.json", ds)
    assert len(pred) == 734
    raw = json.loads((SHARED / "detections.json").read_text())
    x, y, w, h = raw[0]["bbox"]
    np.testing.assert_allclose(pred.boxes[0], [x, y, x + w, y + h])


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["annotations"][1].pop("bbox"), r"annotation id 11: missing 'bbox'"),
    (lambda d: d["annotations"][1].update(category_id=9), r"annotation id 11 has unknown category id 9"),
    (lambda d: d["annotations"][2].update(image_id=7), r"annotation id 12 refers to unknown image id 7"),
    (lambda d: d["annotations"][2].update(bbox=[1, 2, -3, 4]), r"annotation id 12 has an empty or negative box"),
    (lambda d: d["annotations"][2].update(bbox=[1, 2, 0, 4]), r"annotation id 12 has an empty or negative box"),
    (lambda d: d["annotations"][2].update(bbox=[45, 2, 10, 4]), r"annotation id 12 .*outside .*--clip"),
    (lambda d: d["annotations"][2].update(id=10), r"duplicate annotation id 10"),
    (lambda d: d["images"][1].update(id=1), r"duplicate image id 1"),
    (lambda d: d["images"][1].update(file_name="../../etc/passwd"), r"escapes the dataset root"),
    (lambda d: d["images"][1].update(file_name="/etc/passwd"), r"absolute"),
    (lambda d: d["images"][0].pop("width"), r"images\[0\]: missing 'width'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotation id 10: 'bbox' must be 4 numbers"),
    (lambda d: d.pop("categories"), r"missing top-level 'categories'"),
])
def test_bad_coco_input_names_file_and_record(tmp_path, mutate, message):
    doc = _doc()
    mutate(doc)
    p = _write(tmp_path, doc)
    with pytest.raises(BadInputError, match=message) as info:
        read_coco(p)
    assert str(p) in str(info.value)


def test_nan_box_and_empty_and_broken_files(tmp_path):
    p = _write(tmp_path, json.dumps(_doc()).replace("[1, 2, 3, 4]", "[1, 2, NaN, 4]"))
    with pytest.raises(BadInputError, match="annotation id 12 has a non-finite bbox"):
        read_coco(p)
    with pytest.raises(BadInputError, match="empty file"):
        read_coco(_write(tmp_path, "", "empty.json"))
    with pytest.raises(BadInputError, match="not valid JSON .* line 1"):
        read_coco(_write(tmp_path, "{", "broken.json"))
    with pytest.raises(BadInputError, match="expected a COCO object"):
        read_coco(_write(tmp_path, "[]", "list.json"))


def test_clip_repairs_boxes_outside(tmp_path):
    doc = _doc()
    doc["annotations"][2]["bbox"] = [45, -2, 10, 6]
    ds = read_coco(_write(tmp_path, doc), clip=True)
    np.testing.assert_array_equal(ds.ann_boxes[2], [45, 0, 50, 4])


# ------------------------------------------------------------------ results
def _gt():
    return Dataset(images=[ImageRecord(1, "images/a.png", 100, 80), ImageRecord(2, "sub/b.png", 50, 50)],
                   categories=[Category(3, "cat"), Category(5, "dog")])


def test_coco_results_round_trip_and_checks(tmp_path):
    gt = _gt()
    pred = Predictions(image_ids=np.array([1, 2]), boxes=np.array([[1.5, 2, 11, 12.25], [0, 0, 5, 5]]),
                       scores=np.array([0.9, 0.1]), labels=np.array([5, 3]))
    p = write_coco_results(pred, tmp_path / "r.json")
    assert json.loads(p.read_text())[0]["bbox"] == [1.5, 2.0, 9.5, 10.25]
    back = read_coco_results(p, gt)
    np.testing.assert_array_equal(back.boxes, pred.boxes)
    np.testing.assert_array_equal(back.labels, pred.labels)
    bad = [{"image_id": 9, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]
    with pytest.raises(BadInputError, match="record 0 refers to image id 9"):
        read_coco_results(_write(tmp_path, bad, "b1.json"), gt)
    bad[0].update(image_id=1, category_id=4)
    with pytest.raises(BadInputError, match="record 0 has category id 4"):
        read_coco_results(_write(tmp_path, bad, "b2.json"), gt)
    bad[0].update(category_id=3, bbox=[0, 0, -1, 1])
    with pytest.raises(BadInputError, match="negative width"):
        read_coco_results(_write(tmp_path, bad, "b3.json"), gt)
    bad[0].pop("score")
    with pytest.raises(BadInputError, match="record 0: missing 'score'"):
        read_coco_results(_write(tmp_path, bad, "b4.json"), gt)


def test_jsonl_records_match_by_file_name(tmp_path):
    gt = _gt()
    det = Detections(np.array([[1.0, 2, 3, 4], [5, 6, 7, 8]]), np.array([0.8, 0.7]), np.array([1, 0]))
    recs = [detection_record("images/a.png", det, width=100, height=80, class_names=["cat", "dog"]),
            detection_record("elsewhere/b.png", det.select([0]), width=50, height=50)]
    assert recs[0]["names"] == ["dog", "cat"] and recs[0]["boxes"][1] == [5.0, 6.0, 7.0, 8.0]
    p = write_jsonl(recs + [{"summary": {"ok": 2}}], tmp_path / "d.jsonl")
    pred = read_detections_jsonl(p, gt)
    np.testing.assert_array_equal(pred.image_ids, [1, 1, 2])
    np.testing.assert_array_equal(pred.labels, [5, 3, 5])  # names, then label index 1 -> id 5
    np.testing.assert_array_equal(pred.boxes[2], [1, 2, 3, 4])
    m = FileMatcher(gt)
    assert m("images\\a.png") == 1 and m("x/b.png") == 2
    with pytest.raises(BadInputError, match="matches no ground-truth image"):
        m("c.png", "here")
    twice = Dataset(images=[ImageRecord(1, "x/a.png", 5, 5), ImageRecord(2, "y/a.png", 5, 5)])
    with pytest.raises(BadInputError, match="matches 2 ground-truth images"):
        FileMatcher(twice)("z/a.png")
    (tmp_path / "bad.jsonl").write_text('{"file": "images/a.png", "boxes": [[1, 2, 3]], "scores": [1]}\n')
    with pytest.raises(BadInputError, match=r"bad.jsonl:1: 'boxes' must hold numbers in rows of 4"):
        read_detections_jsonl(tmp_path / "bad.jsonl", gt)
    (tmp_path / "dup.jsonl").write_text(json.dumps(recs[0]) + "\n" + json.dumps(recs[0]) + "\n")
    with pytest.raises(BadInputError, match=r"dup.jsonl:2: .* already has a record at line 1"):
        read_detections_jsonl(tmp_path / "dup.jsonl", gt)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(BadInputError, match="empty file"):
        read_detections_jsonl(tmp_path / "empty.jsonl", gt)


# ------------------------------------------------------------- load_dataset
def test_load_dataset_prepare_layout_and_errors(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        doc = _doc()
        if split == "val":
            doc["annotations"] = doc["annotations"][:1]
        (tmp_path / split / "annotations.json").write_text(json.dumps(doc))
    assert load_dataset(tmp_path).num_annotations == 3
    val = load_dataset(tmp_path, split="val")
    assert val.num_annotations == 1 and val.root == tmp_path / "val"
    assert load_dataset(tmp_path / "val" / "annotations.json").num_annotations == 1
    with pytest.raises(BadInputError, match="not a dataset folder"):
        load_dataset(tmp_path, split="test")
    with pytest.raises(BadInputError, match="no such file"):
        load_dataset(tmp_path / "missing")
    from cvtool.errors import UsageError

    with pytest.raises(UsageError, match="'pascal'.*coco, yolo, voc, text"):
        load_dataset(tmp_path, format="pascal")
    assert load_dataset(tmp_path, split="val", format="coco").num_annotations == 1
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("cat 1 2 3 4\n")
    assert load_dataset(tmp_path / "txt", format="text").ann_boxes.tolist() == [[1, 2, 3, 4]]

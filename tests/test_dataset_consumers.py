"""Datasets as the other commands consume them (#12 follow-ups).

- images decoded for training (``load_arrays``) or augmentation must have the
  size their annotations declare (boxes were validated against that size);
- ``prepare detection --format yolo`` writes one root Ultralytics ``data.yaml``
  that ``load_dataset`` reads back split by split, boxes equal to the COCO version;
- ``--image-dir`` on ``eval`` and ``train --data`` for annotations kept apart from
  their images (flat VOC folder).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cvtool.errors import BadInputError


def _write_coco(root, declared, real, box):
    """One 8-bit image of size ``real`` (w, h) declared as ``declared`` in ``root/annotations.json``."""
    (root / "images").mkdir(parents=True)
    w, h = real
    img = np.zeros((h, w), np.uint8)
    img[5:15, 5:25] = 200
    assert cv2.imwrite(str(root / "images" / "a.png"), img)
    coco = {"images": [{"id": 1, "file_name": "images/a.png", "width": declared[0], "height": declared[1]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3],
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root / "annotations.json"


# ---------------------------------------------------------------------------
# 1. declared size against the decoded image
# ---------------------------------------------------------------------------


def test_load_arrays_refuses_an_image_smaller_than_declared(tmp_path):
    from cvtool.datasets.arrays import load_arrays

    # the box lies inside the declared 100x50 but outside the real 40x30 image
    ann = _write_coco(tmp_path / "train", (100, 50), (40, 30), [50, 10, 40, 30])
    with pytest.raises(BadInputError) as info:
        load_arrays(ann)
    msg = str(info.value)
    assert "a.png" in msg and "40x30" in msg and "100x50" in msg and "\n" not in msg
    # the declared size being right, the same file loads
    ok = _write_coco(tmp_path / "ok", (40, 30), (40, 30), [5, 5, 20, 10])
    arr = load_arrays(ok)
    assert arr.images.shape == (1, 30, 40)
    np.testing.assert_array_equal(arr.boxes, [[5, 5, 25, 15]])


def test_train_localizer_refuses_a_wrong_declared_size(tmp_path, cli):
    root = tmp_path / "data"
    _write_coco(root / "train", (100, 50), (40, 30), [50, 10, 40, 30])
    res = cli(["train", "localizer", "--data", root, "--out", tmp_path / "run", "--epochs", "1", "--device", "cpu",
               "--quiet"])
    assert res.exit_code == 1, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "a.png" in err and "100x50" in err, err
    assert "Traceback" not in res.output


def test_augment_reports_an_image_of_another_size(tmp_path, cli):
    root = tmp_path / "data"
    _write_coco(root / "train", (100, 50), (40, 30), [50, 10, 40, 30])
    out = tmp_path / "aug"
    res = cli(["prepare", "augment", root, "--out", out, "--flip-h", "1", "--jobs", "1", "--quiet"])
    assert res.exit_code == 1, res.output
    assert "a.png" in res.stderr and "40x30" in res.stderr and "100x50" in res.stderr
    assert not (out / "train" / "annotations.json").exists()


# ---------------------------------------------------------------------------
# 2. prepare --format yolo: one root data.yaml
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yolo_and_coco(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    root = tmp_path_factory.mktemp("root_yaml")
    for fmt in ("coco", "yolo"):
        res = CliRunner().invoke(app, ["prepare", "detection", "--out", str(root / fmt), "--count", "6",
                                       "--format", fmt, "--jobs", "1", "--seed", "3", "--quiet"])
        assert res.exit_code == 0, res.output
    return root


def test_prepare_yolo_writes_one_root_data_yaml(yolo_and_coco):
    import yaml

    from cvtool.datasets import load_dataset

    out = yolo_and_coco / "yolo"
    doc = yaml.safe_load((out / "data.yaml").read_text())
    splits = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert splits == ["test", "train", "val"]
    assert {k: doc[k] for k in splits} == {s: f"{s}/images" for s in splits}
    names = (yolo_and_coco / "coco" / "classes.txt").read_text().splitlines()
    assert doc["nc"] == len(names) and doc["names"] == dict(enumerate(names))
    for split in splits:
        coco = load_dataset(yolo_and_coco / "coco", split=split)
        for yolo in (load_dataset(out / "data.yaml", split=split), load_dataset(out, split=split)):
            assert [im.file_name for im in yolo.images] == [im.file_name for im in coco.images]
            assert [(im.width, im.height) for im in yolo.images] == [(im.width, im.height) for im in coco.images]
            assert len(yolo.ann_boxes) == len(coco.ann_boxes) > 0
            for im_y, im_c in zip(yolo.images, coco.images):
                by = yolo.ann_boxes[yolo.annotations_of(im_y.id)]
                bc = coco.ann_boxes[coco.annotations_of(im_c.id)]
                np.testing.assert_allclose(by, bc, atol=1e-3)  # 6-decimal normalised coordinates
                name_y = {c.id: c.name for c in yolo.categories}
                name_c = {c.id: c.name for c in coco.categories}
                assert [name_y[i] for i in yolo.ann_labels[yolo.annotations_of(im_y.id)]] == \
                    [name_c[i] for i in coco.ann_labels[coco.annotations_of(im_c.id)]]
        assert (yolo_and_coco / "yolo" / split / "data.yaml").is_file()  # a split still loads alone
        assert len(load_dataset(out / split).images) == len(coco.images)


def test_augment_yolo_root_data_yaml_lists_the_splits_written(yolo_and_coco, tmp_path, cli):
    import yaml

    from cvtool.datasets import load_dataset

    src = yolo_and_coco / "coco"
    out = tmp_path / "aug"
    for split in ("val", "train"):
        res = cli(["prepare", "augment", src, "--split", split, "--out", out, "--flip-h", "1", "--format", "yolo",
                   "--jobs", "1", "--quiet"])
        assert res.exit_code == 0, res.output
        if split == "val":  # no train split yet: Ultralytics needs one, nothing written
            assert not (out / "data.yaml").exists()
    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert (doc["train"], doc["val"], "test" in doc) == ("train/images", "val/images", False)
    for split in ("train", "val"):
        ds, ref = load_dataset(out, split=split), load_dataset(src, split=split)
        assert len(ds.images) == len(ref.images) and len(ds.ann_boxes) == len(ref.ann_boxes)
        w = ref.images[0].width  # a horizontal flip: x1' = w - x2, x2' = w - x1
        flipped = np.column_stack([w - ref.ann_boxes[:, 2], ref.ann_boxes[:, 1], w - ref.ann_boxes[:, 0],
                                   ref.ann_boxes[:, 3]])
        np.testing.assert_allclose(ds.ann_boxes, flipped, atol=1e-3)


# ---------------------------------------------------------------------------
# 3. --image-dir on eval (annotations kept apart from their images)
# ---------------------------------------------------------------------------


def _flat_voc_apart(root):
    """``root/xml/*.xml`` (LabelImg, <size> 0: read from the image) and ``root/photos/*.png``."""
    (root / "xml").mkdir(parents=True)
    (root / "photos").mkdir()
    sizes = {"a.png": (64, 48), "b.png": (50, 70)}
    boxes = {"a.png": [(11, 6, 40, 30), (30, 20, 60, 45)], "b.png": [(5, 10, 25, 60)]}
    for name, (w, h) in sizes.items():
        assert cv2.imwrite(str(root / "photos" / name), np.full((h, w, 3), 90, np.uint8))
        objs = "".join(f"<object><name>{'cat' if k else 'dog'}</name><difficult>0</difficult><bndbox>"
                       f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                       for k, b in enumerate(boxes[name]))
        (root / "xml" / f"{name[:-4]}.xml").write_text(
            f"<annotation><folder>images</folder><filename>{name}</filename><path>C:\\labelimg\\{name}</path>"
            f"<size><width>0</width><height>0</height><depth>3</depth></size>{objs}</annotation>")
    return sizes


def test_eval_image_dir_for_a_flat_voc_folder(tmp_path, cli):
    from cvtool.datasets import load_dataset

    sizes = _flat_voc_apart(tmp_path)
    gt = load_dataset(tmp_path / "xml", images=tmp_path / "photos")
    assert {im.file_name: (im.width, im.height) for im in gt.images} == sizes  # from the PNGs
    names = {c.id: c.name for c in gt.categories}
    with (tmp_path / "pred.jsonl").open("w") as fh:
        for im in gt.images:
            sel = gt.annotations_of(im.id)
            fh.write(json.dumps({"file": im.file_name, "width": im.width, "height": im.height,
                                 "boxes": gt.ann_boxes[sel].tolist(), "scores": [0.9] * len(sel),
                                 "names": [names[int(i)] for i in gt.ann_labels[sel]]}) + "\n")
    base = ["eval", "--gt", tmp_path / "xml", "--pred", tmp_path / "pred.jsonl", "--metric", "voc", "--json"]
    res = cli(base)
    assert res.exit_code == 1 and "a.png" in res.stderr and "--image-dir" in res.stderr, res.output
    res = cli([*base, "--image-dir", tmp_path / "photos"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["mAP"] == {"0.5": pytest.approx(1.0)}, doc
    res = cli(["eval", "--gt", tmp_path / "xml", "--gt-format", "text", "--pred", tmp_path / "pred.jsonl",
               "--image-dir", tmp_path / "photos"])
    assert res.exit_code == 2 and "--image-dir" in res.stderr


def test_load_arrays_images_for_annotations_kept_apart(tmp_path):
    from cvtool.datasets.arrays import load_arrays
    from cvtool.errors import UsageError

    root = tmp_path / "coco"
    _write_coco(root, (40, 30), (40, 30), [5, 5, 20, 10])
    (root / "images").rename(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "images").mkdir()  # file_name is images/a.png
    (tmp_path / "elsewhere" / "a.png").rename(tmp_path / "elsewhere" / "images" / "a.png")
    with pytest.raises(BadInputError, match="a.png"):
        load_arrays(root / "annotations.json")
    arr = load_arrays(root / "annotations.json", images=tmp_path / "elsewhere")
    assert arr.images.shape == (1, 30, 40) and arr.images[0, 10, 10] == 200
    np.savez(tmp_path / "x.npz", images=arr.images, boxes=arr.boxes, labels=arr.labels, box_image=arr.box_image,
             category_ids=arr.category_ids, category_names=arr.category_names)
    with pytest.raises(UsageError, match="npz"):
        load_arrays(tmp_path / "x.npz", images=tmp_path / "elsewhere")


def test_eval_warns_when_jsonl_covers_part_of_the_ground_truth(tmp_path, cli):
    _flat_voc_apart(tmp_path)
    # a record for a.png only (its two boxes exact, VOC pixel indices -> x1 - 1, y1 - 1, x2, y2)
    rec = {"file": "a.png", "width": 64, "height": 48, "boxes": [[10, 5, 40, 30], [29, 19, 60, 45]],
           "scores": [0.9, 0.8], "names": ["dog", "cat"]}
    (tmp_path / "part.jsonl").write_text(json.dumps(rec) + "\n")
    res = cli(["eval", "--gt", tmp_path / "xml", "--image-dir", tmp_path / "photos", "--pred", tmp_path / "part.jsonl",
               "--metric", "voc", "--json"])
    assert res.exit_code == 0, res.output
    assert "records for 1 of the ground truth's 2 images" in res.stderr
    per_class = {c["name"]: c for c in json.loads(res.stdout)["thresholds"][0]["per_class"]}
    assert per_class["cat"]["AP"] == pytest.approx(1.0)  # the one cat is in a.png
    assert per_class["dog"]["AP"] == pytest.approx(0.5)  # b.png's dog was never run: missed
    (tmp_path / "all.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "file": "b.png", "width": 50, "height": 70,
                                                                         "boxes": [], "scores": [], "names": []})
                                       + "\n")
    res = cli(["eval", "--gt", tmp_path / "xml", "--image-dir", tmp_path / "photos", "--pred", tmp_path / "all.jsonl",
               "--metric", "voc"])
    assert res.exit_code == 0 and "records for" not in res.stderr, res.output


def test_train_hog_svm_image_dir_for_a_flat_voc_folder(tmp_path, cli):
    from cvtool.detectors.hog_svm import read_split

    sizes = _flat_voc_apart(tmp_path)
    rng = np.random.default_rng(0)
    for name, (w, h) in sizes.items():  # texture, so that windows differ
        assert cv2.imwrite(str(tmp_path / "photos" / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    split = read_split(tmp_path / "xml", images=tmp_path / "photos")
    assert [im.shape[1::-1] for im in split.images] == list(sizes.values())
    base = ["train", "hog-svm", "--data", tmp_path / "xml", "--window", "16x16", "--cell", "4x4", "--mine-rounds", "0",
            "--negatives", "3", "--eval-split", "none", "--jobs", "1", "--quiet"]
    res = cli([*base, "--out", tmp_path / "run0"])
    assert res.exit_code == 1 and "--image-dir" in res.stderr, res.output
    res = cli([*base, "--out", tmp_path / "run", "--image-dir", tmp_path / "photos"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "model.npz").is_file()


def test_train_hog_svm_warns_when_the_eval_split_is_the_training_data(tmp_path, cli):
    _flat_voc_apart(tmp_path)
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        h, w = cv2.imread(str(tmp_path / "photos" / name)).shape[:2]
        assert cv2.imwrite(str(tmp_path / "photos" / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    quick = ["--window", "16x16", "--cell", "4x4", "--mine-rounds", "0", "--negatives", "3", "--jobs", "1"]
    # a flat folder is one split: --eval-split val reads the training images again
    res = cli(["train", "hog-svm", "--data", tmp_path / "xml", "--image-dir", tmp_path / "photos", "--out",
               tmp_path / "flat", *quick])
    assert res.exit_code == 0, res.output
    assert "2 of its 2 images are training images" in res.stderr
    # prepare's layout ({split}/annotations.json) has a real val split: no warning
    for split in ("train", "val"):
        _write_coco(tmp_path / "prep" / split, (40, 30), (40, 30), [5, 5, 20, 12])
    res = cli(["train", "hog-svm", "--data", tmp_path / "prep", "--out", tmp_path / "prep_run", *quick])
    assert res.exit_code == 0, res.output
    assert "round 0: val AP" in res.stderr and "training images" not in res.stderr

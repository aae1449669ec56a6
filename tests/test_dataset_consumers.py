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

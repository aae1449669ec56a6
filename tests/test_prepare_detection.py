"""prepare detection: tight boxes, overlap limits, object counts, backgrounds, crops, MNIST, bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cvtool import boxes as box_ops
from cvtool.datasets.arrays import load_arrays
from cvtool.prepare.scenes import PlacementError, SceneSettings, detection_scene
from cvtool.prepare.sources import load_sklearn_digits, write_idx


@pytest.fixture(scope="module")
def pool():
    return load_sklearn_digits()


def test_disjoint_scenes_have_tight_boxes(pool):
    settings = SceneSettings(kind="detection", canvas=(96, 96), objects=(2, 4), scale=(0.7, 1.1),
                             max_iou=0.0, min_visible=1.0).validate(pool)
    for i in range(40):
        image, b, labels = detection_scene(pool, settings, np.random.default_rng(i))
        assert 2 <= len(b) <= 4 and labels.min() >= 0 and labels.max() <= 9
        assert image.shape == (96, 96) and image.dtype == np.uint8
        iou = box_ops.iou(b, b)
        assert np.all(iou[~np.eye(len(b), dtype=bool)] == 0)
        lit = image > 0
        covered = np.zeros_like(lit)
        for x1, y1, x2, y2 in b.astype(int):
            covered[y1:y2, x1:x2] = True
            # tight: every edge row/column of the box holds ink
            sub = lit[y1:y2, x1:x2]
            assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
        assert not (lit & ~covered).any()


def test_overlap_limit_is_respected(pool):
    settings = SceneSettings(kind="detection", canvas=(64, 64), objects=(4, 4), max_iou=0.3,
                             min_visible=0.5).validate(pool)
    worst = 0.0
    for i in range(40):
        _, b, _ = detection_scene(pool, settings, np.random.default_rng(100 + i))
        iou = box_ops.iou(b, b)
        worst = max(worst, float(iou[~np.eye(len(b), dtype=bool)].max()))
    assert 0.05 < worst <= 0.3


def test_impossible_constraints_stop_with_a_clear_error(pool):
    settings = SceneSettings(kind="detection", canvas=(60, 60), objects=(9, 9), scale=(1, 1), max_iou=0.0,
                             tries=20, restarts=3).validate(pool)
    with pytest.raises(PlacementError, match="could not place 9-9 objects"):
        detection_scene(pool, settings, np.random.default_rng(0))


def test_cli_default_and_npz(tmp_path, cli):
    out = tmp_path / "det"
    res = cli(["prepare", "detection", "--out", out, "--count", "40", "--npz", "--jobs", "1", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["splits"]["train"]["images"] == 40
    doc = json.loads((out / "train" / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == [str(d) for d in range(10)]
    arr = load_arrays(out, split="train")
    assert arr.images.shape == (40, 128, 128) and arr.num_boxes == len(doc["annotations"])
    per_image = np.bincount(arr.box_image, minlength=40)
    assert per_image.min() >= 3 and per_image.max() <= 5
    # COCO xywh == npz xyxy
    coco = np.array([a["bbox"] for a in doc["annotations"]], dtype=np.float64)
    np.testing.assert_allclose(box_ops.convert(coco, "xywh", "xyxy"), arr.boxes)
    np.testing.assert_array_equal([a["category_id"] for a in doc["annotations"]], arr.labels)


def test_cli_with_pycocotools(tmp_path, cli):
    from pycocotools.coco import COCO

    out = tmp_path / "det"
    assert cli(["prepare", "detection", "--out", out, "--count", "10", "--jobs", "1", "--quiet"]).exit_code == 0
    coco = COCO(str(out / "train" / "annotations.json"))
    assert len(coco.getImgIds()) == 10 and len(coco.getCatIds()) == 10
    img = coco.loadImgs(coco.getImgIds()[0])[0]
    assert (out / "train" / img["file_name"]).is_file()


def test_backgrounds_and_crops_give_colour(tmp_path, cli, china_bgr):
    (tmp_path / "bg").mkdir()
    cv2.imwrite(str(tmp_path / "bg" / "china.png"), china_bgr[:100, :100])
    for name, colour in (("red", (0, 0, 255)), ("blue", (255, 0, 0))):
        (tmp_path / "crops" / name).mkdir(parents=True)
        crop = np.zeros((16, 12, 4), np.uint8)
        crop[2:14, 2:10] = (*colour, 255)
        cv2.imwrite(str(tmp_path / "crops" / name / "a.png"), crop)
        cv2.imwrite(str(tmp_path / "crops" / name / "b.png"), crop[::-1])
    out = tmp_path / "d"
    res = cli(["prepare", "detection", "--crops", tmp_path / "crops", "--backgrounds", tmp_path / "bg",
               "--out", out, "--canvas", "150x120", "--count", "6", "--split", "1,0,1", "--objects", "1-2",
               "--npz", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    arr = load_arrays(out, split="train")
    assert arr.images.shape == (6, 120, 150, 3)
    assert list(arr.category_names) == ["blue", "red"]
    for i in range(6):
        for (x1, y1, x2, y2), lab in zip(*arr.boxes_of(i)):
            patch = arr.images[i, int(y1):int(y2), int(x1):int(x2)].reshape(-1, 3).astype(int)
            want = (255, 0, 0) if lab == 1 else (0, 0, 255)  # category id 1 = blue
            assert np.mean(np.all(np.abs(patch - want) < 3, axis=1)) > 0.5
    assert arr.images[0].std() > 10  # a textured background, not black


def test_cli_mnist_folder(tmp_path, cli):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    for prefix, n in (("train", 30), ("t10k", 10)):
        imgs = np.zeros((n, 28, 28), np.uint8)
        imgs[:, 6:22, 10:18] = rng.integers(1, 256, size=(n, 16, 8))
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", imgs)
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, size=n).astype(np.uint8))
    out = tmp_path / "o"
    res = cli(["prepare", "detection", "--mnist", d, "--out", out, "--count", "8", "--jobs", "1", "--quiet",
               "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["splits"]) == {"train", "test"}
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    res = cli(["prepare", "detection", "--mnist", d, "--out", tmp_path / "p", "--quiet"])
    assert res.exit_code == 1 and "t10k-labels" in res.output


@pytest.mark.parametrize("args,message", [
    (["--canvas", "20"], "smaller than an object"),
    (["--canvas", "40", "--objects", "9-12", "--max-iou", "0"], "cannot fit"),
    (["--canvas", "64", "--objects", "8", "--max-iou", "0", "--tries", "10", "--restarts", "2"], "could not place"),
    (["--objects", "5-3"], "--objects"),
    (["--scale", "2-1"], "--scale"),
    (["--canvas", "0x5"], "--canvas"),
    (["--max-iou", "1.5"], "--max-iou"),
    (["--no-png"], "--no-png needs --npz"),
    (["--mnist", ".", "--crops", "."], "exclude each other"),
    (["--crops", "nowhere"], "--crops: path 'nowhere' does not exist"),  # checked while parsing (#12)
])
def test_cli_usage_errors(tmp_path, cli, args, message):
    res = cli(["prepare", "detection", "--out", tmp_path / "o", "--count", "5", "--jobs", "1", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "o" / "train").exists()


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_yolo_and_voc_read_back(tmp_path, cli, fmt):
    from cvtool.datasets import load_dataset

    common = ["prepare", "detection", "--count", "6", "--jobs", "1", "--quiet", "--seed", "2"]
    assert cli(common + ["--out", tmp_path / "coco"]).exit_code == 0
    res = cli(common + ["--out", tmp_path / fmt, "--format", fmt])
    assert res.exit_code == 0, res.output
    ref, got = load_dataset(tmp_path / "coco"), load_dataset(tmp_path / fmt)
    assert len(got.images) == 6 and got.num_annotations == ref.num_annotations
    names = ref.category_names
    order_r = np.lexsort((ref.ann_boxes[:, 0], ref.ann_boxes[:, 1], ref.ann_image_ids))
    order_g = np.lexsort((got.ann_boxes[:, 0], got.ann_boxes[:, 1], got.ann_image_ids))
    np.testing.assert_allclose(got.ann_boxes[order_g], ref.ann_boxes[order_r], atol=1.0)
    assert [got.category_names[int(i)] for i in got.ann_labels[order_g]] == \
        [names[int(i)] for i in ref.ann_labels[order_r]]
    for im in got.images:
        assert got.image_path(im).is_file()


def test_detection_same_seed_same_bytes_whatever_jobs(tmp_path, cli, china_bgr):
    (tmp_path / "bg").mkdir()
    cv2.imwrite(str(tmp_path / "bg" / "c.png"), china_bgr[:150, :150])
    common = ["prepare", "detection", "--count", "24", "--chunk", "5", "--seed", "11", "--npz", "--noise", "4",
              "--backgrounds", tmp_path / "bg", "--canvas", "96", "--quiet"]
    assert cli(common + ["--out", tmp_path / "a", "--jobs", "1"]).exit_code == 0
    assert cli(common + ["--out", tmp_path / "b", "--jobs", "2"]).exit_code == 0

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != "run.json"}

    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert len(a) > 30 and a == b

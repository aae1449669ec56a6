"""prepare augment: checked by drawing (a solid rectangle must stay inside its moved box),
against NumPy flips/rotations, visibility drops, determinism and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from cvtool.errors import UsageError
from cvtool.prepare.augment import (AugmentParams, AugmentSettings, affine_matrix, augment, sample_params,
                                    transform_boxes, warp_image)


def _rect_image(rng, w=80, h=60):
    img = np.zeros((h, w), np.uint8)
    x1, y1 = int(rng.integers(0, w - 22)), int(rng.integers(0, h - 22))
    x2, y2 = x1 + int(rng.integers(3, 20)), y1 + int(rng.integers(3, 20))
    img[y1:y2, x1:x2] = 255
    return img, np.array([[x1, y1, x2, y2]], dtype=np.float64)


def test_transformed_box_covers_the_transformed_rectangle():
    rng = np.random.default_rng(0)
    settings = AugmentSettings(flip_h=0.5, flip_v=0.5, rotate=45, shear=15, scale=(0.6, 1.6), translate=0.2,
                               crop=0.6, min_visible=0.0).validate()
    checked = 0
    for _ in range(300):
        img, box = _rect_image(rng)
        out, nb, keep = augment(img, box, settings, rng)
        ys, xs = np.nonzero(out > 127)  # pixels whose centre lies inside the moved rectangle
        if ys.size == 0:
            continue
        assert keep.tolist() == [0]
        x1, y1, x2, y2 = nb[0]
        assert np.all(xs + 0.5 >= x1) and np.all(xs + 0.5 <= x2)
        assert np.all(ys + 0.5 >= y1) and np.all(ys + 0.5 <= y2)
        checked += 1
    assert checked > 200


def test_axis_aligned_moves_give_exact_boxes():
    rng = np.random.default_rng(1)
    for _ in range(100):
        img, box = _rect_image(rng)
        p = AugmentParams(flip_h=bool(rng.integers(2)), flip_v=bool(rng.integers(2)),
                          scale=float(rng.choice([0.5, 1.0, 2.0])), shift=(0.1, -0.05))
        m = affine_matrix(p, (80, 60))
        out = warp_image(img, m, interpolation="nearest")
        nb, keep = transform_boxes(box, m, (80, 60), min_visible=0.0)
        ys, xs = np.nonzero(out)
        if ys.size == 0:
            continue
        ink = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_allclose(nb[0], ink, atol=1.0)


def test_flips_and_quarter_turn_match_numpy():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(40, 40)).astype(np.uint8)
    box = np.array([[3.0, 5.0, 20.0, 9.0]])
    m = affine_matrix(AugmentParams(flip_h=True), (40, 40))
    np.testing.assert_array_equal(warp_image(img, m), img[:, ::-1])
    np.testing.assert_allclose(transform_boxes(box, m, (40, 40))[0], [[20, 5, 37, 9]])
    m = affine_matrix(AugmentParams(flip_v=True), (40, 40))
    np.testing.assert_array_equal(warp_image(img, m), img[::-1])
    m = affine_matrix(AugmentParams(angle=90.0), (40, 40))
    turned = warp_image(img, m)
    assert any(np.array_equal(turned, np.rot90(img, k)) for k in (1, 3))
    k = 1 if np.array_equal(turned, np.rot90(img, 1)) else 3
    mask = np.zeros((40, 40), bool)
    mask[5:9, 3:20] = True
    ys, xs = np.nonzero(np.rot90(mask, k))
    np.testing.assert_allclose(transform_boxes(box, m, (40, 40))[0][0],
                               [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1e-9)


def test_boxes_mostly_outside_are_dropped():
    box = np.array([[0.0, 0.0, 20.0, 10.0], [40.0, 40.0, 60.0, 50.0]])
    m = affine_matrix(AugmentParams(shift=(-0.15, 0.0)), (100, 100))  # 15 px left: 5 of 20 stay
    kept, keep = transform_boxes(box, m, (100, 100), min_visible=0.3)
    assert keep.tolist() == [1] and np.allclose(kept, [[25, 40, 45, 50]])
    kept, keep = transform_boxes(box, m, (100, 100), min_visible=0.2)
    assert keep.tolist() == [0, 1] and np.allclose(kept[0], [0, 0, 5, 10])


def test_photometric_only_leaves_boxes():
    rng = np.random.default_rng(3)
    img = np.full((30, 30, 3), 100, np.uint8)
    box = np.array([[2.0, 3.0, 10.0, 12.0]])
    s = AugmentSettings(flip_h=0, brightness=0.2, contrast=0.3, colour=10, blur=1.0, noise=3).validate()
    out, nb, keep = augment(img, box, s, rng)
    np.testing.assert_array_equal(nb, box)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    p = sample_params(replace(s, noise=0, blur=0, colour=0, contrast=0), np.random.default_rng(5))
    assert -51 <= p.brightness <= 51


def test_bad_settings():
    for kwargs, name in (({"flip_h": 2}, "--flip-h"), ({"crop": 0}, "--crop"), ({"scale": (2, 1)}, "--scale"),
                         ({"rotate": float("nan")}, "--rotate"), ({"border": "wrap"}, "--border")):
        with pytest.raises(UsageError, match=name):
            AugmentSettings(**kwargs).validate()


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "run.json"}


def test_cli_copies_determinism_and_originals(tmp_path, cli):
    src = tmp_path / "src"
    assert cli(["prepare", "detection", "--out", src, "--count", "12", "--jobs", "1", "--quiet"]).exit_code == 0
    args = ["prepare", "augment", src, "--copies", "2", "--keep-original", "--rotate", "10", "--scale", "0.9-1.1",
            "--noise", "3", "--seed", "4", "--quiet"]
    r1 = cli(args + ["--out", tmp_path / "a", "--jobs", "1", "--json"])
    assert r1.exit_code == 0, r1.output
    assert json.loads(r1.stdout)["images"] == 36
    assert cli(args + ["--out", tmp_path / "b", "--jobs", "2"]).exit_code == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    from cvtool.datasets import load_dataset
    from cvtool.io.images import read_image

    orig, aug = load_dataset(src), load_dataset(tmp_path / "a")
    assert len(aug.images) == 3 * len(orig.images)
    np.testing.assert_array_equal(read_image(aug.image_path(aug.images[3])), read_image(orig.image_path(orig.images[1])))
    np.testing.assert_array_equal(aug.ann_boxes[aug.ann_image_ids == 4], orig.ann_boxes[orig.ann_image_ids == 2])
    assert (tmp_path / "a" / "classes.txt").read_text().split() == [str(d) for d in range(10)]
    res = cli(args + ["--out", tmp_path / "a", "--jobs", "1"])
    assert res.exit_code == 2 and "exists" in res.output
    res = cli(["prepare", "augment", tmp_path / "missing", "--out", tmp_path / "c"])
    assert res.exit_code == 2 and "missing" in res.output  # a missing input is a usage error (#12)


def test_flags_survive_and_bad_images_are_named(tmp_path, cli):
    import cv2

    from cvtool.datasets import load_dataset
    from cvtool.datasets.coco import write_coco
    from cvtool.datasets.core import Category, Dataset, ImageRecord

    img = np.zeros((40, 50, 3), np.uint8)
    img[5:20, 5:30] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    ds = Dataset(images=[ImageRecord(1, "a.png", 50, 40)], categories=[Category(7, "leaf")],
                 ann_image_ids=np.array([1, 1]), ann_boxes=np.array([[5.0, 5, 30, 20], [30.0, 25, 45, 35]]),
                 ann_labels=np.array([7, 7]), ann_iscrowd=np.array([True, False]),
                 ann_difficult=np.array([False, True]))
    write_coco(ds, tmp_path / "ann.json")
    res = cli(["prepare", "augment", tmp_path / "ann.json", "--out", tmp_path / "o", "--copies", "2",
               "--flip-h", "1", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    got = load_dataset(tmp_path / "o")
    assert got.ann_iscrowd.tolist() == [True, False] * 2
    assert got.ann_difficult.tolist() == [False, True] * 2
    np.testing.assert_allclose(got.ann_boxes[:2], [[20, 5, 45, 20], [5, 25, 20, 35]])
    # a second image that cannot be read: reported, skipped, exit 1, the rest written
    cv2.imwrite(str(tmp_path / "b.png"), img)
    two = Dataset(images=[ImageRecord(1, "a.png", 50, 40), ImageRecord(2, "b.png", 50, 40)],
                  categories=[Category(7, "leaf")], ann_image_ids=np.array([1, 2]),
                  ann_boxes=np.array([[5.0, 5, 30, 20], [5.0, 5, 30, 20]]), ann_labels=np.array([7, 7]),
                  ann_iscrowd=np.zeros(2, bool), ann_difficult=np.zeros(2, bool))
    write_coco(two, tmp_path / "two.json")
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = cli(["prepare", "augment", tmp_path / "two.json", "--out", tmp_path / "p", "--jobs", "1", "--quiet"])
    assert res.exit_code == 1 and "a.png" in res.output
    got = load_dataset(tmp_path / "p")
    assert [im.file_name for im in got.images] == ["images/000001.png"] and got.num_annotations == 1
    (tmp_path / "b.png").write_bytes(b"")
    res = cli(["prepare", "augment", tmp_path / "two.json", "--out", tmp_path / "q", "--jobs", "1", "--quiet"])
    assert res.exit_code == 1 and "no image could be augmented" in res.output
    assert not (tmp_path / "q" / "train").exists()

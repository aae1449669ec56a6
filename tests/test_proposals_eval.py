"""Proposal recall and average best overlap (cvtool.eval.proposals)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvtool.datasets.core import Category, Dataset, ImageRecord
from cvtool.eval.proposals import evaluate_proposals, plot_recall


def _dataset(images, boxes, labels, image_ids, crowd=None):
    k = len(boxes)
    return Dataset(
        images=[ImageRecord(i, f"{i}.png", 100, 100) for i in images],
        categories=[Category(1, "cat"), Category(2, "dog")],
        ann_image_ids=np.asarray(image_ids, np.int64), ann_boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        ann_labels=np.asarray(labels, np.int64),
        ann_iscrowd=np.zeros(k, bool) if crowd is None else np.asarray(crowd, bool),
        ann_difficult=np.zeros(k, bool))


@pytest.fixture()
def hand_case():
    # image 1: A (cat) and B (dog); image 2: C (cat) and a crowd box that must be ignored
    gt = _dataset([1, 2], [[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 4, 4], [50, 50, 60, 60]],
                  [1, 2, 1, 2], [1, 1, 2, 2], crowd=[0, 0, 0, 1])
    proposals = {1: np.array([[0, 0, 10, 5],        # IoU 0.5 with A (exactly at the threshold)
                              [20, 20, 30, 30],     # IoU 1 with B
                              [0, 0, 10, 10]]),     # IoU 1 with A
                 7: np.array([[0, 0, 1, 1]])}       # an image not in the ground truth: ignored
    return gt, proposals


def test_recall_and_abo_against_hand_computed_values(hand_case):
    gt, proposals = hand_case
    rep = evaluate_proposals(gt, proposals, counts=(1, 2, 3, 10), iou_thresholds=(0.5, 0.7))
    # best overlaps (A, B, C) with the first N: N=1 (.5, 0, 0), N=2 (.5, 1, 0), N>=3 (1, 1, 0)
    assert rep.recall[0.5] == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 2 / 3, 10: 2 / 3})
    assert rep.recall[0.7] == pytest.approx({1: 0, 2: 1 / 3, 3: 2 / 3, 10: 2 / 3})
    assert rep.abo == pytest.approx({1: 0.5 / 3, 2: 1.5 / 3, 3: 2 / 3, 10: 2 / 3})
    assert rep.abo_all == pytest.approx(2 / 3)
    assert rep.per_class["cat"]["num_gt"] == 2 and rep.per_class["dog"]["num_gt"] == 1
    assert rep.per_class["cat"]["recall"][0.5][3] == pytest.approx(0.5)
    assert rep.per_class["cat"]["abo_all"] == pytest.approx(0.5)
    assert rep.per_class["dog"]["abo"][1] == pytest.approx(0.0)
    assert rep.mabo == pytest.approx(0.75)
    assert (rep.num_gt, rep.num_images, rep.images_without_proposals) == (3, 2, 1)
    assert rep.mean_proposals == pytest.approx(1.5)
    # the curve agrees with the table where they meet
    curve = dict(zip(rep.curve_counts.tolist(), rep.curve_recall[0.5].tolist()))
    assert curve[1] == pytest.approx(1 / 3) and curve[2] == pytest.approx(2 / 3)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["recall"]["0.5"]["2"] == pytest.approx(2 / 3) and d["per_class"]["dog"]["num_gt"] == 1


def test_random_case_against_brute_force():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 60, (30, 2))
    gt_boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (30, 2))], axis=1)
    image_ids = rng.integers(0, 3, 30)
    gt = _dataset([0, 1, 2], gt_boxes, rng.integers(1, 3, 30), image_ids)
    props = {}
    for i in range(3):
        p = rng.uniform(0, 60, (50, 2))
        props[i] = np.concatenate([p, p + rng.uniform(5, 40, (50, 2))], axis=1)
    rep = evaluate_proposals(gt, props, counts=(5, 20, 50), iou_thresholds=(0.5,))
    best = {5: [], 20: [], 50: []}
    for g, i in zip(gt_boxes, image_ids):
        for n in best:
            ious = []
            for p in props[int(i)][:n]:
                iw = max(0.0, min(g[2], p[2]) - max(g[0], p[0]))
                ih = max(0.0, min(g[3], p[3]) - max(g[1], p[1]))
                inter = iw * ih
                ious.append(inter / ((g[2] - g[0]) * (g[3] - g[1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter))
            best[n].append(max(ious))
    for n, b in best.items():
        assert rep.abo[n] == pytest.approx(np.mean(b))
        assert rep.recall[0.5][n] == pytest.approx(np.mean(np.array(b) >= 0.5))


def test_bad_arguments(hand_case):
    gt, proposals = hand_case
    with pytest.raises(ValueError, match="counts"):
        evaluate_proposals(gt, proposals, counts=(0,))
    with pytest.raises(ValueError, match="IoU thresholds"):
        evaluate_proposals(gt, proposals, iou_thresholds=(1.5,))
    with pytest.raises(ValueError, match=r"image 1 have shape \(2, 3\)"):
        evaluate_proposals(gt, {1: np.zeros((2, 3))})
    with pytest.raises(ValueError, match="NaN"):
        evaluate_proposals(gt, {1: np.array([[0, 0, np.nan, 1]])})


def test_plot_recall_writes_a_png(hand_case, tmp_path):
    import cv2

    gt, proposals = hand_case
    rep = evaluate_proposals(gt, proposals)
    path = tmp_path / "recall.png"
    plot_recall(rep, path)
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 300
    assert (img < 128).any()                                   # something was drawn
    with pytest.raises(FileExistsError):
        plot_recall(rep, path)
    plot_recall(rep, path, overwrite=True)

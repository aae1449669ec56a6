"""VOC AP (all-point, 11-point) against the voc_sample reference, a naive devkit loop, and hand cases;
single-object localisation figures by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions
from cvtool.errors import BadInputError
from cvtool.eval.loc import evaluate_localization
from cvtool.eval.voc import average_precision, evaluate_voc

VOC_SAMPLE = Path(__file__).parent / "data" / "voc_sample"

# tests/data/README.md (from /work/shared/reference/README.md)
EXPECTED = {
    "11-point": {0.1: 0.3333333333, 0.3: 0.2683982683, 0.5: 0.0303030303, 0.75: 0.0},
    "all-point": {0.1: 0.3371980676, 0.3: 0.2456866804, 0.5: 0.0222222222, 0.75: 0.0},
}


def read_voc_sample() -> tuple[Dataset, Predictions]:
    """The plain-text sample (`class left top width height`, detections with a confidence)."""
    from cvtool.datasets.text import read_text_boxes, read_text_predictions

    gt = read_text_boxes(VOC_SAMPLE / "ground_truth", box_format="xywh")
    return gt, read_text_predictions(VOC_SAMPLE / "detections", gt, box_format="xywh")


def test_voc_sample_is_read_as_written():
    gt, pred = read_voc_sample()
    assert len(gt.images) == 7 and gt.num_annotations == 15 and len(pred) == 24
    first = (VOC_SAMPLE / "ground_truth" / "00001.txt").read_text().split()   # object 25 16 38 56
    x, y, w, h = map(float, first[1:5])
    assert [x, y, x + w, y + h] in gt.ann_boxes.tolist()


@pytest.mark.parametrize("method", ["11-point", "all-point"])
def test_voc_sample_reference(method):
    gt, pred = read_voc_sample()
    report = evaluate_voc(gt, pred, iou_thresholds=(0.1, 0.3, 0.5, 0.75), method=method, pixel_rule=True)
    for t, expected in EXPECTED[method].items():
        assert report.mean_ap[t] == pytest.approx(expected, abs=1e-9), t
        assert report.per_class[t][0].num_gt == 15 and report.per_class[t][0].num_dets == 24


def test_voc_sample_without_pixel_rule():
    gt, pred = read_voc_sample()
    report = evaluate_voc(gt, pred, iou_thresholds=(0.3,), method="all-point")
    assert report.mean_ap[0.3] == pytest.approx(0.2253968, abs=1e-7)
    row = report.to_dict()["thresholds"][0]["per_class"][0]
    assert row["TP"] + row["FP"] == 24 and row["TP"] == 6


def naive_voc(gt: Dataset, pred: Predictions, t: float, method: str) -> dict[int, float]:
    """The devkit's loop, written out plainly: per class, detections by score, one at a time."""
    out = {}
    for c in gt.categories:
        gmask = gt.ann_labels == c.id
        npos = int((gmask & ~gt.ann_difficult).sum())
        dets = [i for i in np.argsort(-pred.scores, kind="stable") if pred.labels[i] == c.id]
        claimed = set()
        tp, fp = [], []
        for d in dets:
            best, jbest = -np.inf, -1
            for j in np.flatnonzero(gmask & (gt.ann_image_ids == pred.image_ids[d])):
                a, b = pred.boxes[d], gt.ann_boxes[j]
                iw = min(a[2], b[2]) - max(a[0], b[0])
                ih = min(a[3], b[3]) - max(a[1], b[1])
                if iw > 0 and ih > 0:
                    ov = iw * ih / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih)
                    if ov > best:
                        best, jbest = ov, j
            if best >= t:
                if gt.ann_difficult[jbest]:
                    tp.append(0), fp.append(0)
                elif jbest not in claimed:
                    claimed.add(jbest)
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(1)
        if npos == 0:
            continue
        tpc, fpc = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
        rec = tpc / npos
        prec = tpc / np.maximum(tpc + fpc, np.finfo(float).eps)
        if method == "11-point":
            out[c.id] = sum((prec[rec >= r].max() if (rec >= r).any() else 0.0) for r in np.linspace(0, 1, 11)) / 11
        else:
            mrec = np.r_[0.0, rec, 1.0]
            mpre = np.r_[0.0, prec, 0.0]
            for i in range(mpre.size - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            out[c.id] = float(sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, mrec.size) if mrec[i] != mrec[i - 1]))
    return out


def random_voc_set(seed: int) -> tuple[Dataset, Predictions]:
    rng = np.random.default_rng(seed)
    n_img, n_cls = 15, 3
    gi = rng.integers(1, n_img + 1, size=60)
    xy = rng.uniform(0, 80, size=(60, 2))
    wh = rng.uniform(5, 40, size=(60, 2))
    gb = np.hstack([xy, xy + wh])
    gl = rng.integers(1, n_cls + 1, size=60)
    # detections: jittered copies (duplicates included) and random boxes, tied scores
    src = rng.integers(0, 60, size=120)
    db = gb[src] + rng.normal(0, 4, size=(120, 4))
    db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
    db[::4] = np.hstack([xy[:30], xy[:30] + 20])[rng.permutation(30)]
    dl = np.where(rng.random(120) < 0.9, gl[src], rng.integers(1, n_cls + 2, size=120).clip(1, n_cls))
    gt = Dataset(images=[ImageRecord(i, f"{i}.png", 200, 200) for i in range(1, n_img + 1)],
                 categories=[Category(c, f"c{c}") for c in range(1, n_cls + 2)],  # last class: no ground truth
                 ann_image_ids=gi, ann_boxes=gb, ann_labels=gl,
                 ann_iscrowd=np.zeros(60, bool), ann_difficult=rng.random(60) < 0.15)
    pred = Predictions(gi[src], db, np.round(rng.random(120), 1), dl)
    return gt, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["11-point", "all-point"])
def test_random_sets_equal_naive_devkit_loop(seed, method):
    gt, pred = random_voc_set(seed)
    report = evaluate_voc(gt, pred, iou_thresholds=(0.3, 0.5, 0.7), method=method)
    for t in (0.3, 0.5, 0.7):
        expected = naive_voc(gt, pred, t, method)
        got = {r.id: r.ap for r in report.per_class[t] if r.num_gt > 0}
        assert got.keys() == expected.keys()
        for k in got:
            assert got[k] == pytest.approx(expected[k], abs=1e-12)
        assert report.mean_ap[t] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
        no_gt = [r for r in report.per_class[t] if r.num_gt == 0]
        assert len(no_gt) == 1 and np.isnan(no_gt[0].ap)


def test_difficult_and_duplicates_by_hand():
    gt = Dataset(images=[ImageRecord(1, "a.png", 100, 100)], categories=[Category(1, "a")],
                 ann_image_ids=np.array([1, 1]), ann_labels=np.array([1, 1]),
                 ann_boxes=np.array([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
                 ann_iscrowd=np.zeros(2, bool), ann_difficult=np.array([False, True]))
    pred = Predictions(np.array([1, 1, 1, 1]), np.array([[0.0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10], [80, 80, 90, 90]]),
                       np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 1, 1]))
    r = evaluate_voc(gt, pred, iou_thresholds=(0.5,)).per_class[0.5][0]
    # TP, ignored (difficult), duplicate FP, miss FP: one positive, recall 1 at rank 1 -> AP 1
    assert (r.tp, r.fp, r.num_gt, r.num_difficult) == (1, 2, 1, 1)
    assert r.ap == pytest.approx(1.0)
    assert average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: precision 1 at recall 0..0.5 (6 points), 2/3 at 0.6..1 (5 points)
    assert average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]), method="11-point") == \
        pytest.approx((6 + 5 * 2 / 3) / 11)


def test_voc_bad_input():
    gt, pred = read_voc_sample()
    with pytest.raises(ValueError, match="method"):
        evaluate_voc(gt, pred, method="10-point")
    with pytest.raises(ValueError, match="IoU thresholds"):
        evaluate_voc(gt, pred, iou_thresholds=(1.5,))
    bad = Predictions(np.array([99]), np.array([[0.0, 0, 1, 1]]), np.array([0.5]), np.array([1]))
    with pytest.raises(BadInputError, match="image id 99"):
        evaluate_voc(gt, bad)


def test_localization_by_hand():
    gt = Dataset(images=[ImageRecord(i, f"{i}.png", 100, 100) for i in (1, 2, 3, 4)],
                 categories=[Category(0, "zero"), Category(1, "one")],
                 ann_image_ids=np.array([1, 2, 3, 4]), ann_labels=np.array([0, 1, 1, 0]),
                 ann_boxes=np.array([[0.0, 0, 10, 10]] * 4),
                 ann_iscrowd=np.zeros(4, bool), ann_difficult=np.zeros(4, bool))
    pred = Predictions(
        image_ids=np.array([1, 1, 2, 3]),
        boxes=np.array([[0.0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 5], [0, 0, 10, 8]]),
        scores=np.array([0.9, 0.5, 0.8, 0.7]),
        labels=np.array([0, 1, 1, 0]),
    )
    r = evaluate_localization(gt, pred, iou_threshold=0.6)
    # image 1: right class, IoU 1; image 2: right, IoU 0.5; image 3: wrong, IoU 0.8; image 4: none
    assert r.num_images == 4 and r.images_without_prediction == 1
    assert r.accuracy == pytest.approx(0.5)
    assert r.mean_iou == pytest.approx((1 + 0.5 + 0.8 + 0) / 4)
    assert r.iou_hit_rate == pytest.approx(0.5)
    assert r.correct == pytest.approx(0.25)
    by_name = {c["name"]: c for c in r.per_class}
    assert by_name["one"]["accuracy"] == pytest.approx(0.5) and by_name["zero"]["mean_iou"] == pytest.approx(0.5)
    two = Dataset(images=gt.images, categories=gt.categories, ann_image_ids=np.array([1, 1]),
                  ann_labels=np.array([0, 0]), ann_boxes=np.array([[0.0, 0, 5, 5]] * 2),
                  ann_iscrowd=np.zeros(2, bool), ann_difficult=np.zeros(2, bool))
    with pytest.raises(BadInputError, match="one ground-truth box per image"):
        evaluate_localization(two, pred)


def test_equal_iou_tie_goes_to_the_first_box_as_in_the_devkit():
    # det 1 overlaps A and B equally and takes A (the devkit keeps the first maximum);
    # det 2 is A itself, already claimed: a duplicate (FP).  B stays unmatched.
    gt = Dataset(images=[ImageRecord(1, "a.png", 50, 50)], categories=[Category(1, "a")],
                 ann_image_ids=np.array([1, 1]), ann_labels=np.array([1, 1]),
                 ann_boxes=np.array([[0.0, 0, 10, 10], [5, 0, 15, 10]]),
                 ann_iscrowd=np.zeros(2, bool), ann_difficult=np.zeros(2, bool))
    pred = Predictions(np.array([1, 1]), np.array([[2.5, 0, 12.5, 10], [0, 0, 10, 10]]),
                       np.array([0.9, 0.8]), np.array([1, 1]))
    r = evaluate_voc(gt, pred, iou_thresholds=(0.5,)).per_class[0.5][0]
    assert (r.tp, r.fp) == (1, 1)
    assert r.ap == pytest.approx(0.5)

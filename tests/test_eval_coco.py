"""COCO box metrics against pycocotools (the test-only oracle) and the coco100 reference."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions
from cvtool.errors import BadInputError
from cvtool.eval.coco import CocoParams, STAT_NAMES, evaluate_coco
from cvtool.eval.synthetic import make_coco_set

DATA = Path(__file__).parent / "data"

# pycocotools' 12 stats on coco100 (tests/data/README.md)
COCO100_STATS = [0.503647, 0.696973, 0.571667, 0.593252, 0.557991, 0.489363,
                 0.386813, 0.593680, 0.595353, 0.654764, 0.603130, 0.553744]


def dataset_from_coco(d: dict) -> Dataset:
    anns = d["annotations"]
    b = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return Dataset(
        images=[ImageRecord(im["id"], im["file_name"], im["width"], im["height"]) for im in d["images"]],
        categories=[Category(c["id"], c["name"]) for c in d["categories"]],
        ann_image_ids=np.array([a["image_id"] for a in anns], dtype=np.int64),
        ann_boxes=b,
        ann_labels=np.array([a["category_id"] for a in anns], dtype=np.int64),
        ann_iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
        ann_difficult=np.zeros(len(anns), dtype=bool),
        ann_area=np.array([a["area"] for a in anns], dtype=np.float64),
    )


def predictions_from_results(r: list[dict]) -> Predictions:
    b = np.array([a["bbox"] for a in r], dtype=np.float64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return Predictions(
        image_ids=np.array([a["image_id"] for a in r], dtype=np.int64),
        boxes=b,
        scores=np.array([a["score"] for a in r], dtype=np.float64),
        labels=np.array([a["category_id"] for a in r], dtype=np.int64),
    )


def pycocotools_eval(gt: dict, results: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_coco100_reference_stats():
    gt = json.loads((DATA / "coco100" / "ground_truth.json").read_text())
    dt = json.loads((DATA / "coco100" / "detections.json").read_text())
    report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(dt))
    np.testing.assert_allclose(report.stats_array, COCO100_STATS, atol=1e-6)
    assert list(report.stats) == list(STAT_NAMES)
    # per-class AP averages to AP over the classes that have ground truth
    aps = [r["AP"] for r in report.per_class if r["num_gt"] > 0]
    assert np.mean(aps) == pytest.approx(report.stats["AP"], abs=1e-12)


@pytest.mark.parametrize("seed,kwargs", [
    (0, {}),
    (1, {"crowd_fraction": 0.3}),
    (2, {"score_decimals": 1}),                       # many tied scores
    (3, {"num_classes": 1, "num_images": 5, "gt_per_image": 25, "dets_per_image": 170,
         "classes_without_gt": 0}),                     # > 100 detections per image and class
    (4, {"empty_image_fraction": 0.4, "no_detection_fraction": 0.4, "classes_without_gt": 3}),
    (5, {"score_decimals": None, "gt_per_image": 2, "dets_per_image": 3}),
])
def test_random_sets_equal_pycocotools(seed, kwargs):
    opts = {"num_images": 40, "num_classes": 6, **kwargs}
    gt, results = make_coco_set(seed, **opts)
    assert any(a["iscrowd"] for a in gt["annotations"]) or opts.get("crowd_fraction", 0.05) < 0.1
    ev = pycocotools_eval(gt, results)
    report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(results))
    np.testing.assert_allclose(report.stats_array, ev.stats, atol=1e-6, rtol=0)
    acc = report.accumulation
    np.testing.assert_allclose(acc.precision, ev.eval["precision"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(acc.recall, ev.eval["recall"], atol=1e-6, rtol=0)
    # AR50/AR75: mean recall at one threshold, area all, 100 detections
    for name, t in (("AR50", 0), ("AR75", 5)):
        r = ev.eval["recall"][t, :, 0, -1]
        expected = r[r > -1].mean() if (r > -1).any() else -1
        assert report.stats[name] == pytest.approx(expected, abs=1e-6)


def test_set_features_are_exercised():
    gt, results = make_coco_set(4, num_images=40, num_classes=6, empty_image_fraction=0.4,
                                no_detection_fraction=0.4, classes_without_gt=3)
    with_gt = {a["image_id"] for a in gt["annotations"]}
    with_dets = {r["image_id"] for r in results}
    all_ids = {im["id"] for im in gt["images"]}
    assert all_ids - with_gt and all_ids - with_dets
    report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(results))
    no_gt = [r for r in report.per_class if r["num_gt"] == 0]
    assert no_gt and all(r["AP"] == -1 and r["num_dets"] > 0 for r in no_gt)


def test_hand_computed_crowd_and_ranking():
    # one image, one class: a regular box, a crowd box; three detections
    gt = Dataset(
        images=[ImageRecord(1, "a.png", 100, 100)], categories=[Category(7, "cat")],
        ann_image_ids=np.array([1, 1]), ann_labels=np.array([7, 7]),
        ann_boxes=np.array([[0, 0, 10, 10], [50, 50, 90, 90]], dtype=float),
        ann_iscrowd=np.array([False, True]), ann_difficult=np.zeros(2, bool),
    )
    pred = Predictions(
        image_ids=np.array([1, 1, 1]), labels=np.array([7, 7, 7]),
        boxes=np.array([[0, 0, 10, 10], [60, 60, 70, 70], [0, 0, 10, 9]], dtype=float),
        scores=np.array([0.9, 0.8, 0.7]),
    )
    report = evaluate_coco(gt, pred)
    # det 1 matches the box exactly; det 2 lies inside the crowd box (IoU over its own area = 1):
    # ignored; det 3 duplicates det 1 (IoU 0.9) -> false positive at every threshold.
    # Precision 1 up to recall 1 -> AP 1 at every threshold.
    assert report.stats["AP"] == pytest.approx(1.0)
    assert report.stats["AR1"] == pytest.approx(1.0)
    m = report.accumulation.matches
    tp = m.det_tp[:, :, 0]
    fp = m.det_fp[:, :, 0]
    assert tp[0].all() and not fp[0].any()
    assert not tp[1].any() and not fp[1].any()          # matched to crowd: ignored
    assert fp[2].all()


def test_no_detections_and_no_ground_truth():
    gt = Dataset(images=[ImageRecord(1, "a.png", 50, 50)], categories=[Category(1, "a")],
                 ann_image_ids=np.array([1]), ann_labels=np.array([1]),
                 ann_boxes=np.array([[0.0, 0, 10, 10]]), ann_iscrowd=np.array([False]),
                 ann_difficult=np.array([False]))
    report = evaluate_coco(gt, Predictions())
    assert report.stats["AP"] == 0.0 and report.stats["AR100"] == 0.0
    assert report.stats["APm"] == -1 and report.stats["APl"] == -1   # no medium/large boxes
    empty = Dataset(images=[ImageRecord(1, "a.png", 50, 50)], categories=[Category(1, "a")])
    assert evaluate_coco(empty, Predictions()).stats["AP"] == -1


def test_unknown_ids_and_bad_values_are_refused():
    gt = Dataset(images=[ImageRecord(1, "a.png", 50, 50)], categories=[Category(1, "a")])
    box = np.array([[0.0, 0, 10, 10]])
    with pytest.raises(BadInputError, match="image id 5"):
        evaluate_coco(gt, Predictions(np.array([5]), box, np.array([0.5]), np.array([1])))
    with pytest.raises(BadInputError, match="category id 9"):
        evaluate_coco(gt, Predictions(np.array([1]), box, np.array([0.5]), np.array([9])))
    with pytest.raises(BadInputError, match="non-finite"):
        evaluate_coco(gt, Predictions(np.array([1]), box, np.array([np.nan]), np.array([1])))
    with pytest.raises(ValueError, match="max_dets"):
        CocoParams(max_dets=(10, 1))


def test_custom_params_equal_pycocotools():
    gt, results = make_coco_set(7, num_images=30, num_classes=4)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(results))), "bbox")
        ev.params.iouThrs = np.array([0.5, 0.6])
        ev.params.maxDets = [1, 5, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    params = CocoParams(iou_thresholds=(0.5, 0.6), max_dets=(1, 5, 100))
    report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(results), params=params)
    np.testing.assert_allclose(report.accumulation.precision, ev.eval["precision"], atol=1e-12)
    np.testing.assert_allclose(report.accumulation.recall, ev.eval["recall"], atol=1e-12)
    assert report.stats["AP"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert report.stats["AP75"] == -1 and ev.stats[2] == -1


def test_area_range_boundaries_and_duplicate_boxes_equal_pycocotools():
    # boxes whose area is exactly 32^2 or 96^2 (closed ranges), identical duplicate
    # ground truth, a crowd box over regular ones, detections exactly on the boundaries
    images = [{"id": i, "file_name": f"{i}.png", "width": 300, "height": 300} for i in (1, 2, 3)]
    boxes = [(1, [10, 10, 32, 32]), (1, [10, 10, 32, 32]), (1, [100, 100, 96, 96]), (2, [0, 0, 64, 16]),
             (2, [0, 0, 200, 200]), (3, [50, 50, 31, 33]), (3, [150, 150, 97, 95])]
    anns = [{"id": k + 1, "image_id": im, "category_id": 1, "bbox": b, "area": float(b[2] * b[3]),
             "iscrowd": int(k == 4)} for k, (im, b) in enumerate(boxes)]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    dets = [{"image_id": im, "category_id": 1, "bbox": [b[0] + dx, b[1], b[2], b[3]], "score": s}
            for (im, b), dx, s in zip(boxes, (0, 1, 0, 2, 5, 0, 3), (0.9, 0.9, 0.8, 0.7, 0.6, 0.6, 0.5))]
    dets += [{"image_id": 2, "category_id": 1, "bbox": [10, 10, 32, 32], "score": 0.95},   # inside the crowd box
             {"image_id": 3, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.4}]      # class without ground truth
    ev = pycocotools_eval(gt, dets)
    report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(dets))
    np.testing.assert_allclose(report.stats_array, ev.stats, atol=1e-12)
    np.testing.assert_allclose(report.accumulation.precision, ev.eval["precision"], atol=1e-12)
    assert report.stats["APs"] > -1 and report.stats["APm"] > -1 and report.stats["APl"] > -1


def _grid_sets():
    """Tiny sets on an integer grid: many exact IoU ties (0.5, 0.75 ...) and tied scores."""
    from hypothesis import strategies as st

    box = st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(1, 6), st.integers(1, 6))
    gt_ann = st.tuples(st.integers(1, 3), st.integers(1, 2), box, st.booleans(), st.sampled_from([1.0, 0.5, 3.0]))
    det = st.tuples(st.integers(1, 3), st.integers(1, 3), box, st.sampled_from([0.1, 0.5, 0.5, 0.9]))
    return st.tuples(st.lists(gt_ann, max_size=10), st.lists(det, max_size=14))


def test_integer_grid_sets_equal_pycocotools():
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_grid_sets())
    def check(data):
        gts, dets = data
        scale = 8.0   # boxes of 8..48 px: small and medium areas
        anns = [{"id": k + 1, "image_id": im, "category_id": c,
                 "bbox": [x * scale, y * scale, w * scale, h * scale], "iscrowd": int(crowd and k % 3 == 0),
                 "area": w * h * scale * scale * f} for k, (im, c, (x, y, w, h), crowd, f) in enumerate(gts)]
        gt = {"images": [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i in (1, 2, 3)],
              "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
        res = [{"image_id": im, "category_id": c, "bbox": [x * scale, y * scale, w * scale, h * scale], "score": s}
               for im, c, (x, y, w, h), s in dets]
        ev = pycocotools_eval(gt, res) if res else None
        report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(res))
        if ev is None:   # pycocotools cannot load an empty results list
            assert all(v in (0.0, -1.0) for v in report.stats.values())
            return
        np.testing.assert_allclose(report.stats_array, ev.stats, atol=1e-12)
        np.testing.assert_allclose(report.accumulation.precision, ev.eval["precision"], atol=1e-12)
        np.testing.assert_allclose(report.accumulation.recall, ev.eval["recall"], atol=1e-12)

    check()


def test_equal_iou_tie_goes_to_the_later_box_as_in_pycocotools():
    # det 1 overlaps boxes A and B equally (IoU 0.6 each) and takes the later one, B;
    # det 2 is A itself (IoU 1/3 with B) and so still finds A free: two true positives.
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 50}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 0, 10, 10], "area": 100, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [2.5, 0, 10, 10], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8}]
    ev = pycocotools_eval(gt, dets)
    report = evaluate_coco(dataset_from_coco(gt), predictions_from_results(dets))
    np.testing.assert_allclose(report.stats_array, ev.stats, atol=1e-12)
    assert report.stats["AP50"] == pytest.approx(1.0)

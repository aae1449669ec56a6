"""cvtool.detections.postprocess: each pipeline stage, NumPy and torch in, NumPy out."""

from __future__ import annotations

import numpy as np
import pytest

from cvtool import boxes as B
from cvtool.detections import Detections, postprocess

torch = pytest.importorskip("torch")


def test_pipeline_stages_hand_case():
    boxes = np.array([
        [-10, -10, 50, 50],    # 0: clipped to [0,0,50,50]
        [0, 0, 50, 50],        # 1: same class as 0, suppressed by it (0 scores higher)
        [0, 0, 50, 50],        # 2: other class, kept
        [60, 60, 60.5, 90],    # 3: 0.5 px wide -> dropped as tiny
        [70, 70, 90, 90],      # 4: score 0.04 <= 0.05 -> dropped
        [95, 95, 130, 130],    # 5: clipped to [95,95,100,100], 5 px: kept
    ], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.04, 0.6])
    labels = np.array([0, 0, 1, 0, 0, 2])
    det = postprocess(boxes, scores, labels, image_size=(100, 100))
    assert isinstance(det, Detections)
    np.testing.assert_array_equal(det.scores, [0.9, 0.7, 0.6])
    np.testing.assert_array_equal(det.labels, [0, 1, 2])
    np.testing.assert_array_equal(det.boxes, [[0, 0, 50, 50], [0, 0, 50, 50], [95, 95, 100, 100]])
    assert det.boxes.dtype == np.float64 and det.labels.dtype == np.int64
    # class-agnostic: 2 now suppressed by 0
    agn = postprocess(boxes, scores, labels, image_size=(100, 100), class_agnostic=True)
    np.testing.assert_array_equal(agn.scores, [0.9, 0.6])
    # top-k
    assert len(postprocess(boxes, scores, labels, image_size=(100, 100), max_detections=2)) == 2
    # min_size larger than the clipped corner box drops it
    assert 0.6 not in postprocess(boxes, scores, labels, image_size=(100, 100), min_size=6).scores


def test_torch_input_numpy_output_same_result():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-20, 200, (500, 2))
    b = np.hstack([xy, xy + rng.uniform(0, 60, (500, 2))])
    s = rng.random(500)
    lab = rng.integers(0, 4, 500)
    ref = postprocess(b, s, lab, image_size=(220, 180), iou_threshold=0.4, max_detections=50)
    out = postprocess(torch.tensor(b, dtype=torch.float32), torch.tensor(s), torch.tensor(lab),
                      image_size=(220, 180), iou_threshold=0.4, max_detections=50)
    assert isinstance(out.boxes, np.ndarray)
    assert len(ref) == 50
    np.testing.assert_array_equal(out.labels, ref.labels)
    np.testing.assert_allclose(out.boxes, ref.boxes, atol=1e-4)
    # reference: the stages spelled out by hand
    c = B.clip(b, (220, 180))
    m = (s > 0.05) & (c[:, 2] - c[:, 0] >= 1) & (c[:, 3] - c[:, 1] >= 1)
    idx = np.flatnonzero(m)
    k = idx[B.batched_nms(c[idx], s[idx], lab[idx], iou_threshold=0.4)][:50]
    np.testing.assert_array_equal(ref.scores, s[k])
    assert np.all(np.diff(ref.scores) <= 0)


def test_empty_and_bad_input():
    det = postprocess(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), image_size=(10, 10))
    assert det.boxes.shape == (0, 4) and det.scores.shape == (0,) and det.labels.shape == (0,)
    det = postprocess(torch.zeros((0, 4)), torch.zeros(0), None, image_size=(10, 10))
    assert len(det) == 0
    with pytest.raises(ValueError, match="scores must have shape"):
        postprocess(np.ones((2, 4)), np.ones(3), None, image_size=(10, 10))
    with pytest.raises(ValueError, match="NaN"):
        postprocess(np.array([[0, 0, np.nan, 1]]), np.ones(1), None, image_size=(10, 10))
    with pytest.raises(ValueError, match="min_size"):
        postprocess(np.ones((1, 4)), np.ones(1), None, image_size=(10, 10), min_size=-1)
    with pytest.raises(ValueError, match="disagree"):
        Detections(np.zeros((2, 4)), np.zeros(1), np.zeros(2))

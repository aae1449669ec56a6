"""cvtool.boxes: hand-computed cases, OpenCV's NMS as reference, NumPy/torch parity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cvtool import boxes as B

torch = pytest.importorskip("torch")


# --------------------------------------------------------------------- convert
def test_convert_hand_cases():
    xyxy = np.array([[10.0, 20.0, 40.0, 60.0]])
    np.testing.assert_allclose(B.convert(xyxy, "xyxy", "xywh"), [[10, 20, 30, 40]])
    np.testing.assert_allclose(B.convert(xyxy, "xyxy", "cxcywh"), [[25, 40, 30, 40]])
    np.testing.assert_allclose(B.convert([[25, 40, 30, 40]], "cxcywh", "xyxy"), xyxy)
    np.testing.assert_allclose(B.convert(xyxy, "xyxy", "cxcywhn", image_size=(100, 80)),
                               [[0.25, 0.5, 0.3, 0.5]])
    np.testing.assert_allclose(B.convert(xyxy, "xyxy", "xyxyn", image_size=(100, 80)),
                               [[0.1, 0.25, 0.4, 0.75]])
    np.testing.assert_allclose(B.convert([[0.1, 0.25, 0.3, 0.5]], "xywhn", "xyxy", image_size=(100, 80)), xyxy)


def test_convert_round_trip_all_formats():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 300, (50, 2))
    b = np.hstack([xy, xy + rng.uniform(1, 100, (50, 2))])
    for fmt in B.FORMATS:
        there = B.convert(b, "xyxy", fmt, image_size=(640, 480))
        back = B.convert(there, fmt, "xyxy", image_size=(640, 480))
        np.testing.assert_allclose(back, b, atol=1e-9, err_msg=fmt)


def test_convert_errors_name_the_format():
    with pytest.raises(ValueError, match="'xyhw'.*xyxy, xywh"):
        B.convert([[0, 0, 1, 1]], "xyhw", "xyxy")
    with pytest.raises(ValueError, match="image_size"):
        B.convert([[0, 0, 1, 1]], "xyxyn", "xyxy")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        B.convert([[0, 0, 1]], "xyxy", "xywh")


def test_convert_dtypes_and_empty():
    out = B.convert(np.array([[1, 2, 3, 4]], dtype=np.int32), "xywh", "xyxy")
    assert out.dtype == np.float64 and out.tolist() == [[1, 2, 4, 6]]
    assert B.convert(np.zeros((0, 4), np.float32), "xyxy", "xywh").dtype == np.float32
    assert B.convert(np.zeros((0, 4)), "xyxy", "cxcywh").shape == (0, 4)
    t = B.convert(torch.tensor([[1, 2, 3, 4]]), "xywh", "xyxy")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.tolist() == [[1, 2, 4, 6]]


# ------------------------------------------------------------- area, clip, iou
def test_area_clip_hand_cases():
    b = np.array([[0, 0, 10, 5], [2, 2, 2, 8], [5, 5, 3, 3]], dtype=np.int64)
    np.testing.assert_array_equal(B.area(b), [50.0, 0.0, 0.0])
    assert B.area(b).dtype == np.float64
    # integers upcast before the product: no int16 overflow
    assert B.area(np.array([[0, 0, 300, 300]], dtype=np.int16))[0] == 90000.0
    c = B.clip(np.array([[-5.0, -1.0, 50.0, 20.0], [200.0, 5.0, 300.0, 6.0]]), (100, 10))
    np.testing.assert_array_equal(c, [[0, 0, 50, 10], [100, 5, 100, 6]])


def test_iou_hand_cases():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6], [1, 1, 1, 1]], dtype=float)
    expected = [[2 / 6, 1.0, 0.0, 0.0], [0.0, 0.25, 0.0, 0.0]]
    np.testing.assert_allclose(B.iou(a, b), expected)
    np.testing.assert_allclose(B.iou(torch.tensor(a), torch.tensor(b)).numpy(), expected)
    # two degenerate boxes: empty union -> 0, not NaN
    assert B.iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]
    assert B.iou(torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[1.0, 1, 1, 1]])).tolist() == [[0.0]]


def test_iou_empty_shapes_and_dtypes():
    assert B.iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert B.iou(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    t = B.iou(torch.zeros((0, 4)), torch.ones((5, 4)))
    assert tuple(t.shape) == (0, 5) and t.dtype == torch.float32
    assert B.iou(np.ones((1, 4), np.float32), np.ones((1, 4), np.float32)).dtype == np.float32
    assert B.iou(torch.ones((1, 4), dtype=torch.int64), torch.ones((1, 4), dtype=torch.int64)).dtype == torch.float32
    with pytest.raises(ValueError, match="both"):
        B.iou(np.ones((1, 4)), torch.ones((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        B.iou(np.ones((2, 3)), np.ones((1, 4)))


def test_iou_matches_direct_formula_and_torch():
    rng = np.random.default_rng(2)
    a = np.hstack([p := rng.uniform(0, 50, (30, 2)), p + rng.uniform(0, 30, (30, 2))])
    b = np.hstack([q := rng.uniform(0, 50, (20, 2)), q + rng.uniform(0, 30, (20, 2))])
    ref = np.zeros((30, 20))
    for i in range(30):
        for j in range(20):
            iw = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = iw * ih
            union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            ref[i, j] = inter / union if union > 0 else 0.0
    np.testing.assert_allclose(B.iou(a, b), ref, atol=1e-12)
    np.testing.assert_allclose(B.iou(torch.tensor(a), torch.tensor(b)).numpy(), ref, atol=1e-12)


def test_giou_hand_cases():
    # identical -> 1; disjoint unit boxes 1 apart -> iou 0, hull 3x1, union 2 -> -1/3
    a = np.array([[0.0, 0, 1, 1]])
    b = np.array([[0.0, 0, 1, 1], [2.0, 0, 3, 1], [0.5, 0, 1.5, 1]])
    exp = [[1.0, -1 / 3, 1 / 3 - (1.5 - 1.5) / 1.5]]
    np.testing.assert_allclose(B.giou(a, b), exp)
    np.testing.assert_allclose(B.giou(torch.tensor(a), torch.tensor(b)).numpy(), exp)
    assert B.giou(np.zeros((0, 4)), b).shape == (0, 3)


# ------------------------------------------------------------------------- NMS
def test_nms_hand_case():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=float)
    s = np.array([0.9, 0.8, 0.7, 0.95])
    # 3 vs 0: iou 100/105 = 0.952; 3 vs 1: 81/124 = 0.653; 0 vs 1: 81/119 = 0.681
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.5), [3, 2])
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.9), [3, 1, 2])
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.96), [3, 0, 1, 2])
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.5, score_threshold=0.9), [3])


def test_nms_threshold_is_strict_and_ties_keep_lower_index():
    # IoU exactly 0.5: [0,0,2,1] and [0,0,1,1]... iou = 1/2
    b = np.array([[0.0, 0, 2, 1], [0.0, 0, 1, 1]])
    np.testing.assert_array_equal(B.nms(b, [0.9, 0.8], iou_threshold=0.5), [0, 1])
    np.testing.assert_array_equal(B.nms(b, [0.9, 0.8], iou_threshold=0.49), [0])
    same = np.array([[0.0, 0, 1, 1]] * 3)
    np.testing.assert_array_equal(B.nms(same, [0.5, 0.5, 0.5]), [0])


def test_nms_empty_and_bad_input():
    out = B.nms(np.zeros((0, 4)), np.zeros(0))
    assert out.shape == (0,) and out.dtype == np.int64
    t = B.nms(torch.zeros((0, 4)), torch.zeros(0))
    assert t.dtype == torch.int64 and tuple(t.shape) == (0,)
    with pytest.raises(ValueError, match="scores must have shape"):
        B.nms(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        B.nms(np.array([[0, 0, np.nan, 1.0]]), [1.0])
    with pytest.raises(ValueError, match="iou_threshold"):
        B.nms(np.ones((1, 4)), [1.0], iou_threshold=1.5)


def _random_boxes(rng, n, extent=1000.0, size=(10, 200)):
    xy = rng.uniform(0, extent, (n, 2))
    return np.hstack([xy, xy + rng.uniform(size[0], size[1], (n, 2))])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_equals_opencv_on_10000_random_boxes(threshold):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(int(threshold * 10))
    b = _random_boxes(rng, 10_000)
    s = rng.random(10_000).astype(np.float32)  # cv2 takes float32 scores; so do we here
    ref = np.asarray(cv2.dnn.NMSBoxes(B.convert(b, "xyxy", "xywh"), s, 0.0, threshold)).reshape(-1)
    ours = B.nms(b, s, iou_threshold=threshold, score_threshold=0.0)
    assert len(ours) > 1000
    np.testing.assert_array_equal(ours, ref)


def test_nms_equals_opencv_with_score_ties_and_clusters():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    centres = rng.uniform(0, 500, (40, 2))
    pick = rng.integers(0, 40, 3000)
    xy = centres[pick] + rng.normal(0, 6, (3000, 2))
    b = np.hstack([xy, xy + rng.uniform(20, 60, (3000, 2))])
    s = rng.integers(1, 20, 3000).astype(np.float32) / 20  # many equal scores
    # 0.125 is exact in float32: cv2 compares scores with a float32 threshold, so a
    # threshold such as 0.1 would keep float32(0.1) scores here and drop them there
    ref = np.asarray(cv2.dnn.NMSBoxes(B.convert(b, "xyxy", "xywh"), s, 0.125, 0.45)).reshape(-1)
    ours = B.nms(b, s, iou_threshold=0.45, score_threshold=0.125)
    assert 100 < len(ours) < 2000
    np.testing.assert_array_equal(ours, ref)


def _reference_greedy(b, s, t, labels=None):
    """Plain float64 greedy NMS: one IoU row per kept box."""
    order = np.argsort(-s, kind="stable")
    alive = np.ones(len(b), bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        over = B.iou(b[i:i + 1], b)[0] > t
        if labels is not None:
            over &= labels == labels[i]
        alive &= ~over
    return np.array(keep, dtype=np.int64)


@pytest.mark.parametrize("offset,size", [(0.0, (1, 30)), (1e5, (0.5, 4))])
def test_nms_equals_plain_greedy_far_from_origin(offset, size):
    # large coordinates with tiny boxes push pairs into the float32 error band,
    # where the block algorithm re-tests in float64
    rng = np.random.default_rng(11)
    b = _random_boxes(rng, 3000, extent=150, size=size) + offset
    s = rng.random(3000)
    ref = _reference_greedy(b, s, 0.4)
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.4), ref)
    lab = rng.integers(0, 3, 3000)
    np.testing.assert_array_equal(B.batched_nms(b, s, lab, iou_threshold=0.4), _reference_greedy(b, s, 0.4, lab))


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 259, 263, 264, 513])
def test_nms_block_edges(n):
    # sizes around the block length: the last block may hold fewer boxes than spatial cells
    rng = np.random.default_rng(n)
    b = _random_boxes(rng, n, extent=60, size=(5, 30))
    s = rng.random(n)
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.3), _reference_greedy(b, s, 0.3))


@pytest.mark.parametrize("seed", range(4))
def test_nms_greedy_invariants(seed):
    # kept boxes never overlap above t; each dropped box overlaps a kept, higher-ranked box above t
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(50, 1500))
    b = _random_boxes(rng, n, extent=float(rng.uniform(50, 800)), size=(1, float(rng.uniform(5, 300))))
    s = rng.integers(0, 30, n).astype(float)  # plenty of ties
    t = float(rng.uniform(0.1, 0.9))
    keep = B.nms(b, s, iou_threshold=t)
    rank = np.empty(n, int)
    rank[np.argsort(-s, kind="stable")] = np.arange(n)
    assert np.all(np.diff(rank[keep]) > 0)
    o = B.iou(b[keep], b[keep])
    np.fill_diagonal(o, 0)
    assert o.max(initial=0) <= t
    dropped = np.setdiff1d(np.arange(n), keep)
    ob = B.iou(b[keep], b[dropped]) > t
    ob &= rank[keep][:, None] < rank[dropped][None, :]
    assert ob.any(axis=0).all()


def test_nms_torch_matches_numpy_and_stays_tensor():
    rng = np.random.default_rng(3)
    b = _random_boxes(rng, 600, extent=300)
    s = rng.random(600)
    ref = B.nms(b, s, iou_threshold=0.5)
    out = B.nms(torch.tensor(b, dtype=torch.float32), torch.tensor(s), iou_threshold=0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64
    np.testing.assert_array_equal(out.numpy(), ref)


def test_batched_nms_is_per_class():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=float)
    s = np.array([0.9, 0.8, 0.7, 0.6])
    lab = np.array([1, 2, 1, 2])
    np.testing.assert_array_equal(B.batched_nms(b, s, lab, iou_threshold=0.5), [0, 1, 3])
    np.testing.assert_array_equal(B.nms(b, s, iou_threshold=0.5), [0, 3])
    assert B.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)).shape == (0,)


def test_batched_nms_equals_loop_over_classes():
    rng = np.random.default_rng(4)
    b = _random_boxes(rng, 2000, extent=400)
    s = rng.random(2000)
    lab = rng.integers(0, 7, 2000) * 3 - 5  # arbitrary (negative) label values
    ours = B.batched_nms(b, s, lab, iou_threshold=0.5)
    ref = np.concatenate([np.flatnonzero(lab == c)[B.nms(b[lab == c], s[lab == c], iou_threshold=0.5)]
                          for c in np.unique(lab)])
    ref = ref[np.argsort(-s[ref], kind="stable")]
    np.testing.assert_array_equal(ours, ref)
    t = B.batched_nms(torch.tensor(b), torch.tensor(s), torch.tensor(lab), iou_threshold=0.5)
    np.testing.assert_array_equal(t.numpy(), ref)


# -------------------------------------------------------------------- soft-NMS
def test_soft_nms_linear_hand_case():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], dtype=float)
    s = np.array([0.9, 0.8, 0.3])
    keep, sc = B.soft_nms(b, s, method="linear", iou_threshold=0.3, score_threshold=0.01)
    # box 1 vs 0: iou 0.5 > 0.3 -> 0.8 * 0.5 = 0.4, still above box 2 (0.3)
    np.testing.assert_array_equal(keep, [0, 1, 2])
    np.testing.assert_allclose(sc, [0.9, 0.4, 0.3])
    keep, sc = B.soft_nms(b, s, method="linear", iou_threshold=0.6, score_threshold=0.01)
    np.testing.assert_allclose(sc, [0.9, 0.8, 0.3])


def test_soft_nms_gaussian_hand_case_and_threshold():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=float)
    keep, sc = B.soft_nms(b, [0.9, 0.8], method="gaussian", sigma=0.5)
    np.testing.assert_allclose(sc, [0.9, 0.8 * np.exp(-0.25 / 0.5)])
    keep, sc = B.soft_nms(b, [0.9, 0.8], method="gaussian", sigma=0.5, score_threshold=0.5)
    np.testing.assert_array_equal(keep, [0])
    with pytest.raises(ValueError, match="'hard'"):
        B.soft_nms(b, [0.9, 0.8], method="hard")
    k, s2 = B.soft_nms(torch.tensor(b), torch.tensor([0.9, 0.8]))
    assert isinstance(k, torch.Tensor) and isinstance(s2, torch.Tensor)
    k, s2 = B.soft_nms(np.zeros((0, 4)), np.zeros(0))
    assert k.shape == (0,) and s2.shape == (0,)


def test_soft_nms_linear_with_hard_decay_equals_nms():
    # linear decay by (1 - iou) never reaches 0 unless iou == 1, but a score
    # threshold above every decayed score turns it into hard NMS
    rng = np.random.default_rng(5)
    b = _random_boxes(rng, 300, extent=200)
    s = rng.uniform(0.9, 1.0, 300)
    keep, _ = B.soft_nms(b, s, method="linear", iou_threshold=0.5, score_threshold=0.5)
    hard = B.nms(b, s, iou_threshold=0.5)
    assert set(hard.tolist()) <= set(keep.tolist())


# ------------------------------------------------------------------------ topk
def test_topk():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    np.testing.assert_array_equal(B.topk(s, 3), [1, 3, 2])
    np.testing.assert_array_equal(B.topk(s, 10), [1, 3, 2, 4, 0])
    assert B.topk(s, 0).shape == (0,)
    big = np.random.default_rng(0).integers(0, 50, 1000).astype(float)
    np.testing.assert_array_equal(B.topk(big, 5), np.argsort(-big, kind="stable")[:5])
    np.testing.assert_array_equal(B.topk(torch.tensor(s), 3).numpy(), [1, 3, 2])
    with pytest.raises(ValueError):
        B.topk(s, -1)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_results_stay_on_the_input_device(device):
    rng = np.random.default_rng(9)
    b = _random_boxes(rng, 200, extent=100)
    s = rng.random(200)
    tb = torch.tensor(b, dtype=torch.float32, device=device)
    ts = torch.tensor(s, device=device)
    for out in (B.iou(tb, tb), B.giou(tb, tb), B.area(tb), B.clip(tb, (80, 80)), B.convert(tb, "xyxy", "xywh"),
                B.nms(tb, ts), B.batched_nms(tb, ts, torch.zeros(200, dtype=torch.int64, device=device)),
                B.topk(ts, 5), *B.soft_nms(tb, ts)):
        assert out.device.type == device
    np.testing.assert_array_equal(B.nms(tb, ts).cpu().numpy(), B.nms(b.astype(np.float32), s))
    np.testing.assert_allclose(B.iou(tb, tb).cpu().numpy(), B.iou(b, b), atol=1e-5)


def test_import_does_not_import_torch():
    code = "import sys, cvtool.boxes, cvtool.detections; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

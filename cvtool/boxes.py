"""The one box module: conversions, areas, overlaps and non-maximum suppression.

Inside cvtool every box is a float ``[N, 4]`` array of pixel coordinates
``(x1, y1, x2, y2)`` ("xyxy"; ``x2 - x1`` is the width, no ``+1``).  Other
formats exist only at file edges and are converted with :func:`convert`.

Every function takes NumPy arrays (or anything :func:`numpy.asarray` accepts)
or torch tensors (CPU or CUDA) with the same API; torch is imported only when
a tensor is passed, never at module import.

Dtype rules
-----------
* NumPy: float32 and float64 boxes keep their dtype; integer, bool and
  float16 boxes are upcast (integers and bool to float64, float16 to float32)
  before any arithmetic, so areas of integer boxes never overflow or truncate.
* torch: float32 and float64 keep their dtype; integer, bool, float16 and
  bfloat16 tensors are upcast to float32.  Results live on the input's device.
* Index results (:func:`nms`, :func:`batched_nms`, :func:`soft_nms`,
  :func:`topk`) are int64 (NumPy ndarray, or tensor on the input's device).
* Empty inputs give empty results of the right shape: ``iou`` of ``(0, 4)``
  and ``(M, 4)`` boxes is ``(0, M)``; ``nms`` of no boxes is ``(0,)`` int64.

Non-maximum suppression follows the greedy rule of ``cv2.dnn.NMSBoxes`` and
torchvision: boxes are visited by descending score (ties: the lower index
first, a stable sort), and a box is suppressed by a kept box when their IoU is
strictly greater than ``iou_threshold`` (an IoU exactly equal to the threshold
keeps both).  The optional ``score_threshold`` keeps scores strictly greater
than it, as OpenCV does (OpenCV compares float32 scores with a float32
threshold, so a threshold of 0.1 keeps ``float32(0.1)`` scores here and not
there; OpenCV also rounds each IoU to float32 before comparing, and counts two
empty boxes as IoU 1, where cvtool counts them as 0).  The NumPy path is
block-wise: candidates are taken in blocks of sorted boxes, each block is split
into spatial cells and each cell tested against the nearby boxes kept so far in
one vectorised step (float32, with float64 re-tests inside the rounding band),
then resolved greedily inside the block.  torch inputs
run the same algorithm on the CPU (the greedy pass is sequential) and return
indices on the input's device.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

FORMATS = ("xyxy", "xywh", "cxcywh", "xyxyn", "xywhn", "cxcywhn")
"""Box formats :func:`convert` knows; the ``n`` suffix means normalised by image size."""

SOFT_NMS_METHODS = ("linear", "gaussian")

_NMS_BLOCK = 256
_NMS_STRIPS = 4
_NMS_ROWS = 2


# ---------------------------------------------------------------------------
# Backend helpers (NumPy or torch)
# ---------------------------------------------------------------------------


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_float_boxes(boxes: Any, name: str = "boxes", *, ndim2: bool = True) -> Any:
    """Boxes as a float array/tensor (upcast per the module's dtype rules), shape-checked."""
    if _is_tensor(boxes):
        import torch

        b = boxes
        if b.dtype not in (torch.float32, torch.float64):
            b = b.to(torch.float32)
    else:
        b = np.asarray(boxes)
        if b.dtype.kind in "biu":
            b = b.astype(np.float64)
        elif b.dtype == np.float16:
            b = b.astype(np.float32)
        elif b.dtype.kind != "f":
            raise ValueError(f"{name} must be numeric, got dtype {b.dtype}")
        if b.size == 0 and b.ndim == 1:
            b = b.reshape(0, 4)
    shape = tuple(b.shape)
    if ndim2 and (len(shape) != 2 or shape[1] != 4):
        raise ValueError(f"{name} must have shape (N, 4), got {shape}")
    if not ndim2 and (len(shape) < 1 or shape[-1] != 4):
        raise ValueError(f"{name} must have shape (..., 4), got {shape}")
    return b


def _xp(x: Any):
    """(maximum, minimum, stack, clamp_min0) for NumPy or torch."""
    if _is_tensor(x):
        import torch

        return torch.maximum, torch.minimum, lambda seq: torch.stack(seq, dim=-1), lambda t: t.clamp(min=0)
    return np.maximum, np.minimum, lambda seq: np.stack(seq, axis=-1), lambda a: np.maximum(a, 0)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _index_result(idx: np.ndarray, like: Any) -> Any:
    """int64 indices as NumPy, or as a tensor on ``like``'s device."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    if _is_tensor(like):
        import torch

        return torch.as_tensor(idx, dtype=torch.int64).to(like.device)
    return idx


def _check_scores(scores: Any, n: int) -> np.ndarray:
    s = _to_numpy(scores)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False).reshape(-1) if s.ndim <= 1 else s
    if s.shape != (n,):
        raise ValueError(f"scores must have shape ({n},) to match the boxes, got {tuple(s.shape)}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s


def _check_threshold(value: float, name: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _image_wh(image_size: Any) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    if not (w > 0 and h > 0 and np.isfinite(w) and np.isfinite(h)):
        raise ValueError(f"image_size must be positive (width, height), got {image_size!r}")
    return w, h


# ---------------------------------------------------------------------------
# Conversions and simple geometry
# ---------------------------------------------------------------------------


def convert(boxes: Any, src: str, dst: str, *, image_size: tuple[float, float] | None = None) -> Any:
    """Convert boxes between formats.

    Parameters
    ----------
    boxes : (..., 4) array_like or tensor
        Boxes in format ``src``.
    src, dst : {'xyxy', 'xywh', 'cxcywh', 'xyxyn', 'xywhn', 'cxcywhn'}
        ``xyxy`` corners; ``xywh`` top-left corner and size (COCO);
        ``cxcywh`` centre and size; the ``n`` variants are divided by the
        image width (x, w) and height (y, h) (YOLO uses ``cxcywhn``).
    image_size : (width, height), optional
        Required when either format is normalised.

    Returns
    -------
    (..., 4) float array or tensor
        Same backend and device as ``boxes`` (dtype rules: module docstring).

    Raises
    ------
    ValueError
        Unknown format (the message names it and lists the valid ones),
        wrong shape, or a normalised format without ``image_size``.

    Examples
    --------
    >>> convert([[10, 20, 30, 40]], "xywh", "xyxy").tolist()
    [[10.0, 20.0, 40.0, 60.0]]
    >>> convert([[0.5, 0.5, 0.5, 0.5]], "cxcywhn", "xyxy", image_size=(100, 50)).tolist()
    [[25.0, 12.5, 75.0, 37.5]]
    """
    for name, fmt in (("src", src), ("dst", dst)):
        if fmt not in FORMATS:
            raise ValueError(f"unknown box format {fmt!r} for {name}; valid formats: {', '.join(FORMATS)}")
    b = _as_float_boxes(boxes, ndim2=False)
    if src == dst:
        return b.clone() if _is_tensor(b) else b.copy()
    scale = None
    if src.endswith("n") or dst.endswith("n"):
        if image_size is None:
            raise ValueError(f"converting {src!r} to {dst!r} needs image_size=(width, height)")
        w, h = _image_wh(image_size)
        scale = (w, h, w, h)
    _, _, stack, _ = _xp(b)
    a0, a1, a2, a3 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    if src.endswith("n"):
        a0, a1, a2, a3 = a0 * scale[0], a1 * scale[1], a2 * scale[2], a3 * scale[3]
    base_src = src.rstrip("n")
    if base_src == "xywh":
        a2, a3 = a0 + a2, a1 + a3
    elif base_src == "cxcywh":
        a0, a1, a2, a3 = a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2
    # now xyxy pixels
    base_dst = dst.rstrip("n")
    if base_dst == "xywh":
        a2, a3 = a2 - a0, a3 - a1
    elif base_dst == "cxcywh":
        a0, a1, a2, a3 = (a0 + a2) / 2, (a1 + a3) / 2, a2 - a0, a3 - a1
    if dst.endswith("n"):
        a0, a1, a2, a3 = a0 / scale[0], a1 / scale[1], a2 / scale[2], a3 / scale[3]
    return stack([a0, a1, a2, a3])


def area(boxes: Any) -> Any:
    """Areas of xyxy boxes.

    Parameters
    ----------
    boxes : (N, 4) array_like or tensor, xyxy

    Returns
    -------
    (N,) float array or tensor
        ``(x2 - x1) * (y2 - y1)``; inverted boxes give 0, not a negative area.
    """
    b = _as_float_boxes(boxes)
    _, _, _, relu = _xp(b)
    return relu(b[:, 2] - b[:, 0]) * relu(b[:, 3] - b[:, 1])


def clip(boxes: Any, image_size: tuple[float, float]) -> Any:
    """Clip xyxy boxes to the image ``[0, width] x [0, height]``.

    Parameters
    ----------
    boxes : (N, 4) array_like or tensor, xyxy
    image_size : (width, height)

    Returns
    -------
    (N, 4) float array or tensor
        A new array; boxes entirely outside become zero-width or zero-height.
    """
    b = _as_float_boxes(boxes)
    w, h = _image_wh(image_size)
    if _is_tensor(b):
        out = b.clone()
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
        return out
    out = b.copy()
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    return out


def _inter_union(a: Any, b: Any) -> tuple[Any, Any]:
    """Pairwise intersection and union areas, (N, M) each."""
    maximum, minimum, _, relu = _xp(a)
    area_a = area(a)
    area_b = area(b)
    if _is_tensor(a):
        lt = maximum(a[:, None, :2], b[None, :, :2])
        rb = minimum(a[:, None, 2:], b[None, :, 2:])
        wh = relu(rb - lt)
        inter = wh[..., 0] * wh[..., 1]
        union = area_a[:, None] + area_b[None, :] - inter
        return inter, union
    # NumPy: in-place operations on (N, M) buffers to avoid temporaries
    iw = np.minimum(a[:, None, 2], b[None, :, 2])
    iw -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    ih -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(ih, 0, out=ih)
    iw *= ih  # intersection
    np.add(area_a[:, None], area_b[None, :], out=ih)
    ih -= iw  # union
    return iw, ih


def _same_backend(a: Any, b: Any) -> tuple[Any, Any]:
    ta, tb = _is_tensor(a), _is_tensor(b)
    if ta != tb:
        raise ValueError("boxes1 and boxes2 must both be NumPy arrays or both torch tensors")
    a = _as_float_boxes(a, "boxes1")
    b = _as_float_boxes(b, "boxes2")
    if ta:
        import torch

        if a.device != b.device:
            raise ValueError(f"boxes1 is on {a.device} and boxes2 on {b.device}; put them on one device")
        dt = torch.promote_types(a.dtype, b.dtype)
        return a.to(dt), b.to(dt)
    dt = np.promote_types(a.dtype, b.dtype)
    return a.astype(dt, copy=False), b.astype(dt, copy=False)


def iou(boxes1: Any, boxes2: Any) -> Any:
    """Pairwise intersection over union.

    Parameters
    ----------
    boxes1 : (N, 4) array_like or tensor, xyxy
    boxes2 : (M, 4) array_like or tensor, xyxy (same backend and device)

    Returns
    -------
    (N, M) float array or tensor
        ``iou[i, j]`` of ``boxes1[i]`` and ``boxes2[j]``; pairs whose union
        is empty (two degenerate boxes) get 0.

    Examples
    --------
    >>> iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(4).tolist()
    [[0.3333, 0.0]]
    """
    a, b = _same_backend(boxes1, boxes2)
    inter, union = _inter_union(a, b)
    if _is_tensor(inter):
        import torch

        return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(inter, union, out=inter, where=union > 0)
    inter[union <= 0] = 0.0
    return inter


def giou(boxes1: Any, boxes2: Any) -> Any:
    """Pairwise generalised IoU (Rezatofighi et al., CVPR 2019).

    ``giou = iou - (C - union) / C`` with ``C`` the area of the smallest box
    enclosing both; in ``[-1, 1]``.

    Parameters
    ----------
    boxes1 : (N, 4) array_like or tensor, xyxy
    boxes2 : (M, 4) array_like or tensor, xyxy

    Returns
    -------
    (N, M) float array or tensor
    """
    a, b = _same_backend(boxes1, boxes2)
    maximum, minimum, _, relu = _xp(a)
    inter, union = _inter_union(a, b)
    cw = relu(maximum(a[:, None, 2], b[None, :, 2]) - minimum(a[:, None, 0], b[None, :, 0]))
    ch = relu(maximum(a[:, None, 3], b[None, :, 3]) - minimum(a[:, None, 1], b[None, :, 1]))
    hull = cw * ch
    if _is_tensor(a):
        import torch

        tiny = torch.finfo(a.dtype).tiny
        return inter / union.clamp(min=tiny) - (hull - union) / hull.clamp(min=tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        i = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        g = np.where(hull > 0, (hull - union) / np.where(hull > 0, hull, 1), 0.0)
    return (i - g).astype(a.dtype, copy=False)


# ---------------------------------------------------------------------------
# Non-maximum suppression
# ---------------------------------------------------------------------------


def _greedy_nms_sorted(b: np.ndarray, iou_threshold: float, labels: np.ndarray | None = None) -> np.ndarray:
    """Greedy NMS of float64 xyxy boxes already sorted by descending score.

    Returns the positions (ascending, i.e. by descending score) of kept boxes.
    With ``labels``, only boxes of equal label suppress each other.

    Block-wise: each block of ``_NMS_BLOCK`` candidates is split into
    ``_NMS_STRIPS x _NMS_ROWS`` spatial cells (by box centre); each cell is
    tested in one vectorised step against the kept boxes whose extent meets
    the cell's, then the block is resolved greedily with its own small IoU
    matrix.  "IoU > t" is
    tested as ``inter > t / (1 + t) * (area_a + area_b)`` (no division).  The
    test against kept boxes runs in float32 with a proven error bound: pairs
    inside the bound are re-tested in float64, so the result equals a float64
    greedy NMS (see :func:`_kept_suppress`).
    """
    n = b.shape[0]
    t = iou_threshold
    k_t = t / (1.0 + t)
    lo = float(b.min()) if n else 0.0
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, i]) - lo for i in range(4))
    ka = (np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)) * k_t
    f32 = [a.astype(np.float32) for a in (x1, y1, x2, y2, ka)]
    # float32 error bound on "inter - rhs" (see _kept_suppress); u = 2**-24
    big = float(max(np.abs(x2).max(), np.abs(y2).max(), 1.0)) if n else 1.0
    err = 32.0 * 2.0 ** -24 * big * big
    kept = np.empty(n, dtype=np.int64)
    kept_xy = np.empty((4, n), dtype=np.float64)  # x1, x2, y1, y2 of kept boxes
    nk = 0
    for start in range(0, n, _NMS_BLOCK):
        stop = min(start + _NMS_BLOCK, n)
        cand = np.arange(start, stop)
        if nk:
            # Split the block into vertical strips (by box centre) and test each
            # strip only against kept boxes whose x-range meets it: boxes that
            # do not overlap in x cannot suppress each other.
            by_x = cand[np.argsort(x1[cand] + x2[cand], kind="stable")]
            suppressed = np.zeros(n, dtype=bool)
            kk = kept[:nk]
            kx1, kx2, ky1, ky2 = kept_xy[0, :nk], kept_xy[1, :nk], kept_xy[2, :nk], kept_xy[3, :nk]
            for strip in (s for s in np.array_split(by_x, _NMS_STRIPS) if s.size):
                in_strip = (kx1 < x2[strip].max()) & (kx2 > x1[strip].min())
                by_y = strip[np.argsort(y1[strip] + y2[strip], kind="stable")]
                for cell in (c for c in np.array_split(by_y, _NMS_ROWS) if c.size):
                    near = kk[in_strip & (ky1 < y2[cell].max()) & (ky2 > y1[cell].min())]
                    if near.size:
                        suppressed[cell] = _kept_suppress(near, cell, f32, (x1, y1, x2, y2, ka), err, labels)
            cand = cand[~suppressed[cand]]
        if cand.size == 0:
            continue
        c = cand
        sup = _suppress_matrix(x1[c], y1[c], x2[c], y2[c], ka[c], x1[c], y1[c], x2[c], y2[c], ka[c])
        if labels is not None:
            sup &= labels[c][:, None] == labels[c][None, :]
        sup = np.triu(sup, 1)
        alive = np.ones(c.size, dtype=bool)
        for i in np.flatnonzero(sup.any(axis=1)).tolist():
            if alive[i]:
                alive &= ~sup[i]
        chosen = c[alive]
        kept[nk:nk + chosen.size] = chosen
        for row, coord in enumerate((x1, x2, y1, y2)):
            kept_xy[row, nk:nk + chosen.size] = coord[chosen]
        nk += chosen.size
    return kept[:nk]


def _kept_suppress(k: np.ndarray, c: np.ndarray, f32: list[np.ndarray], f64: tuple[np.ndarray, ...],
                   err: float, labels: np.ndarray | None) -> np.ndarray:
    """(len(c),) bool: candidate c is suppressed by some kept box k.

    Computes ``d = inter - rhs`` in float32.  With coordinates in ``[0, M]``
    and u = 2**-24, every rounding in the chain (coordinates, widths,
    products, the scaled areas and the final subtraction) adds at most a few
    u*M**2; their sum stays below ``err = 32 u M**2``.  So ``d > err`` proves
    suppression, ``d <= -err`` proves none, and only candidates with some
    pair inside the band are re-tested in float64.
    """
    x1, y1, x2, y2, ka = f32
    d = _inter_minus_rhs(x1[k], y1[k], x2[k], y2[k], ka[k], x1[c], y1[c], x2[c], y2[c], ka[c])
    if labels is not None:
        same = labels[k][:, None] == labels[c][None, :]
        d[~same] = -np.inf
    sure = (d > err).any(axis=0)
    maybe = ~sure & (d > -err).any(axis=0)
    if maybe.any():
        m = c[maybe]
        X1, Y1, X2, Y2, KA = f64
        exact = _suppress_matrix(X1[k], Y1[k], X2[k], Y2[k], KA[k], X1[m], Y1[m], X2[m], Y2[m], KA[m])
        if labels is not None:
            exact &= labels[k][:, None] == labels[m][None, :]
        sure[np.flatnonzero(maybe)] = exact.any(axis=0)
    return sure


def _inter_minus_rhs(ax1, ay1, ax2, ay2, ka, bx1, by1, bx2, by2, kb) -> np.ndarray:
    """(len(a), len(b)): intersection area minus t/(1+t) * (area_a + area_b)."""
    iw = np.minimum(ax2[:, None], bx2[None, :])
    iw -= np.maximum(ax1[:, None], bx1[None, :])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(ay2[:, None], by2[None, :])
    ih -= np.maximum(ay1[:, None], by1[None, :])
    np.maximum(ih, 0, out=ih)
    iw *= ih  # intersection
    np.add(ka[:, None], kb[None, :], out=ih)
    iw -= ih
    return iw


def _suppress_matrix(ax1, ay1, ax2, ay2, ka, bx1, by1, bx2, by2, kb) -> np.ndarray:
    """(len(a), len(b)) bool: IoU > t, i.e. ``inter > t/(1+t) * (area_a + area_b)``.

    Pairs of degenerate boxes (empty union) are never suppressed.
    """
    return _inter_minus_rhs(ax1, ay1, ax2, ay2, ka, bx1, by1, bx2, by2, kb) > 0


def _prepare_nms(boxes: Any, scores: Any, iou_threshold: float,
                 score_threshold: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    b = _to_numpy(_as_float_boxes(boxes)).astype(np.float64, copy=False)
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or infinite values")
    s = _check_scores(scores, b.shape[0])
    t = _check_threshold(iou_threshold, "iou_threshold")
    cand = np.flatnonzero(s > float(score_threshold)) if score_threshold is not None else np.arange(b.shape[0])
    order = cand[np.argsort(-s[cand], kind="stable")]
    return b, order, t


def nms(boxes: Any, scores: Any, *, iou_threshold: float = 0.5,
        score_threshold: float | None = None) -> Any:
    """Greedy non-maximum suppression.

    Parameters
    ----------
    boxes : (N, 4) array_like or tensor, xyxy
    scores : (N,) array_like or tensor
    iou_threshold : float in [0, 1]
        A box is dropped when its IoU with a kept, higher-scored box is
        strictly greater than this.
    score_threshold : float, optional
        Consider only boxes whose score is strictly greater (OpenCV's rule).

    Returns
    -------
    (K,) int64 array or tensor
        Indices of kept boxes, by descending score (ties: lower index first).

    Raises
    ------
    ValueError
        Shapes disagree, NaN/inf in boxes or scores, threshold outside [0, 1].

    Notes
    -----
    Kept set identical to ``cv2.dnn.NMSBoxes(xywh, scores, score_threshold,
    iou_threshold)`` up to floating-point rounding of IoUs that equal the
    threshold (OpenCV rounds the IoU to float32 before comparing).
    """
    b, order, t = _prepare_nms(boxes, scores, iou_threshold, score_threshold)
    if order.size == 0:
        return _index_result(order, boxes)
    pos = _greedy_nms_sorted(b[order], t)
    return _index_result(order[pos], boxes)


def batched_nms(boxes: Any, scores: Any, labels: Any, *, iou_threshold: float = 0.5,
                score_threshold: float | None = None) -> Any:
    """Non-maximum suppression within each class (no Python loop over classes).

    Boxes of different labels never suppress each other: one NMS runs over
    all boxes with the suppression test masked by label equality (the same
    effect as torchvision's coordinate-offset trick, without moving boxes
    far apart, which would cost float precision).

    Parameters
    ----------
    boxes : (N, 4) array_like or tensor, xyxy
    scores : (N,) array_like or tensor
    labels : (N,) integer array_like or tensor
    iou_threshold, score_threshold : see :func:`nms`

    Returns
    -------
    (K,) int64 array or tensor
        Kept indices by descending score.
    """
    b, order, t = _prepare_nms(boxes, scores, iou_threshold, score_threshold)
    lab = _to_numpy(labels)
    if lab.shape != (b.shape[0],) and not (lab.size == 0 and b.shape[0] == 0):
        raise ValueError(f"labels must have shape ({b.shape[0]},) to match the boxes, got {tuple(lab.shape)}")
    if lab.size and lab.dtype.kind not in "biu":
        if lab.dtype.kind == "f" and np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    if order.size == 0:
        return _index_result(order, boxes)
    _, rank = np.unique(lab, return_inverse=True)
    pos = _greedy_nms_sorted(b[order], t, labels=rank[order])
    return _index_result(order[pos], boxes)


def soft_nms(boxes: Any, scores: Any, *, method: str = "gaussian", sigma: float = 0.5,
             iou_threshold: float = 0.3, score_threshold: float = 0.001) -> tuple[Any, Any]:
    """Soft-NMS (Bodla et al., ICCV 2017): decay overlapping scores instead of dropping boxes.

    Repeatedly pick the highest remaining score and decay the others by their
    IoU ``o`` with it: ``linear``: ``s *= 1 - o`` where ``o > iou_threshold``;
    ``gaussian``: ``s *= exp(-o**2 / sigma)``.  Boxes whose score falls to
    ``score_threshold`` or below are dropped.

    Parameters
    ----------
    boxes : (N, 4) array_like or tensor, xyxy
    scores : (N,) array_like or tensor
    method : {'linear', 'gaussian'}
    sigma : float > 0
        Gaussian width (``gaussian`` only).
    iou_threshold : float in [0, 1]
        Overlap above which ``linear`` decays (unused by ``gaussian``).
    score_threshold : float
        Final scores must be strictly greater than this.

    Returns
    -------
    keep : (K,) int64 array or tensor
        Indices of surviving boxes in selection order.
    new_scores : (K,) float64 array (float tensor on the input's device)
        Their decayed scores (non-increasing).

    Raises
    ------
    ValueError
        Unknown ``method``, ``sigma <= 0``, bad shapes or thresholds.
    """
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"unknown soft-NMS method {method!r}; valid: {', '.join(SOFT_NMS_METHODS)}")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    b = _to_numpy(_as_float_boxes(boxes)).astype(np.float64, copy=False)
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or infinite values")
    s = _check_scores(scores, b.shape[0]).copy()
    t = _check_threshold(iou_threshold, "iou_threshold")
    remaining = np.flatnonzero(s > score_threshold)
    keep: list[int] = []
    out_scores: list[float] = []
    while remaining.size:
        j = int(np.argmax(s[remaining]))  # first maximum: lower index wins ties
        best = int(remaining[j])
        keep.append(best)
        out_scores.append(float(s[best]))
        remaining = np.delete(remaining, j)
        if remaining.size == 0:
            break
        o = iou(b[best:best + 1], b[remaining])[0]
        if method == "linear":
            s[remaining] *= np.where(o > t, 1.0 - o, 1.0)
        else:
            s[remaining] *= np.exp(-(o * o) / float(sigma))
        remaining = remaining[s[remaining] > score_threshold]
    keep_arr = np.asarray(keep, dtype=np.int64)
    sc = np.asarray(out_scores, dtype=np.float64)
    if _is_tensor(boxes):
        import torch

        return _index_result(keep_arr, boxes), torch.as_tensor(sc, device=boxes.device)
    return keep_arr, sc


def topk(scores: Any, k: int) -> Any:
    """Indices of the ``k`` highest scores, by descending score (ties: lower index first).

    Parameters
    ----------
    scores : (N,) array_like or tensor
    k : int >= 0
        Fewer indices come back when ``N < k``.

    Returns
    -------
    (min(k, N),) int64 array or tensor
    """
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if _is_tensor(scores):
        import torch

        s = scores.reshape(-1)
        if s.numel() == 0 or k == 0:
            return torch.zeros(0, dtype=torch.int64, device=scores.device)
        idx = torch.sort(s, descending=True, stable=True).indices
        return idx[:k]
    s = np.asarray(scores).reshape(-1)
    if s.size == 0 or k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < s.size // 8:
        # partial selection first, then a stable sort of the candidates
        kth = np.partition(-s, k - 1)[k - 1]
        cand = np.flatnonzero(-s <= kth)
        idx = cand[np.argsort(-s[cand], kind="stable")]
        return idx[:k].astype(np.int64)
    return np.argsort(-s, kind="stable")[:k].astype(np.int64)

"""Candidate (detection, ground truth) pairs within groups, generated in bounded blocks.

Evaluation compares each detection with the ground-truth boxes of its own group
(image and category).  Instead of one small IoU matrix per group, the pairs of
all groups are laid out flat (detection-major, ground truth in file order) and
produced in blocks of at most ``block`` pairs, so memory stays bounded however
large the groups are.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cvtool.errors import BadInputError

DEFAULT_BLOCK = 1 << 18


def group_pairs(det_keys: np.ndarray, gt_keys_sorted: np.ndarray, *,
                block: int = DEFAULT_BLOCK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(det_index, gt_index)`` blocks pairing each detection with its group's boxes.

    Parameters
    ----------
    det_keys : (D,) int64 ndarray
        Group key of each detection (any order).
    gt_keys_sorted : (G,) int64 ndarray
        Group key of each ground-truth box, sorted ascending.
    block : int
        Largest number of pairs per yielded block (a single detection's group
        may exceed it).

    Yields
    ------
    (P,) int64 ndarray, (P,) int64 ndarray
        Detection indices (non-decreasing) and ground-truth indices (ascending
        within one detection).
    """
    lo = np.searchsorted(gt_keys_sorted, det_keys, side="left")
    counts = np.searchsorted(gt_keys_sorted, det_keys, side="right") - lo
    cum = np.cumsum(counts)
    start, n = 0, det_keys.size
    while start < n:
        base = int(cum[start - 1]) if start else 0
        stop = max(int(np.searchsorted(cum, base + block, side="right")), start + 1)
        c = counts[start:stop]
        total = int(c.sum())
        if total:
            det = np.repeat(np.arange(start, stop), c)
            offs = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            yield det, lo[det] + offs
        start = stop


def paired_iou(a: np.ndarray, b: np.ndarray, *, crowd: np.ndarray | None = None,
               plus_one: bool = False) -> np.ndarray:
    """IoU of row-wise paired xyxy boxes.

    Parameters
    ----------
    a, b : (P, 4) float64 ndarray
        Detections and ground-truth boxes, pair by pair.
    crowd : (P,) bool ndarray, optional
        Where True, divide by the area of ``a`` alone (COCO's crowd rule).
    plus_one : bool
        Pascal VOC's pixel rule: widths and heights are ``x2 - x1 + 1``.

    Returns
    -------
    (P,) float64 ndarray
        IoU in [0, 1]; 0 where the boxes do not overlap.
    """
    one = 1.0 if plus_one else 0.0
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + one
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + one
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    union = area_a + area_b - inter
    if crowd is not None:
        union = np.where(crowd, area_a, union)
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=inter > 0)
    return out


def segment_starts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts of the runs of equal values in ``keys`` and each element's run number."""
    change = np.empty(keys.shape, dtype=bool)
    if keys.size:
        change[0] = True
        np.not_equal(keys[1:], keys[:-1], out=change[1:])
    return np.flatnonzero(change), np.cumsum(change) - 1


def index_in_sorted(values: np.ndarray, keys: np.ndarray, *, what: str, record: str) -> np.ndarray:
    """Position of each of ``values`` in sorted unique ``keys``.

    Parameters
    ----------
    values : (N,) int64 ndarray
    keys : (K,) int64 ndarray, sorted, unique
    what, record : str
        Used in the error message: ``"<record> #i has <what> v, which the
        ground truth does not have"``.

    Raises
    ------
    BadInputError
        A value is not among ``keys``.
    """
    values = np.asarray(values, dtype=np.int64)
    pos = np.searchsorted(keys, values)
    ok = (pos < keys.size) & (keys[np.minimum(pos, max(keys.size - 1, 0))] == values) if keys.size \
        else np.zeros(values.shape, dtype=bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise BadInputError(f"{record} #{i} has {what} {int(values[i])}, which the ground truth does not have")
    return pos

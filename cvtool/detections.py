"""Detections of one image and the one post-processing pipeline every detector ends in.

:func:`postprocess` takes raw candidate boxes (NumPy or torch, any device) and
returns a :class:`Detections` of NumPy arrays:

1. clip boxes to the image,
2. drop scores at or below ``score_threshold``,
3. drop boxes narrower or shorter than ``min_size`` pixels (after clipping),
4. non-maximum suppression per class (or across classes),
5. keep the ``max_detections`` highest scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvtool import boxes as box_ops


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float64)


@dataclass
class Detections:
    """Detections of one image (parallel arrays of length N, by descending score).

    Attributes
    ----------
    boxes : (N, 4) float64 ndarray
        xyxy pixel boxes.
    scores : (N,) float64 ndarray
    labels : (N,) int64 ndarray
        Class indices (0-based, the detector's own class order).
    """

    boxes: np.ndarray = field(default_factory=_empty_boxes)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = self.boxes.shape[0]
        if self.scores.shape != (n,) or self.labels.shape != (n,):
            raise ValueError(
                f"Detections arrays disagree: {n} boxes, {self.scores.shape[0]} scores, {self.labels.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, index: Any) -> Detections:
        """A new Detections with the rows picked by ``index`` (mask or indices)."""
        return Detections(self.boxes[index], self.scores[index], self.labels[index])


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def postprocess(boxes: Any, scores: Any, labels: Any = None, *, image_size: tuple[int, int],
                score_threshold: float = 0.05, iou_threshold: float = 0.5, min_size: float = 1.0,
                max_detections: int = 100, class_agnostic: bool = False) -> Detections:
    """Raw candidates -> final detections (clip, threshold, drop tiny, NMS, top-k).

    Parameters
    ----------
    boxes : (N, 4) array_like or tensor
        xyxy pixel boxes (any float or integer dtype, any device).
    scores : (N,) array_like or tensor
    labels : (N,) integer array_like or tensor, optional
        Class indices; ``None`` means one class (all zeros).
    image_size : (width, height)
    score_threshold : float
        Keep scores strictly greater than this.
    iou_threshold : float in [0, 1]
        NMS threshold (see :func:`cvtool.boxes.nms`).
    min_size : float >= 0
        Drop boxes whose clipped width or height is below this (pixels).
    max_detections : int >= 0
        Keep at most this many (highest scores).
    class_agnostic : bool
        Run NMS across classes (boxes of different labels suppress each other).

    Returns
    -------
    Detections
        NumPy arrays, by descending score (ties: lower input index first).

    Raises
    ------
    ValueError
        Shapes disagree, NaN/inf values, or a setting outside its range.
    """
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if int(max_detections) < 0:
        raise ValueError(f"max_detections must be >= 0, got {max_detections}")
    b = _to_numpy(boxes, np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    n = b.shape[0]
    s = _to_numpy(scores, np.float64).reshape(-1)
    if s.shape != (n,):
        raise ValueError(f"scores must have shape ({n},) to match the boxes, got {s.shape}")
    lab = np.zeros(n, dtype=np.int64) if labels is None else _to_numpy(labels, np.int64).reshape(-1)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the boxes, got {lab.shape}")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise ValueError("boxes or scores contain NaN or infinite values")

    # 1. clip every box to the image rectangle [0, W] x [0, H]
    b = box_ops.clip(b, image_size)
    # 2. score threshold (strict, as cv2.dnn.NMSBoxes and torchvision)
    keep = s > float(score_threshold)
    # 3. drop boxes that became (or were) smaller than min_size on either side
    keep &= ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    # positive width/height is needed for IoU to mean anything, even with min_size=0
    keep &= (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    idx = np.flatnonzero(keep)
    b, s, lab = b[idx], s[idx], lab[idx]
    # 4. NMS within each class (or across classes); indices come back by descending score
    if class_agnostic:
        order = box_ops.nms(b, s, iou_threshold=iou_threshold)
    else:
        order = box_ops.batched_nms(b, s, lab, iou_threshold=iou_threshold)
    # 5. top-k: NMS output is already sorted by descending score
    order = order[: int(max_detections)]
    return Detections(b[order], s[order], lab[order])

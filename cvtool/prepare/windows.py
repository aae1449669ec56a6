"""Fixed-size training windows for sliding-window detectors (HOG+SVM).

Geometry
--------
A window of ``(w, h)`` pixels shows an object box plus context:

1. **Aspect.**  The ground-truth box is widened (or heightened) symmetrically
   about its centre until it has the window's aspect ratio ``w / h``; the
   extra pixels are real image context, never a stretch of the object.
2. **Context.**  That box is then grown by ``context`` times its size on
   every side, so the object fills the central ``1 / (1 + 2 * context)`` of
   the window (Dalal & Triggs: a 48x96 person in a 64x128 window, 16 px
   margins, is ``context=1/6``).
3. **Sampling.**  The region is mapped onto the window by one affine warp
   (bilinear); parts outside the image repeat the border pixels.

:func:`object_box` and :func:`region_of` convert between the aspect-fixed
object box and the window region, so a detector maps a window found at any
scale back to an object box with the same rule.

Negatives are random object boxes of the window's aspect, of sizes drawn
(log-uniformly) from the range of the ground-truth boxes, whose IoU with every
ground-truth box is below a threshold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

BACKGROUND = -1
"""Label of negative (background) windows."""


@dataclass(frozen=True)
class WindowSpec:
    """Window size and context margin.

    Attributes
    ----------
    size : (w, h)
        Window size in pixels.
    context : float
        Margin on each side as a fraction of the object box (0 <= context < 2).
    """

    size: tuple[int, int]
    context: float = 0.125

    def __post_init__(self) -> None:
        w, h = (int(v) for v in self.size)
        if w < 4 or h < 4:
            raise ValueError(f"window must be at least 4x4 pixels, got {w}x{h}")
        object.__setattr__(self, "size", (w, h))
        if not 0 <= float(self.context) < 2:
            raise ValueError(f"context must be in [0, 2), got {self.context}")
        object.__setattr__(self, "context", float(self.context))

    @property
    def aspect(self) -> float:
        return self.size[0] / self.size[1]

    @property
    def object_size(self) -> tuple[float, float]:
        """The object box's ``(w, h)`` inside a window at scale 1."""
        f = 1.0 + 2.0 * self.context
        return self.size[0] / f, self.size[1] / f


def fix_aspect(boxes: np.ndarray, aspect: float) -> np.ndarray:
    """Grow boxes ``(N, 4)`` xyxy about their centres to width/height ``aspect``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    w2 = np.maximum(w, h * aspect)
    h2 = np.maximum(h, w / aspect)
    return np.stack([cx - w2 / 2, cy - h2 / 2, cx + w2 / 2, cy + h2 / 2], axis=1)


def region_of(object_boxes: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Window regions ``(N, 4)`` of aspect-fixed object boxes (grown by the context)."""
    b = np.asarray(object_boxes, dtype=np.float64).reshape(-1, 4)
    f = 1.0 + 2.0 * spec.context
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = (b[:, 2] - b[:, 0]) * f / 2, (b[:, 3] - b[:, 1]) * f / 2
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)


def object_box(regions: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Inverse of :func:`region_of`: the object box inside each window region."""
    r = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    f = 1.0 + 2.0 * spec.context
    cx, cy = (r[:, 0] + r[:, 2]) / 2, (r[:, 1] + r[:, 3]) / 2
    hw, hh = (r[:, 2] - r[:, 0]) / (2 * f), (r[:, 3] - r[:, 1]) / (2 * f)
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)


def crop_window(image: np.ndarray, region: Sequence[float], size: tuple[int, int], *,
                flip: bool = False) -> np.ndarray:
    """Warp ``region`` (x1, y1, x2, y2) of ``image`` onto a ``size`` (w, h) window.

    Bilinear sampling; pixels outside the image repeat its border.  ``flip``
    mirrors the window left-right.

    Returns
    -------
    (h, w[, C]) ndarray of the image's dtype
    """
    import cv2

    x1, y1, x2, y2 = (float(v) for v in region)
    w, h = size
    sx, sy = w / max(x2 - x1, 1e-6), h / max(y2 - y1, 1e-6)
    # pixel centres: window pixel j <- image x1 + (j + 0.5) / sx - 0.5
    m = np.array([[sx, 0, -x1 * sx + 0.5 * sx - 0.5], [0, sy, -y1 * sy + 0.5 * sy - 0.5]], np.float64)
    if flip:
        m = np.array([[-1, 0, w - 1], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
    interp = cv2.INTER_AREA if sx < 0.5 or sy < 0.5 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        # warpAffine has no area filter: pre-shrink the image region instead
        return _crop_area(image, (x1, y1, x2, y2), size, flip)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _crop_area(image: np.ndarray, region: tuple[float, float, float, float], size: tuple[int, int],
               flip: bool) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = region
    H, W = image.shape[:2]
    pad = int(max(0, -np.floor(x1), -np.floor(y1), np.ceil(x2) - W, np.ceil(y2) - H)) + 1
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    xa, ya = int(round(x1)) + pad, int(round(y1)) + pad
    xb, yb = max(xa + 1, int(round(x2)) + pad), max(ya + 1, int(round(y2)) + pad)
    out = cv2.resize(src[ya:yb, xa:xb], size, interpolation=cv2.INTER_AREA)
    return out[:, ::-1].copy() if flip else out


def sample_negatives(
    image_size: tuple[int, int],
    gt_boxes: np.ndarray,
    count: int,
    *,
    aspect: float,
    heights: tuple[float, float],
    max_iou: float = 0.3,
    rng: np.random.Generator,
    tries: int = 20,
) -> np.ndarray:
    """Random object boxes that overlap no ground truth much.

    Parameters
    ----------
    image_size : (w, h)
    gt_boxes : (K, 4) xyxy
        Every ground-truth box of the image (any class).
    count : int
        Boxes wanted (fewer come back when the image has no room).
    aspect : float
        Width / height of the boxes.
    heights : (min, max)
        Box height range in pixels (sampled log-uniformly, clipped to the image).
    max_iou : float
        Largest IoU allowed with any ground-truth box.
    rng : numpy.random.Generator
    tries : int
        Candidates drawn per wanted box.

    Returns
    -------
    (M, 4) float64 xyxy, ``M <= count``; every box lies inside the image.
    """
    from cvtool.boxes import iou

    w, h = image_size
    lo, hi = float(heights[0]), float(heights[1])
    hi = min(hi, h, w / aspect)
    lo = min(lo, hi)
    if count <= 0 or hi < 2:
        return np.zeros((0, 4))
    n = count * tries
    bh = np.exp(rng.uniform(np.log(lo), np.log(hi) + 1e-12, n))
    bw = bh * aspect
    x1 = rng.uniform(0, 1, n) * (w - bw)
    y1 = rng.uniform(0, 1, n) * (h - bh)
    cand = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt.shape[0]:
        ok = iou(cand, gt).max(axis=1) < max_iou
        cand = cand[ok]
    return cand[:count]


@dataclass
class WindowSet:
    """Windows cut from a dataset.

    Attributes
    ----------
    images : (N, h, w[, C]) uint8 ndarray
    labels : (N,) int64 ndarray
        Class index 0..C-1, or :data:`BACKGROUND` (-1).
    regions : (N, 4) float64 ndarray
        Window region in the source image (xyxy; before any flip).
    source : (N,) int64 ndarray
        Index of the source image.
    flipped : (N,) bool ndarray
    """

    images: np.ndarray
    labels: np.ndarray
    regions: np.ndarray
    source: np.ndarray
    flipped: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def counts(self, classes: Sequence[str]) -> dict[str, int]:
        """Windows per class name, plus ``background``."""
        out = {name: int((self.labels == k).sum()) for k, name in enumerate(classes)}
        out["background"] = int((self.labels == BACKGROUND).sum())
        return out


def box_heights(boxes: np.ndarray, aspect: float) -> tuple[float, float]:
    """Range of aspect-fixed heights of ``boxes`` (for negative sampling and pyramids)."""
    fixed = fix_aspect(boxes, aspect)
    hts = fixed[:, 3] - fixed[:, 1]
    if hts.size == 0:
        raise ValueError("no ground-truth boxes: cannot size windows")
    return float(hts.min()), float(hts.max())


def auto_window(boxes: np.ndarray, *, context: float, base: tuple[int, int] = (4, 4),
                step: tuple[int, int] = (4, 4), max_height: int = 256) -> tuple[int, int]:
    """A window for ``boxes``: their median aspect and height plus the context.

    Sizes are snapped to ``base + k * step`` (for HOG: one block plus whole
    block strides), at least ``base + step``.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] == 0:
        raise ValueError("no boxes to size a window from")
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    aspect = float(np.median(w / h))
    obj_h = float(np.median(np.maximum(h, w / max(aspect, 1e-6))))
    win_h = max(base[1] + step[1], min(float(max_height), obj_h * (1 + 2 * context)))
    win_w = max(base[0] + step[0], win_h * aspect)

    def snap(v: float, b0: int, s: int) -> int:
        return int(b0 + max(1, round((v - b0) / s)) * s)

    return snap(win_w, base[0], step[0]), snap(win_h, base[1], step[1])


def iter_windows(
    images: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    spec: WindowSpec,
    negatives_per_image: int = 10,
    max_iou: float = 0.3,
    flip: bool = False,
    heights: tuple[float, float] | None = None,
    rng: np.random.Generator,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: ``(index, windows (n, h, w[, C]), labels (n,), regions (n, 4), flipped (n,))``.

    Positives (each box, plus its mirror with ``flip``) come first, then the
    image's negatives.  ``heights`` is the negative box height range
    (default: that of all the ground-truth boxes).
    """
    if heights is None:
        allb = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]) if len(boxes) else np.zeros((0, 4))
        heights = box_heights(allb, spec.aspect)
    for i, (img, b, lab) in enumerate(zip(images, boxes, labels)):
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        lab = np.asarray(lab, dtype=np.int64).reshape(-1)
        regs = region_of(fix_aspect(b, spec.aspect), spec)
        wins, labs, rs, fl = [], [], [], []
        for r, k in zip(regs, lab):
            for f in ((False, True) if flip else (False,)):
                wins.append(crop_window(img, r, spec.size, flip=f))
                labs.append(int(k))
                rs.append(r)
                fl.append(f)
        neg = sample_negatives((img.shape[1], img.shape[0]), b, negatives_per_image, aspect=spec.aspect,
                               heights=heights, max_iou=max_iou, rng=rng)
        for r in region_of(neg, spec):
            wins.append(crop_window(img, r, spec.size))
            labs.append(BACKGROUND)
            rs.append(r)
            fl.append(False)
        shape = (0, spec.size[1], spec.size[0]) + img.shape[2:]
        yield (i, np.stack(wins) if wins else np.zeros(shape, img.dtype), np.array(labs, np.int64),
               np.array(rs, np.float64).reshape(-1, 4), np.array(fl, bool))


def extract_windows(images, boxes, labels, **kwargs) -> WindowSet:
    """All of :func:`iter_windows` gathered into one :class:`WindowSet`."""
    parts = list(iter_windows(images, boxes, labels, **kwargs))
    if not parts:
        raise ValueError("no images to cut windows from")
    return WindowSet(
        images=np.concatenate([p[1] for p in parts]),
        labels=np.concatenate([p[2] for p in parts]),
        regions=np.concatenate([p[3] for p in parts]),
        source=np.concatenate([np.full(len(p[2]), p[0], np.int64) for p in parts]),
        flipped=np.concatenate([p[4] for p in parts]),
    )

"""Drawing boxes with class names and scores on images.

Used by ``detect --draw`` and ``selective-search --draw``.  One function,
:func:`draw_boxes`, takes the internal box format (float xyxy pixels,
``[N, 4]``) and returns a new BGR image; the input is never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A fixed palette (BGR) of well-separated colours; class ``k`` gets ``PALETTE[k % len]``.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
)


def label_color(label: int) -> tuple[int, int, int]:
    """The palette colour (BGR) of class index ``label``."""
    return PALETTE[int(label) % len(PALETTE)]


def _caption(i: int, labels: np.ndarray | None, scores: np.ndarray | None,
             names: Sequence[str] | None) -> str:
    parts = []
    if labels is not None:
        k = int(labels[i])
        parts.append(names[k] if names is not None and 0 <= k < len(names) else str(k))
    if scores is not None:
        parts.append(f"{float(scores[i]):.2f}")
    return " ".join(parts)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    labels: np.ndarray | Sequence[int] | None = None,
    scores: np.ndarray | Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    color: tuple[int, int, int] | None = None,
    thickness: int = 1,
) -> np.ndarray:
    """Draw rectangles (and captions) on a copy of ``image``.

    Parameters
    ----------
    image : (H, W) or (H, W, 3|4) uint8 ndarray
        Grey or BGR(A) image; the result is always BGR.
    boxes : (N, 4) array_like
        xyxy pixel boxes (float or int).  Boxes partly outside the image are
        drawn clipped; non-finite boxes raise.
    labels : (N,) int array_like, optional
        Class index of each box; selects the colour and the caption name.
    scores : (N,) float array_like, optional
        Shown after the name with two decimals.
    names : sequence of str, optional
        Class names indexed by ``labels`` (an index outside it is printed as a number).
    color : (b, g, r), optional
        One colour for every box (default: a colour per label, or red without labels).
    thickness : int
        Line thickness in pixels (>= 1).

    Returns
    -------
    (H, W, 3) uint8 ndarray
        A new BGR image.  Boxes are drawn from the lowest score to the highest,
        so overlapping captions show the strongest detection.

    Raises
    ------
    ValueError
        ``boxes`` is not ``(N, 4)``, contains NaN/inf, ``labels``/``scores``
        lengths differ from ``N``, the image is not uint8 2-D/3-D, or
        ``thickness < 1``.

    Examples
    --------
    >>> img = np.zeros((32, 32), np.uint8)
    >>> out = draw_boxes(img, [[4, 4, 20, 20]], labels=[0], scores=[0.9], names=["digit"])
    >>> out.shape
    (32, 32, 3)
    """
    import cv2

    from cvtool.io.images import to_bgr

    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"image must be a uint8 (H, W) or (H, W, C) array, got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
        )
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        b = np.zeros((0, 4))
    elif b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    n = b.shape[0]
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    sc = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    for name, arr in (("labels", lab), ("scores", sc)):
        if arr is not None and arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries for {n} boxes")

    out = np.ascontiguousarray(to_bgr(image)).copy()
    h, w = out.shape[:2]
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, min(h, w) / 600.0)
    # Lowest score first, so the strongest detection's box and caption end up on top.
    order = np.argsort(sc, kind="stable") if sc is not None else range(n)
    for i in order:
        x1, y1, x2, y2 = (int(round(v)) for v in b[i])
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        c = color if color is not None else (label_color(lab[i]) if lab is not None else (0, 0, 255))
        c = tuple(int(v) for v in c)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thickness, lineType=cv2.LINE_AA if thickness > 1 else cv2.LINE_8)
        text = _caption(i, lab, sc, names)
        if not text:
            continue
        (tw, th), base = cv2.getTextSize(text, font, font_scale, 1)
        # Caption above the box when there is room, else inside its top edge.
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y1 + th + 2)
        cv2.rectangle(out, (x1, ty - th - 1), (min(w - 1, x1 + tw + 1), ty + base - 1), c, -1)
        lum = 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]
        cv2.putText(out, text, (x1 + 1, ty - 1), font, font_scale,
                    (0, 0, 0) if lum > 128 else (255, 255, 255), 1, cv2.LINE_AA)
    return out

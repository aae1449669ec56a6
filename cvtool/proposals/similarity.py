"""The similarity measures of selective search (Uijlings et al. 2013, section 3.2).

All measures lie in ``[0, 1]``; a strategy sums the measures of its similarity
set (e.g. ``'ctsf'``: colour + texture + size + fill).

* colour, texture: histogram intersection ``sum_k min(a_k, b_k)`` of
  L1-normalised histograms;
* size: ``1 - (size_a + size_b) / size(image)`` (merge small regions first);
* fill: ``1 - (size(BB_ab) - size_a - size_b) / size(image)`` where ``BB_ab`` is
  the tight box around both regions (merge regions that fill each other's gaps).

Histograms of a merged region are the size-weighted average of its parts'
(:func:`merge_histograms`), as in the paper, so they stay L1-normalised.
"""

from __future__ import annotations

import numpy as np

SIMILARITIES = {"c": "colour", "t": "texture", "s": "size", "f": "fill"}
"""One-letter codes of the measures."""


def parse_similarity_set(code: str) -> frozenset[str]:
    """Parse a similarity set such as ``'ctsf'`` or ``'C+T+S+F'`` into measure names.

    Raises
    ------
    ValueError
        Empty, or a letter that is not one of c, t, s, f.
    """
    letters = code.lower().replace("+", "").replace(" ", "")
    bad = sorted(set(letters) - set(SIMILARITIES))
    if not letters or bad:
        raise ValueError(f"similarity set {code!r} must be letters of c (colour), t (texture), s (size), "
                         "f (fill), e.g. 'ctsf' or 'tsf'")
    return frozenset(SIMILARITIES[ch] for ch in letters)


def histogram_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Histogram intersection of L1-normalised histograms (colour and texture similarity).

    Parameters
    ----------
    a, b : (K,) or (N, K) ndarray
        Histograms (rows broadcast against each other).

    Returns
    -------
    float or (N,) ndarray
        ``sum_k min(a_k, b_k)``, in ``[0, 1]`` for normalised histograms.
    """
    out = np.minimum(a, b).sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def size_similarity(size_a, size_b, image_size: float):
    """``1 - (size_a + size_b) / image_size`` (scalars or arrays)."""
    return 1.0 - (np.asarray(size_a, dtype=np.float64) + size_b) / image_size


def fill_similarity(box_a, box_b, size_a, size_b, image_size: float):
    """``1 - (area(tight box of both) - size_a - size_b) / image_size``.

    Parameters
    ----------
    box_a, box_b : (4,) or (N, 4) ndarray
        xyxy boxes with exclusive right/bottom edges.
    size_a, size_b : float or (N,) ndarray
        Region sizes in pixels.
    image_size : float
        Pixels in the image.
    """
    a = np.asarray(box_a, dtype=np.float64)
    b = np.asarray(box_b, dtype=np.float64)
    w = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
    h = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    return 1.0 - (w * h - size_a - size_b) / image_size


def merge_histograms(hist_a: np.ndarray, size_a: float, hist_b: np.ndarray, size_b: float) -> np.ndarray:
    """Histogram of the union of two regions: ``(s_a h_a + s_b h_b) / (s_a + s_b)``."""
    return (hist_a * size_a + hist_b * size_b) / (size_a + size_b)

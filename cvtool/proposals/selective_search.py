"""Selective search: diversified hierarchical grouping and proposal ranking.

A *strategy* is one colour space, one segmentation scale k and one similarity
set.  Each strategy's hierarchy yields ``2n - 1`` boxes; the boxes of all
strategies are ranked as in the paper: within a hierarchy the region formed
last (the whole image) has position 1, the one before it 2, and so on; each box
gets the value ``position * r`` with ``r`` uniform in ``[0, 1)`` drawn from the
seeded generator, boxes are sorted by increasing value and exact duplicates are
dropped (the best-ranked copy stays).

Work is shared where the paper allows it: one colour conversion and one set of
per-pixel bin codes per colour space, one segmentation and one set of region
histograms per (colour space, k), and one grouping per similarity set.

References
----------
J. R. R. Uijlings, K. E. A. van de Sande, T. Gevers and A. W. M. Smeulders,
"Selective search for object recognition", IJCV 104(2):154-171, 2013.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from cvtool.proposals.features import pixel_codes, region_features
from cvtool.proposals.grouping import hierarchical_grouping
from cvtool.proposals.segmentation import (COLOUR_SPACES, check_image, convert_colour,
                                           felzenszwalb)
from cvtool.proposals.similarity import parse_similarity_set

MODES = ("single", "fast", "quality")
MAX_PIXELS = 4_000_000
"""Largest image (width x height) processed without ``resize``: memory grows by
about 60 bytes per pixel per colour space."""
MIN_SIDE = 4


@dataclass(frozen=True)
class Strategy:
    """One diversification strategy.

    Attributes
    ----------
    colour_space : {'rgb', 'hsv', 'lab', 'rgi', 'i', 'h'}
    k : float
        Felzenszwalb scale.
    similarities : str
        Letters of c (colour), t (texture), s (size), f (fill), e.g. ``'ctsf'``.
    """

    colour_space: str
    k: float
    similarities: str

    def describe(self) -> str:
        return f"{self.colour_space}/k={self.k:g}/{self.similarities}"


def mode_strategies(mode: str, *, colour_space: str = "hsv", k: float = 100.0,
                    similarities: str = "ctsf") -> list[Strategy]:
    """The strategies of a mode.

    Parameters
    ----------
    mode : {'single', 'fast', 'quality'}
        ``single``: one strategy from ``colour_space``, ``k``, ``similarities``.
        ``fast`` (the paper's "fast"): HSV, Lab x k 50, 100 x {ctsf, tsf} (8).
        ``quality`` (the paper's "quality"): HSV, Lab, rgI, H, I x k 50, 100,
        150, 300 x {ctsf, tsf, f, s} (80).

    Raises
    ------
    ValueError
        Unknown mode.
    """
    if mode == "single":
        return [Strategy(colour_space, float(k), similarities)]
    if mode == "fast":
        return [Strategy(c, kk, s) for c, kk, s in product(("hsv", "lab"), (50.0, 100.0), ("ctsf", "tsf"))]
    if mode == "quality":
        return [Strategy(c, kk, s) for c, kk, s in product(("hsv", "lab", "rgi", "h", "i"),
                                                          (50.0, 100.0, 150.0, 300.0),
                                                          ("ctsf", "tsf", "f", "s"))]
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


@dataclass
class ProposalResult:
    """Output of :func:`selective_search`.

    Attributes
    ----------
    boxes : (N, 4) float64 ndarray
        xyxy pixel boxes (exclusive right/bottom edge) in rank order, in the
        coordinates of the input image.
    num_strategies : int
    num_initial_regions : dict
        ``"colour_space/k" -> n`` regions of each segmentation.
    num_candidates : int
        Boxes of all hierarchies before de-duplication and filtering.
    scale : float
        Factor the image was resized by before the search (1.0: not resized).
    segmentations : dict
        ``"colour_space/k" -> (H, W) int32`` label maps (only with
        ``keep_segmentations=True``; at the resized size).
    """

    boxes: np.ndarray
    num_strategies: int
    num_initial_regions: dict[str, int]
    num_candidates: int
    scale: float = 1.0
    segmentations: dict[str, np.ndarray] = field(default_factory=dict)


def validate_settings(strategies: Sequence[Strategy], sigma: float, segment_min_size: int | None,
                      max_proposals: int | None, min_size: float, max_aspect: float | None,
                      resize: int | None = None) -> None:
    """Check the settings of :func:`selective_search`; raise ValueError naming the bad one."""
    if not strategies:
        raise ValueError("no strategies given")
    for s in strategies:
        if s.colour_space not in COLOUR_SPACES:
            raise ValueError(f"unknown colour space {s.colour_space!r}; choose one of {', '.join(COLOUR_SPACES)}")
        if not (np.isfinite(s.k) and s.k > 0):
            raise ValueError(f"k (scale) must be a positive number, got {s.k}")
        parse_similarity_set(s.similarities)
    if not (np.isfinite(sigma) and 0 <= sigma <= 10):
        raise ValueError(f"sigma must be in [0, 10], got {sigma}")
    if segment_min_size is not None and segment_min_size < 0:
        raise ValueError(f"segment min size must be >= 0, got {segment_min_size}")
    if max_proposals is not None and max_proposals < 1:
        raise ValueError(f"max proposals must be >= 1, got {max_proposals}")
    if not (np.isfinite(min_size) and min_size >= 0):
        raise ValueError(f"min size must be >= 0 pixels, got {min_size}")
    if max_aspect is not None and not (np.isfinite(max_aspect) and max_aspect >= 1):
        raise ValueError(f"max aspect must be >= 1 (long side / short side), got {max_aspect}")
    if resize is not None and resize < MIN_SIDE:
        raise ValueError(f"resize must be at least {MIN_SIDE} pixels, got {resize}")


def rank_proposals(hierarchy_boxes: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Merge hierarchies into one ranked, de-duplicated list (Uijlings et al. 2013, 3.3).

    Parameters
    ----------
    hierarchy_boxes : sequence of (m_s, 4) ndarray
        Each strategy's boxes in creation order (the last formed last).
    rng : numpy.random.Generator
        Draws one uniform factor per box, strategy by strategy.

    Returns
    -------
    (N, 4) float64 ndarray
        Boxes sorted by ``position * random`` (position 1: the last region
        formed), exact duplicates removed (first kept).
    """
    if not hierarchy_boxes:
        return np.zeros((0, 4), dtype=np.float64)
    values = []
    for boxes in hierarchy_boxes:
        m = len(boxes)
        position = np.arange(m, 0, -1, dtype=np.float64)  # creation index 0 -> m, last -> 1
        values.append(position * rng.random(m))
    all_boxes = np.concatenate(hierarchy_boxes, axis=0)
    order = np.argsort(np.concatenate(values), kind="stable")
    ranked = all_boxes[order]
    return ranked[_first_unique(ranked)]


def _first_unique(boxes: np.ndarray) -> np.ndarray:
    """Sorted indices of the first copy of each distinct box (exact equality, O(N log N))."""
    _, first = np.unique(boxes, axis=0, return_index=True)
    return np.sort(first)


def filter_boxes(boxes: np.ndarray, *, min_size: float = 0.0, max_aspect: float | None = None) -> np.ndarray:
    """Keep boxes whose sides are both >= ``min_size`` and whose long/short side ratio <= ``max_aspect``."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    keep = (w >= min_size) & (h >= min_size)
    if max_aspect is not None:
        keep &= np.maximum(w, h) <= max_aspect * np.minimum(w, h)
    return boxes[keep]


def search_colour_space(bgr: np.ndarray, space: str, ks: dict[float, list[str]], *, sigma: float,
                        segment_min_size: int | None, backend: str, keep_segmentations: bool,
                        image_size: float) -> tuple[dict[Strategy, np.ndarray], dict[str, int], dict[str, np.ndarray]]:
    """Hierarchies of the strategies of one colour space (shared conversion, codes, segmentations).

    Parameters
    ----------
    bgr : (H, W, 3) uint8 ndarray
    space : str
        Colour space.
    ks : dict
        ``k -> similarity set codes`` to run on that segmentation.
    sigma, segment_min_size, backend
        Segmentation settings (see :func:`~cvtool.proposals.segmentation.felzenszwalb`).
    keep_segmentations : bool
        Return the label maps too.
    image_size : float
        Pixels in the image.

    Returns
    -------
    hierarchies : dict
        ``Strategy -> (m, 4)`` boxes in creation order.
    initial : dict
        ``"space/k=K" -> n`` initial regions.
    segmentations : dict
        ``"space/k=K" -> (H, W) int32`` labels (empty unless asked for).
    """
    converted, ranges = convert_colour(bgr, space)
    codes = pixel_codes(converted, ranges)
    hierarchies: dict[Strategy, np.ndarray] = {}
    initial: dict[str, int] = {}
    segmentations: dict[str, np.ndarray] = {}
    for k, sim_sets in ks.items():
        labels = felzenszwalb(converted, k=k, sigma=sigma, min_size=segment_min_size, backend=backend)
        name = f"{space}/k={k:g}"
        if keep_segmentations:
            segmentations[name] = labels
        measures = {s: parse_similarity_set(s) for s in sim_sets}
        need = frozenset().union(*measures.values())
        feats = region_features(labels, codes, colour="colour" in need, texture="texture" in need)
        initial[name] = feats.n
        for sims, ms in measures.items():
            hierarchies[Strategy(space, k, sims)] = hierarchical_grouping(
                feats, measures=ms, image_size=image_size).boxes
    return hierarchies, initial, segmentations


def selective_search(image: np.ndarray, *, strategies: Sequence[Strategy] | None = None, mode: str = "fast",
                     sigma: float = 0.8, segment_min_size: int | None = None, seed: int = 0,
                     max_proposals: int | None = None, min_size: float = 0.0, max_aspect: float | None = None,
                     resize: int | None = None, max_pixels: int = MAX_PIXELS,
                     keep_segmentations: bool = False, segmentation_backend: str = "opencv",
                     workers: int = 1) -> ProposalResult:
    """Region proposals by selective search.

    Parameters
    ----------
    image : (H, W) or (H, W, C) uint8/uint16 ndarray
        BGR(A) or grey (grey is replicated to three channels).
    strategies : sequence of Strategy, optional
        Explicit strategies; default those of ``mode`` (see :func:`mode_strategies`).
    mode : {'single', 'fast', 'quality'}
    sigma : float
        Gaussian smoothing of the segmentation, in [0, 10].
    segment_min_size : int, optional
        Felzenszwalb minimum component size (default: k of each strategy).
    seed : int
        Seed of the ranking's random factors: the same seed gives the same order.
    max_proposals : int, optional
        Keep the first N boxes (after filtering).
    min_size : float
        Drop boxes narrower or shorter than this many pixels (input-image pixels).
    max_aspect : float, optional
        Drop boxes whose long side exceeds ``max_aspect`` times the short side.
    resize : int, optional
        Downscale so the longer side is at most this many pixels before the
        search (boxes are scaled back to the input image).
    max_pixels : int
        Refuse images with more pixels than this (after ``resize``).
    keep_segmentations : bool
        Return the label maps of the initial segmentations.
    segmentation_backend : {'opencv', 'skimage'}
    workers : int
        Run the strategies in this many worker processes (joblib loky), one task
        per (colour space, k).  The result does not depend on ``workers``.

    Returns
    -------
    ProposalResult

    Raises
    ------
    ValueError
        Bad image, out-of-range parameter, or an image over ``max_pixels``
        (the message names the limit and ``--resize``).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((60, 80, 3), np.uint8); img[10:30, 20:50] = 255
    >>> res = selective_search(img, mode="single")
    >>> [20.0, 10.0, 50.0, 30.0] in res.boxes.tolist()
    True
    """
    import cv2

    if strategies is None:
        strategies = mode_strategies(mode)
    validate_settings(strategies, sigma, segment_min_size, max_proposals, min_size, max_aspect, resize)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bgr = check_image(image, min_side=MIN_SIDE)
    h0, w0 = bgr.shape[:2]
    scale = 1.0
    if resize is not None and max(h0, w0) > resize:
        scale = resize / max(h0, w0)
        size = (max(MIN_SIDE, round(w0 * scale)), max(MIN_SIDE, round(h0 * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    h, w = bgr.shape[:2]
    if h * w > max_pixels:
        raise ValueError(f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; "
                         "pass --resize MAX_SIDE (e.g. --resize 1000) to search a downscaled copy")
    image_size = float(h * w)

    by_space: dict[str, dict[float, list[str]]] = {}
    for s in strategies:
        by_space.setdefault(s.colour_space, {}).setdefault(s.k, []).append(s.similarities)
    settings = dict(sigma=sigma, segment_min_size=segment_min_size, backend=segmentation_backend,
                    keep_segmentations=keep_segmentations, image_size=image_size)
    if workers > 1:
        # one task per (colour space, k): finer grain balances the workers; each task
        # recomputes its colour space's pixel codes (~20 ms at 500x375)
        tasks = [(space, {k: sims}) for space, ks in by_space.items() for k, sims in ks.items()]
    else:
        tasks = list(by_space.items())
    if workers > 1 and len(tasks) > 1:
        import os

        from joblib import Parallel, delayed

        from cvtool.workers import call_watched

        parent = os.getpid()  # workers stop when this process dies (no orphans after SIGKILL)
        outputs = Parallel(n_jobs=min(workers, len(tasks)), backend="loky")(
            delayed(call_watched)(search_colour_space, parent, bgr, space, ks, **settings) for space, ks in tasks)
    else:
        outputs = [search_colour_space(bgr, space, ks, **settings) for space, ks in tasks]
    hierarchies: dict[Strategy, np.ndarray] = {}
    initial: dict[str, int] = {}
    segmentations: dict[str, np.ndarray] = {}
    for h_part, i_part, s_part in outputs:
        hierarchies.update(h_part)
        initial.update(i_part)
        segmentations.update(s_part)

    rng = np.random.default_rng(seed)
    ordered = [hierarchies[s] for s in strategies]
    candidates = sum(len(b) for b in ordered)
    boxes = rank_proposals(ordered, rng)
    if scale != 1.0:
        boxes = boxes / scale
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w0)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h0)
    boxes = filter_boxes(boxes, min_size=min_size, max_aspect=max_aspect)
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return ProposalResult(boxes, len(strategies), initial, candidates, scale, segmentations)

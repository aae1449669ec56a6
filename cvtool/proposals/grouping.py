"""Hierarchical grouping: greedy merging over the region adjacency graph.

Starting from the regions of a segmentation, the two most similar neighbouring
regions are merged, the similarities of the new region to its neighbours are
computed, and so on until one region covers the image (Uijlings et al. 2013,
algorithm 1).  Every region ever formed is a proposal.

Implementation: a binary heap of ``(-similarity, i, j)`` with lazy invalidation
(regions are never reused, so an entry is stale exactly when ``i`` or ``j`` has
been merged away); histograms of all regions live in one preallocated
``(2n - 1, K)`` array (colour and texture side by side, whose intersection is the
sum of the two similarities), so a merge costs one weighted average and one
vectorised intersection against all neighbours of the new region.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from cvtool.proposals.features import RegionFeatures
from cvtool.proposals.similarity import fill_similarity, histogram_intersection, size_similarity


@dataclass(frozen=True)
class Hierarchy:
    """All regions formed by hierarchical grouping, in creation order.

    Attributes
    ----------
    boxes : (m, 4) float64 ndarray
        xyxy boxes (exclusive right/bottom): the n initial regions, then one
        per merge; the last is the whole image (for a connected image).
    sizes : (m,) float64 ndarray
        Pixel counts.
    merges : (m - n, 2) int64 ndarray
        The two regions merged to form region ``n + row``.
    """

    boxes: np.ndarray
    sizes: np.ndarray
    merges: np.ndarray


def pair_similarities(features: RegionFeatures, a: np.ndarray, b: np.ndarray,
                      measures: frozenset[str], image_size: float) -> np.ndarray:
    """Summed similarity of region pairs ``(a[p], b[p])`` (vectorised).

    Parameters
    ----------
    features : RegionFeatures
    a, b : (P,) int ndarray
        Region indices.
    measures : frozenset of {'colour', 'texture', 'size', 'fill'}
    image_size : float
        Pixels in the image.

    Returns
    -------
    (P,) float64 ndarray
    """
    total = np.zeros(len(a), dtype=np.float64)
    if "colour" in measures:
        total += histogram_intersection(features.colour[a], features.colour[b])
    if "texture" in measures:
        total += histogram_intersection(features.texture[a], features.texture[b])
    if "size" in measures:
        total += size_similarity(features.sizes[a], features.sizes[b], image_size)
    if "fill" in measures:
        total += fill_similarity(features.boxes[a], features.boxes[b], features.sizes[a],
                                 features.sizes[b], image_size)
    return total


def hierarchical_grouping(features: RegionFeatures, *, measures: frozenset[str],
                          image_size: float) -> Hierarchy:
    """Greedily merge the most similar adjacent regions until one is left.

    Parameters
    ----------
    features : RegionFeatures
        Initial regions (:func:`cvtool.proposals.features.region_features`).
    measures : frozenset of {'colour', 'texture', 'size', 'fill'}
        Similarity set; the similarity is the sum of these measures.
    image_size : float
        Pixels in the image (normalises size and fill).

    Returns
    -------
    Hierarchy

    Raises
    ------
    ValueError
        Empty similarity set, or colour/texture asked for but not computed.
    """
    if not measures:
        raise ValueError("the similarity set is empty; use letters of c, t, s, f")
    n = features.n
    use_colour, use_texture = "colour" in measures, "texture" in measures
    use_size, use_fill = "size" in measures, "fill" in measures
    parts = []
    if use_colour:
        if features.colour.shape[1] == 0:
            raise ValueError("colour similarity asked for but colour histograms were not computed")
        parts.append(features.colour)
    if use_texture:
        if features.texture.shape[1] == 0:
            raise ValueError("texture similarity asked for but texture histograms were not computed")
        parts.append(features.texture)
    m = 2 * n - 1
    n_bins = sum(p.shape[1] for p in parts)
    hist = np.empty((m, n_bins), dtype=np.float32)
    if parts:
        hist[:n] = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    sizes: list[float] = features.sizes.tolist()
    x1, y1, x2, y2 = (col.tolist() for col in features.boxes.T)
    inv_image = 1.0 / image_size
    neighbours: list[set[int] | None] = [set() for _ in range(n)]
    pairs = features.pairs
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    sims = pair_similarities(features, pairs[:, 0], pairs[:, 1], measures, image_size)
    heap = list(zip((-sims).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist()))
    heapq.heapify(heap)
    alive = [True] * n
    merges: list[tuple[int, int]] = []
    pop, push = heapq.heappop, heapq.heappush

    while heap:
        _, i, j = pop(heap)
        if not (alive[i] and alive[j]):
            continue  # stale entry: one side was merged already
        t = len(sizes)
        si, sj = sizes[i], sizes[j]
        st = si + sj
        sizes.append(st)
        bx1, by1 = min(x1[i], x1[j]), min(y1[i], y1[j])
        bx2, by2 = max(x2[i], x2[j]), max(y2[i], y2[j])
        x1.append(bx1), y1.append(by1), x2.append(bx2), y2.append(by2)
        if n_bins:
            np.multiply(hist[i], si / st, out=hist[t])
            hist[t] += hist[j] * (sj / st)
        alive[i] = alive[j] = False
        alive.append(True)
        merges.append((i, j))
        union = neighbours[i] | neighbours[j]
        union.discard(i)
        union.discard(j)
        neighbours[i] = neighbours[j] = None
        neighbours.append(union)
        if not union:
            continue
        others = list(union)
        for q in others:
            nq = neighbours[q]
            nq.discard(i)
            nq.discard(j)
            nq.add(t)
        if n_bins:
            scores = np.minimum(hist[others], hist[t]).sum(axis=1).tolist()
        else:
            scores = [0.0] * len(others)
        for q, s in zip(others, scores):
            if use_size:
                s += 1.0 - (st + sizes[q]) * inv_image
            if use_fill:
                w = max(bx2, x2[q]) - min(bx1, x1[q])
                h = max(by2, y2[q]) - min(by1, y1[q])
                s += 1.0 - (w * h - st - sizes[q]) * inv_image
            push(heap, (-s, q, t))

    boxes = np.array([x1, y1, x2, y2], dtype=np.float64).T.copy()
    return Hierarchy(boxes, np.asarray(sizes, dtype=np.float64),
                     np.asarray(merges, dtype=np.int64).reshape(-1, 2))

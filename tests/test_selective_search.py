"""Selective search core: similarities, features, grouping, ranking, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cvtool.proposals import selective_search
from cvtool.proposals.features import (adjacent_pairs, oriented_derivatives, pixel_codes,
                                       region_features)
from cvtool.proposals.grouping import hierarchical_grouping
from cvtool.proposals.segmentation import convert_colour, felzenszwalb
from cvtool.proposals.selective_search import (Strategy, filter_boxes, mode_strategies,
                                               rank_proposals)
from cvtool.proposals.similarity import (fill_similarity, histogram_intersection,
                                         merge_histograms, parse_similarity_set,
                                         size_similarity)


def _iou(boxes: np.ndarray, box) -> np.ndarray:
    """Reference IoU of (N, 4) xyxy boxes against one box (written out by hand)."""
    x1 = np.maximum(boxes[:, 0], box[0])
    y1 = np.maximum(boxes[:, 1], box[1])
    x2 = np.minimum(boxes[:, 2], box[2])
    y2 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


RECTS = [(10, 15, 50, 60, (200, 30, 30)), (70, 20, 140, 50, (30, 30, 220)),
         (90, 70, 150, 110, (220, 220, 220))]


def _rectangles(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((120, 160, 3), (40, 120, 60), np.float64) + rng.normal(0, 4, (120, 160, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for x1, y1, x2, y2, colour in RECTS:
        img[y1:y2, x1:x2] = colour
    return img


# ---------------------------------------------------------------- similarities


def test_similarities_against_hand_computed_values():
    a = np.array([0.5, 0.5, 0.0])
    b = np.array([0.2, 0.3, 0.5])
    assert histogram_intersection(a, b) == pytest.approx(0.5)          # 0.2 + 0.3 + 0
    assert histogram_intersection(a, a) == pytest.approx(1.0)
    rows = histogram_intersection(np.stack([a, b]), b)
    assert rows == pytest.approx([0.5, 1.0])
    assert size_similarity(10, 30, 100) == pytest.approx(0.6)           # 1 - 40/100
    # two 2x2 regions side by side with a one-pixel gap: tight box 5x2 = 10, 10 - 8 = 2 empty
    assert fill_similarity([0, 0, 2, 2], [3, 0, 5, 2], 4, 4, 100) == pytest.approx(0.98)
    # nested boxes: the tight box is the outer one
    assert fill_similarity([0, 0, 10, 10], [2, 2, 4, 4], 96, 4, 400) == pytest.approx(1.0)
    merged = merge_histograms(a, 1.0, b, 3.0)                            # (a + 3b) / 4
    assert merged == pytest.approx([0.275, 0.35, 0.375])
    assert merged.sum() == pytest.approx(1.0)


def test_similarity_set_parsing():
    assert parse_similarity_set("C+T+S+F") == {"colour", "texture", "size", "fill"}
    assert parse_similarity_set("tsf") == {"texture", "size", "fill"}
    with pytest.raises(ValueError, match="'xz'"):
        parse_similarity_set("xz")
    with pytest.raises(ValueError):
        parse_similarity_set("")


# ---------------------------------------------------------------- features


def test_region_features_against_direct_counts():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    labels = np.zeros((12, 10), np.int32)
    labels[:, 5:] = 1
    labels[8:, :3] = 2
    converted, ranges = convert_colour(img, "rgb")
    codes = pixel_codes(converted, ranges)
    feats = region_features(labels, codes)
    assert feats.sizes.tolist() == [(labels == i).sum() for i in range(3)]
    assert feats.boxes.tolist() == [[0, 0, 5, 12], [5, 0, 10, 12], [0, 8, 3, 12]]
    assert feats.pairs.tolist() == [[0, 1], [0, 2]]
    for r in range(3):
        pix = converted[labels == r]                                    # (n, 3) RGB
        expected = np.concatenate([np.histogram(pix[:, c], bins=25, range=(0, 256))[0] for c in range(3)])
        assert feats.colour[r] == pytest.approx(expected / expected.sum(), abs=1e-6)
        assert feats.texture[r].sum() == pytest.approx(1.0)
        assert feats.texture.shape == (3, 240)


def test_region_histograms_in_chunks_equal_one_pass(monkeypatch):
    from cvtool.proposals import features

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 3000)
    codes = rng.integers(0, 40, (3000, 5)).astype(np.uint8)
    whole = features.region_histograms(labels, codes, 7, 40)
    monkeypatch.setattr(features, "_CHUNK_ENTRIES", 37)          # 7 pixels per chunk
    np.testing.assert_array_equal(features.region_histograms(labels, codes, 7, 40), whole)
    expected = np.stack([np.bincount(codes[labels == r].ravel(), minlength=40) for r in range(7)])
    np.testing.assert_allclose(whole, expected / expected.sum(1, keepdims=True), rtol=1e-6)


def test_adjacency_uses_eight_neighbours():
    labels = np.array([[0, 1], [1, 2]], np.int32)
    assert adjacent_pairs(labels).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_oriented_derivatives_match_scipy_gaussian_derivative():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    channel = ndimage.gaussian_filter(rng.random((40, 50)) * 255, 2).astype(np.float32)
    resp = oriented_derivatives(channel, sigma=1.0)
    ramp = np.tile(np.arange(50, dtype=np.float64), (40, 1))
    gain = ndimage.gaussian_filter(ramp, 1.0, order=(0, 1), mode="reflect", truncate=3.0)[20, 25]
    gx = ndimage.gaussian_filter(channel.astype(np.float64), 1.0, order=(0, 1), mode="reflect", truncate=3.0) / gain
    gy = ndimage.gaussian_filter(channel.astype(np.float64), 1.0, order=(1, 0), mode="reflect", truncate=3.0) / gain
    np.testing.assert_allclose(resp[0], np.maximum(gx, 0), atol=1e-3)
    np.testing.assert_allclose(resp[4], np.maximum(-gx, 0), atol=1e-3)
    np.testing.assert_allclose(resp[2], np.maximum(gy, 0), atol=1e-3)
    np.testing.assert_allclose(resp[1], np.maximum((gx + gy) / np.sqrt(2), 0), atol=1e-3)
    np.testing.assert_allclose(resp[7], np.maximum(-(gy - gx) / np.sqrt(2), 0), atol=1e-3)


def test_segmentation_backends_agree_on_region_counts():
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[::2, ::2, ::-1])
    a = felzenszwalb(img, k=100, sigma=0.8)
    b = felzenszwalb(img, k=100, sigma=0.8, backend="skimage")
    assert a.shape == b.shape == img.shape[:2]
    na, nb = a.max() + 1, b.max() + 1
    assert np.bincount(a.ravel()).all() and np.bincount(b.ravel()).all()
    assert 0.7 < na / nb < 1.4
    with pytest.raises(ValueError, match="k"):
        felzenszwalb(img, k=0)


# ---------------------------------------------------------------- grouping


def _naive_grouping(labels, codes, measures, image_size):
    """Reference: recompute every similarity from the pixels of the merged regions."""
    flat = labels.ravel()
    regions = {int(r): flat == r for r in np.unique(flat)}
    h, w = labels.shape
    ys, xs = np.divmod(np.arange(h * w), w)

    def hist(mask, part):
        c = codes.colour if part == "colour" else codes.texture
        nb = codes.n_colour if part == "colour" else codes.n_texture
        v = np.bincount(c[mask].ravel(), minlength=nb).astype(np.float64)
        return v / v.sum()

    def box(mask):
        return np.array([xs[mask].min(), ys[mask].min(), xs[mask].max() + 1, ys[mask].max() + 1], float)

    def sim(a, b):
        ma, mb = regions[a], regions[b]
        s = 0.0
        for part in ("colour", "texture"):
            if part in measures:
                s += histogram_intersection(hist(ma, part), hist(mb, part))
        if "size" in measures:
            s += size_similarity(ma.sum(), mb.sum(), image_size)
        if "fill" in measures:
            s += fill_similarity(box(ma), box(mb), ma.sum(), mb.sum(), image_size)
        return s

    adjacency = {tuple(p) for p in adjacent_pairs(labels).tolist()}
    merges, next_id = [], len(regions)
    while adjacency:
        scored = sorted(((sim(*p), p) for p in adjacency), reverse=True)
        assert len(scored) == 1 or scored[0][0] - scored[1][0] > 1e-6, "tie: pick other test data"
        i, j = scored[0][1]
        regions[next_id] = regions.pop(i) | regions.pop(j)
        merges.append((i, j))
        new = set()
        for a, b in adjacency:
            if {a, b} == {i, j}:
                continue
            a2 = next_id if a in (i, j) else a
            b2 = next_id if b in (i, j) else b
            new.add((min(a2, b2), max(a2, b2)))
        adjacency = new
        next_id += 1
    return merges


@pytest.mark.parametrize("sims", ["ctsf", "tsf", "cf"])
def test_grouping_matches_naive_recomputation(sims):
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    rows = np.searchsorted([5, 11, 18], np.arange(24), side="right")          # 4 x 5 blocks of
    cols = np.searchsorted([4, 11, 17, 24], np.arange(30), side="right")      # unequal sizes
    labels = (rows[:, None] * 5 + cols[None, :]).astype(np.int32)
    converted, ranges = convert_colour(img, "hsv")
    codes = pixel_codes(converted, ranges)
    measures = parse_similarity_set(sims)
    hier = hierarchical_grouping(region_features(labels, codes), measures=measures, image_size=24 * 30.0)
    assert hier.merges.tolist() == [list(m) for m in _naive_grouping(labels, codes, measures, 24 * 30.0)]
    assert len(hier.boxes) == 2 * 20 - 1
    assert hier.boxes[-1].tolist() == [0, 0, 30, 24]
    assert hier.sizes[-1] == 24 * 30


# ---------------------------------------------------------------- whole search


@pytest.mark.parametrize("mode", ["single", "fast"])
def test_rectangles_are_found(mode):
    result = selective_search(_rectangles(), mode=mode)
    for x1, y1, x2, y2, _ in RECTS:
        assert _iou(result.boxes, (x1, y1, x2, y2)).max() > 0.9
    assert result.boxes.dtype == np.float64 and result.boxes.shape[1] == 4
    assert len(np.unique(result.boxes, axis=0)) == len(result.boxes)     # de-duplicated


def test_same_seed_same_order_other_seed_other_order():
    img = _rectangles()
    a = selective_search(img, mode="fast", seed=3).boxes
    b = selective_search(img, mode="fast", seed=3).boxes
    c = selective_search(img, mode="fast", seed=4).boxes
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, c.tolist()))


def test_worker_processes_give_the_same_result():
    img = _rectangles()
    one = selective_search(img, mode="fast", seed=2)
    two = selective_search(img, mode="fast", seed=2, workers=2)
    np.testing.assert_array_equal(one.boxes, two.boxes)
    assert one.num_initial_regions == two.num_initial_regions
    with pytest.raises(ValueError, match="workers"):
        selective_search(img, workers=0)


def test_rank_proposals_orders_by_position_times_random():
    h1 = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]], float)   # created in this order
    h2 = np.array([[0, 0, 2, 2], [5, 5, 6, 6]], float)
    r = np.random.default_rng(11).random(5)
    value = np.concatenate([[3, 2, 1] * r[:3], [2, 1] * r[3:]])
    expected = np.concatenate([h1, h2])[np.argsort(value, kind="stable")]
    _, first = np.unique(expected, axis=0, return_index=True)
    ranked = rank_proposals([h1, h2], np.random.default_rng(11))
    np.testing.assert_array_equal(ranked, expected[np.sort(first)])
    assert len(ranked) == 4


def test_filters_and_max():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 40, 5], [0, 0, 30, 20]], float)
    assert filter_boxes(boxes, min_size=3).tolist() == [[0, 0, 10, 10], [0, 0, 40, 5], [0, 0, 30, 20]]
    assert filter_boxes(boxes, max_aspect=2).tolist() == [[0, 0, 10, 10], [0, 0, 30, 20]]
    result = selective_search(_rectangles(), mode="single", max_proposals=5, min_size=8, max_aspect=3)
    w = result.boxes[:, 2] - result.boxes[:, 0]
    h = result.boxes[:, 3] - result.boxes[:, 1]
    assert len(result.boxes) == 5 and (w >= 8).all() and (h >= 8).all()
    assert (np.maximum(w, h) <= 3 * np.minimum(w, h)).all()


def test_modes_have_the_papers_strategies():
    fast = mode_strategies("fast")
    assert len(fast) == 8 and {s.colour_space for s in fast} == {"hsv", "lab"}
    assert {s.k for s in fast} == {50, 100} and {s.similarities for s in fast} == {"ctsf", "tsf"}
    quality = mode_strategies("quality")
    assert len(quality) == 80 and {s.colour_space for s in quality} == {"hsv", "lab", "rgi", "h", "i"}
    assert mode_strategies("single", colour_space="lab", k=150, similarities="tsf") == [Strategy("lab", 150, "tsf")]
    with pytest.raises(ValueError, match="'slow'"):
        mode_strategies("slow")


def test_every_colour_space_runs_and_grey_is_accepted():
    img = _rectangles()
    strategies = [Strategy(space, 100, "ctsf") for space in ("rgb", "hsv", "lab", "rgi", "i", "h")]
    result = selective_search(img, strategies=strategies)
    assert result.num_strategies == 6 and len(result.num_initial_regions) == 6
    grey = selective_search(img[:, :, 1], mode="single")
    assert len(grey.boxes) > 0
    wide = selective_search((img.astype(np.uint16) * 257), mode="single")
    np.testing.assert_array_equal(wide.boxes, selective_search(img, mode="single").boxes)


def test_resize_returns_boxes_in_input_coordinates():
    img = np.repeat(np.repeat(_rectangles(), 4, axis=0), 4, axis=1)            # 480 x 640
    result = selective_search(img, mode="single", resize=160)
    assert result.scale == pytest.approx(0.25)
    assert result.boxes[:, 2].max() <= 640 and result.boxes[:, 3].max() <= 480
    for x1, y1, x2, y2, _ in RECTS:
        assert _iou(result.boxes, (4 * x1, 4 * y1, 4 * x2, 4 * y2)).max() > 0.85


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma": -1}, "sigma"),
    ({"max_proposals": 0}, "max proposals"),
    ({"min_size": -2}, "min size"),
    ({"max_aspect": 0.5}, "max aspect"),
    ({"strategies": [Strategy("xyz", 100, "ctsf")]}, "colour space 'xyz'"),
    ({"strategies": [Strategy("hsv", -5, "ctsf")]}, "k"),
    ({"strategies": [Strategy("hsv", 100, "q")]}, "similarity set"),
    ({"mode": "slow"}, "mode"),
])
def test_bad_parameters_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        selective_search(_rectangles(), **kwargs)


def test_bad_images_raise_clear_errors():
    with pytest.raises(ValueError, match="3x2; selective search needs at least 4x4"):
        selective_search(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        selective_search(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        selective_search(np.zeros((20, 20, 2), np.uint8))
    with pytest.raises(ValueError, match=r"over the limit of 1000; pass --resize"):
        selective_search(np.zeros((40, 40, 3), np.uint8), max_pixels=1000)
    flat = selective_search(np.full((20, 30, 3), 7, np.uint8), mode="single")
    assert flat.boxes.tolist() == [[0, 0, 30, 20]]

"""cvtool.draw.draw_boxes: rectangles land on the right pixels, inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest

from cvtool.draw import draw_boxes, label_color


def test_rectangle_edges_match_opencv():
    import cv2

    img = np.zeros((40, 50), np.uint8)
    out = draw_boxes(img, np.array([[5.2, 6.0, 30.0, 25.0]]), color=(0, 255, 0))
    ref = cv2.rectangle(np.zeros((40, 50, 3), np.uint8), (5, 6), (30, 25), (0, 255, 0), 1)
    assert np.array_equal(out, ref)
    assert img.sum() == 0  # input untouched


def test_labels_pick_palette_colours_and_caption_is_drawn():
    img = np.full((120, 120, 3), 255, np.uint8)
    out = draw_boxes(img, [[10, 40, 60, 90], [70, 40, 110, 100]], labels=[0, 3],
                     scores=[0.91, 0.5], names=["a", "b", "c", "d"])
    assert tuple(out[90, 30]) == label_color(0)        # bottom edge of box 0
    assert tuple(out[100, 90]) == label_color(3)       # bottom edge of box 1
    # caption band above box 0 (rows 28..39) is filled with its colour
    band = out[28:39, 10:20].reshape(-1, 3)
    assert (band == np.array(label_color(0), np.uint8)).all(axis=1).mean() > 0.3


def test_empty_and_bad_boxes():
    img = np.zeros((10, 10, 3), np.uint8)
    assert np.array_equal(draw_boxes(img, np.zeros((0, 4))), img)
    with pytest.raises(ValueError, match="shape"):
        draw_boxes(img, [[1, 2, 3]])
    with pytest.raises(ValueError, match="NaN"):
        draw_boxes(img, [[1, 2, np.nan, 4]])
    with pytest.raises(ValueError, match="labels has 2"):
        draw_boxes(img, [[1, 2, 3, 4]], labels=[0, 1])


def test_strongest_detection_is_drawn_on_top():
    """Two boxes at one place: the higher score's colour wins, whatever the input order."""
    from cvtool.draw import draw_boxes, label_color

    img = np.zeros((40, 40), np.uint8)
    for order in ([0, 1], [1, 0]):
        boxes = np.array([[5, 5, 30, 30], [5, 5, 30, 30]], float)[order]
        labels = np.array([0, 1])[order]
        scores = np.array([0.9, 0.2])[order]
        out = draw_boxes(img, boxes, labels=labels, scores=scores)
        assert tuple(int(v) for v in out[20, 5]) == label_color(0)

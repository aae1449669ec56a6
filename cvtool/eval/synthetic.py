"""Seeded synthetic COCO ground truth and detections, for tests and benchmarks.

The sets exercise every rule of the COCO evaluation: boxes of all three area
ranges, crowd boxes, ``area`` fields that differ from the box area (as segment
areas do), images without annotations, images without detections, categories
without ground truth, tied scores, duplicate detections and wrong classes.
"""

from __future__ import annotations

import numpy as np


def make_coco_set(
    rng: np.random.Generator | int,
    *,
    num_images: int = 50,
    num_classes: int = 8,
    gt_per_image: float = 7.0,
    dets_per_image: float = 20.0,
    crowd_fraction: float = 0.05,
    empty_image_fraction: float = 0.05,
    no_detection_fraction: float = 0.05,
    classes_without_gt: int = 1,
    score_decimals: int | None = 2,
) -> tuple[dict, list[dict]]:
    """A COCO ground-truth dict and a COCO results list.

    Parameters
    ----------
    rng : numpy.random.Generator or int
        Random generator or seed.
    num_images, num_classes : int
        Sizes of the set (category ids are 1..num_classes).
    gt_per_image, dets_per_image : float
        Poisson means of boxes per image.
    crowd_fraction : float
        Share of ground-truth boxes flagged ``iscrowd``.
    empty_image_fraction, no_detection_fraction : float
        Share of images with no ground truth / no detections.
    classes_without_gt : int
        The last this-many categories get detections but no ground truth.
    score_decimals : int or None
        Round scores (ties between detections) or keep them continuous.

    Returns
    -------
    (dict, list of dict)
        ``{"images", "annotations", "categories"}`` (xywh boxes) and
        ``[{"image_id", "category_id", "bbox", "score"}, ...]``.
    """
    rng = np.random.default_rng(rng)
    gt_classes = max(1, num_classes - classes_without_gt)
    images, anns, results = [], [], []
    ann_id = 1
    for i in range(num_images):
        w, h = int(rng.integers(320, 800)), int(rng.integers(240, 640))
        images.append({"id": i + 1, "file_name": f"images/{i + 1:06d}.png", "width": w, "height": h})
        n_gt = 0 if rng.random() < empty_image_fraction else int(rng.poisson(gt_per_image))
        side = np.exp(rng.uniform(np.log(4), np.log(min(w, h) * 0.9), size=(n_gt, 2)))
        x = rng.uniform(0, w - side[:, 0])
        y = rng.uniform(0, h - side[:, 1])
        boxes = np.round(np.stack([x, y, side[:, 0], side[:, 1]], axis=1), 2)
        labels = rng.integers(1, gt_classes + 1, size=n_gt)
        for b, c in zip(boxes, labels):
            crowd = int(rng.random() < crowd_fraction)
            area = float(b[2] * b[3] * (1.0 if rng.random() < 0.5 else rng.uniform(0.5, 1.0)))
            anns.append({"id": ann_id, "image_id": i + 1, "category_id": int(c), "bbox": b.tolist(),
                         "area": area, "iscrowd": crowd})
            ann_id += 1
        if rng.random() < no_detection_fraction:
            continue
        n_det = int(rng.poisson(dets_per_image))
        for _ in range(n_det):
            if n_gt and rng.random() < 0.7:
                j = int(rng.integers(n_gt))
                bx, by, bw, bh = boxes[j]
                jit = rng.normal(0, 0.12, size=4) * np.array([bw, bh, bw, bh])
                dw, dh = max(bw + jit[2], 1.0), max(bh + jit[3], 1.0)
                det = [float(np.clip(bx + jit[0], 0, w - 1)), float(np.clip(by + jit[1], 0, h - 1)), dw, dh]
                cat = int(labels[j]) if rng.random() < 0.85 else int(rng.integers(1, num_classes + 1))
            else:
                dw, dh = np.exp(rng.uniform(np.log(4), np.log(min(w, h) * 0.9), size=2))
                det = [float(rng.uniform(0, w - dw)), float(rng.uniform(0, h - dh)), float(dw), float(dh)]
                cat = int(rng.integers(1, num_classes + 1))
            score = float(rng.random())
            if score_decimals is not None:
                score = round(score, score_decimals)
            results.append({"image_id": i + 1, "category_id": cat,
                            "bbox": [round(v, 2) for v in det], "score": score})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)]
    return {"images": images, "annotations": anns, "categories": categories}, results

"""Dataset summaries for ``cvtool prepare stats``: counts, per-class boxes, size and aspect histograms.

Box *size* is ``sqrt(width * height)`` in pixels; *aspect* is ``width / height``.
Histograms use fixed edges (listed in the result) so two datasets can be
compared bin by bin; the COCO size classes (small < 32^2 <= medium < 96^2 <=
large, by box area) are reported too.
"""

from __future__ import annotations

import math

import numpy as np

SIZE_EDGES = (0, 8, 16, 32, 64, 128, 256, 512, math.inf)
ASPECT_EDGES = (0, 0.25, 0.5, 0.75, 1 / 1.25, 1.25, 1 / 0.75, 2, 4, math.inf)


def _hist(values: np.ndarray, edges: tuple[float, ...]) -> list[dict]:
    counts, _ = np.histogram(values, bins=np.array(edges, dtype=np.float64))
    return [{"low": lo, "high": None if math.isinf(hi) else hi, "count": int(c)}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts)]


def _summary(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"min": None, "median": None, "mean": None, "max": None}
    return {"min": round(float(values.min()), 3), "median": round(float(np.median(values)), 3),
            "mean": round(float(values.mean()), 3), "max": round(float(values.max()), 3)}


def dataset_stats(ds) -> dict:
    """Summarise a :class:`~cvtool.datasets.core.Dataset`.

    Returns
    -------
    dict
        ``images``, ``images_without_boxes``, ``boxes``, ``crowd_boxes``,
        ``boxes_per_image`` (min/median/mean/max), ``image_sizes`` (``"WxH": count``),
        ``classes`` (list of ``{id, name, boxes, images}``), ``box_size`` and
        ``box_aspect`` (summary + histogram with fixed edges), ``coco_size_classes``.
    """
    b = ds.ann_boxes
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    area = w * h
    size = np.sqrt(np.clip(area, 0, None))
    aspect = w / np.where(h > 0, h, np.nan)
    aspect = aspect[np.isfinite(aspect)]
    ids = np.array([im.id for im in ds.images], dtype=np.int64)
    per_image = np.zeros(0, dtype=np.int64)
    if len(ids):
        order = np.argsort(ids)
        pos = np.searchsorted(ids[order], ds.ann_image_ids)
        per_image = np.bincount(order[np.clip(pos, 0, len(ids) - 1)], minlength=len(ids))
    sizes: dict[str, int] = {}
    for im in ds.images:
        key = f"{im.width}x{im.height}"
        sizes[key] = sizes.get(key, 0) + 1
    classes = []
    for c in sorted(ds.categories, key=lambda c: c.id):
        mask = ds.ann_labels == c.id
        classes.append({"id": c.id, "name": c.name, "boxes": int(mask.sum()),
                        "images": int(np.unique(ds.ann_image_ids[mask]).size)})
    return {
        "images": len(ds.images),
        "images_without_boxes": int(np.count_nonzero(per_image == 0)),
        "boxes": int(b.shape[0]),
        "crowd_boxes": int(np.count_nonzero(ds.ann_iscrowd)),
        "boxes_per_image": _summary(per_image.astype(np.float64)),
        "image_sizes": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        "classes": classes,
        "box_size": {**_summary(size), "histogram": _hist(size, SIZE_EDGES)},
        "box_aspect": {**_summary(aspect), "histogram": _hist(aspect, ASPECT_EDGES)},
        "coco_size_classes": {"small": int(np.count_nonzero(area < 32 ** 2)),
                              "medium": int(np.count_nonzero((area >= 32 ** 2) & (area < 96 ** 2))),
                              "large": int(np.count_nonzero(area >= 96 ** 2))},
    }


def format_stats(stats: dict, *, title: str = "") -> str:
    """A plain-text report of :func:`dataset_stats` (bars scaled to the largest bin)."""
    lines = [title] if title else []
    lines.append(f"images {stats['images']} ({stats['images_without_boxes']} without boxes), "
                 f"boxes {stats['boxes']}" + (f" ({stats['crowd_boxes']} crowd)" if stats["crowd_boxes"] else ""))
    bpi = stats["boxes_per_image"]
    if bpi["mean"] is not None:
        lines.append(f"boxes per image: min {bpi['min']:g}, median {bpi['median']:g}, mean {bpi['mean']:g}, "
                     f"max {bpi['max']:g}")
    top = list(stats["image_sizes"].items())[:5]
    lines.append("image sizes: " + ", ".join(f"{k} ({v})" for k, v in top)
                 + (" ..." if len(stats["image_sizes"]) > 5 else ""))
    lines.append("class                      boxes  images")
    for c in stats["classes"]:
        lines.append(f"  {c['id']:>4} {c['name'][:20]:20s} {c['boxes']:6d} {c['images']:7d}")
    for key, label in (("box_size", "box size sqrt(w*h) px"), ("box_aspect", "box aspect w/h")):
        lines.append(f"{label}:")
        hist = stats[key]["histogram"]
        peak = max((b["count"] for b in hist), default=0) or 1
        for b in hist:
            hi = "inf" if b["high"] is None else f"{b['high']:.3g}"
            lines.append(f"  [{b['low']:>5.3g}, {hi:>5}) {b['count']:7d} {'#' * round(30 * b['count'] / peak)}")
    s = stats["coco_size_classes"]
    lines.append(f"COCO size classes: small {s['small']}, medium {s['medium']}, large {s['large']}")
    return "\n".join(lines)

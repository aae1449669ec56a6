"""Pascal VOC average precision: all-point (VOC2010+) and 11-point (VOC2007).

Rules of the VOC development kit (``VOCevaldet.m``), applied per class:

* detections of the class, over all images, are ranked by descending
  confidence (stable: file order breaks ties);
* each detection is compared with every ground-truth box of its image and
  class (difficult ones included) and takes the one of largest IoU (the first
  on ties);
* IoU >= threshold: if that box is *difficult* the detection is ignored
  (neither true nor false positive); else it is a true positive when the box
  is still unclaimed, a false positive (duplicate) when a higher-ranked
  detection claimed it; IoU below the threshold: false positive;
* recall = TP / number of non-difficult boxes; precision = TP / (TP + FP);
* all-point AP: area under the monotone precision envelope at every change of
  recall; 11-point AP: mean over recall r in ``numpy.linspace(0, 1, 11)`` of the
  largest precision at recall >= r (0 when recall never reaches r);
* mAP: mean AP over the classes that have non-difficult ground truth.

``pixel_rule=True`` is the devkit's "+1 pixel" convention: coordinates are
inclusive pixel indices, so a box is ``x2 - x1 + 1`` wide (areas and
intersections alike).

References
----------
Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cvtool.datasets.core import Dataset, Predictions
from cvtool.errors import BadInputError
from cvtool.eval.pairs import group_pairs, index_in_sorted, paired_iou, segment_starts

METHODS = ("all-point", "11-point")


@dataclass
class VocClassResult:
    """One class at one IoU threshold.

    Attributes
    ----------
    ap : float
        Average precision (NaN when the class has no non-difficult ground truth).
    num_gt, num_difficult, num_dets, tp, fp : int
    recall, precision : (N,) float64 ndarray
        The raw curve, one point per ranked detection.
    """

    id: int
    name: str
    ap: float
    num_gt: int
    num_difficult: int
    num_dets: int
    tp: int
    fp: int
    recall: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name,
            "AP": None if np.isnan(self.ap) else float(self.ap),
            "num_gt": self.num_gt, "num_difficult": self.num_difficult, "num_dets": self.num_dets,
            "TP": self.tp, "FP": self.fp,
            "recall": (float(self.recall[-1]) if self.recall.size else 0.0) if self.num_gt else None,
        }


@dataclass
class VocReport:
    """Output of :func:`evaluate_voc`.

    Attributes
    ----------
    method : {'all-point', '11-point'}
    pixel_rule : bool
    iou_thresholds : tuple of float
    mean_ap : dict
        ``threshold -> mAP`` over classes with ground truth (NaN when none has).
    per_class : dict
        ``threshold -> list of VocClassResult`` (every category of the ground truth).
    """

    method: str
    pixel_rule: bool
    iou_thresholds: tuple[float, ...]
    mean_ap: dict[float, float]
    per_class: dict[float, list[VocClassResult]]

    def to_dict(self) -> dict:
        """JSON-friendly dictionary with named keys (AP null for classes without ground truth)."""
        def num(v: float):
            return None if np.isnan(v) else float(v)

        return {
            "metric": "voc11" if self.method == "11-point" else "voc",
            "method": self.method,
            "voc_pixels": self.pixel_rule,
            "iou_thresholds": list(self.iou_thresholds),
            "mAP": {f"{t:g}": num(self.mean_ap[t]) for t in self.iou_thresholds},
            "thresholds": [
                {"iou": t, "mAP": num(self.mean_ap[t]), "per_class": [c.to_dict() for c in self.per_class[t]]}
                for t in self.iou_thresholds
            ],
        }


def average_precision(recall: np.ndarray, precision: np.ndarray, *, method: str = "all-point") -> float:
    """AP from a ranked PR curve.

    Parameters
    ----------
    recall, precision : (N,) float64 ndarray
        Cumulative recall and precision after each ranked detection.
    method : {'all-point', '11-point'}

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Unknown ``method`` or mismatched shapes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(f"recall {recall.shape} and precision {precision.shape} must be equal 1-D shapes")
    if method == "11-point":
        ap = 0.0
        for r in np.linspace(0.0, 1.0, 11):
            reached = precision[recall >= r]
            ap += (reached.max() if reached.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def evaluate_voc(gt: Dataset, pred: Predictions, *, iou_thresholds: Sequence[float] = (0.5,),
                 method: str = "all-point", pixel_rule: bool = False) -> VocReport:
    """Pascal VOC AP per class and mAP at one or several IoU thresholds.

    Parameters
    ----------
    gt : Dataset
        Ground truth; ``ann_difficult`` boxes are ignored, crowd boxes are
        treated as difficult.
    pred : Predictions
        Detections with category ids of ``gt`` as labels.
    iou_thresholds : sequence of float
        Each in (0, 1]; a match needs IoU >= threshold.
    method : {'all-point', '11-point'}
    pixel_rule : bool
        VOC's "+1 pixel" widths (inclusive pixel coordinates).

    Returns
    -------
    VocReport

    Raises
    ------
    ValueError
        Bad ``method`` or thresholds.
    BadInputError
        Detections on unknown images or categories, non-finite values.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    thr = tuple(float(t) for t in iou_thresholds)
    if not thr or not all(0 < t <= 1 for t in thr):
        raise ValueError(f"IoU thresholds must be in (0, 1], got {list(iou_thresholds)}")
    if len(pred) and not (np.isfinite(pred.boxes).all() and np.isfinite(pred.scores).all()):
        raise BadInputError("predictions: non-finite box or score")

    image_ids = np.unique(np.array([im.id for im in gt.images], dtype=np.int64))
    cats = sorted(gt.categories, key=lambda c: c.id)
    cat_ids = np.array([c.id for c in cats], dtype=np.int64)
    K = max(cat_ids.size, 1)

    gt_rec, det_rec = "ground-truth annotation", "predictions: detection"
    g_key = index_in_sorted(gt.ann_image_ids, image_ids, what="image id", record=gt_rec) * K \
        + index_in_sorted(gt.ann_labels, cat_ids, what="category id", record=gt_rec)
    g_sort = np.argsort(g_key, kind="stable")
    g_key = g_key[g_sort]
    g_box = np.asarray(gt.ann_boxes, dtype=np.float64)[g_sort]
    g_hard = (np.asarray(gt.ann_difficult, dtype=bool) | np.asarray(gt.ann_iscrowd, dtype=bool))[g_sort]
    g_cat = g_key % K

    d_cat = index_in_sorted(pred.labels, cat_ids, what="category id", record=det_rec)
    d_key = index_in_sorted(pred.image_ids, image_ids, what="image id", record=det_rec) * K + d_cat
    scores = np.asarray(pred.scores, dtype=np.float64)
    boxes = np.asarray(pred.boxes, dtype=np.float64)

    # best box of each detection: largest IoU in its (image, class), first on ties
    best_iou = np.full(len(pred), -np.inf)
    best_gt = np.full(len(pred), -1, dtype=np.int64)
    for pd, pg in group_pairs(d_key, g_key):
        ious = paired_iou(boxes[pd], g_box[pg], plus_one=pixel_rule)
        ious = np.where(ious > 0, ious, -np.inf)  # the devkit skips boxes that do not intersect
        starts, seg = segment_starts(pd)
        top = np.maximum.reduceat(ious, starts)
        first = np.minimum.reduceat(np.where(ious == top[seg], np.arange(pd.size), pd.size), starts)
        det = pd[starts]
        best_iou[det] = top
        best_gt[det] = np.where(np.isfinite(top), pg[np.minimum(first, pd.size - 1)], -1)

    # rank all detections: class, then descending score, then file order
    order = np.lexsort((np.arange(len(pred)), -scores, d_cat))
    bounds = np.searchsorted(d_cat[order], np.arange(cat_ids.size + 1))
    n_gt = np.bincount(g_cat[~g_hard], minlength=cat_ids.size)
    n_hard = np.bincount(g_cat[g_hard], minlength=cat_ids.size)

    per_class: dict[float, list[VocClassResult]] = {}
    mean_ap: dict[float, float] = {}
    for t in thr:
        rows = []
        for k, c in enumerate(cats):
            sel = order[bounds[k]:bounds[k + 1]]
            hit = best_iou[sel] >= t
            hard = hit & g_hard[np.maximum(best_gt[sel], 0)]
            candidate = hit & ~hard
            first_claim = np.zeros(sel.size, dtype=bool)
            cand_idx = np.flatnonzero(candidate)
            _, first = np.unique(best_gt[sel][cand_idx], return_index=True)
            first_claim[cand_idx[first]] = True
            tp = first_claim
            fp = ~tp & ~hard
            tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
            npos = int(n_gt[k])
            prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
            rec = tp_c / npos if npos else np.zeros(sel.size)
            ap = average_precision(rec, prec, method=method) if npos else float("nan")
            rows.append(VocClassResult(id=c.id, name=c.name, ap=ap, num_gt=npos, num_difficult=int(n_hard[k]),
                                       num_dets=int(sel.size), tp=int(tp.sum()), fp=int(fp.sum()),
                                       recall=rec, precision=prec))
        per_class[t] = rows
        aps = [r.ap for r in rows if r.num_gt > 0]
        mean_ap[t] = float(np.mean(aps)) if aps else float("nan")
    return VocReport(method=method, pixel_rule=pixel_rule, iou_thresholds=thr, mean_ap=mean_ap, per_class=per_class)

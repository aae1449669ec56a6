"""Single-object localisation: one labelled box per image, one prediction per image.

For each image with a ground-truth object, the prediction is its highest-scoring
detection (file order breaks ties).  Figures:

* accuracy: share of images whose predicted class is the true class;
* mean IoU: mean IoU between predicted and true boxes (0 for an image with no
  prediction);
* IoU >= t: share of images whose IoU reaches ``t`` (default 0.6);
* correct: share with the right class *and* IoU >= t (the usual "correct
  localisation" of ImageNet-style studies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvtool.datasets.core import Dataset, Predictions
from cvtool.errors import BadInputError
from cvtool.eval.pairs import paired_iou


@dataclass
class LocReport:
    """Output of :func:`evaluate_localization` (shares in [0, 1]).

    Attributes
    ----------
    iou_threshold : float
    num_images : int
        Images with a ground-truth object.
    images_without_prediction : int
    accuracy, mean_iou, iou_hit_rate, correct : float
    per_class : list of dict
        ``id, name, num_images, accuracy, mean_iou, iou_hit_rate, correct``.
    ious : (N,) float64 ndarray
        IoU per evaluated image (ground-truth image order).
    """

    iou_threshold: float
    num_images: int
    images_without_prediction: int
    accuracy: float
    mean_iou: float
    iou_hit_rate: float
    correct: float
    per_class: list[dict]
    ious: np.ndarray

    def to_dict(self) -> dict:
        return {
            "metric": "loc", "iou_threshold": self.iou_threshold, "num_images": self.num_images,
            "images_without_prediction": self.images_without_prediction,
            "accuracy": self.accuracy, "mean_iou": self.mean_iou,
            "iou_hit_rate": self.iou_hit_rate, "correct": self.correct,
            "per_class": [dict(r) for r in self.per_class],
        }


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def evaluate_localization(gt: Dataset, pred: Predictions, *, iou_threshold: float = 0.6) -> LocReport:
    """Classification accuracy and box IoU of single-object predictions.

    Parameters
    ----------
    gt : Dataset
        At most one annotation per image (images without one are skipped).
    pred : Predictions
        Any number per image; the top-scoring one counts.
    iou_threshold : float
        In (0, 1].

    Returns
    -------
    LocReport

    Raises
    ------
    ValueError
        ``iou_threshold`` out of range.
    BadInputError
        An image has more than one ground-truth box, or a prediction names an
        unknown image.
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou_threshold}")
    ids = np.array([im.id for im in gt.images], dtype=np.int64)
    counts = np.bincount(np.searchsorted(np.sort(ids), gt.ann_image_ids), minlength=ids.size)
    if counts.size and counts.max() > 1:
        bad = np.sort(ids)[int(np.argmax(counts))]
        raise BadInputError(f"localisation needs one ground-truth box per image; image {int(bad)} has {int(counts.max())}")
    unknown = ~np.isin(pred.image_ids, ids)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise BadInputError(f"predictions: detection #{i} has image id {int(pred.image_ids[i])}, which the ground truth does not have")

    # top prediction per image: sort by image, -score, file order; first of each image
    order = np.lexsort((np.arange(len(pred)), -np.asarray(pred.scores, dtype=np.float64), pred.image_ids))
    img_sorted = pred.image_ids[order]
    first = order[np.r_[True, img_sorted[1:] != img_sorted[:-1]]] if order.size else order
    top_of = dict(zip(pred.image_ids[first].tolist(), first.tolist()))

    n = gt.num_annotations
    has = np.array([int(i) in top_of for i in gt.ann_image_ids], dtype=bool)
    idx = np.array([top_of.get(int(i), 0) for i in gt.ann_image_ids], dtype=np.int64)
    ious = np.zeros(n)
    label_ok = np.zeros(n, dtype=bool)
    if has.any():
        ious[has] = paired_iou(np.asarray(pred.boxes, np.float64)[idx[has]], np.asarray(gt.ann_boxes, np.float64)[has])
        label_ok[has] = pred.labels[idx[has]] == gt.ann_labels[has]
    hit = ious >= iou_threshold
    per_class = []
    for c in sorted(gt.categories, key=lambda c: c.id):
        m = gt.ann_labels == c.id
        per_class.append({"id": c.id, "name": c.name, "num_images": int(m.sum()),
                          "accuracy": _share(label_ok[m]), "mean_iou": float(ious[m].mean()) if m.any() else float("nan"),
                          "iou_hit_rate": _share(hit[m]), "correct": _share(hit[m] & label_ok[m])})
    return LocReport(iou_threshold=float(iou_threshold), num_images=n, images_without_prediction=int((~has).sum()),
                     accuracy=_share(label_ok), mean_iou=float(ious.mean()) if n else float("nan"),
                     iou_hit_rate=_share(hit), correct=_share(hit & label_ok), per_class=per_class, ious=ious)

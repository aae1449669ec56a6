"""Proposal quality: recall against the number of proposals, and average best overlap.

For every ground-truth box the *best overlap* with the first N proposals of its
image is the largest IoU between the box and any of them (0 when the image has
no proposals).  From it:

* recall@t at N: the fraction of ground-truth boxes whose best overlap with the
  first N proposals is >= t (Hosang et al. 2015; Uijlings et al. 2013 use 0.5);
* ABO at N: the mean best overlap (Uijlings et al. 2013, eq. 6);
* MABO: the mean over classes of the per-class ABO.

Crowd boxes (``iscrowd``) and VOC ``difficult`` boxes are left out of every
figure, as VOC and COCO do for recall.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cvtool.datasets.core import Dataset

DEFAULT_COUNTS = (100, 500, 1000, 2000)
DEFAULT_IOU_THRESHOLDS = (0.5, 0.7)


@dataclass
class ProposalReport:
    """Result of :func:`evaluate_proposals`.

    Attributes
    ----------
    counts : tuple of int
        Numbers of proposals N the table is given at.
    iou_thresholds : tuple of float
    recall : dict
        ``recall[t][N]``: recall at IoU ``t`` with the first N proposals, overall.
    abo : dict
        ``abo[N]``: average best overlap with the first N proposals, overall.
    abo_all : float
        Average best overlap with all proposals.
    mabo : float
        Mean over classes of the per-class ABO with all proposals.
    per_class : dict
        ``name -> {"num_gt", "recall": {t: {N: r}}, "abo": {N: a}, "abo_all": a}``.
    num_images, num_gt : int
        Images and (non-crowd, non-difficult) ground-truth boxes evaluated.
    images_without_proposals : int
        Ground-truth images absent from ``proposals`` (counted with none).
    mean_proposals : float
        Mean number of proposals per evaluated image.
    curve_counts : (K,) int64 ndarray
        Numbers of proposals of the recall curve (1 .. the largest list, log-spaced).
    curve_recall : dict
        ``t -> (K,) float64`` recall at each of ``curve_counts``.
    """

    counts: tuple[int, ...]
    iou_thresholds: tuple[float, ...]
    recall: dict[float, dict[int, float]]
    abo: dict[int, float]
    abo_all: float
    mabo: float
    per_class: dict[str, dict]
    num_images: int
    num_gt: int
    images_without_proposals: int
    mean_proposals: float
    curve_counts: np.ndarray = field(repr=False)
    curve_recall: dict[float, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-friendly dictionary (string keys; curves as lists)."""
        def fmt(t: float) -> str:
            return f"{t:g}"

        return {
            "counts": list(self.counts),
            "iou_thresholds": list(self.iou_thresholds),
            "recall": {fmt(t): {str(n): r for n, r in by_n.items()} for t, by_n in self.recall.items()},
            "abo": {str(n): a for n, a in self.abo.items()},
            "abo_all": self.abo_all,
            "mabo": self.mabo,
            "per_class": {
                name: {"num_gt": pc["num_gt"],
                       "recall": {fmt(t): {str(n): r for n, r in by_n.items()} for t, by_n in pc["recall"].items()},
                       "abo": {str(n): a for n, a in pc["abo"].items()},
                       "abo_all": pc["abo_all"]}
                for name, pc in self.per_class.items()
            },
            "num_images": self.num_images,
            "num_gt": self.num_gt,
            "images_without_proposals": self.images_without_proposals,
            "mean_proposals": self.mean_proposals,
            "curve": {"counts": self.curve_counts.tolist(),
                      "recall": {fmt(t): r.tolist() for t, r in self.curve_recall.items()}},
        }


def _check_proposals(image_id: int, boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"proposals of image {image_id} have shape {arr.shape}; expected (N, 4) xyxy")
    if not np.isfinite(arr).all():
        raise ValueError(f"proposals of image {image_id} contain NaN or infinite coordinates")
    return arr


def best_overlaps(gt_boxes: np.ndarray, proposals: np.ndarray) -> np.ndarray:
    """Running best overlap of each ground-truth box over the ranked proposals.

    Parameters
    ----------
    gt_boxes : (G, 4) ndarray
        xyxy.
    proposals : (P, 4) ndarray
        xyxy, in rank order.

    Returns
    -------
    (G, P) float64 ndarray
        ``[g, p]``: the largest IoU of box g with proposals ``0 .. p``.
    """
    from cvtool.boxes import iou

    overlaps = np.asarray(iou(gt_boxes, proposals), dtype=np.float64)
    return np.maximum.accumulate(overlaps, axis=1) if overlaps.size else overlaps


def _at_counts(running: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """(G, len(counts)) best overlap with the first N proposals (all if fewer)."""
    g, p = running.shape
    if p == 0:
        return np.zeros((g, len(counts)), dtype=np.float64)
    cols = np.minimum(np.asarray(counts, dtype=np.int64), p) - 1
    return running[:, cols]


def evaluate_proposals(gt: Dataset, proposals: Mapping[int, np.ndarray], *,
                       counts: Sequence[int] = DEFAULT_COUNTS,
                       iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS) -> ProposalReport:
    """Recall and average best overlap of ranked region proposals.

    Parameters
    ----------
    gt : Dataset
        Ground truth (crowd and difficult boxes are ignored).
    proposals : mapping image id -> (P, 4) ndarray
        xyxy pixel boxes in rank order.  Ground-truth images missing from the
        mapping count as having no proposals; ids not in ``gt`` are ignored.
    counts : sequence of int
        Numbers of proposals N of the table (each >= 1).
    iou_thresholds : sequence of float
        IoU thresholds of the recall, each in (0, 1].

    Returns
    -------
    ProposalReport

    Raises
    ------
    ValueError
        Bad ``counts`` / ``iou_thresholds``, or malformed proposal arrays.

    References
    ----------
    J. Hosang, R. Benenson, P. Dollar and B. Schiele, "What makes for effective
    detection proposals?", TPAMI 2016.  J. R. R. Uijlings et al., "Selective
    search for object recognition", IJCV 2013 (ABO, MABO).
    """
    counts = tuple(int(n) for n in counts)
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"counts must be positive integers, got {list(counts)}")
    if not thresholds or any(not (0 < t <= 1) for t in thresholds):
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {list(thresholds)}")

    keep = ~(gt.ann_iscrowd | gt.ann_difficult) if gt.num_annotations else np.zeros(0, dtype=bool)
    image_ids = gt.ann_image_ids[keep]
    gt_boxes = gt.ann_boxes[keep]
    gt_labels = gt.ann_labels[keep]

    checked = {im.id: _check_proposals(im.id, proposals[im.id]) for im in gt.images if im.id in proposals}
    longest = max((len(b) for b in checked.values()), default=0)
    curve_counts = _curve_counts(max(longest, max(counts)))

    table_rows, curve_rows, all_rows, label_rows = [], [], [], []
    for im in gt.images:
        sel = image_ids == im.id
        if not sel.any():
            continue
        boxes = checked.get(im.id, np.zeros((0, 4)))
        running = best_overlaps(gt_boxes[sel], boxes)
        table_rows.append(_at_counts(running, counts))
        curve_rows.append(_at_counts(running, curve_counts))
        all_rows.append(running[:, -1] if running.shape[1] else np.zeros(running.shape[0]))
        label_rows.append(gt_labels[sel])

    n_cols = len(counts)
    table = np.concatenate(table_rows) if table_rows else np.zeros((0, n_cols))
    curve = np.concatenate(curve_rows) if curve_rows else np.zeros((0, len(curve_counts)))
    best_all = np.concatenate(all_rows) if all_rows else np.zeros(0)
    labels = np.concatenate(label_rows) if label_rows else np.zeros(0, dtype=np.int64)

    def summarise(rows: np.ndarray, best: np.ndarray) -> tuple[dict, dict, float]:
        if len(rows) == 0:
            nan = float("nan")
            return ({t: {n: nan for n in counts} for t in thresholds}, {n: nan for n in counts}, nan)
        rec = {t: {n: float(np.mean(rows[:, c] >= t)) for c, n in enumerate(counts)} for t in thresholds}
        abo = {n: float(np.mean(rows[:, c])) for c, n in enumerate(counts)}
        return rec, abo, float(np.mean(best))

    recall, abo, abo_all = summarise(table, best_all)
    per_class = {}
    names = gt.category_names
    for cid in sorted(set(labels.tolist())):
        sel = labels == cid
        rec, ab, ab_all = summarise(table[sel], best_all[sel])
        per_class[names.get(cid, str(cid))] = {"num_gt": int(sel.sum()), "recall": rec, "abo": ab,
                                               "abo_all": ab_all}
    mabo = float(np.mean([pc["abo_all"] for pc in per_class.values()])) if per_class else float("nan")
    evaluated = [im for im in gt.images]
    return ProposalReport(
        counts=counts, iou_thresholds=thresholds, recall=recall, abo=abo, abo_all=abo_all, mabo=mabo,
        per_class=per_class, num_images=len(evaluated), num_gt=int(len(best_all)),
        images_without_proposals=sum(1 for im in evaluated if im.id not in checked),
        mean_proposals=float(np.mean([len(checked.get(im.id, ())) for im in evaluated])) if evaluated else 0.0,
        curve_counts=curve_counts,
        curve_recall={t: (np.mean(curve >= t, axis=0) if len(curve) else np.full(len(curve_counts), np.nan))
                      for t in thresholds},
    )


def _curve_counts(largest: int) -> np.ndarray:
    """1, 2, 3, 5, 7, 10, ... log-spaced proposal counts up to ``largest``."""
    largest = max(1, int(largest))
    pts = np.unique(np.round(np.logspace(0, np.log10(largest), num=60)).astype(np.int64))
    return pts[(pts >= 1) & (pts <= largest)]


def plot_recall(report: ProposalReport, path: str | os.PathLike[str], *, title: str | None = None,
                overwrite: bool = False) -> None:
    """Write a recall-against-number-of-proposals figure (PNG) for each IoU threshold.

    Parameters
    ----------
    report : ProposalReport
    path : path-like
        Output image (``.png``); written atomically.
    title : str, optional
    overwrite : bool
        Replace ``path`` if it exists.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from cvtool.io.atomic import atomic_write_bytes

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.subplots()
    for t, rec in report.curve_recall.items():
        ax.plot(report.curve_counts, rec, marker=".", markersize=3, label=f"IoU >= {t:g}")
    for n in report.counts:
        ax.axvline(n, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(1, max(int(report.curve_counts[-1]), max(report.counts)) if len(report.curve_counts) else 10)
    ax.set_xlabel("number of proposals per image")
    ax.set_ylabel("recall")
    ax.grid(True, which="major", alpha=0.4)
    ax.set_title(title or f"proposal recall ({report.num_gt} boxes, {report.num_images} images, "
                          f"ABO {report.abo_all:.3f})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite)

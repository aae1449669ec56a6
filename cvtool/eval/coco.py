"""COCO detection metrics (boxes), equal to pycocotools to 1e-6 and much faster.

The structure follows pycocotools' ``COCOeval``: :class:`CocoParams` ->
:func:`evaluate` (match detections to ground truth) -> :func:`accumulate`
(precision/recall arrays) -> :func:`summarize` (the 12 standard numbers plus
AR50/AR75 and a per-class table).  Nothing prints; everything is returned.

The rules are pycocotools' own, applied to whole arrays instead of one Python
object per (image, category):

* images are the ground truth's, categories the ground truth's; per (image,
  category) the detections are ordered by descending score (stable: file order
  breaks ties) and only the first ``max_dets[-1]`` are kept;
* IoU is intersection over union, except against a crowd box where it is
  intersection over the detection's area;
* a ground-truth box is *ignored* in an area range when it is a crowd box or its
  ``area`` lies outside the (closed) range; detections are matched greedily by
  descending score, each to the unmatched (or crowd) box with the largest IoU
  >= the threshold, preferring non-ignored boxes (ties go to the later box, as
  in pycocotools' loop);
* a detection matched to an ignored box is ignored, and so is an unmatched
  detection whose own area (``w * h``) lies outside the range;
* precision at the 101 recall points uses the monotone envelope and
  ``searchsorted(..., side='left')``; -1 marks undefined entries (no
  non-ignored ground truth), and means are taken over the defined entries.

Known, documented difference: pycocotools treats a match to a ground-truth
annotation whose *id is 0* as no match (it stores the id and tests it for
truth).  Here annotation ids play no part in matching.

References
----------
Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014;
the ``cocoapi`` ``cocoeval.py`` rules, re-implemented (no code copied).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cvtool.datasets.core import Dataset, Predictions
from cvtool.errors import BadInputError
from cvtool.eval.pairs import group_pairs, index_in_sorted, paired_iou, segment_starts

#: Names of ``CocoReport.stats`` in pycocotools' ``stats`` order, then AR50 and AR75.
STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    "AR50", "AR75",
)


_GT, _DET = "ground-truth annotation", "predictions: detection"  # error-message names


def _default_iou_thresholds() -> tuple[float, ...]:
    # exactly pycocotools' grid (so that 0.5 and 0.75 compare equal)
    return tuple(float(t) for t in np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True))


def _default_recall_thresholds() -> tuple[float, ...]:
    return tuple(float(r) for r in np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True))


@dataclass(frozen=True)
class CocoParams:
    """Settings of the COCO box evaluation (pycocotools' defaults).

    Attributes
    ----------
    iou_thresholds : tuple of float
        ``linspace(0.5, 0.95, 10)``.
    recall_thresholds : tuple of float
        ``linspace(0, 1, 101)``.
    max_dets : tuple of int
        Increasing detection budgets per image and category, ``(1, 10, 100)``.
    area_ranges : tuple of (name, low, high)
        Closed area ranges in square pixels: all, small (< 32^2), medium, large.
    """

    iou_thresholds: tuple[float, ...] = field(default_factory=_default_iou_thresholds)
    recall_thresholds: tuple[float, ...] = field(default_factory=_default_recall_thresholds)
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[str, float, float], ...] = (
        ("all", 0.0, 1e5**2),
        ("small", 0.0, 32.0**2),
        ("medium", 32.0**2, 96.0**2),
        ("large", 96.0**2, 1e5**2),
    )

    def __post_init__(self) -> None:
        t = np.asarray(self.iou_thresholds, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or not np.all((t > 0) & (t <= 1)):
            raise ValueError(f"iou_thresholds must be a non-empty list of values in (0, 1], got {self.iou_thresholds}")
        r = np.asarray(self.recall_thresholds, dtype=np.float64)
        if r.ndim != 1 or r.size == 0 or np.any(np.diff(r) < 0) or r[0] < 0 or r[-1] > 1:
            raise ValueError("recall_thresholds must be increasing values in [0, 1]")
        m = list(self.max_dets)
        if not m or any(int(x) < 1 for x in m) or m != sorted(m):
            raise ValueError(f"max_dets must be increasing positive integers, got {self.max_dets}")
        if not self.area_ranges or any(len(a) != 3 or a[1] > a[2] for a in self.area_ranges):
            raise ValueError(f"area_ranges must be (name, low, high) with low <= high, got {self.area_ranges}")


@dataclass
class CocoMatches:
    """Output of :func:`evaluate`: one row per kept detection.

    Attributes
    ----------
    params : CocoParams
    image_ids : (I,) int64 ndarray
        Sorted ground-truth image ids.
    category_ids : (K,) int64 ndarray
        Sorted category ids.
    category_names : list of str
    det_category : (D,) int64 ndarray
        Category index (into ``category_ids``) of each kept detection.
    det_image : (D,) int64 ndarray
        Image index (into ``image_ids``).
    det_order : (D,) int64 ndarray
        Index of the detection in the input :class:`Predictions`.
    det_score : (D,) float64 ndarray
    det_rank : (D,) int64 ndarray
        Rank of the detection by score within its (image, category).
    det_tp, det_fp : (D, T, A) bool ndarray
        True / false positive at each IoU threshold and area range (both False:
        ignored).
    num_gt : (K, A) int64 ndarray
        Non-ignored ground-truth boxes per category and area range.
    """

    params: CocoParams
    image_ids: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    det_category: np.ndarray
    det_image: np.ndarray
    det_order: np.ndarray
    det_score: np.ndarray
    det_rank: np.ndarray
    det_tp: np.ndarray
    det_fp: np.ndarray
    num_gt: np.ndarray


@dataclass
class CocoAccumulation:
    """Output of :func:`accumulate` (pycocotools' ``eval`` arrays).

    Attributes
    ----------
    precision : (T, R, K, A, M) float64 ndarray
        Interpolated precision; -1 where undefined.
    recall : (T, K, A, M) float64 ndarray
        Final recall; -1 where undefined.
    """

    matches: CocoMatches
    precision: np.ndarray
    recall: np.ndarray


@dataclass
class CocoReport:
    """Output of :func:`summarize`.

    Attributes
    ----------
    stats : dict
        ``STAT_NAMES`` -> value (-1 when undefined, as pycocotools).
    per_class : list of dict
        One row per category: ``id, name, num_gt, num_dets, AP, AP50, AP75, AR100``
        (-1 for AP/AR when the class has no ground truth).
    """

    stats: dict[str, float]
    per_class: list[dict]
    accumulation: CocoAccumulation = field(repr=False)

    @property
    def stats_array(self) -> np.ndarray:
        """(12,) float64: pycocotools' ``COCOeval.stats`` layout."""
        return np.array([self.stats[k] for k in STAT_NAMES[:12]], dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-friendly dictionary with named keys."""
        p = self.accumulation.matches.params
        return {
            "metric": "coco",
            "stats": dict(self.stats),
            "per_class": [dict(r) for r in self.per_class],
            "iou_thresholds": list(p.iou_thresholds),
            "max_dets": list(p.max_dets),
            "num_images": int(self.accumulation.matches.image_ids.size),
        }

    def pr_curves(self, *, iou: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-class interpolated PR curves (area all, largest max_dets).

        Parameters
        ----------
        iou : float or None
            One IoU threshold of the params, or None for the mean over them.

        Returns
        -------
        dict
            ``name -> (recall (R,), precision (R,))`` for classes with ground truth.
        """
        acc = self.accumulation
        p = acc.matches.params
        prec = acc.precision[:, :, :, 0, -1]
        if iou is not None:
            hit = np.flatnonzero(np.isclose(np.asarray(p.iou_thresholds), iou))
            if hit.size == 0:
                raise ValueError(f"iou {iou} is not one of the thresholds {list(p.iou_thresholds)}")
            prec = prec[hit]
        rec = np.asarray(p.recall_thresholds)
        out = {}
        for k, name in enumerate(acc.matches.category_names):
            col = prec[:, :, k]
            if np.all(col < 0):
                continue
            out[name] = (rec, np.where(col < 0, 0.0, col).mean(axis=0))
        return out


# --------------------------------------------------------------------------- evaluate
def _check_inputs(gt: Dataset, pred: Predictions) -> None:
    d = len(pred)
    for name, arr, shape in (("image_ids", pred.image_ids, (d,)), ("boxes", pred.boxes, (d, 4)),
                             ("scores", pred.scores, (d,)), ("labels", pred.labels, (d,))):
        if np.shape(arr) != shape:
            raise BadInputError(f"predictions: {name} has shape {np.shape(arr)}, expected {shape}")
    if d and not (np.isfinite(pred.boxes).all() and np.isfinite(pred.scores).all()):
        i = int(np.flatnonzero(~(np.isfinite(pred.boxes).all(axis=1) & np.isfinite(pred.scores)))[0])
        raise BadInputError(f"predictions: detection #{i} has a non-finite box or score")
    if not gt.categories:
        raise BadInputError("ground truth has no categories")


def evaluate(gt: Dataset, pred: Predictions, *, params: CocoParams | None = None) -> CocoMatches:
    """Match detections to ground truth per image and category (pycocotools' ``evaluate``).

    Parameters
    ----------
    gt : Dataset
        Ground truth (xyxy boxes, ``iscrowd``, ``area`` when the source had one).
    pred : Predictions
        Detections; labels are category ids of ``gt``.
    params : CocoParams, optional

    Returns
    -------
    CocoMatches

    Raises
    ------
    BadInputError
        A detection refers to an image or category the ground truth does not
        have, or has a non-finite box or score.
    """
    p = params or CocoParams()
    _check_inputs(gt, pred)
    thr = np.minimum(np.asarray(p.iou_thresholds, dtype=np.float64), 1 - 1e-10)
    lo = np.array([a[1] for a in p.area_ranges], dtype=np.float64)
    hi = np.array([a[2] for a in p.area_ranges], dtype=np.float64)
    T, A = thr.size, lo.size

    image_ids = np.unique(np.array([im.id for im in gt.images], dtype=np.int64))
    cats = sorted(gt.categories, key=lambda c: c.id)
    category_ids = np.array([c.id for c in cats], dtype=np.int64)
    K = category_ids.size

    # ---- ground truth, grouped by (image, category), file order inside a group
    g_img = index_in_sorted(gt.ann_image_ids, image_ids, what="image id", record=_GT)
    g_cat = index_in_sorted(gt.ann_labels, category_ids, what="category id", record=_GT)
    g_key = g_img * K + g_cat
    g_sort = np.argsort(g_key, kind="stable")
    g_key = g_key[g_sort]
    g_box = np.asarray(gt.ann_boxes, dtype=np.float64)[g_sort]
    g_crowd = np.asarray(gt.ann_iscrowd, dtype=bool)[g_sort]
    g_area = np.asarray(gt.areas(), dtype=np.float64)[g_sort]
    g_ignore = g_crowd[:, None] | (g_area[:, None] < lo) | (g_area[:, None] > hi)  # (G, A)
    num_gt = np.zeros((K, A), dtype=np.int64)
    np.add.at(num_gt, g_cat[g_sort], ~g_ignore)

    # ---- detections: sort by (image, category, -score, file order); keep top max_dets[-1]
    d_img = index_in_sorted(pred.image_ids, image_ids, what="image id", record=_DET)
    d_cat = index_in_sorted(pred.labels, category_ids, what="category id", record=_DET)
    d_key_all = d_img * K + d_cat
    scores_all = np.asarray(pred.scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(pred)), -scores_all, d_key_all))
    d_key = d_key_all[order]
    starts, run = segment_starts(d_key)
    rank = np.arange(d_key.size) - starts[run] if d_key.size else np.zeros(0, np.int64)
    keep = rank < p.max_dets[-1]
    order, d_key, rank = order[keep], d_key[keep], rank[keep]
    d_box = np.asarray(pred.boxes, dtype=np.float64)[order]
    d_area = (d_box[:, 2] - d_box[:, 0]) * (d_box[:, 3] - d_box[:, 1])
    D = order.size

    # ---- candidate pairs: every detection against the boxes of its group, in blocks;
    #      pairs below the lowest threshold can never match and are dropped.
    pair_det, pair_gt, pair_iou = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for pd, pg in group_pairs(d_key, g_key):
        ious = paired_iou(d_box[pd], g_box[pg], crowd=g_crowd[pg])
        ok = ious >= thr.min()
        pair_det.append(pd[ok])
        pair_gt.append(pg[ok])
        pair_iou.append(ious[ok])
    pair_det, pair_gt, pair_iou = np.concatenate(pair_det), np.concatenate(pair_gt), np.concatenate(pair_iou)

    # ---- greedy matching, one score rank at a time across all groups at once
    #      (detections of equal rank belong to different groups, so never compete)
    det_matched = np.zeros((D, T, A), dtype=bool)
    det_match_ignored = np.zeros((D, T, A), dtype=bool)
    gt_taken = np.zeros((g_key.size, T, A), dtype=bool)
    by_rank = np.lexsort((pair_gt, pair_det, rank[pair_det]))
    pair_det, pair_gt, pair_iou = pair_det[by_rank], pair_gt[by_rank], pair_iou[by_rank]
    pair_rank = rank[pair_det]
    bounds = np.searchsorted(pair_rank, np.arange(int(pair_rank.max(initial=-1)) + 2))
    for r in range(bounds.size - 1):
        a, b = int(bounds[r]), int(bounds[r + 1])
        if a == b:
            continue
        pd, pg, piou = pair_det[a:b], pair_gt[a:b], pair_iou[a:b]
        seg_start, seg = segment_starts(pd)
        ig = g_ignore[pg][:, None, :]                                        # (P, 1, A)
        cand = (~gt_taken[pg] | g_crowd[pg][:, None, None]) & (piou[:, None, None] >= thr[None, :, None])
        has_regular = np.logical_or.reduceat(cand & ~ig, seg_start, axis=0)  # (S, T, A)
        cand &= ~ig | ~has_regular[seg]                                      # regular boxes first
        masked = np.where(cand, piou[:, None, None], -1.0)
        best = np.maximum.reduceat(masked, seg_start, axis=0)
        win = cand & (masked == best[seg])
        pos = np.where(win, np.arange(b - a)[:, None, None], -1)
        chosen = np.maximum.reduceat(pos, seg_start, axis=0)                 # last of the ties
        s_i, t_i, a_i = np.nonzero(chosen >= 0)
        cg = pg[chosen[s_i, t_i, a_i]]
        det = pd[seg_start[s_i]]
        gt_taken[cg, t_i, a_i] = True
        det_matched[det, t_i, a_i] = True
        det_match_ignored[det, t_i, a_i] = g_ignore[cg, a_i]

    d_out = (d_area[:, None] < lo) | (d_area[:, None] > hi)                 # (D, A)
    det_tp = det_matched & ~det_match_ignored
    det_fp = ~det_matched & ~d_out[:, None, :]
    return CocoMatches(
        params=p, image_ids=image_ids, category_ids=category_ids,
        category_names=[c.name for c in cats],
        det_category=d_key % K if K else d_key, det_image=d_key // K if K else d_key,
        det_order=order, det_score=scores_all[order], det_rank=rank,
        det_tp=det_tp, det_fp=det_fp, num_gt=num_gt,
    )


# --------------------------------------------------------------------------- accumulate
_ACC_BLOCK = 1 << 21  # elements per (rows, max_dets, detections) block in accumulate


def _precision_at_recalls(tp_inc: np.ndarray, fp_inc: np.ndarray, in_budget: np.ndarray,
                          need: np.ndarray, npig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at the recall thresholds, for rows of one class's ranked detections.

    Parameters
    ----------
    tp_inc, fp_inc : (Q, n) bool ndarray
        True / false positive flags of the ranked detections, one row per
        (area range, IoU threshold).
    in_budget : (M, n) bool ndarray
        Whether each detection is within each max_dets budget of its image.
    need : (Q, R) int ndarray
        Least true-positive count reaching each recall threshold (n + 1: never).
    npig : (Q,) int ndarray
        Non-ignored ground-truth boxes of each row.

    Returns
    -------
    (Q, M, R) float64 ndarray, (Q, M) float64 ndarray
        Precision (0 where the recall is never reached) and final recall.
    """
    n = tp_inc.shape[1]
    eps = np.spacing(1)
    tp = np.cumsum(tp_inc[:, None, :] & in_budget, axis=2, dtype=np.float64)   # (Q, M, n)
    fp = np.cumsum(fp_inc[:, None, :] & in_budget, axis=2, dtype=np.float64)
    pr = tp / (fp + tp + eps)
    env = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1].reshape(-1, n)
    recall = tp[..., -1] / npig[:, None]
    rows = tp.reshape(-1, n)
    queries = np.repeat(need, tp.shape[1], axis=0)                                 # (Q*M, R)
    offset = np.arange(rows.shape[0], dtype=np.float64)[:, None] * (n + 2)
    first = np.searchsorted((rows + offset).ravel(), (queries + offset).ravel(), side="left")
    first = first.reshape(rows.shape[0], -1) - np.arange(rows.shape[0])[:, None] * n
    q = np.where(first < n, np.take_along_axis(env, np.minimum(first, n - 1), axis=1), 0.0)
    return q.reshape(tp.shape[0], tp.shape[1], -1), recall


def accumulate(matches: CocoMatches) -> CocoAccumulation:
    """Precision and recall arrays from matched detections (pycocotools' ``accumulate``).

    Per category, detections of all images are ordered by descending score
    (ties: image id, then rank in the image), true/false positives are summed
    cumulatively, and precision is read at each recall threshold from the
    monotone envelope.  The first index reaching a recall threshold is found in
    integer counts (the least true-positive count whose recall, computed as
    pycocotools does, reaches the threshold), so that no rounding differs.

    Returns
    -------
    CocoAccumulation
        ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M), -1 where the
        category has no non-ignored ground truth in the area range.
    """
    p = matches.params
    rec_thr = np.asarray(p.recall_thresholds, dtype=np.float64)
    max_dets = np.asarray(p.max_dets)
    T, R = len(p.iou_thresholds), rec_thr.size
    K, A, M = matches.category_ids.size, len(p.area_ranges), max_dets.size
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))

    order = np.lexsort((matches.det_rank, matches.det_image, -matches.det_score, matches.det_category))
    bounds = np.searchsorted(matches.det_category[order], np.arange(K + 1))
    # (A, T, D) in ranking order, so that each category is a contiguous slice
    tp_all = np.ascontiguousarray(matches.det_tp[order].transpose(2, 1, 0))
    fp_all = np.ascontiguousarray(matches.det_fp[order].transpose(2, 1, 0))
    rank_all = matches.det_rank[order]
    for k in range(K):
        npig = matches.num_gt[k]                                              # (A,)
        areas = np.flatnonzero(npig > 0)
        if areas.size == 0:
            continue
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        n = hi - lo
        if n == 0:
            precision[:, :, k, areas, :] = 0.0
            recall[:, k, areas, :] = 0.0
            continue
        in_budget = rank_all[lo:hi][None, :] < max_dets[:, None]              # (M, n)
        # least tp count c with tp / npig >= each recall threshold (computed as pycocotools
        # does); the first index where tp >= c then gives the precision: integer counts,
        # so no rounding differs
        need = np.stack([np.searchsorted(np.arange(c + 1) / c, rec_thr, side="left") for c in npig[areas]])
        need = np.minimum(need, n + 1)
        # rows are (area, threshold) pairs, processed in chunks of bounded size
        row_area = np.repeat(np.arange(areas.size), T)
        row_t = np.tile(np.arange(T), areas.size)
        step = max(1, _ACC_BLOCK // (M * n))
        for r0 in range(0, row_area.size, step):
            ra, rt = row_area[r0:r0 + step], row_t[r0:r0 + step]
            q, rec = _precision_at_recalls(tp_all[areas[ra], rt, lo:hi], fp_all[areas[ra], rt, lo:hi],
                                           in_budget, need[ra], npig[areas[ra]])
            precision[rt, :, k, areas[ra], :] = q.transpose(0, 2, 1)            # (rows, R, M)
            recall[rt, k, areas[ra], :] = rec
    return CocoAccumulation(matches=matches, precision=precision, recall=recall)


# --------------------------------------------------------------------------- summarize
def _mean_defined(values: np.ndarray) -> float:
    v = values[values > -1]
    return float(np.mean(v)) if v.size else -1.0


def summarize(acc: CocoAccumulation) -> CocoReport:
    """The 12 COCO numbers, AR50/AR75 and a per-class table (pycocotools' ``summarize``).

    The standard numbers need the default area-range names (all, small, medium,
    large) and ``max_dets`` containing 1, 10 and 100 (else those entries are -1).
    """
    m = acc.matches
    p = m.params
    iou = np.asarray(p.iou_thresholds)
    area_names = [a[0] for a in p.area_ranges]
    max_dets = list(p.max_dets)

    def pick(ap: bool, iou_thr: float | None = None, area: str = "all", max_det: int = 100) -> float:
        if area not in area_names or max_det not in max_dets:
            return -1.0
        ai, mi = area_names.index(area), max_dets.index(max_det)
        s = acc.precision if ap else acc.recall
        if iou_thr is not None:
            t = np.flatnonzero(iou == iou_thr)
            if t.size == 0:
                return -1.0
            s = s[t]
        s = s[:, :, :, ai, mi] if ap else s[:, :, ai, mi]
        return _mean_defined(s)

    stats = {
        "AP": pick(True), "AP50": pick(True, 0.5), "AP75": pick(True, 0.75),
        "APs": pick(True, area="small"), "APm": pick(True, area="medium"), "APl": pick(True, area="large"),
        "AR1": pick(False, max_det=1), "AR10": pick(False, max_det=10), "AR100": pick(False),
        "ARs": pick(False, area="small"), "ARm": pick(False, area="medium"), "ARl": pick(False, area="large"),
        "AR50": pick(False, 0.5), "AR75": pick(False, 0.75),
    }
    num_dets = np.bincount(m.det_category, minlength=m.category_ids.size)
    per_class = []
    t50, t75 = np.flatnonzero(iou == 0.5), np.flatnonzero(iou == 0.75)
    for k, (cid, name) in enumerate(zip(m.category_ids.tolist(), m.category_names)):
        prec = acc.precision[:, :, k, 0, -1]
        per_class.append({
            "id": cid, "name": name,
            "num_gt": int(m.num_gt[k, 0]), "num_dets": int(num_dets[k]),
            "AP": _mean_defined(prec),
            "AP50": _mean_defined(prec[t50]) if t50.size else -1.0,
            "AP75": _mean_defined(prec[t75]) if t75.size else -1.0,
            "AR100": _mean_defined(acc.recall[:, k, 0, -1]),
        })
    return CocoReport(stats=stats, per_class=per_class, accumulation=acc)


def evaluate_coco(gt: Dataset, pred: Predictions, *, params: CocoParams | None = None) -> CocoReport:
    """COCO box metrics in one call: ``summarize(accumulate(evaluate(gt, pred)))``.

    Parameters
    ----------
    gt : Dataset
        Ground truth.
    pred : Predictions
        Detections with category ids of ``gt`` as labels.
    params : CocoParams, optional
        pycocotools' defaults when omitted.

    Returns
    -------
    CocoReport
        ``stats`` (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm,
        ARl, AR50, AR75) and ``per_class``.

    Examples
    --------
    >>> report = evaluate_coco(gt, pred)            # doctest: +SKIP
    >>> report.stats["AP"], report.stats_array      # doctest: +SKIP
    """
    return summarize(accumulate(evaluate(gt, pred, params=params)))

"""HOG + linear SVM sliding-window detector with hard-negative mining.

Dalal & Triggs (2005): a window of fixed size is described by HOG and scored
by a linear SVM; an image pyramid finds objects of other sizes.  This
implementation

* trains **one-vs-rest linear SVMs over one shared HOG** (one window size and
  one set of HOG parameters for every class).  Sharing makes detection cost
  one HOG pass per pyramid level and one matrix product for all classes
  together, whatever the number of classes; per-class detectors would repeat
  the pyramid per class.  Each class's negatives are the background windows
  *and* the other classes' positives, so a "3" detector learns to reject 8s.
* makes class scores **comparable** with Platt scaling: each class's SVM
  margin ``s`` becomes ``sigmoid(a_c * s + b_c)``, fitted on the training
  windows, so a window is labelled with its most probable class and one
  ``--conf`` threshold means the same for every class;
* **mines hard negatives** (``mine_rounds``, default 2): after each training
  round the detector scans every training image; windows scoring above the
  SVM margin (raw score > -1) whose IoU with every ground-truth box is below
  ``mine_iou`` (0.3) become background examples, and the SVMs are retrained;
* **detects** over a pyramid (``scale_step``, default 1.05): per level, HOG
  block histograms are computed once over the whole level
  (:func:`cvtool.hog.dense_blocks`); one matrix product turns them into the
  contribution of every block to every window position of every class, and
  shifted sums over the window's block offsets give all window scores.  The
  surviving windows go through :func:`cvtool.detections.postprocess`.

Boxes: a window covers the object box, made to the window's aspect and grown
by ``context`` on each side (:mod:`cvtool.prepare.windows`); a detection
maps back to that object box and then to each class's typical width and
height ratio inside it (a "1" is narrower than its window).

References
----------
N. Dalal and B. Triggs, "Histograms of Oriented Gradients for Human
Detection", CVPR 2005.  J. Platt, "Probabilistic outputs for support vector
machines", 1999.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvtool.errors import BadInputError
from cvtool.hog import HogParams, check_window, dense_blocks, grid_shape
from cvtool.prepare.windows import (BACKGROUND, WindowSpec, auto_window, box_heights, fix_aspect, iter_windows,
                                    object_box)

KIND = "hog-svm"
SOLVERS = ("auto", "liblinear", "sgd")
MAX_LEVELS = 1000
"""Most pyramid levels one image is scanned at."""
MAX_LEVEL_BYTES = 2**30
"""Most working memory one pyramid level may need (image, HOG blocks, scores)."""
MAX_SCAN_PIXELS = 400_000_000
"""Most pixels summed over one image's pyramid levels (bounds the time per image: about 25 s of HOG on one core)."""
MAX_WINDOW = 1024
"""Largest window side, pixels."""
MAX_FEATURES = 200_000
"""Largest descriptor (a 64x128 pedestrian window with 8x8 cells has 3,780)."""
MAX_MODEL_BYTES = 1 << 30
"""Largest decompressed model file (its arrays' declared sizes are checked before reading)."""
_BAND_BYTES = 64 * 2**20
"""Block-score rows are computed in bands of about this size (see :meth:`HogSvmDetector._score_blocks`)."""


class PyramidTooLarge(ValueError):
    """The pyramid asked for (``min_size``, ``max_size``, ``scale_step``) would cost too much.

    ``setting`` names the setting that decides it (``min_size`` or ``scale_step``),
    ``value`` its value, ``detail`` the computed cost, and ``from_model`` says
    whether the value came from the model file rather than from the caller.
    """

    def __init__(self, detail: str, *, setting: str, value: float, from_model: bool) -> None:
        super().__init__(f"{setting} {value:g}: {detail}")
        self.detail, self.setting, self.value, self.from_model = detail, setting, value, from_model


@dataclass
class RoundReport:
    """What one training round saw and achieved."""

    round: int
    positives: int
    negatives: int
    hard_negatives_added: int
    train_accuracy: float
    seconds: float


def _single_thread_blas():
    """The products here are small (blocks x 36): BLAS threads only add contention."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class NotFittedError(ValueError):
    """Raised when an unfitted detector is used."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)))


class HogSvmDetector:
    """One-vs-rest linear SVMs over a shared HOG, scikit-learn style.

    Parameters
    ----------
    window : (w, h) or None
        Window size in pixels; ``None`` picks it from the training boxes (their
        median height and aspect, plus the context, rounded to whole block strides).
    context : float
        Margin around the object in the window, as a fraction of the object box.
    hog : HogParams
        HOG settings (OpenCV engine; L2-Hys).
    C : float
        SVM regularisation (smaller: wider margin).
    negatives_per_image : int
        Random background windows per training image.
    neg_iou : float
        Random negatives overlap every ground-truth box by less than this IoU.
    mine_rounds : int
        Hard-negative mining rounds after the first training.
    mine_iou : float
        A detection is a false positive when its IoU with every box is below this.
    hard_per_image : int
        At most this many hard negatives are added per image and round.
    flip : bool
        Also train on left-right mirrored positives.
    solver : {'auto', 'liblinear', 'sgd'}
        ``auto`` uses ``LinearSVC`` (liblinear) up to ``sgd_above`` windows, else
        ``SGDClassifier`` with the hinge loss.
    sgd_above : int
    scale_step : float
        Pyramid scale factor between levels (> 1).
    min_size, max_size : float or None
        Smallest/largest object height in pixels searched (default: the
        training boxes' range, widened by 10%).
    score_threshold, iou_threshold, max_detections
        Defaults for :meth:`predict`.
    class_agnostic : bool
        NMS across classes (one label per object), else per class.
    seed : int
        Seed for negative sampling.
    jobs : int
        Threads used to train the per-class SVMs and to scan images.
    """

    kind = KIND

    def __init__(self, *, window: tuple[int, int] | None = None, context: float = 0.125,
                 hog: HogParams | None = None, C: float = 0.01, negatives_per_image: int = 10,
                 neg_iou: float = 0.3, mine_rounds: int = 2, mine_iou: float = 0.3, hard_per_image: int = 20,
                 flip: bool = False, solver: str = "auto", sgd_above: int = 60000, scale_step: float = 1.05,
                 min_size: float | None = None, max_size: float | None = None, score_threshold: float = 0.5,
                 iou_threshold: float = 0.3, max_detections: int = 100, class_agnostic: bool = True,
                 seed: int = 0, jobs: int = 1) -> None:
        self.window = window
        self.context = context
        self.hog = hog if hog is not None else HogParams(cell=(4, 4))
        self.C = C
        self.negatives_per_image = negatives_per_image
        self.neg_iou = neg_iou
        self.mine_rounds = mine_rounds
        self.mine_iou = mine_iou
        self.hard_per_image = hard_per_image
        self.flip = flip
        self.solver = solver
        self.sgd_above = sgd_above
        self.scale_step = scale_step
        self.min_size = min_size
        self.max_size = max_size
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.class_agnostic = class_agnostic
        self.seed = seed
        self.jobs = jobs

    @classmethod
    def from_weights(cls, coef: np.ndarray, intercept: float | Sequence[float], *, window: tuple[int, int],
                     hog: HogParams, classes: Sequence[str], category_ids: Sequence[int] | None = None,
                     context: float = 0.0, **settings: Any) -> HogSvmDetector:
        """A fitted detector from given SVM weights (OpenCV descriptor order).

        ``coef`` is ``(D,)`` or ``(C, D)``, e.g. ``cv2.HOGDescriptor_getDefaultPeopleDetector()``
        without its last entry (the bias).  Scores are the raw SVM margins
        passed through a plain sigmoid; the pyramid searches from the window's
        own object height up to the image size unless ``min_size``/``max_size`` say otherwise.
        """
        settings.setdefault("min_size", WindowSpec(window, context).object_size[1])
        settings.setdefault("max_size", float("inf"))
        det = cls(window=window, context=context, hog=hog, **settings)
        coef = np.atleast_2d(np.asarray(coef, np.float32))
        n = len(classes)
        check_window(tuple(window), hog)
        det.window_ = tuple(int(v) for v in window)
        det.grid_ = grid_shape(det.window_, hog)
        det.n_features_ = det.grid_[0] * det.grid_[1] * hog.block_dim
        if coef.shape != (n, det.n_features_):
            raise ValueError(f"coef has shape {coef.shape}; a {window[0]}x{window[1]} window with these HOG "
                             f"parameters and {n} classes needs ({n}, {det.n_features_})")
        det.coef_ = coef
        det.intercept_ = np.broadcast_to(np.asarray(intercept, np.float64), (n,)).copy()
        det.classes_ = np.array(list(classes), dtype=str)
        det.category_ids_ = np.array(list(category_ids) if category_ids is not None else range(1, n + 1), np.int64)
        det.calibration_ = np.tile([1.0, 0.0], (n, 1))
        det.box_ratio_ = np.ones((n, 2))
        obj_h = WindowSpec(det.window_, context).object_size[1]
        det.size_range_ = (obj_h, obj_h)
        det.rounds_ = []
        det.round_weights_ = [(det.coef_, det.intercept_)]
        return det

    # ------------------------------------------------------------------ checks
    def _validate_settings(self) -> None:
        """Every constructor setting against its range (also for settings read from a model file).

        Raises
        ------
        ValueError
            Naming the setting, its value and the valid range.
        """
        from cvtool.detectors.limits import float_setting, int_setting

        if self.solver not in SOLVERS:
            raise ValueError(f"solver {str(self.solver)[:40]!r} is not one of {', '.join(SOLVERS)}")
        float_setting("C", self.C, 0.0, 1e12, lo_open=True)
        float_setting("scale_step", self.scale_step, 1.001, 10.0)
        for name in ("mine_rounds", "negatives_per_image", "hard_per_image"):
            int_setting(name, getattr(self, name), 0, 1_000_000)
        int_setting("sgd_above", self.sgd_above, 0, 2**62)
        int_setting("max_detections", self.max_detections, 1, 100_000)
        int_setting("jobs", self.jobs, 1, 256)
        int_setting("seed", self.seed, -(2**63), 2**63 - 1)
        for name in ("neg_iou", "mine_iou", "iou_threshold", "score_threshold"):
            float_setting(name, getattr(self, name), 0.0, 1.0)
        float_setting("context", self.context, 0.0, 1.0)
        if self.min_size is not None:
            float_setting("min_size", self.min_size, 1.0, 1e6)
        if self.max_size is not None and self.max_size != float("inf"):
            float_setting("max_size", self.max_size, 1.0, 1e6)
        if self.window is not None:
            if len(self.window) != 2:
                raise ValueError(f"window must be (width, height), got {self.window!r:.40}")
            for v in self.window:
                int_setting("window side", v, 1, MAX_WINDOW)
        if self.hog.block_norm != "L2-Hys":
            raise ValueError("the HOG+SVM detector uses OpenCV's HOG: block_norm must be L2-Hys")

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("this HogSvmDetector is not fitted yet; call fit() or load a model file")

    @property
    def classes(self) -> list[str]:
        self._check_fitted()
        return list(self.classes_)

    @property
    def category_ids(self) -> list[int]:
        self._check_fitted()
        return [int(c) for c in self.category_ids_]

    @property
    def spec(self) -> WindowSpec:
        self._check_fitted()
        return WindowSpec(self.window_, self.context)

    # --------------------------------------------------------------- training
    def _descriptors(self, windows: np.ndarray) -> np.ndarray:
        from cvtool.hog import as_hog_input, opencv_descriptor

        hog = opencv_descriptor(self.hog, self.window_)
        d = np.empty((len(windows), self.n_features_), np.float32)
        for i, w in enumerate(windows):
            d[i] = hog.compute(as_hog_input(w, gray=True)).ravel()
        return d

    def _train_svms(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from joblib import Parallel, delayed

        n_classes = len(self.classes_)
        use_sgd = self.solver == "sgd" or (self.solver == "auto" and len(y) > self.sgd_above)

        def one(k: int) -> tuple[np.ndarray, float]:
            target = (y == k).astype(np.int64)
            if use_sgd:
                from sklearn.linear_model import SGDClassifier

                clf = SGDClassifier(loss="hinge", alpha=1.0 / (self.C * len(y)), class_weight="balanced",
                                    max_iter=50, tol=1e-4, random_state=self.seed)
            else:
                from sklearn.svm import LinearSVC

                clf = LinearSVC(C=self.C, class_weight="balanced", dual=True, max_iter=5000,
                                random_state=self.seed)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings: reported through accuracy
                clf.fit(X, target)
            return clf.coef_.ravel().astype(np.float32), float(clf.intercept_[0])

        out = Parallel(n_jobs=max(1, self.jobs), prefer="threads")(delayed(one)(k) for k in range(n_classes))
        coef = np.stack([o[0] for o in out])
        intercept = np.array([o[1] for o in out], np.float64)
        return coef, intercept

    def _raw_scores(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_.T.astype(np.float32) + self.intercept_.astype(np.float32)

    def _calibrate(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        s = self._raw_scores(X)
        cal = np.zeros((len(self.classes_), 2))
        for k in range(len(self.classes_)):
            t = (y == k).astype(int)
            lr = LogisticRegression(C=1.0, class_weight="balanced").fit(s[:, k:k + 1].astype(np.float64), t)
            cal[k] = (max(float(lr.coef_[0, 0]), 1e-3), float(lr.intercept_[0]))
        return cal

    def _accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        s = self._raw_scores(X)
        pred = np.where(s.max(axis=1) > 0, s.argmax(axis=1), BACKGROUND)
        return float((pred == y).mean())

    def fit(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
            classes: Sequence[str], category_ids: Sequence[int] | None = None,
            log: Callable[[str], None] | None = None) -> HogSvmDetector:
        """Train on images with ground-truth boxes.

        Parameters
        ----------
        images : sequence of (H, W[, C]) uint8 ndarray
        boxes : sequence of (K_i, 4) float ndarray
            xyxy pixel boxes of each image.
        labels : sequence of (K_i,) int ndarray
            Class index ``0..len(classes)-1`` of each box.
        classes : sequence of str
        category_ids : sequence of int, optional
            Dataset category id of each class (default ``1..C``).
        log : callable, optional
            Receives one progress line per step (the CLI prints them on stderr).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Mismatched inputs, labels outside the classes, a class without boxes.
        """
        say = log or (lambda msg: None)
        self._validate_settings()
        if not (len(images) == len(boxes) == len(labels)):
            raise ValueError(f"images, boxes and labels differ in length: {len(images)}, {len(boxes)}, {len(labels)}")
        if len(images) == 0:
            raise ValueError("no training images")
        boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
        labels = [np.asarray(lab, np.int64).reshape(-1) for lab in labels]
        all_b, all_l = np.concatenate(boxes), np.concatenate(labels)
        n_classes = len(classes)
        if n_classes == 0:
            raise ValueError("no classes")
        bad = (all_l < 0) | (all_l >= n_classes)
        if bad.any():
            raise ValueError(f"label {int(all_l[bad][0])} is outside the {n_classes} classes")
        missing = [classes[k] for k in range(n_classes) if not (all_l == k).any()]
        if missing:
            raise ValueError(f"class(es) without any training box: {', '.join(missing)}")
        self.classes_ = np.array(list(classes), dtype=str)
        self.category_ids_ = np.array(list(category_ids) if category_ids is not None else range(1, n_classes + 1),
                                      dtype=np.int64)
        self.window_ = tuple(int(v) for v in (self.window if self.window is not None else auto_window(all_b, context=self.context, base=self.hog.block_px, step=self.hog.stride_px)))
        check_window(self.window_, self.hog)
        spec = WindowSpec(self.window_, self.context)
        self.grid_ = grid_shape(self.window_, self.hog)
        self.n_features_ = self.grid_[0] * self.grid_[1] * self.hog.block_dim
        self.size_range_ = box_heights(all_b, spec.aspect)
        fixed = fix_aspect(all_b, spec.aspect)
        ratios = np.stack([(all_b[:, 2] - all_b[:, 0]) / (fixed[:, 2] - fixed[:, 0]),
                           (all_b[:, 3] - all_b[:, 1]) / (fixed[:, 3] - fixed[:, 1])], axis=1)
        self.box_ratio_ = np.stack([np.median(ratios[all_l == k], axis=0) for k in range(n_classes)])
        say(f"window {self.window_[0]}x{self.window_[1]} px ({self.n_features_} features), "
            f"object heights {self.size_range_[0]:.0f}-{self.size_range_[1]:.0f} px, {n_classes} classes")

        rng = np.random.default_rng(self.seed)
        t0 = time.perf_counter()
        Xs, ys = [], []
        for _, wins, labs, _, _ in iter_windows(images, boxes, labels, spec=spec,
                                                negatives_per_image=self.negatives_per_image,
                                                max_iou=self.neg_iou, flip=self.flip, rng=rng):
            Xs.append(self._descriptors(wins))
            ys.append(labs)
        X, y = np.concatenate(Xs), np.concatenate(ys)
        self.rounds_: list[RoundReport] = []
        self.round_weights_: list[tuple[np.ndarray, np.ndarray]] = []
        hard_added = 0
        for rnd in range(self.mine_rounds + 1):
            if rnd > 0:
                with _single_thread_blas():
                    hard = self._mine(images, boxes)
                hard_added = len(hard)
                if hard_added:
                    X = np.concatenate([X, hard])
                    y = np.concatenate([y, np.full(hard_added, BACKGROUND, np.int64)])
            self.coef_, self.intercept_ = self._train_svms(X, y)
            self.round_weights_.append((self.coef_.copy(), self.intercept_.copy()))
            rep = RoundReport(rnd, int((y >= 0).sum()), int((y < 0).sum()), hard_added,
                              self._accuracy(X, y), time.perf_counter() - t0)
            self.rounds_.append(rep)
            say(f"round {rnd}: {rep.positives} positives, {rep.negatives} negatives "
                f"(+{rep.hard_negatives_added} hard), training accuracy {rep.train_accuracy:.4f}, "
                f"{rep.seconds:.1f} s")
            t0 = time.perf_counter()
            if rnd > 0 and hard_added == 0:
                say("no hard negatives left: stopping early")
                break
        self.calibration_ = self._calibrate(X, y)
        return self

    def _mine(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> np.ndarray:
        from cvtool.boxes import iou, nms

        raw_min = np.full(len(self.classes_), -1.0)
        wr, wc = self.grid_
        found: list[np.ndarray] = []
        for img, gt in zip(images, boxes):
            cand = self._scan(img, raw_min=raw_min, keep_blocks=True)
            if not len(cand["raw"]):
                continue
            score = cand["raw"]
            reg = cand["regions"]
            obj = self.class_boxes(reg, cand["scores"].argmax(axis=1))  # the boxes detection would report
            if len(gt):
                fp = iou(obj, gt).max(axis=1) < self.mine_iou
            else:
                fp = np.ones(len(score), bool)
            if not fp.any():
                continue
            idx = np.flatnonzero(fp)
            top = 10 * self.hard_per_image  # NMS over the strongest few hundred is enough for the top N
            if len(idx) > top:
                idx = idx[np.argpartition(-score[idx], top)[:top]]
            keep = np.asarray(nms(obj[idx], score[idx], iou_threshold=0.5))[: self.hard_per_image]
            for lvl, r, c in cand["where"][idx[keep]]:
                win = cand["blocks"][lvl][r:r + wr, c:c + wc]  # (wr, wc, K) -> OpenCV order (wc, wr, K)
                found.append(win.transpose(1, 0, 2).reshape(1, -1))
        return np.concatenate(found).astype(np.float32) if found else np.zeros((0, self.n_features_), np.float32)

    # -------------------------------------------------------------- detection
    def _scales(self, size: tuple[int, int], min_size: float | None, max_size: float | None,
                scale_step: float | None = None) -> list[float]:
        obj_h = WindowSpec(self.window_, self.context).object_size[1]
        lo = min_size if min_size is not None else (self.min_size if self.min_size is not None
                                                    else 0.9 * self.size_range_[0])
        hi = max_size if max_size is not None else (self.max_size if self.max_size is not None
                                                    else 1.1 * self.size_range_[1])
        w, h = size
        s_fit = min(w / self.window_[0], h / self.window_[1])  # level still holds one window
        s, s_hi = max(lo / obj_h, 1e-3), min(hi / obj_h, s_fit)
        step = self.scale_step if scale_step is None else scale_step
        step_from_model = scale_step is None
        if not (step > 1.0 and math.isfinite(step)):
            raise PyramidTooLarge("must be a number > 1", setting="scale_step", value=step,
                                  from_model=step_from_model)
        if not s <= s_hi * (1 + 1e-9):
            return []
        # counted before anything is built: a step of 1 + 1e-12 must not loop for ever
        n = int(math.floor(math.log(s_hi * (1 + 1e-9) / s) / math.log(step))) + 1
        if n > MAX_LEVELS:
            raise PyramidTooLarge(f"gives {n:,} pyramid levels on a {w}x{h} image (at most {MAX_LEVELS}); "
                                  "use a larger step", setting="scale_step", value=step, from_model=step_from_model)
        out = [s * step**i for i in range(n)]
        out = [v for v in out if v <= s_hi * (1 + 1e-9)]
        self._check_pyramid_cost(size, out, min_size_given=min_size is not None, lo=lo, obj_h=obj_h)
        return out

    def _level_bytes(self, size: tuple[int, int]) -> int:
        """Working memory of one pyramid level of ``size`` (w, h): image, OpenCV's gradients,
        the HOG block grid, the score map and one band of block scores."""
        w, h = size
        sx, sy = self.hog.stride_px
        bw, bh = self.hog.block_px
        rows, cols = max(0, (h - bh) // sy + 1), max(0, (w - bw) // sx + 1)
        C = len(self.classes_)
        return int(w * h * 13 + rows * cols * (self.hog.block_dim + C) * 4 + _BAND_BYTES)

    def _check_pyramid_cost(self, size: tuple[int, int], scales: Sequence[float], *, min_size_given: bool,
                            lo: float, obj_h: float) -> None:
        """Refuse a pyramid whose largest level or total size is beyond the limits (before building it)."""
        if not scales:
            return
        w, h = size
        s0 = scales[0]  # the smallest scale: the largest level
        big = (max(1, int(round(w / s0))), max(1, int(round(h / s0))))
        need = self._level_bytes(big)
        total_px = sum((w / s) * (h / s) for s in scales)
        if need <= MAX_LEVEL_BYTES and total_px <= MAX_SCAN_PIXELS:
            return
        # the smallest object height whose pyramid fits: costs grow as 1 / scale**2
        factor = max(need / MAX_LEVEL_BYTES, total_px / MAX_SCAN_PIXELS)
        floor_size = math.ceil(lo * math.sqrt(factor) * 1.01)
        raise PyramidTooLarge(
            f"asks for a pyramid level of {big[0]}x{big[1]} px on a {w}x{h} image "
            f"(~{need / 2**30:.1f} GiB of working memory, {total_px / 1e6:,.0f} Mpx over {len(scales)} levels; "
            f"limits {MAX_LEVEL_BYTES / 2**30:.0f} GiB and {MAX_SCAN_PIXELS / 1e6:,.0f} Mpx); "
            f"use a min_size of at least {floor_size} px", setting="min_size", value=lo,
            from_model=not min_size_given)

    def _class_filters(self) -> np.ndarray:
        """Weights as ``(K, wr * wc * C)``: block feature -> (block offset, class) contributions."""
        if getattr(self, "_filters_cache", None) is None or self._filters_cache[0] is not self.coef_:
            wr, wc = self.grid_
            K = self.hog.block_dim
            C = self.coef_.shape[0]
            w = self.coef_.reshape(C, wc, wr, K)  # OpenCV order: block x outer, block y inner
            f = np.ascontiguousarray(w.transpose(3, 2, 1, 0).reshape(K, wr * wc * C), dtype=np.float32)
            self._filters_cache = (self.coef_, f)
        return self._filters_cache[1]

    def score_level(self, gray: np.ndarray) -> np.ndarray:
        """Raw SVM scores of every window position of one image (one pyramid level).

        Parameters
        ----------
        gray : (H, W) uint8 ndarray

        Returns
        -------
        (ny, nx, C) float32 ndarray
            Score of the window whose top-left corner is at pixel
            ``(j * stride_w, i * stride_h)``, for each class.
        """
        self._check_fitted()
        with _single_thread_blas():
            return self._score_blocks(dense_blocks(gray, self.hog))

    def _score_blocks(self, blocks: np.ndarray) -> np.ndarray:
        rows, cols, K = blocks.shape
        wr, wc = self.grid_
        C = self.coef_.shape[0]
        ny, nx = rows - wr + 1, cols - wc + 1
        if ny <= 0 or nx <= 0:
            return np.zeros((0, 0, C), np.float32)
        filters = self._class_filters()
        S = np.empty((ny, nx, C), np.float32)
        S[:] = self.intercept_.astype(np.float32)
        # block contributions in disjoint bands of block rows, so memory stays ~_BAND_BYTES whatever
        # the level and every block row is multiplied once; block row b adds to window rows b - by
        per_row = cols * wr * wc * C * 4
        band = max(1, _BAND_BYTES // max(per_row, 1))
        for b0 in range(0, rows, band):
            b1 = min(rows, b0 + band)
            R = (blocks[b0:b1].reshape(-1, K) @ filters).reshape(b1 - b0, cols, wr, wc, C)
            for by in range(wr):
                y0, y1 = max(0, b0 - by), min(ny, b1 - by)
                if y0 < y1:
                    for bx in range(wc):
                        S[y0:y1] += R[y0 + by - b0:y1 + by - b0, bx:bx + nx, by, bx]
        return S

    def _scan(self, image: np.ndarray, *, raw_min: np.ndarray, keep_blocks: bool = False,
              min_size: float | None = None, max_size: float | None = None,
              scale_step: float | None = None) -> dict[str, Any]:
        """Windows of every pyramid level whose raw score beats ``raw_min`` for some class.

        Returns ``regions`` (M, 4) in image pixels, ``scores`` (M, C) raw SVM
        scores, ``raw`` (M,) their maximum, ``where`` (M, 3) (level, row, col)
        and, with ``keep_blocks``, each level's block grid in ``blocks``.
        """
        import cv2

        from cvtool.hog import as_hog_input

        gray = as_hog_input(image, gray=True)
        H, W = gray.shape
        sx, sy = self.hog.stride_px
        ww, wh = self.window_
        regs, raws, wheres, kept = [], [], [], []
        for s in self._scales((W, H), min_size, max_size, scale_step):
            size = (max(1, int(round(W / s))), max(1, int(round(H / s))))
            if size[0] < ww or size[1] < wh:
                continue
            # bilinear like detectMultiScale (INTER_AREA costs ~10x more for a marginal gain)
            level = gray if size == (W, H) else cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)
            blocks = dense_blocks(level, self.hog)
            S = self._score_blocks(blocks)
            if keep_blocks:
                kept.append(blocks)
            hit = (S >= raw_min.astype(np.float32)).any(axis=2)
            iy, ix = np.nonzero(hit)
            if not len(iy):
                continue
            fx, fy = W / size[0], H / size[1]
            x1, y1 = ix * sx * fx, iy * sy * fy
            regs.append(np.stack([x1, y1, x1 + ww * fx, y1 + wh * fy], axis=1))
            raws.append(S[iy, ix])
            wheres.append(np.stack([np.full(len(iy), len(kept) - 1 if keep_blocks else 0), iy, ix], axis=1))
        C = len(self.classes_)
        out: dict[str, Any] = {
            "regions": np.concatenate(regs) if regs else np.zeros((0, 4)),
            "scores": np.concatenate(raws) if raws else np.zeros((0, C), np.float32),
            "where": np.concatenate(wheres) if wheres else np.zeros((0, 3), np.int64),
            "blocks": kept,
        }
        out["raw"] = out["scores"].max(axis=1) if len(out["scores"]) else np.zeros((0,), np.float32)
        return out

    def class_boxes(self, regions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Object boxes of window ``regions`` for each window's class (its width/height ratio)."""
        obj = object_box(regions, WindowSpec(self.window_, self.context))
        cx, cy = (obj[:, 0] + obj[:, 2]) / 2, (obj[:, 1] + obj[:, 3]) / 2
        r = self.box_ratio_[labels]
        hw, hh = (obj[:, 2] - obj[:, 0]) * r[:, 0] / 2, (obj[:, 3] - obj[:, 1]) * r[:, 1] / 2
        return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)

    def predict(self, images: Sequence[np.ndarray], *, score_threshold: float | None = None,
                iou_threshold: float | None = None, max_detections: int | None = None,
                min_size: float | None = None, max_size: float | None = None,
                scale_step: float | None = None) -> list[Any]:
        """Detect objects in each image.

        Parameters
        ----------
        images : sequence of (H, W[, C]) uint8 ndarray
            Grey or BGR(A).
        score_threshold : float, optional
            Smallest calibrated class probability kept (default: the model's).
        iou_threshold : float, optional
            NMS IoU (default: the model's).
        max_detections : int, optional
        min_size, max_size : float, optional
            Object height range in pixels searched by the pyramid.
        scale_step : float, optional
            Pyramid step (default: the model's, 1.05 unless trained otherwise).

        Returns
        -------
        list of cvtool.detections.Detections
            One per image; labels index :attr:`classes`.

        Raises
        ------
        UsageError
            ``min_size`` / ``scale_step`` given here ask for a pyramid beyond
            :data:`MAX_LEVELS` levels, :data:`MAX_LEVEL_BYTES` of working memory
            for its largest level or :data:`MAX_SCAN_PIXELS` in all (the message
            gives the computed cost and the smallest ``min_size`` that fits).
        BadInputError
            The same, from the settings stored in the model file.
        """
        self._check_fitted()
        try:
            return self._predict(images, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                 max_detections=max_detections, min_size=min_size, max_size=max_size,
                                 scale_step=scale_step)
        except PyramidTooLarge as exc:
            if exc.from_model:
                raise BadInputError(f"the model's {exc} (refused before scanning)") from None
            from cvtool.errors import UsageError

            option = {"min_size": "--min-size", "scale_step": "--scale"}[exc.setting]
            raise UsageError(f"{option} {exc.value:g} (min_size/scale_step of predict): {exc.detail}") from None

    def _predict(self, images: Sequence[np.ndarray], *, score_threshold: float | None,
                 iou_threshold: float | None, max_detections: int | None, min_size: float | None,
                 max_size: float | None, scale_step: float | None) -> list[Any]:
        from cvtool.detections import postprocess

        st = self.score_threshold if score_threshold is None else score_threshold
        it = self.iou_threshold if iou_threshold is None else iou_threshold
        md = self.max_detections if max_detections is None else max_detections
        a, b = self.calibration_[:, 0], self.calibration_[:, 1]
        raw_min = (_logit(st) - b) / a

        def one(img: np.ndarray):
            cand = self._scan(img, raw_min=raw_min, min_size=min_size, max_size=max_size, scale_step=scale_step)
            probs = _sigmoid(cand["scores"].astype(np.float64) * a + b)
            lab = probs.argmax(axis=1) if len(probs) else np.zeros((0,), np.int64)
            score = probs[np.arange(len(lab)), lab] if len(lab) else np.zeros((0,))
            boxes = self.class_boxes(cand["regions"], lab)
            return postprocess(boxes, score, lab, image_size=(img.shape[1], img.shape[0]), score_threshold=st,
                               iou_threshold=it, max_detections=md, class_agnostic=self.class_agnostic)

        with _single_thread_blas():
            if self.jobs > 1 and len(images) > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(self.jobs) as pool:
                    return list(pool.map(one, images))
            return [one(img) for img in images]

    def with_round(self, rnd: int) -> HogSvmDetector:
        """A copy using the SVM weights of training round ``rnd`` (for mining reports)."""
        import copy

        self._check_fitted()
        other = copy.copy(self)
        other.coef_, other.intercept_ = self.round_weights_[rnd]
        other._filters_cache = None
        return other

    # ------------------------------------------------------------ persistence
    def settings(self) -> dict[str, Any]:
        """Constructor settings as JSON-friendly data."""
        d = {k: getattr(self, k) for k in ("window", "context", "C", "negatives_per_image", "neg_iou",
                                            "mine_rounds", "mine_iou", "hard_per_image", "flip", "solver",
                                            "sgd_above", "scale_step", "min_size", "max_size",
                                            "score_threshold", "iou_threshold", "max_detections",
                                            "class_agnostic", "seed", "jobs")}
        d["window"] = list(d["window"]) if d["window"] is not None else None
        d["hog"] = self.hog.to_dict()
        return d

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model as a NumPy ``.npz`` (no pickles; see :func:`load`)."""
        from cvtool import __version__
        from cvtool.io.atomic import atomic_open

        self._check_fitted()
        arrays = {
            "kind": np.array(KIND),
            "cvtool_version": np.array(__version__),
            "coef": self.coef_.astype(np.float32),
            "intercept": self.intercept_.astype(np.float64),
            "calibration": self.calibration_.astype(np.float64),
            "box_ratio": self.box_ratio_.astype(np.float64),
            "classes": np.array(self.classes_, dtype=str),
            "category_ids": self.category_ids_.astype(np.int64),
            "window": np.array(self.window_, np.int64),
            "context": np.float64(self.context),
            "size_range": np.array(self.size_range_, np.float64),
            "hog_params": np.array(self.hog.to_json()),
            "settings": np.array(json.dumps(self.settings(), sort_keys=True)),
            "rounds": np.array(json.dumps([asdict(r) for r in self.rounds_])),
            "round_coef": np.stack([w[0] for w in self.round_weights_]).astype(np.float32),
            "round_intercept": np.stack([w[1] for w in self.round_weights_]).astype(np.float64),
        }
        path = Path(path)
        with atomic_open(path, "wb", overwrite=overwrite) as fh:
            np.savez_compressed(fh, **arrays)
        return path


_REQUIRED = ("kind", "coef", "intercept", "calibration", "box_ratio", "classes", "category_ids", "window",
             "context", "size_range", "hog_params", "settings")


def load(path: str | Path, *, device: str = "auto") -> HogSvmDetector:
    """Load a HOG+SVM model file (``.npz``, read with ``allow_pickle=False``).

    ``device`` is accepted for the detector protocol and ignored (CPU only).

    Raises
    ------
    BadInputError
        Not a hog-svm model, missing keys, or inconsistent shapes.
    """
    p = Path(path)
    data = _read_model_arrays(p)
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise BadInputError(f"{p}: not a hog-svm model (missing {', '.join(missing)})")
    if str(data["kind"]) != KIND:
        raise BadInputError(f"{p}: model kind is {str(data['kind'])!r}, not {KIND!r}")
    try:
        settings = json.loads(str(data["settings"]))
        hog = HogParams.from_dict(json.loads(str(data["hog_params"])))
        settings.pop("hog", None)
        if settings.get("window") is not None:
            settings["window"] = tuple(settings["window"])
        det = HogSvmDetector(hog=hog, **settings)
        det._validate_settings()  # ranges first: scale_step, min_size and the rest bound the work
        det.classes_ = np.array(data["classes"], dtype=str).reshape(-1)
        det.category_ids_ = np.asarray(data["category_ids"], np.int64).reshape(-1)
        det.window_ = tuple(int(v) for v in np.asarray(data["window"]).reshape(-1))
        det.context = float(data["context"])
        _check_loaded_geometry(det)
        check_window(det.window_, hog)
        det.grid_ = grid_shape(det.window_, hog)
        det.n_features_ = det.grid_[0] * det.grid_[1] * hog.block_dim
        if det.n_features_ > MAX_FEATURES:
            raise ValueError(f"a {det.window_[0]}x{det.window_[1]} window with these HOG settings has "
                             f"{det.n_features_:,} features (at most {MAX_FEATURES:,})")
        det.coef_ = np.asarray(data["coef"], np.float32)
        det.intercept_ = np.asarray(data["intercept"], np.float64).reshape(-1)
        det.calibration_ = np.asarray(data["calibration"], np.float64)
        det.box_ratio_ = np.asarray(data["box_ratio"], np.float64)
        det.size_range_ = tuple(float(v) for v in np.asarray(data["size_range"]).reshape(-1))
        rounds = json.loads(str(data["rounds"])) if "rounds" in data else []
        det.rounds_ = [RoundReport(**r) for r in rounds]
        if "round_coef" in data:
            det.round_weights_ = list(zip(np.asarray(data["round_coef"], np.float32),
                                          np.asarray(data["round_intercept"], np.float64)))
        else:
            det.round_weights_ = [(det.coef_, det.intercept_)]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
        raise BadInputError(f"{p}: malformed hog-svm model ({str(exc)[:200]})") from None
    C = len(det.classes_)
    shapes_ok = (det.coef_.shape == (C, det.n_features_) and det.intercept_.shape == (C,)
                 and det.calibration_.shape == (C, 2) and det.box_ratio_.shape == (C, 2)
                 and det.category_ids_.shape == (C,) and len(det.size_range_) == 2)
    if not shapes_ok or not np.isfinite(det.coef_).all():
        raise BadInputError(f"{p}: malformed hog-svm model (array shapes do not match {C} classes and "
                            f"{det.n_features_} features, or weights are not finite)")
    finite = all(np.isfinite(a).all() for a in (det.intercept_, det.calibration_, det.box_ratio_,
                                                  np.asarray(det.size_range_)))
    if not finite or not (det.calibration_[:, 0] > 0).all():
        raise BadInputError(f"{p}: malformed hog-svm model (intercepts, calibration, box ratios and size range "
                            "must be finite, calibration slopes > 0)")
    if not ((det.box_ratio_ > 0) & (det.box_ratio_ <= 100)).all():
        raise BadInputError(f"{p}: malformed hog-svm model (box ratios must be in (0, 100])")
    lo, hi = det.size_range_
    if not 1 <= lo <= hi <= 1e6:
        raise BadInputError(f"{p}: malformed hog-svm model (size range {lo:g}-{hi:g} px of object height; "
                            "expected 1 <= low <= high <= 1e6)")
    return det


def _check_loaded_geometry(det: HogSvmDetector) -> None:
    """Class count and window size of a model being loaded, before arrays are shaped by them."""
    from cvtool.detectors.limits import MAX_CLASSES, float_setting

    float_setting("context", det.context, 0.0, 1.0)
    if not 1 <= len(det.classes_) <= MAX_CLASSES:
        raise ValueError(f"{len(det.classes_)} classes (expected 1 to {MAX_CLASSES})")
    if len(det.window_) != 2 or not all(1 <= v <= MAX_WINDOW for v in det.window_):
        raise ValueError(f"window {det.window_!r:.40} (expected two sides of 1 to {MAX_WINDOW} px)")


def _read_model_arrays(p: Path) -> dict[str, np.ndarray]:
    """The arrays of a model ``.npz``, their declared sizes checked before any is decompressed.

    Raises
    ------
    BadInputError
        Unreadable, pickled arrays, or more than :data:`MAX_MODEL_BYTES` declared in all
        (a small compressed file can declare gigabytes of zeros).
    """
    import zipfile

    try:
        with np.load(p, allow_pickle=False) as z:
            declared = 0
            for name in z.files:
                with z.zip.open(name + ".npy") as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _fortran, dtype = read(fh)
                declared += math.prod(shape) * max(dtype.itemsize, 1)
                if declared > MAX_MODEL_BYTES:
                    raise BadInputError(f"{p}: the model's arrays declare more than {MAX_MODEL_BYTES / 2**30:.0f} GiB; "
                                        "refused before reading")
            return {k: z[k] for k in z.files}
    except BadInputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BadInputError(f"{p}: cannot read model ({first})") from None


# ---------------------------------------------------------------------------
# Data in, scores out (shared by `train hog-svm` and the benchmark)
# ---------------------------------------------------------------------------


@dataclass
class TrainingSplit:
    """One dataset split as per-image lists (what :meth:`HogSvmDetector.fit` takes).

    ``labels`` are class indices into ``classes``; ``dataset`` is the split as a
    :class:`~cvtool.datasets.core.Dataset` (image ids, file names) for scoring.
    """

    images: list[np.ndarray]
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    classes: list[str]
    category_ids: list[int]
    dataset: Any


def read_split(path: str | Path, *, split: str = "train", max_images: int | None = None,
               images: str | Path | None = None) -> TrainingSplit:
    """Read a split of any dataset :func:`cvtool.datasets.load_dataset` accepts.

    Classes are the dataset's categories sorted by id.  ``max_images`` keeps
    the first N images (in id order).  ``images``: the folder holding the
    images when the annotations are kept apart (``load_dataset``'s ``images=``).

    Raises
    ------
    BadInputError
        Unreadable dataset or image.
    """
    from cvtool.datasets import load_dataset
    from cvtool.datasets.core import check_image_shape
    from cvtool.io.images import read_image

    ds = load_dataset(path, split=split, images=images)
    images = sorted(ds.images, key=lambda im: im.id)
    if max_images is not None:
        images = images[:max_images]
        ds = ds.subset([im.id for im in images])
    cats = sorted(ds.categories, key=lambda c: c.id)
    index = {c.id: k for k, c in enumerate(cats)}
    pix, bxs, labs = [], [], []
    for im in images:
        arr = read_image(ds.image_path(im))
        check_image_shape(im, arr.shape, path=ds.image_path(im))
        sel = ds.annotations_of(im.id)
        keep = sel[~ds.ann_iscrowd[sel]]
        pix.append(arr)
        bxs.append(ds.ann_boxes[keep].astype(np.float64))
        labs.append(np.array([index[int(c)] for c in ds.ann_labels[keep]], np.int64))
    return TrainingSplit(pix, bxs, labs, [c.name for c in cats], [c.id for c in cats], ds)


def evaluate_split(detector: Any, split: TrainingSplit, *, score_threshold: float = 0.05) -> dict[str, float]:
    """COCO AP, AP50, AP75 (cvtool.eval) and images/s of ``detector`` on ``split``."""
    from cvtool.datasets.core import Predictions
    from cvtool.eval.coco import evaluate_coco

    t0 = time.perf_counter()
    dets = detector.predict(split.images, score_threshold=score_threshold)
    seconds = time.perf_counter() - t0
    ids = [im.id for im in sorted(split.dataset.images, key=lambda im: im.id)]
    cat = np.asarray(detector.category_ids, np.int64)
    n = [len(d.scores) for d in dets]
    pred = Predictions(
        image_ids=np.repeat(np.array(ids, np.int64), n),
        boxes=np.concatenate([d.boxes for d in dets]) if dets else np.zeros((0, 4)),
        scores=np.concatenate([d.scores for d in dets]) if dets else np.zeros((0,)),
        labels=cat[np.concatenate([d.labels for d in dets]).astype(np.int64)] if sum(n) else np.zeros((0,), np.int64),
    )
    rep = evaluate_coco(split.dataset, pred)
    worst = min((r["AP50"] for r in rep.per_class if r["AP50"] >= 0), default=-1.0)
    return {"AP": float(rep.stats["AP"]), "AP50": float(rep.stats["AP50"]), "AP75": float(rep.stats["AP75"]),
            "worst_class_AP50": float(worst), "images_per_s": len(split.images) / max(seconds, 1e-9)}

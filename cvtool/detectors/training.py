"""Pieces the CNN detector tasks (R-CNN, single-shot) share: data splits and COCO scoring.

The runner (:mod:`cvtool.runner`) does the fitting; these helpers turn a
``prepare`` dataset into arrays for a task and score a detector on held-out
images with cvtool's own COCO evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvtool.errors import BadInputError


@dataclass
class Split:
    """One split as the detector tasks use it.

    Attributes
    ----------
    images : (N, H, W[, C]) uint8 ndarray
    boxes : list of (M_i, 4) float32 ndarray -- xyxy pixels
    labels : list of (M_i,) int64 ndarray -- class indices 0..C-1
    """

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(N, M, 4)`` float32 and labels ``(N, M)`` int64 padded with -1 (M = most objects)."""
        m = max([len(b) for b in self.boxes] + [1])
        boxes = np.zeros((len(self), m, 4), np.float32)
        labels = np.full((len(self), m), -1, np.int64)
        for i, (b, lab) in enumerate(zip(self.boxes, self.labels)):
            boxes[i, :len(b)] = b
            labels[i, :len(lab)] = lab
        return boxes, labels

    def subset(self, index: np.ndarray) -> Split:
        return Split(self.images[index], [self.boxes[i] for i in index], [self.labels[i] for i in index])


@dataclass
class DetectionData:
    """Training and validation splits with their classes."""

    train: Split
    val: Split
    classes: list[str]
    category_ids: list[int]


def split_from_arrays(arr: Any) -> Split:
    cls = arr.class_index
    boxes, labels = [], []
    lo = np.searchsorted(arr.box_image, np.arange(len(arr)), side="left")
    hi = np.searchsorted(arr.box_image, np.arange(len(arr)), side="right")
    for a, b in zip(lo, hi):
        boxes.append(arr.boxes[a:b].astype(np.float32))
        labels.append(cls[a:b].astype(np.int64))
    return Split(arr.images, boxes, labels)


def load_detection_data(path: str | Path, *, val_split: str = "val", val_fraction: float = 0.1,
                        max_val: int = 500, seed: int = 0) -> DetectionData:
    """Train and validation splits of a ``prepare`` dataset (``.npz`` or COCO + PNG).

    The validation split is ``val_split`` when the dataset has it, else a
    seeded ``val_fraction`` of the training images (held out from training).
    At most ``max_val`` validation images are kept (scoring every epoch).

    Raises
    ------
    BadInputError
        No training split, no objects, or images of different sizes.
    """
    from cvtool.datasets.arrays import load_arrays

    tr = load_arrays(path, split="train")
    train = split_from_arrays(tr)
    if sum(len(b) for b in train.boxes) == 0:
        raise BadInputError(f"{path}: the training split has no objects")
    try:
        va = load_arrays(path, split=val_split)
        if list(va.category_ids) != list(tr.category_ids):
            raise BadInputError(f"{path}: split {val_split!r} has other categories than 'train'")
        val = split_from_arrays(va)
    except BadInputError:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train))
        n_val = max(1, int(round(len(train) * val_fraction))) if len(train) > 1 else 0
        val = train.subset(order[:n_val])
        train = train.subset(np.sort(order[n_val:]) if n_val else order)
    if len(val) > max_val:
        val = val.subset(np.arange(max_val))
    return DetectionData(train=train, val=val, classes=[str(c) for c in tr.category_names],
                         category_ids=[int(c) for c in tr.category_ids])


def coco_scores(detections: Sequence[Any], split: Split, *, num_classes: int,
                class_names: Sequence[str] | None = None) -> dict[str, float]:
    """COCO AP, AP50, AP75 and the worst per-class AP of ``detections`` on ``split``.

    Parameters
    ----------
    detections : sequence of Detections, one per image of ``split`` (labels are class indices)
    split : Split
    num_classes : int
    """
    from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions
    from cvtool.eval.coco import evaluate_coco

    n = len(split)
    h, w = split.images.shape[1:3]
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    counts = [len(b) for b in split.boxes]
    gt = Dataset(
        images=[ImageRecord(id=i, file_name=f"{i}.png", width=int(w), height=int(h)) for i in range(n)],
        categories=[Category(id=k, name=names[k]) for k in range(num_classes)],
        ann_image_ids=np.repeat(np.arange(n, dtype=np.int64), counts),
        ann_boxes=np.concatenate(split.boxes).astype(np.float64).reshape(-1, 4) if n else np.zeros((0, 4)),
        ann_labels=np.concatenate(split.labels).astype(np.int64) if n else np.zeros(0, np.int64),
        ann_iscrowd=np.zeros(sum(counts), bool),
        ann_difficult=np.zeros(sum(counts), bool),
    )
    dcounts = [len(d.scores) for d in detections]
    pred = Predictions(
        image_ids=np.repeat(np.arange(n, dtype=np.int64), dcounts),
        boxes=np.concatenate([d.boxes for d in detections]).reshape(-1, 4) if n else np.zeros((0, 4)),
        scores=np.concatenate([d.scores for d in detections]) if n else np.zeros(0),
        labels=np.concatenate([d.labels for d in detections]).astype(np.int64) if n else np.zeros(0, np.int64),
    )
    report = evaluate_coco(gt, pred)
    per_class = [r["AP"] for r in report.per_class if r["AP"] >= 0]
    return {"AP": float(report.stats["AP"]), "AP50": float(report.stats["AP50"]),
            "AP75": float(report.stats["AP75"]), "worst_class_AP": float(min(per_class)) if per_class else -1.0}


def read_detector_checkpoint(path: str | Path, kind: str, device: str) -> tuple[dict[str, Any], Any]:
    """``(checkpoint dict, torch.device)`` for a detector ``load()``: safe load, kind checked, device resolved."""
    from cvtool.detectors import resolve_model_path
    from cvtool.runner.checkpoint import load_checkpoint
    from cvtool.runner.device import resolve_device

    p = resolve_model_path(path)
    state = load_checkpoint(p)
    if state.get("kind") != kind:
        raise BadInputError(f"{p}: model kind is {state.get('kind')!r}, not {kind!r}")
    return state, resolve_device(device)

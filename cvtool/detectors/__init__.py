"""Detectors.  Every kind loads from its model file and predicts the same record.

Protocol (each ``load`` returns an object with):

* ``kind: str`` -- ``'hog-svm'``, ``'localizer'``, ``'rcnn'`` or ``'single-shot'``
* ``classes: list[str]`` -- class names; labels are indices into this list
* ``category_ids: list[int]`` -- the dataset category id of each class
* ``predict(images: list[ndarray], *, score_threshold=None, iou_threshold=None,
  max_detections=100) -> list[Detections]`` -- BGR/grey uint8 images in, one
  :class:`cvtool.detections.Detections` per image out, every detector ending in
  :func:`cvtool.detections.postprocess`; ``None`` thresholds mean the defaults
  stored in the model file.

The kind is read from the model file itself (never from its name), without
unpickling anything: ``.npz`` files with ``allow_pickle=False``, torch
checkpoints with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cvtool.errors import BadInputError

KINDS: dict[str, str] = {
    "hog-svm": "cvtool.detectors.hog_svm",
    "localizer": "cvtool.detectors.localizer",
    "rcnn": "cvtool.detectors.rcnn",
    "single-shot": "cvtool.detectors.single_shot",
}


def resolve_model_path(path: str | Path) -> Path:
    """Accept a model file or a run folder (``model.npz`` or ``weights/best.pt`` inside)."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "model.npz", p / "weights" / "best.pt", p / "weights" / "last.pt"):
            if cand.is_file():
                return cand
        raise BadInputError(f"{p}: no model.npz or weights/best.pt in this run folder")
    if not p.is_file():
        raise BadInputError(f"{p}: no such model file")
    return p


def read_model_kind(path: str | Path) -> str:
    """Return the detector kind recorded in a model file (safe: no unpickling)."""
    p = resolve_model_path(path)
    kind: Any = None
    if p.suffix == ".npz":
        import numpy as np

        try:
            with np.load(p, allow_pickle=False) as z:
                kind = str(z["kind"]) if "kind" in z.files else None
        except Exception as exc:
            raise BadInputError(f"{p}: not a cvtool model file ({exc})") from None
    else:
        from cvtool.runner.checkpoint import load_checkpoint

        kind = load_checkpoint(p).get("kind")
    if kind not in KINDS:
        raise BadInputError(f"{p}: unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def load_detector(path: str | Path, *, device: str = "auto") -> Any:
    """Load any cvtool detector from its model file or run folder."""
    p = resolve_model_path(path)
    kind = read_model_kind(p)
    module = importlib.import_module(KINDS[kind])
    try:
        return module.load(p, device=device)
    except BadInputError as exc:
        if str(p) in str(exc):
            raise
        raise BadInputError(f"{p}: {exc}") from None  # every model-file error names the file

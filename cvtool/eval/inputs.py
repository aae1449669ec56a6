"""Reading what ``eval`` compares: ground truth, detections and proposals.

The format readers are :mod:`cvtool.datasets`' (``load_dataset``,
``read_predictions``, the text box readers); this module adds what is
particular to ``eval``: a ``detect``/``selective-search`` output folder as
``--pred``, the text formats' box conventions, and proposals (records with
boxes in rank order and no classes), matched to ground-truth images by file
name like detection records.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cvtool.datasets.core import Dataset, Predictions
from cvtool.errors import BadInputError, UsageError

PRED_FORMATS = ("auto", "coco", "jsonl", "text")
GT_FORMATS = ("auto", "coco", "yolo", "voc", "text")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_FOLDER_CANDIDATES = ("detections.jsonl", "detections.json", "proposals.jsonl")


def load_ground_truth(path: str | os.PathLike[str], *, split: str = "test", format: str = "auto",
                      box_format: str = "xyxy", relative: bool = False, clip: bool = False) -> Dataset:
    """Ground truth from a prepare folder (with ``split``), a COCO JSON, a YOLO, VOC or text-box folder.

    Parameters
    ----------
    format : {'auto', 'coco', 'yolo', 'voc', 'text'}
    box_format, relative
        Conventions of text box files (``class a b c d``).
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.

    Raises
    ------
    UsageError
        Unknown ``format`` or ``box_format``.
    BadInputError
        Missing or malformed files.
    """
    if format not in GT_FORMATS:
        raise UsageError(f"--gt-format {format!r} is not one of {', '.join(GT_FORMATS)}")
    if box_format not in BOX_FORMATS:
        raise UsageError(f"--box-format {box_format!r} is not one of {', '.join(BOX_FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"ground truth {path} does not exist")
    if format == "text":
        from cvtool.datasets.text import read_text_boxes

        return read_text_boxes(path, box_format=box_format, relative=relative, clip=clip)
    from cvtool.datasets import load_dataset

    return load_dataset(path, split=split, format=None if format == "auto" else format, clip=clip)


def resolve_predictions_path(path: str | os.PathLike[str]) -> Path:
    """A file as given, or the known output file inside a ``detect``/``selective-search`` folder."""
    path = Path(path)
    if path.is_dir():
        for name in _FOLDER_CANDIDATES:
            if (path / name).is_file():
                return path / name
        raise BadInputError(f"{path} is a folder without {', '.join(_FOLDER_CANDIDATES)}")
    if not path.exists():
        raise BadInputError(f"predictions {path} do not exist")
    return path


def load_predictions(path: str | os.PathLike[str], gt: Dataset, *, format: str = "auto",
                     box_format: str = "xyxy", relative: bool = False) -> Predictions:
    """Detections from a COCO results JSON, a ``detect`` JSONL (or its folder), or text files.

    Parameters
    ----------
    path : path-like
    gt : Dataset
        Ground truth the detections refer to (ids, file names, category names).
    format : {'auto', 'coco', 'jsonl', 'text'}
        ``auto``: ``.jsonl`` or else COCO results; ``text``: ``class score a b c d``
        files matched to images by name.

    Returns
    -------
    Predictions
        xyxy boxes with category ids of ``gt``.

    Raises
    ------
    UsageError
        Unknown format.
    BadInputError
        Missing file, malformed JSON, bad records, unknown images or classes.
    """
    if format not in PRED_FORMATS:
        raise UsageError(f"--pred-format {format!r} is not one of {', '.join(PRED_FORMATS)}")
    if format == "text":
        from cvtool.datasets.text import read_text_predictions

        if not Path(path).exists():
            raise BadInputError(f"predictions {path} do not exist")
        return read_text_predictions(path, gt, box_format=box_format, relative=relative)
    from cvtool.datasets.results import read_predictions

    return read_predictions(resolve_predictions_path(path), gt, format=None if format == "auto" else format)


def load_proposals(path: str | os.PathLike[str], gt: Dataset) -> dict[int, np.ndarray]:
    """``selective-search`` JSONL -> ``{image id: (N, 4) xyxy boxes in rank order}``.

    Raises
    ------
    BadInputError
        Malformed lines, unknown or repeated files, non-finite or inverted boxes.
    """
    from cvtool.datasets.results import FileMatcher, read_jsonl_records

    path = resolve_predictions_path(path)
    match = FileMatcher(gt)
    out: dict[int, np.ndarray] = {}
    for n, rec in read_jsonl_records(path):
        where = f"{path}:{n}"
        image_id = match(rec.get("file"), where)
        if image_id in out:
            raise BadInputError(f"{where}: image {rec.get('file')!r} already has a record")
        try:
            boxes = np.asarray(rec.get("boxes"), dtype=np.float64)
        except (TypeError, ValueError):
            boxes = None
        if boxes is None or not isinstance(rec.get("boxes"), list) or (boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4)):
            raise BadInputError(f"{where}: 'boxes' must be a list of [x1, y1, x2, y2] rows")
        boxes = boxes.reshape(-1, 4)
        if not np.isfinite(boxes).all():
            raise BadInputError(f"{where}: 'boxes' contains NaN or infinite values")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            i = int(np.flatnonzero(inverted)[0])
            raise BadInputError(f"{where}: box {i} {boxes[i].tolist()} has a negative width or height (xyxy)")
        out[image_id] = boxes
    return out

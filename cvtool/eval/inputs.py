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

PRED_FORMATS = ("auto", "coco", "jsonl", "text", "yolo")
GT_FORMATS = ("auto", "coco", "yolo", "voc", "text")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_FOLDER_CANDIDATES = ("detections.jsonl", "detections.json", "proposals.jsonl")


def gt_format_of(path: str | os.PathLike[str], *, split: str = "test", format: str = "auto") -> str:
    """The ground-truth format ``load_ground_truth`` reads (``format``, or the one found from the path)."""
    if format != "auto":
        return format
    from cvtool.datasets.loader import detect_format

    return detect_format(path, split=split)[0]


def pixels_to_continuous(boxes: np.ndarray) -> np.ndarray:
    """VOC pixel indices (inclusive, ``xmax`` is the last pixel) -> continuous xyxy, as the VOC XML reader does.

    ``x1 - 1, y1 - 1, x2, y2``: a box is then ``x2 - x1 + 1`` wide in the
    indices' terms, so plain IoU equals the VOC devkit's "+1" IoU.
    """
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, :2] -= 1.0
    return out


def load_ground_truth(path: str | os.PathLike[str], *, split: str = "test", format: str = "auto",
                      box_format: str = "xyxy", relative: bool = False, clip: bool = False,
                      images: str | os.PathLike[str] | None = None) -> Dataset:
    """Ground truth from a prepare folder (with ``split``), a COCO JSON, a YOLO, VOC or text-box folder.

    Parameters
    ----------
    format : {'auto', 'coco', 'yolo', 'voc', 'text'}
    box_format, relative
        Conventions of text box files (``class a b c d``).
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.
    images : path-like, optional
        Folder holding the images when the annotations are kept apart
        (``--image-dir``; see :func:`cvtool.datasets.load_dataset`).

    Raises
    ------
    UsageError
        Unknown ``format`` or ``box_format``; ``images`` with text box files.
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

        if images is not None:
            raise UsageError("--image-dir does not apply to --gt-format text (text boxes are pixels, "
                             "or divided by the image size with --relative)")

        return read_text_boxes(path, box_format=box_format, relative=relative, clip=clip)
    from cvtool.datasets import load_dataset

    return load_dataset(path, split=split, format=None if format == "auto" else format, clip=clip, images=images)


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


def _detect_run(folder: Path) -> dict | None:
    """The ``run.json`` of a ``cvtool detect`` run in ``folder`` (None when there is none)."""
    import json

    manifest = folder / "run.json"
    try:
        run = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None
    except (OSError, ValueError, RecursionError):
        return None
    return run if isinstance(run, dict) and run.get("command") == "detect" else None


def prediction_format(path: str | os.PathLike[str], format: str = "auto") -> str:
    """The format ``load_predictions`` reads ``path`` in.

    ``auto``: a ``.txt`` file or a folder of them is ``yolo`` when it is the
    ``labels/`` folder of a ``detect --format yolo`` run (its ``run.json``
    says so) or any folder named ``labels`` (Ultralytics' ``save_txt``
    layout); other text files need ``--pred-format`` (UsageError).  Else
    ``.jsonl`` (or a folder holding ``detections.jsonl``) is ``jsonl`` and
    anything else ``coco``.
    """
    if format not in PRED_FORMATS:
        raise UsageError(f"--pred-format {format!r} is not one of {', '.join(PRED_FORMATS)}")
    if format != "auto":
        return format
    path = Path(path)
    if path.is_dir() and any((path / n).is_file() for n in _FOLDER_CANDIDATES):
        return "jsonl" if resolve_predictions_path(path).suffix == ".jsonl" else "coco"
    folder = path if path.is_dir() else path.parent
    if path.is_dir() or path.suffix.lower() == ".txt":
        run = _detect_run(folder.parent)
        if folder.name == "labels" and (run is None or (run.get("args") or {}).get("fmt") == "yolo"):
            return "yolo"
        if path.is_dir() and not any(path.rglob("*.txt")):
            raise BadInputError(f"{path} is a folder without {', '.join(_FOLDER_CANDIDATES)} or .txt files")
        raise UsageError(f"--pred {path}: cannot tell the layout of text predictions; pass --pred-format text "
                         "('class score a b c d', see --box-format) or yolo ('class cx cy w h score', relative)")
    return "jsonl" if path.suffix.lower() == ".jsonl" else "coco"


def load_predictions(path: str | os.PathLike[str], gt: Dataset, *, format: str = "auto",
                     box_format: str = "xyxy", relative: bool = False,
                     unknown: dict[str, int] | None = None, covered: set[int] | None = None) -> Predictions:
    """Detections from a COCO results JSON, a ``detect`` JSONL (or its folder), or text files.

    Parameters
    ----------
    path : path-like
    gt : Dataset
        Ground truth the detections refer to (ids, file names, category names).
    format : {'auto', 'coco', 'jsonl', 'text', 'yolo'}
        ``auto``: see :func:`prediction_format`; ``text``: ``class score a b c d``
        files matched to images by name (``box_format``, ``relative``);
        ``yolo``: ``class cx cy w h score`` relative to the image.
    unknown : dict, optional
        When given, predictions of classes the ground truth lacks are dropped
        and counted here (class -> count); else refused.
    covered : set, optional
        JSONL only: receives the ids of the ground-truth images with a record.

    Returns
    -------
    Predictions
        xyxy boxes with category ids of ``gt``.

    Raises
    ------
    UsageError
        Unknown format; text files whose layout ``auto`` cannot tell.
    BadInputError
        Missing file, malformed JSON, bad records, unknown images, classes
        (without ``unknown``), text columns that do not fit the layout.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"predictions {path} do not exist")
    format = prediction_format(path, format)
    if format in ("text", "yolo"):
        from cvtool.datasets.text import read_text_predictions

        run = _detect_run((path if path.is_dir() else path.parent).parent) if format == "yolo" else None
        classes = run.get("classes") if run is not None else None
        classes = classes if isinstance(classes, list) and all(isinstance(c, str) for c in classes) else None
        return read_text_predictions(path, gt, box_format=box_format, relative=relative, layout=format,
                                     classes=classes, unknown=unknown)
    from cvtool.datasets.results import read_predictions

    return read_predictions(resolve_predictions_path(path), gt, format=format, unknown=unknown, covered=covered)


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

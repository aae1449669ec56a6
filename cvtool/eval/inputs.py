"""Reading what ``eval`` compares: ground truth, detections and proposals.

Detections come as a COCO results JSON (``image_id``, ``category_id``,
``bbox`` xywh, ``score``) or as ``detect``'s JSONL (one record per image:
``file``, ``boxes`` xyxy, ``scores``, ``labels``, ``names``, ``category_ids``).
JSONL records are matched to ground-truth images by ``file`` against the
image's ``file_name``: the exact relative path first, else a unique base name.
Proposals are ``selective-search`` JSONL records (``boxes`` in rank order).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePosixPath

import numpy as np

from cvtool.datasets.core import Dataset, Predictions
from cvtool.errors import BadInputError, UsageError

PRED_FORMATS = ("auto", "coco", "jsonl")
GT_FORMATS = ("auto", "coco", "yolo", "voc")
_FOLDER_CANDIDATES = ("detections.jsonl", "detections.json", "proposals.jsonl")


def load_ground_truth(path: str | os.PathLike[str], *, split: str = "test", format: str = "auto") -> Dataset:
    """Ground truth from a prepare folder (with ``split``), a COCO JSON, a YOLO or a VOC folder.

    Raises
    ------
    UsageError
        Unknown ``format``.
    BadInputError
        Missing or malformed files.
    """
    if format not in GT_FORMATS:
        raise UsageError(f"--gt-format {format!r} is not one of {', '.join(GT_FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"ground truth {path} does not exist")
    try:
        from cvtool.datasets import load_dataset
    except ImportError:  # the format readers are not in this build: COCO JSON only
        if format not in ("auto", "coco"):
            raise UsageError(f"--gt-format {format} needs cvtool.datasets.load_dataset, which this build lacks") from None
        return _coco_ground_truth(path, split=split)
    return load_dataset(path, split=split, format=None if format == "auto" else format)


def _coco_ground_truth(path: Path, *, split: str) -> Dataset:
    """Minimal COCO reader used only while ``cvtool.datasets`` has no ``load_dataset``."""
    from cvtool.datasets.core import Category, ImageRecord

    if path.is_dir():
        path = path / split / "annotations.json" if (path / split).is_dir() else path / "annotations.json"
    data = _read_json(path)
    try:
        anns = data["annotations"]
        images = [ImageRecord(int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"]))
                  for im in data["images"]]
        cats = [Category(int(c["id"]), str(c["name"])) for c in data["categories"]]
        boxes = np.array([[float(v) for v in a["bbox"]] for a in anns], dtype=np.float64).reshape(-1, 4)
        ds = Dataset(images=images, categories=cats, root=path.parent,
                     ann_image_ids=np.array([int(a["image_id"]) for a in anns], dtype=np.int64),
                     ann_boxes=np.hstack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]),
                     ann_labels=np.array([int(a["category_id"]) for a in anns], dtype=np.int64),
                     ann_iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
                     ann_difficult=np.zeros(len(anns), dtype=bool),
                     ann_area=np.array([float(a.get("area", b[2] * b[3])) for a, b in zip(anns, boxes)]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInputError(f"{path}: not a COCO annotation file ({type(exc).__name__}: {exc})") from None
    return ds.validate(source=str(path))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise BadInputError(f"{path}:{n}: expected a JSON object per line")
        if "summary" in rec and "file" not in rec:
            continue  # the final summary record of a --json stream
        records.append((n, rec))
    return records


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


class FileMatcher:
    """Map a record's ``file`` to a ground-truth image id (exact path, else unique base name)."""

    def __init__(self, gt: Dataset) -> None:
        self.exact = {PurePosixPath(im.file_name.replace("\\", "/")).as_posix(): im.id for im in gt.images}
        self.by_base: dict[str, list[int]] = {}
        for im in gt.images:
            self.by_base.setdefault(PurePosixPath(im.file_name.replace("\\", "/")).name, []).append(im.id)

    def __call__(self, name: object, where: str) -> int:
        if not isinstance(name, str) or not name:
            raise BadInputError(f"{where}: record has no 'file' name")
        key = PurePosixPath(name.replace("\\", "/")).as_posix()
        if key in self.exact:
            return self.exact[key]
        hits = self.by_base.get(PurePosixPath(key).name, [])
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise BadInputError(f"{where}: file {name!r} matches no ground-truth image")
        raise BadInputError(f"{where}: file {name!r} matches {len(hits)} ground-truth images by base name; "
                            "give paths relative to the dataset root")


def _number_list(rec: dict, key: str, where: str, n: int | None = None) -> list:
    value = rec.get(key)
    if not isinstance(value, list) or (n is not None and len(value) != n):
        want = "a list" if n is None else f"a list of {n}"
        raise BadInputError(f"{where}: '{key}' must be {want}")
    return value


def _as_array(values: list, where: str, key: str, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape((-1, *shape_tail))
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: '{key}' must hold numbers" + (" in rows of 4" if shape_tail else "")) from None
    if not np.isfinite(arr).all():
        raise BadInputError(f"{where}: '{key}' contains NaN or infinite values")
    return arr


def _check_boxes(boxes: np.ndarray, where: str) -> None:
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{where}: box {i} {boxes[i].tolist()} has negative width or height (xyxy)")


def _jsonl_categories(rec: dict, n: int, gt: Dataset, where: str) -> np.ndarray:
    cats = sorted(gt.categories, key=lambda c: c.id)
    if "category_ids" in rec:
        return _as_array(_number_list(rec, "category_ids", where, n), where, "category_ids").astype(np.int64)
    if "names" in rec:
        by_name = {c.name: c.id for c in cats}
        names = _number_list(rec, "names", where, n)
        unknown = [x for x in names if x not in by_name]
        if unknown:
            raise BadInputError(f"{where}: class name {unknown[0]!r} is not a ground-truth category "
                                f"({', '.join(sorted(by_name))})")
        return np.array([by_name[x] for x in names], dtype=np.int64)
    labels = _as_array(_number_list(rec, "labels", where, n), where, "labels").astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(cats)):
        raise BadInputError(f"{where}: class index {int(labels.max())} out of range for {len(cats)} categories")
    return np.array([c.id for c in cats], dtype=np.int64)[labels] if labels.size else labels


def _from_jsonl(path: Path, gt: Dataset) -> Predictions:
    match = FileMatcher(gt)
    ids, boxes, scores, labels = [], [], [], []
    seen: dict[int, int] = {}
    for n, rec in _read_jsonl(path):
        where = f"{path}:{n}"
        image_id = match(rec.get("file"), where)
        if image_id in seen:
            raise BadInputError(f"{where}: image {rec.get('file')!r} already has a record (line {seen[image_id]})")
        seen[image_id] = n
        b = _as_array(_number_list(rec, "boxes", where), where, "boxes", (4,))
        _check_boxes(b, where)
        s = _as_array(_number_list(rec, "scores", where, len(b)), where, "scores")
        ids.append(np.full(len(b), image_id, dtype=np.int64))
        boxes.append(b)
        scores.append(s)
        labels.append(_jsonl_categories(rec, len(b), gt, where))
    if not ids:
        return Predictions()
    return Predictions(image_ids=np.concatenate(ids), boxes=np.concatenate(boxes),
                       scores=np.concatenate(scores), labels=np.concatenate(labels))


def _from_coco_results(path: Path, data) -> Predictions:
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise BadInputError(f"{path}: expected a COCO results list of "
                            "{{image_id, category_id, bbox, score}} records")
    n = len(data)
    ids = np.zeros(n, dtype=np.int64)
    cats = np.zeros(n, dtype=np.int64)
    boxes = np.zeros((n, 4))
    scores = np.zeros(n)
    for i, rec in enumerate(data):
        where = f"{path}: record {i}"
        if not isinstance(rec, dict):
            raise BadInputError(f"{where}: expected an object")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in rec:
                raise BadInputError(f"{where}: missing '{key}'")
        try:
            ids[i], cats[i] = int(rec["image_id"]), int(rec["category_id"])
            scores[i] = float(rec["score"])
            bbox = [float(v) for v in rec["bbox"]]
        except (TypeError, ValueError):
            raise BadInputError(f"{where}: image_id, category_id, score and bbox must be numbers") from None
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or not math.isfinite(scores[i]):
            raise BadInputError(f"{where}: bbox must be 4 finite numbers (x, y, w, h) and score finite")
        if bbox[2] < 0 or bbox[3] < 0:
            raise BadInputError(f"{where}: bbox {bbox} has a negative width or height")
        boxes[i] = bbox
    boxes[:, 2:] += boxes[:, :2]
    return Predictions(image_ids=ids, boxes=boxes, scores=scores, labels=cats)


def load_predictions(path: str | os.PathLike[str], gt: Dataset, *, format: str = "auto") -> Predictions:
    """Detections from a COCO results JSON or a ``detect`` JSONL (or a ``detect`` output folder).

    Parameters
    ----------
    path : path-like
    gt : Dataset
        Ground truth the detections refer to (file names, category names).
    format : {'auto', 'coco', 'jsonl'}
        ``auto``: by extension (``.jsonl`` or ``.json``).

    Returns
    -------
    Predictions
        xyxy boxes with category ids of ``gt``.

    Raises
    ------
    UsageError
        Unknown format.
    BadInputError
        Missing file, malformed JSON, bad records, unknown file names.
    """
    if format not in PRED_FORMATS:
        raise UsageError(f"--pred-format {format!r} is not one of {', '.join(PRED_FORMATS)}")
    path = resolve_predictions_path(path)
    if format == "auto":
        format = "jsonl" if path.suffix.lower() == ".jsonl" else "coco"
    if format == "jsonl":
        return _from_jsonl(path, gt)
    return _from_coco_results(path, _read_json(path))


def load_proposals(path: str | os.PathLike[str], gt: Dataset) -> dict[int, np.ndarray]:
    """``selective-search`` JSONL -> ``{image id: (N, 4) xyxy boxes in rank order}``."""
    path = resolve_predictions_path(path)
    match = FileMatcher(gt)
    out: dict[int, np.ndarray] = {}
    for n, rec in _read_jsonl(path):
        where = f"{path}:{n}"
        image_id = match(rec.get("file"), where)
        b = _as_array(_number_list(rec, "boxes", where), where, "boxes", (4,))
        _check_boxes(b, where)
        out[image_id] = b
    return out

"""Detection results: COCO results JSON and ``detect``'s JSONL records.

COCO results JSON
    A list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``;
    image and category ids must exist in the ground truth it is read against.

JSONL (one record per image, written by ``detect``)::

    {"file": "<rel path>", "width": W, "height": H, "boxes": [[x1, y1, x2, y2], ...],
     "scores": [...], "labels": [class index, ...], "names": [...], "category_ids": [...]}

COCO results may carry a ``file_name`` and a ``category_name`` per result
(``detect`` writes both); then results are matched to ground-truth images by
file name, not ``image_id``, and to categories by name, not ``category_id``.  Results without it from a ``detect`` run that had no ``--gt``
(its ``run.json`` beside the file says so) are refused: their ids are 1..N
in input order, not the ground truth's.

Predictions of classes the ground truth lacks are refused, or, when the
caller passes an ``unknown`` dict, dropped and counted in it (class name ->
number of predictions), as the VOC devkit and pycocotools ignore them.

Limits: a JSONL line is at most :data:`MAX_LINE_CHARS` characters; box
coordinates are at most :data:`MAX_COORD` in magnitude and ids fit in a
signed 64-bit integer; anything else is a ``BadInputError`` naming the file
and record.

Records are matched to ground-truth images by ``file`` against the image's
``file_name``: the exact relative path first, else a unique base name
(:class:`FileMatcher`).  Classes come from ``names`` (ground-truth category
names) when present, else ``category_ids``, else ``labels`` (index into the
ground-truth categories sorted by id): a model's category ids are those of
the dataset it was trained on, its class names hold across datasets.
``selective-search`` proposals use the same record without scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cvtool import boxes as box_ops
from cvtool.datasets._files import read_json, read_text
from cvtool.datasets.core import Dataset, Predictions
from cvtool.errors import BadInputError

PRED_FORMATS = ("coco", "jsonl")

#: Longest JSONL line read (characters); a record of one image with 10,000 boxes is about 1 MB.
MAX_LINE_CHARS = 16 * 1024 * 1024
#: Largest box coordinate magnitude accepted (pixels); larger values are corrupt, not images.
MAX_COORD = 1e7
_MAX_ID = 2**63 - 1


def count_unknown(unknown: dict[str, int] | None, keys: Sequence[str], where: str) -> None:
    """Count predictions of classes the ground truth lacks in ``unknown``, or refuse them when it is None.

    ``keys``: one class description per dropped prediction (a name, ``"category id 7"``, ...).
    """
    if not keys:
        return
    if unknown is None:
        raise BadInputError(f"{where}: {keys[0]} is not a ground-truth category")
    for k in keys:
        unknown[k] = unknown.get(k, 0) + 1


class FileMatcher:
    """Map a record's ``file`` to a ground-truth image id.

    The exact relative path (``/`` or ``\\`` separators) wins; otherwise a
    base name that exactly one ground-truth image has.

    Examples
    --------
    >>> from cvtool.datasets.core import ImageRecord
    >>> m = FileMatcher(Dataset(images=[ImageRecord(7, "images/a.png", 4, 4)]))
    >>> m("images/a.png"), m("elsewhere/a.png")
    (7, 7)
    """

    def __init__(self, gt: Dataset) -> None:
        self._exact: dict[str, int] = {}
        self._base: dict[str, list[int]] = {}
        for im in gt.images:
            key = _norm(im.file_name)
            self._exact[key] = im.id
            self._base.setdefault(PurePosixPath(key).name, []).append(im.id)

    def __call__(self, name: Any, where: str = "record") -> int:
        if not isinstance(name, str) or not name:
            raise BadInputError(f"{where}: record has no 'file' name")
        key = _norm(name)
        if key in self._exact:
            return self._exact[key]
        hits = self._base.get(PurePosixPath(key).name, [])
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise BadInputError(f"{where}: file {name!r} matches no ground-truth image")
        raise BadInputError(f"{where}: file {name!r} matches {len(hits)} ground-truth images by base name; "
                            "use paths relative to the dataset root")


def _norm(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).as_posix()


# ---------------------------------------------------------------------------
# COCO results JSON
# ---------------------------------------------------------------------------


def parse_coco_results(data: Any, gt: Dataset, *, source: str | Path = "results",
                       unknown: dict[str, int] | None = None, trust_ids: bool = True) -> Predictions:
    """:class:`Predictions` from a parsed COCO results list, checked against ``gt``.

    Parameters
    ----------
    unknown : dict, optional
        When given, results of categories the ground truth lacks are dropped
        and counted here (``"category id N"`` -> count); else refused.
    trust_ids : bool
        False when the ``image_id`` values are known not to be the ground
        truth's: then every result must carry a ``file_name``.

    Results that all carry a ``file_name`` are matched to ground-truth
    images by that name (:class:`FileMatcher`) instead of ``image_id``; results
    that all carry a ``category_name`` to categories by that name instead of
    ``category_id`` (``detect`` writes both).
    """
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise BadInputError(f"{source}: expected a COCO results list of "
                            "{image_id, category_id, bbox, score} objects")
    arrays = _results_arrays_fast(data) or _results_arrays_checked(data, source)
    image_ids, labels, xywh, scores = arrays
    names = [r.get("file_name") if isinstance(r, dict) else None for r in data]
    if data and all(isinstance(n, str) and n for n in names):
        match = FileMatcher(gt)
        image_ids = np.array([match(n, f"{source}: record {i}") for i, n in enumerate(names)], np.int64)
    elif data and not trust_ids:
        raise BadInputError(f"{source}: written by `cvtool detect` without --gt, so its image ids are 1..N in "
                            "input order, not the ground truth's, and its results carry no file_name; evaluate "
                            "detections.jsonl beside it (matched by file name) or rerun detect with --gt")
    _check_predictions(image_ids, labels, xywh, scores, gt, source, xywh_boxes=True)
    cats = np.array([c.id for c in gt.categories], np.int64)
    cat_names = [r.get("category_name") if isinstance(r, dict) else None for r in data]
    if data and all(isinstance(n, str) for n in cat_names):   # names hold across datasets, ids need not
        by_name = {c.name: c.id for c in gt.categories}
        labels = np.array([by_name.get(n, -1) for n in cat_names], np.int64)
        lost = labels < 0
        if lost.any():
            count_unknown(unknown, [n for n in cat_names if n not in by_name],
                          f"{source}: record {int(np.flatnonzero(lost)[0])}")
            keep = ~lost
            image_ids, labels, xywh, scores = image_ids[keep], labels[keep], xywh[keep], scores[keep]
    lost = ~np.isin(labels, cats)
    if lost.any():
        i = int(np.flatnonzero(lost)[0])
        if unknown is None:
            raise BadInputError(f"{source}: record {i} has category id {int(labels[i])}, not one of the "
                                f"ground truth's ({', '.join(str(c) for c in sorted(cats.tolist()))})")
        count_unknown(unknown, [f"category id {int(v)}" for v in labels[lost]], f"{source}: record {i}")
        keep = ~lost
        image_ids, labels, xywh, scores = image_ids[keep], labels[keep], xywh[keep], scores[keep]
    return Predictions(image_ids=image_ids, boxes=box_ops.convert(xywh, "xywh", "xyxy"), scores=scores,
                       labels=labels)


def _results_arrays_fast(data: list) -> tuple[np.ndarray, ...] | None:
    """Whole-column conversion of a results list; None when anything is off (then checked per record)."""
    n = len(data)
    if n == 0:
        return None
    try:
        image_ids = np.array([r["image_id"] for r in data])
        labels = np.array([r["category_id"] for r in data])
        xywh = np.array([r["bbox"] for r in data])
        scores = np.array([r["score"] for r in data])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if any(x.dtype.kind not in "iu" or x.shape != (n,) for x in (image_ids, labels)):
        return None
    if xywh.dtype.kind not in "iuf" or xywh.shape != (n, 4) or scores.dtype.kind not in "iuf" or scores.shape != (n,):
        return None
    return (image_ids.astype(np.int64), labels.astype(np.int64), xywh.astype(np.float64),
            scores.astype(np.float64))


def _results_arrays_checked(data: list, source: Any) -> tuple[np.ndarray, ...]:
    """Results arrays record by record, raising on the first bad one (naming it)."""
    n = len(data)
    image_ids = np.zeros(n, np.int64)
    labels = np.zeros(n, np.int64)
    xywh = np.zeros((n, 4))
    scores = np.zeros(n)
    for i, rec in enumerate(data):
        where = f"{source}: record {i}"
        if not isinstance(rec, dict):
            raise BadInputError(f"{where}: expected an object, got {type(rec).__name__}")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in rec:
                raise BadInputError(f"{where}: missing '{key}'")
        try:
            image_ids[i] = _integer(rec["image_id"])
            labels[i] = _integer(rec["category_id"])
            scores[i] = _number(rec["score"])
            bbox = rec["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError
            xywh[i] = [_number(v) for v in bbox]
        except (TypeError, ValueError):
            raise BadInputError(f"{where}: image_id and category_id must be integers (within 64 bits), score a "
                                "number and bbox 4 numbers [x, y, width, height]") from None
    return image_ids, labels, xywh, scores


def _integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= _MAX_ID or v != int(v):
        raise ValueError
    return int(v)


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError
    try:
        return float(v)
    except OverflowError:  # an integer too large for a float
        raise ValueError from None


def _check_predictions(image_ids: np.ndarray, labels: np.ndarray, b: np.ndarray, scores: np.ndarray,
                       gt: Dataset, source: Any, *, xywh_boxes: bool) -> None:
    """NaN/inf, huge values, negative sizes, unknown image ids -> BadInputError naming the record."""
    bad = ~(np.isfinite(b).all(axis=1) & np.isfinite(scores))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{source}: record {i} has a non-finite box or score")
    bad = (np.abs(b) > MAX_COORD).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{source}: record {i} has a box value beyond {MAX_COORD:g} in magnitude; "
                            "not pixel coordinates")
    neg = (b[:, 2] < 0) | (b[:, 3] < 0) if xywh_boxes else (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise BadInputError(f"{source}: record {i} box {b[i].tolist()} has a negative width or height")
    known = np.array([im.id for im in gt.images], np.int64)
    bad = ~np.isin(image_ids, known)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        ids = np.unique(image_ids[bad])
        raise BadInputError(f"{source}: {int(bad.sum())} of {bad.size} results refer to {ids.size} image id(s) "
                            f"the ground truth does not have (first: record {i} refers to image id {int(image_ids[i])}; "
                            f"the ground truth has {known.size} images"
                            + (f", ids {int(known.min())}..{int(known.max())})" if known.size else ")"))


def detect_run_without_gt(path: Path) -> bool:
    """True when ``run.json`` beside ``path`` is a ``cvtool detect`` run that had no ``--gt``."""
    manifest = path.parent / "run.json"
    if not manifest.is_file():
        return False
    try:
        run = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(run, dict) and run.get("command") == "detect" and isinstance(run.get("args"), dict) \
        and run["args"].get("gt") is None


def read_coco_results(path: str | os.PathLike[str], gt: Dataset, *,
                      unknown: dict[str, int] | None = None) -> Predictions:
    """Read a COCO results JSON against the ground truth ``gt``.

    Results with a ``file_name`` are matched by it; a ``detect`` run without
    ``--gt`` (from ``run.json`` beside the file) is refused when they lack it.

    Raises
    ------
    BadInputError
        Empty or malformed file, missing keys, non-numbers, NaN/inf, huge
        values, negative sizes, image ids the ground truth lacks (with counts),
        untrustworthy ids, category ids the ground truth lacks (unless
        ``unknown`` is given).
    """
    path = Path(path)
    return parse_coco_results(read_json(path), gt, source=path, unknown=unknown,
                              trust_ids=not detect_run_without_gt(path))


def coco_results(pred: Predictions) -> list[dict[str, Any]]:
    """The COCO results list of ``pred`` (bbox as xywh)."""
    xywh = box_ops.convert(pred.boxes, "xyxy", "xywh") if len(pred) else np.zeros((0, 4))
    return [{"image_id": int(pred.image_ids[i]), "category_id": int(pred.labels[i]),
             "bbox": [float(v) for v in xywh[i]], "score": float(pred.scores[i])} for i in range(len(pred))]


def write_coco_results(pred: Predictions, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``pred`` as a COCO results JSON (atomically; full float precision)."""
    from cvtool.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(coco_results(pred), separators=(",", ":")) + "\n", overwrite=overwrite)
    return path


# ---------------------------------------------------------------------------
# JSONL records
# ---------------------------------------------------------------------------


def detection_record(file: str, detections: Any, *, width: int, height: int,
                     class_names: Sequence[str] | None = None,
                     category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The JSONL record of one image.

    Parameters
    ----------
    file : str
        The input's relative path.
    detections : Detections
        ``boxes`` (xyxy), ``scores``, ``labels`` (class indices).
    width, height : int
        Image size.
    class_names, category_ids : sequence, optional
        Per class index; when given the record carries ``names`` / ``category_ids``.
    """
    labels = [int(v) for v in np.asarray(detections.labels).reshape(-1)]
    rec: dict[str, Any] = {
        "file": file, "width": int(width), "height": int(height),
        "boxes": [[float(v) for v in row] for row in np.asarray(detections.boxes).reshape(-1, 4)],
        "scores": [float(v) for v in np.asarray(detections.scores).reshape(-1)],
        "labels": labels,
    }
    if class_names is not None:
        rec["names"] = [str(class_names[k]) for k in labels]
    if category_ids is not None:
        rec["category_ids"] = [int(category_ids[k]) for k in labels]
    return rec


def write_jsonl(records: Iterable[dict[str, Any]], path: str | os.PathLike[str], *,
                overwrite: bool = False) -> Path:
    """Write records one per line (atomically, streamed)."""
    from cvtool.io.atomic import atomic_open

    path = Path(path)
    with atomic_open(path, "w", overwrite=overwrite) as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return path


def read_jsonl_records(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` pairs; blank lines and a final ``{"summary": ...}`` record skipped."""
    path = Path(path)
    text = read_text(path)
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise BadInputError(f"{path}:{n}: line of {len(line)} characters; records are limited to "
                                f"{MAX_LINE_CHARS} characters")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise BadInputError(f"{path}:{n}: JSON nested too deeply") from None
        except ValueError:  # an integer literal beyond Python's digit limit (4300 digits)
            raise BadInputError(f"{path}:{n}: JSON number with too many digits") from None
        if not isinstance(rec, dict):
            raise BadInputError(f"{path}:{n}: expected one JSON object per line")
        if "summary" in rec and "file" not in rec:
            continue
        out.append((n, rec))
    if not out and not text.strip():
        raise BadInputError(f"{path}: empty file")
    return out


def _numbers(rec: dict, key: str, where: str, n: int | None, *, rows: bool = False) -> np.ndarray:
    value = rec.get(key)
    if not isinstance(value, list) or (n is not None and len(value) != n):
        raise BadInputError(f"{where}: '{key}' must be a list" + (f" of {n} entries" if n is not None else ""))
    try:
        arr = np.array(value, dtype=np.float64)
        if rows:
            arr = arr.reshape(-1, 4) if arr.size == 0 or (arr.ndim == 2 and arr.shape[1] == 4) else None
    except (TypeError, ValueError):
        arr = None
    if arr is None or (not rows and arr.ndim != 1):
        raise BadInputError(f"{where}: '{key}' must hold numbers" + (" in rows of 4" if rows else ""))
    if not np.isfinite(arr).all():
        raise BadInputError(f"{where}: '{key}' contains NaN or infinite values")
    if (np.abs(arr) > (MAX_COORD if rows else _MAX_ID)).any():
        raise BadInputError(f"{where}: '{key}' holds values too large in magnitude")
    return arr


def _record_categories(rec: dict, n: int, gt: Dataset, where: str) -> tuple[np.ndarray, list[str]]:
    """Category id per box (-1 where the ground truth lacks the class) and the unknown classes' keys."""
    ordered = sorted(c.id for c in gt.categories)
    if isinstance(rec.get("names"), list):   # names first: category ids belong to the dataset the model knew
        by_name = {c.name: c.id for c in gt.categories}
        names = rec["names"]
        if len(names) != n or not all(isinstance(x, str) for x in names):
            raise BadInputError(f"{where}: 'names' must be a list of {n} strings")
        return np.array([by_name.get(x, -1) for x in names], np.int64), [x for x in names if x not in by_name]
    if "category_ids" in rec:
        ids = _numbers(rec, "category_ids", where, n)
        if (ids != np.round(ids)).any():
            raise BadInputError(f"{where}: 'category_ids' must be integers")
        ids = ids.astype(np.int64)
        lost = ~np.isin(ids, ordered)
        return np.where(lost, -1, ids), [f"category id {ids[i]}" for i in np.flatnonzero(lost)]
    if "names" in rec:
        raise BadInputError(f"{where}: 'names' must be a list of {n} strings")
    if "labels" not in rec:
        raise BadInputError(f"{where}: record needs 'category_ids', 'names' or 'labels'")
    idx = _numbers(rec, "labels", where, n)
    if idx.size and ((idx != np.round(idx)).any() or idx.min() < 0):
        raise BadInputError(f"{where}: class indices must be integers >= 0")
    idx = idx.astype(np.int64)
    lost = idx >= len(ordered)
    cats = np.array(ordered + [-1], np.int64)[np.where(lost, len(ordered), idx)] if idx.size \
        else np.zeros(0, np.int64)
    return cats, [f"class index {i}" for i in idx[lost]]


def _check_record_size(rec: dict[str, Any], gt_size: tuple[int, int] | None, where: str) -> None:
    """A record's ``width``/``height`` (the image as ``detect`` decoded it) must be the
    ground truth's: boxes found on a differently sized or rotated image (EXIF orientation
    read otherwise, another image of that name) are in another pixel frame."""
    w, h = rec.get("width"), rec.get("height")
    if not gt_size or not all(isinstance(v, int) and not isinstance(v, bool) for v in (w, h)):
        return
    gw, gh = gt_size
    if gw > 0 and gh > 0 and (w, h) != (gw, gh):
        hint = (" (rotated: EXIF orientation applied on one side only?)" if (w, h) == (gh, gw)
                else " (another image of that name, or a resized copy?)")
        raise BadInputError(f"{where}: {rec.get('file')!r} was detected on a {w}x{h} image, but the ground "
                            f"truth's image is {gw}x{gh}; its boxes are in another pixel frame{hint}")


def read_detections_jsonl(path: str | os.PathLike[str], gt: Dataset, *, require_scores: bool = True,
                          unknown: dict[str, int] | None = None, covered: set[int] | None = None) -> Predictions:
    """Read ``detect``'s JSONL against ``gt`` (records matched by file name).

    Parameters
    ----------
    require_scores : bool
        When false, records without ``scores`` (proposals) get scores that
        fall with rank (``1, 1/2, 1/3, ...``).
    unknown : dict, optional
        When given, boxes of classes the ground truth lacks are dropped and
        counted here (class -> count); else refused.
    covered : set, optional
        When given, receives the ids of the ground-truth images that have a
        record (``detect`` writes one per image, boxes or not).

    Raises
    ------
    BadInputError
        Malformed lines, unknown files, two records for one image, lengths
        that disagree, NaN/inf, inverted boxes, unknown classes.
    """
    path = Path(path)
    match = FileMatcher(gt)
    sizes = {im.id: (im.width, im.height) for im in gt.images}
    seen: dict[int, int] = {}
    parts: list[tuple[np.ndarray, ...]] = []
    for n, rec in read_jsonl_records(path):
        where = f"{path}:{n}"
        image_id = match(rec.get("file"), where)
        if image_id in seen:
            raise BadInputError(f"{where}: image {rec.get('file')!r} already has a record at line {seen[image_id]}")
        seen[image_id] = n
        if covered is not None:
            covered.add(image_id)
        _check_record_size(rec, sizes.get(image_id), where)
        b = _numbers(rec, "boxes", where, None, rows=True)
        inverted = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if inverted.any():
            i = int(np.flatnonzero(inverted)[0])
            raise BadInputError(f"{where}: box {i} {b[i].tolist()} has a negative width or height (xyxy)")
        if "scores" in rec or require_scores:
            s = _numbers(rec, "scores", where, len(b))
        else:
            s = 1.0 / np.arange(1, len(b) + 1)
        cats, lost = _record_categories(rec, len(b), gt, where) if len(b) else (np.zeros(0, np.int64), [])
        count_unknown(unknown, lost, where)
        keep = cats >= 0 if lost else slice(None)
        parts.append((np.full(len(b), image_id, np.int64)[keep], b[keep], s[keep], cats[keep]))
    if not parts:
        return Predictions()
    ids, b, s, cats = (np.concatenate(x) for x in zip(*parts))
    return Predictions(image_ids=ids, boxes=b.reshape(-1, 4), scores=s, labels=cats)


def read_predictions(path: str | os.PathLike[str], gt: Dataset, *, format: str | None = None,
                     unknown: dict[str, int] | None = None, covered: set[int] | None = None) -> Predictions:
    """Detections from a COCO results JSON or a JSONL file (``format`` from the extension when None).

    ``unknown``: see :func:`read_coco_results` / :func:`read_detections_jsonl`.
    """
    path = Path(path)
    if format is None:
        format = "jsonl" if path.suffix.lower() == ".jsonl" else "coco"
    if format not in PRED_FORMATS:
        raise ValueError(f"unknown results format {format!r}; valid: {', '.join(PRED_FORMATS)}")
    if format == "jsonl":
        return read_detections_jsonl(path, gt, unknown=unknown, covered=covered)
    return read_coco_results(path, gt, unknown=unknown)

"""COCO annotation files (``instances_*.json``): read into and write from a :class:`Dataset`.

Boxes are ``[x, y, width, height]`` pixels in the file and xyxy in memory.
The reader keeps each annotation's ``id``, ``area`` and ``iscrowd`` (and a
``difficult`` flag, a cvtool extension written only when set); the writer
writes ``area`` from the dataset when it carries one, else the box area.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cvtool import boxes as box_ops
from cvtool.datasets._files import read_json
from cvtool.datasets.core import INT64_MAX, INT64_MIN, Category, Dataset, ImageRecord, check_relative_name
from cvtool.errors import BadInputError


def _field(rec: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(rec, dict):
        raise BadInputError(f"{where}: expected an object, got {type(rec).__name__}")
    if key not in rec:
        raise BadInputError(f"{where}: missing '{key}'")
    value = rec[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not (math.isfinite(value) and value == int(value))):
            raise BadInputError(f"{where}: '{key}' must be an integer, got {value!r}")
        value = int(value)
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadInputError(f"{where}: '{key}' is {value}, beyond 64-bit integers")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise BadInputError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    return value


def _list(data: dict, key: str, path: Path, *, required: bool = True) -> list:
    if key not in data:
        if required:
            raise BadInputError(f"{path}: missing top-level '{key}' list")
        return []
    value = data[key]
    if not isinstance(value, list):
        raise BadInputError(f"{path}: '{key}' must be a list")
    return value


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _annotation_arrays_fast(anns: list) -> _Arrays | None:
    """Annotation arrays by whole-column conversion; None when anything is off.

    The caller then runs :func:`_annotation_arrays_checked`, which finds and
    names the bad record.
    """
    k = len(anns)
    if k == 0:
        return None
    try:
        ids = np.array([a["id"] for a in anns])
        image_ids = np.array([a["image_id"] for a in anns])
        labels = np.array([a["category_id"] for a in anns])
        xywh = np.array([a["bbox"] for a in anns])
        raw_area = [a.get("area") for a in anns]
        crowd = np.array([a.get("iscrowd", 0) for a in anns])
        difficult = np.array([a.get("difficult", 0) for a in anns])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if any(x.dtype.kind != "i" or x.shape != (k,) for x in (ids, image_ids, labels)):  # uint64: beyond int64
        return None
    if xywh.dtype.kind not in "iuf" or xywh.shape != (k, 4):
        return None
    if crowd.dtype.kind not in "iub" or crowd.shape != (k,) or not np.isin(crowd, (0, 1)).all():
        return None
    if difficult.dtype.kind not in "iub" or difficult.shape != (k,):
        return None
    has_area = np.array([v is not None for v in raw_area])
    try:
        area = np.array([v if v is not None else 0.0 for v in raw_area])
    except (TypeError, ValueError):  # a list or other odd value among the areas
        return None
    if area.dtype.kind not in "iuf" or area.shape != (k,):
        return None
    return (ids.astype(np.int64), image_ids.astype(np.int64), labels.astype(np.int64), xywh.astype(np.float64),
            area.astype(np.float64), has_area, crowd.astype(bool), difficult.astype(bool))


def _annotation_arrays_checked(anns: list, path: Path) -> _Arrays:
    """Annotation arrays record by record, raising on the first bad one (naming it)."""
    k = len(anns)
    ids = np.zeros(k, np.int64)
    image_ids = np.zeros(k, np.int64)
    labels = np.zeros(k, np.int64)
    xywh = np.zeros((k, 4), np.float64)
    area = np.zeros(k, np.float64)
    has_area = np.zeros(k, bool)
    crowd = np.zeros(k, bool)
    difficult = np.zeros(k, bool)
    for i, rec in enumerate(anns):
        where = f"{path}: annotations[{i}]"
        ids[i] = _field(rec, "id", int, where)
        where = f"{path}: annotation id {ids[i]}"
        image_ids[i] = _field(rec, "image_id", int, where)
        labels[i] = _field(rec, "category_id", int, where)
        bbox = _field(rec, "bbox", list, where)
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise BadInputError(f"{where}: 'bbox' must be 4 numbers [x, y, width, height], got {bbox!r}")
        xywh[i] = bbox
        if "area" in rec:
            a = rec["area"]
            if isinstance(a, bool) or not isinstance(a, (int, float)):
                raise BadInputError(f"{where}: 'area' must be a number, got {a!r}")
            area[i] = a
            has_area[i] = True
        c = rec.get("iscrowd", 0)
        if c not in (0, 1, True, False):
            raise BadInputError(f"{where}: 'iscrowd' must be 0 or 1, got {c!r}")
        crowd[i] = bool(c)
        difficult[i] = bool(rec.get("difficult", 0))
    return ids, image_ids, labels, xywh, area, has_area, crowd, difficult


def parse_coco(data: Any, *, source: str | Path, root: Path | None) -> Dataset:
    """A :class:`Dataset` from an already parsed COCO document (not validated)."""
    path = Path(source)
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a COCO object with images, annotations and categories")
    images = []
    seen_names: dict[str, int] = {}
    for i, rec in enumerate(_list(data, "images", path)):
        where = f"{path}: images[{i}]"
        im = ImageRecord(id=_field(rec, "id", int, where), file_name=_field(rec, "file_name", str, where),
                         width=_field(rec, "width", int, where), height=_field(rec, "height", int, where))
        if root is not None:
            try:  # lexical check here; image_path() adds the symlink check when a file is opened
                check_relative_name(im.file_name)
            except BadInputError as exc:
                raise BadInputError(f"{where}: {exc}") from None
        if im.file_name in seen_names:
            raise BadInputError(f"{where}: file_name {im.file_name!r} repeats images[{seen_names[im.file_name]}]")
        seen_names[im.file_name] = i
        images.append(im)
    categories = []
    for i, rec in enumerate(_list(data, "categories", path)):
        where = f"{path}: categories[{i}]"
        categories.append(Category(id=_field(rec, "id", int, where), name=str(_field(rec, "name", str, where))))
    anns = _list(data, "annotations", path)
    k = len(anns)
    arrays = _annotation_arrays_fast(anns) or _annotation_arrays_checked(anns, path)
    ids, image_ids, labels, xywh, area, has_area, crowd, difficult = arrays
    if not np.isfinite(xywh).all():
        i = int(np.flatnonzero(~np.isfinite(xywh).all(axis=1))[0])
        raise BadInputError(f"{path}: annotation id {ids[i]} has a non-finite bbox {xywh[i].tolist()}")
    ann_area = None
    if k and has_area.any():
        # keep the file's areas; annotations without one get their box area
        ann_area = np.where(has_area, area, xywh[:, 2] * xywh[:, 3])
    return Dataset(images=images, categories=categories, ann_image_ids=image_ids,
                   ann_boxes=box_ops.convert(xywh, "xywh", "xyxy"), ann_labels=labels,
                   ann_iscrowd=crowd, ann_difficult=difficult, ann_area=ann_area, ann_ids=ids, root=root)


def read_coco(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
              clip: bool = False) -> Dataset:
    """Read a COCO annotation file.

    Parameters
    ----------
    path : path-like
        The JSON file.
    root : path-like, optional
        Folder the images' ``file_name`` are relative to (default: the JSON's folder).
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.

    Returns
    -------
    Dataset
        Validated; ``ann_ids``, ``ann_area`` (when the file has areas) and
        ``ann_iscrowd`` as in the file.

    Raises
    ------
    BadInputError
        Unreadable, empty or malformed file; missing fields; duplicate ids;
        unknown image or category ids; empty, negative, non-finite or
        out-of-image boxes (unless ``clip``); file names escaping ``root``.
        The message names the file and the record.
    """
    path = Path(path)
    root_path = Path(root) if root is not None else path.parent
    ds = parse_coco(read_json(path), source=path, root=root_path)
    return ds.validate(source=str(path), clip=clip)


def coco_document(ds: Dataset) -> dict[str, Any]:
    """The COCO JSON object of ``ds`` (boxes as xywh, ``area`` and ``iscrowd`` per annotation)."""
    xywh = box_ops.convert(ds.ann_boxes, "xyxy", "xywh") if ds.num_annotations else np.zeros((0, 4))
    areas = ds.areas()
    ids = ds.ann_ids if ds.ann_ids is not None else np.arange(1, ds.num_annotations + 1)
    anns = []
    for i in range(ds.num_annotations):
        rec = {"id": int(ids[i]), "image_id": int(ds.ann_image_ids[i]), "category_id": int(ds.ann_labels[i]),
               "bbox": [float(v) for v in xywh[i]], "area": float(areas[i]), "iscrowd": int(ds.ann_iscrowd[i])}
        if ds.ann_difficult[i]:
            rec["difficult"] = 1
        anns.append(rec)
    return {
        "images": [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
                   for im in ds.images],
        "annotations": anns,
        "categories": [{"id": c.id, "name": c.name} for c in ds.categories],
    }


def write_coco(ds: Dataset, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``ds`` as a COCO annotation file (atomically).

    ``file_name`` entries are written as they are (relative to ``ds.root``);
    numbers are written with full precision, so reading the file back gives
    the same boxes.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    from cvtool.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(coco_document(ds), separators=(",", ":")) + "\n", overwrite=overwrite)
    return path


def write_coco_folder(ds: Dataset, out: str | os.PathLike[str], *, overwrite: bool = False,
                      images: str = "link") -> Path:
    """Write ``OUT/annotations.json`` with the images under ``OUT/images/`` (the ``prepare`` split layout).

    Parameters
    ----------
    images : {'link', 'copy', 'none'}
        Hard-link (copy where impossible) or copy each image to
        ``OUT/images/<name>`` (a leading ``images/`` or ``JPEGImages/``
        folder of ``file_name`` dropped), or leave the images and keep
        ``file_name`` as it is.

    Returns
    -------
    Path
        ``OUT/annotations.json``.
    """
    from dataclasses import replace

    from cvtool.datasets._files import IMAGE_MODES, place_image, strip_image_folder

    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    out = Path(out)
    records = []
    for im in ds.images:
        if images == "none":
            records.append(im)
            continue
        rel = "images/" + strip_image_folder(im.file_name).as_posix()
        place_image(ds.image_path(im), out / rel, mode=images, overwrite=overwrite)
        records.append(replace(im, file_name=rel))
    return write_coco(replace(ds, images=records, root=out), out / "annotations.json", overwrite=overwrite)

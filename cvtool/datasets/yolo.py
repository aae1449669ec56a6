"""YOLO datasets: ``images/`` beside ``labels/`` with one ``.txt`` per image.

Each label line is ``class cx cy w h``: a 0-based class index and the box
centre and size divided by the image width and height (``cxcywhn``).  Class
names come from ``data.yaml`` (``names`` as a list or ``{index: name}``) or
``classes.txt`` (one per line, in the folder or its parent).  In memory the
class with index ``k`` has category id ``k + 1``.  Image sizes are read from
the image headers (needed to turn normalised boxes into pixels).

Layouts read:

* ``DIR/images/**.png`` with ``DIR/labels/**.txt`` (same relative paths);
* a ``data.yaml`` whose ``split`` entry (``train:``, ``val:``, ``test:``)
  names an images folder inside its ``path:`` (default: the yaml's folder;
  absolute entries and ``..`` are refused); the labels folder is the images path with its last ``images``
  component replaced by ``labels`` (the Ultralytics rule).

An image without a label file has no objects; a label file without an image
is an error.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cvtool import boxes as box_ops
from cvtool.datasets._files import (IMAGE_MODES, IMAGE_SUFFIXES, find_classes_file, fmt_num, image_size,
                                    place_image, read_class_names, read_text, strip_image_folder)
from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions, safe_join
from cvtool.errors import BadInputError


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: expected a mapping with 'names' and split entries")
    return data


def _yaml_names(data: dict[str, Any], path: Path) -> list[str] | None:
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise BadInputError(f"{path}: 'names' keys must be class indices") from None
        if keys != list(range(len(keys))):
            raise BadInputError(f"{path}: 'names' indices must be 0..{len(keys) - 1}")
        return [str(names[k] if k in names else names[str(k)]) for k in keys]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise BadInputError(f"{path}: 'names' must be a list or a mapping index -> name")


def _labels_dir_for(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir.parent / "labels"


def _locate(path: Path, split: str) -> tuple[Path, Path, Path, list[str] | None]:
    """(root, images dir, labels dir, names or None) for a yaml file or a folder."""
    yaml_path = path if path.is_file() else (path / "data.yaml" if (path / "data.yaml").is_file() else None)
    if yaml_path is not None:
        data = _read_yaml(yaml_path)
        names = _yaml_names(data, yaml_path)
        root = yaml_path.parent
        if isinstance(data.get("path"), str) and data["path"]:
            root_name = data["path"]
            root = Path(root_name) if os.path.isabs(root_name) else yaml_path.parent / root_name
        entry = data.get(split)
        if entry is None:
            # a single-split folder (as write_yolo makes): only train: images
            if data.get("train") == "images" and not any(k in data for k in ("val", "test")):
                return root, root / "images", root / "labels", names
            have = [k for k in ("train", "val", "test") if k in data]
            raise BadInputError(f"{yaml_path}: no '{split}' entry (it has: {', '.join(have) or 'none'})")
        if not isinstance(entry, str):
            raise BadInputError(f"{yaml_path}: '{split}' must be one images folder (lists are not supported)")
        try:  # 'path:' sets the root; split entries must stay inside it
            images_dir = safe_join(root, entry)
        except BadInputError as exc:
            raise BadInputError(f"{yaml_path}: '{split}': {exc}") from None
        if not images_dir.is_dir():
            raise BadInputError(f"{yaml_path}: '{split}' folder {images_dir} does not exist")
        return root, images_dir, _labels_dir_for(images_dir), names
    base = path / split if (path / split / "labels").is_dir() else path
    if not (base / "labels").is_dir():
        raise BadInputError(f"{path}: no labels/ folder (or data.yaml) found")
    if not (base / "images").is_dir():
        raise BadInputError(f"{base}: has labels/ but no images/ folder")
    return base, base / "images", base / "labels", None


def _parse_label_file(path: Path, n_classes: int | None, *, with_scores: bool) -> np.ndarray:
    """(L, 5) or (L, 6) float rows: class, cx, cy, w, h[, score]."""
    rows = []
    width = 6 if with_scores else 5
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width:
            want = "class cx cy w h" + (" score" if with_scores else "")
            raise BadInputError(f"{path}:{n}: expected {width} numbers ({want}), got {len(parts)}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise BadInputError(f"{path}:{n}: not a number in {line.strip()!r}") from None
        if not np.isfinite(vals).all():
            raise BadInputError(f"{path}:{n}: NaN or infinite value")
        k = vals[0]
        if k != int(k) or k < 0 or (n_classes is not None and k >= n_classes):
            valid = f"0..{n_classes - 1}" if n_classes is not None else "a non-negative integer"
            raise BadInputError(f"{path}:{n}: class {parts[0]!r} is not a class index ({valid})")
        if vals[3] <= 0 or vals[4] <= 0:
            raise BadInputError(f"{path}:{n}: box has zero or negative size (w={parts[3]}, h={parts[4]})")
        rows.append(vals)
    return np.array(rows, dtype=np.float64).reshape(-1, width)


def _scan(images_dir: Path, labels_dir: Path, root: Path) -> list[tuple[Path, str, Path]]:
    """(image path, file_name relative to root, label path) for every image, sorted."""
    out = []
    for p in sorted(images_dir.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        rel_in = p.relative_to(images_dir)
        try:
            file_name = p.relative_to(root).as_posix()
        except ValueError:
            file_name = p.as_posix()
        safe_join(root, file_name)
        out.append((p, file_name, labels_dir / rel_in.with_suffix(".txt")))
    return out


def read_yolo(path: str | os.PathLike[str], *, split: str = "train", clip: bool = False) -> Dataset:
    """Read a YOLO dataset (folder or ``data.yaml``).

    Parameters
    ----------
    path : path-like
        ``data.yaml``, a folder holding it, or a folder with ``images/`` and
        ``labels/`` (or ``{split}/images`` and ``{split}/labels``).
    split : str
        The ``data.yaml`` entry to read.
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.

    Returns
    -------
    Dataset
        Image ids 1.. in sorted file order; category id = class index + 1.

    Raises
    ------
    BadInputError
        Malformed lines (naming file and line), unknown class indices, label
        files without an image, unreadable images, boxes outside the image.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or folder")
    root, images_dir, labels_dir, names = _locate(path, split)
    if names is None:
        classes = find_classes_file(images_dir.parent)
        names = read_class_names(classes) if classes is not None else None
    items = _scan(images_dir, labels_dir, root)
    wanted = {lab for _, _, lab in items}
    if labels_dir.is_dir():
        for lab in sorted(labels_dir.rglob("*.txt")):
            if lab not in wanted:
                raise BadInputError(f"{lab}: label file without an image in {images_dir}")
    images, ids, rows = [], [], []
    for i, (img, file_name, lab) in enumerate(items, start=1):
        w, h = image_size(img)
        images.append(ImageRecord(id=i, file_name=file_name, width=w, height=h))
        if lab.is_file():
            r = _parse_label_file(lab, len(names) if names is not None else None, with_scores=False)
            r[:, 1:] = box_ops.convert(r[:, 1:], "cxcywhn", "xyxy", image_size=(w, h))
            rows.append(r)
            ids.append(np.full(len(r), i, np.int64))
    table = np.concatenate(rows) if rows else np.zeros((0, 5))
    if names is None:
        top = int(table[:, 0].max()) + 1 if len(table) else 0
        names = [str(k) for k in range(top)]
    ds = Dataset(images=images, categories=[Category(k + 1, n) for k, n in enumerate(names)],
                 ann_image_ids=np.concatenate(ids) if ids else np.zeros(0, np.int64),
                 ann_boxes=table[:, 1:].copy(), ann_labels=table[:, 0].astype(np.int64) + 1,
                 ann_iscrowd=np.zeros(len(table), bool), ann_difficult=np.zeros(len(table), bool), root=root)
    return ds.validate(source=str(labels_dir), clip=clip)


def read_yolo_predictions(labels_dir: str | os.PathLike[str], gt: Dataset) -> Predictions:
    """``detect --format yolo`` output (``labels/*.txt`` of ``class cx cy w h score``) against ``gt``.

    Label files are matched to ground-truth images by relative path without
    the extension (``images/a/b.png`` <-> ``a/b.txt``), else by unique stem.
    Class index ``k`` maps to the ``k``-th ground-truth category by id.
    """
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise BadInputError(f"{labels_dir}: no such folder")
    by_rel: dict[str, ImageRecord] = {}
    by_stem: dict[str, list[ImageRecord]] = {}
    for im in gt.images:
        rel = strip_image_folder(im.file_name).with_suffix("")
        by_rel[rel.as_posix()] = im
        by_stem.setdefault(rel.name, []).append(im)
    cat_ids = np.array(sorted(c.id for c in gt.categories), np.int64)
    parts = []
    for lab in sorted(labels_dir.rglob("*.txt")):
        key = lab.relative_to(labels_dir).with_suffix("").as_posix()
        im = by_rel.get(key)
        if im is None:
            hits = by_stem.get(PurePosixPath(key).name, [])
            if len(hits) != 1:
                raise BadInputError(f"{lab}: matches {len(hits)} ground-truth images")
            im = hits[0]
        r = _parse_label_file(lab, len(cat_ids), with_scores=True)
        b = box_ops.convert(r[:, 1:5], "cxcywhn", "xyxy", image_size=(im.width, im.height))
        parts.append((np.full(len(r), im.id, np.int64), b, r[:, 5], cat_ids[r[:, 0].astype(np.int64)]))
    if not parts:
        return Predictions()
    ids, b, s, c = (np.concatenate(x) for x in zip(*parts))
    return Predictions(image_ids=ids, boxes=b.reshape(-1, 4), scores=s, labels=c)


def label_lines(boxes: np.ndarray, class_index: np.ndarray, width: int, height: int,
                scores: np.ndarray | None = None) -> str:
    """YOLO label text for one image (full float precision)."""
    n = np.asarray(boxes, np.float64).reshape(-1, 4)
    rel = box_ops.convert(n, "xyxy", "cxcywhn", image_size=(width, height)) if len(n) else n
    lines = []
    for i in range(len(rel)):
        vals = [str(int(class_index[i]))] + [fmt_num(v) for v in rel[i]]
        if scores is not None:
            vals.append(fmt_num(scores[i]))
        lines.append(" ".join(vals) + "\n")
    return "".join(lines)


def write_yolo(ds: Dataset, out: str | os.PathLike[str], *, overwrite: bool = False,
               images: str = "link") -> Path:
    """Write ``ds`` as a YOLO folder: ``OUT/images``, ``OUT/labels``, ``OUT/data.yaml``, ``OUT/classes.txt``.

    Parameters
    ----------
    ds : Dataset
        Its images must be readable under ``ds.root`` unless ``images='none'``.
    out : path-like
    overwrite : bool
        Replace files that exist (else FileExistsError).
    images : {'link', 'copy', 'none'}
        Hard-link the images (copying where links are impossible), copy
        them, or leave them (annotations only; the images must already be
        in ``OUT/images``).  A leading ``images/`` or ``JPEGImages/`` folder of
        ``file_name`` is dropped: ``images/a.png`` goes to ``OUT/images/a.png``.

    Returns
    -------
    Path
        ``OUT/data.yaml``.

    Notes
    -----
    Classes are numbered 0.. in category-id order; crowd and difficult flags
    are not representable and are dropped.
    """
    import yaml

    from cvtool.io.atomic import atomic_write_text

    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    out = Path(out)
    cats = sorted(ds.categories, key=lambda c: c.id)
    index_of = {c.id: k for k, c in enumerate(cats)}
    lab_index = np.array([index_of[int(c)] for c in ds.ann_labels], np.int64)
    order = np.argsort(ds.ann_image_ids, kind="stable")
    starts = np.searchsorted(ds.ann_image_ids[order], [im.id for im in ds.images], side="left")
    ends = np.searchsorted(ds.ann_image_ids[order], [im.id for im in ds.images], side="right")
    for im, s, e in zip(ds.images, starts, ends):
        rel = strip_image_folder(im.file_name)
        place_image(ds.image_path(im), out / "images" / rel, mode=images, overwrite=overwrite)
        idx = order[s:e]
        atomic_write_text(out / "labels" / rel.with_suffix(".txt"),
                          label_lines(ds.ann_boxes[idx], lab_index[idx], im.width, im.height),
                          overwrite=overwrite)
    names = [c.name for c in cats]
    doc = {"path": ".", "train": "images", "nc": len(names), "names": {k: n for k, n in enumerate(names)}}
    atomic_write_text(out / "classes.txt", "".join(f"{n}\n" for n in names), overwrite=overwrite)
    atomic_write_text(out / "data.yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                      overwrite=overwrite)
    return out / "data.yaml"

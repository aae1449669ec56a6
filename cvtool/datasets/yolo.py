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
  names an images folder inside its ``path:`` (default, and when the folder
  named does not exist: the yaml's folder; absolute entries and ``..`` are
  refused); the labels folder is the images path with its last ``images``
  component replaced by ``labels`` (the Ultralytics rule).  An entry may
  also be a ``.txt`` list of image paths relative to the list's folder
  (as Datumaro's and Ultralytics' exports write).  The yaml is read
  without anchors or aliases and at most 1 MiB (see :func:`cvtool.datasets._files.read_yaml`);
* a Darknet / CVAT "YOLO 1.1" export: ``obj.data`` (``train = data/train.txt``,
  ``valid = ...``, ``names = data/obj.names``), ``obj.names``, a list of image
  paths per split and ``obj_{split}_data/`` with a ``.txt`` beside each
  image.  Paths in the lists are taken relative to the export folder (a
  leading ``data/`` dropped); an absolute path keeps only its base name.
  Without images in the export, ``images=`` names the folder holding them.

An image without a label file has no objects; a label file without an image
is an error.  Boxes that leave the image by less than one pixel (6-decimal
normalised coordinates) are clipped; larger excursions are refused unless
``clip``.  Without class names, class indices are bounded by
:data:`MAX_CLASSES`.

Written layout (:func:`write_yolo`, :func:`write_yolo_splits`): ``OUT/images``
and ``OUT/labels`` (or ``OUT/{split}/images`` and ``OUT/{split}/labels``) with
one ``OUT/data.yaml`` that Ultralytics reads (``train``, ``val``, ``test``,
``nc``, ``names: {index: name}``, no ``path:``) and ``OUT/classes.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cvtool import boxes as box_ops
from cvtool.datasets._files import (IMAGE_MODES, IMAGE_SUFFIXES, find_classes_file, fmt_num, image_size,
                                    place_image, read_class_names, read_text, read_yaml, strip_image_folder,
                                    walk_files)
from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions, check_relative_name, safe_join
from cvtool.errors import BadInputError, UsageError
from cvtool.io.atomic import atomic_write_text


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
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


MAX_CLASSES = 2 ** 16
"""Most classes a YOLO dataset without class names may use (indices 0..65,535)."""

DARKNET_MARKERS = ("obj.data", "obj.names")
"""Files that mark a Darknet / CVAT "YOLO 1.1" export."""

_IMAGES_HINT = "images=, --image-dir on the command line"

_DARKNET_SPLIT_KEYS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}

_Item = tuple[Path, str, Path]
"""(image path, file_name relative to the dataset root, label path)."""


def _labels_dir_for(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir.parent / "labels"


def _yaml_root(yaml_path: Path, data: dict[str, Any]) -> Path:
    """Dataset root of a data.yaml: its ``path:`` (relative to the yaml's folder), else the yaml's folder.

    An absolute ``path:`` that does not exist (a dataset moved since it was
    written) falls back to the yaml's folder, as do relative ones that do not.
    """
    root = yaml_path.parent
    if isinstance(data.get("path"), str) and data["path"]:
        cand = Path(data["path"]) if os.path.isabs(data["path"]) else yaml_path.parent / data["path"]
        if cand.is_dir():
            root = cand
    return root


def _locate(path: Path, split: str, images: Path | None) -> tuple[Path, Path, Path, list[str] | None]:
    """(root, images dir, labels dir, names or None) for a yaml file or a folder."""
    yaml_path = path if path.is_file() else (path / "data.yaml" if (path / "data.yaml").is_file() else None)
    if yaml_path is not None:
        if images is not None:
            raise UsageError(f"{yaml_path}: images= does not apply to a data.yaml dataset (its '{split}' entry "
                             "names the images)")
        data = _read_yaml(yaml_path)
        names = _yaml_names(data, yaml_path)
        root = _yaml_root(yaml_path, data)
        entry = data.get(split)
        if entry is None:
            # a single-split folder: only train: images
            if data.get("train") == "images" and not any(data.get(k) for k in ("val", "test")):
                return root, root / "images", root / "labels", names
            have = [k for k in ("train", "val", "test") if data.get(k)]
            raise BadInputError(f"{yaml_path}: no '{split}' entry (it has: {', '.join(have) or 'none'})")
        if not isinstance(entry, str):
            raise BadInputError(f"{yaml_path}: '{split}' must be one images folder or .txt list of images "
                                "(YAML lists of folders are not supported)")
        try:  # 'path:' sets the root; split entries must stay inside it
            images_dir = safe_join(root, entry)
        except BadInputError as exc:
            raise BadInputError(f"{yaml_path}: '{split}': {exc}") from None
        if images_dir.is_file() and images_dir.suffix.lower() == ".txt":  # a list of image paths
            return images_dir.parent, images_dir, images_dir, names
        if not images_dir.is_dir():
            raise BadInputError(f"{yaml_path}: '{split}' folder {images_dir} does not exist")
        if images_dir.name == "images":  # {split}/images: file names 'images/a.png' as in the other layouts
            root = images_dir.parent
        return root, images_dir, _labels_dir_for(images_dir), names
    base = path / split if (path / split / "labels").is_dir() else path
    if not (base / "labels").is_dir():
        raise BadInputError(f"{path}: no labels/ folder (or data.yaml) found")
    if images is not None:
        return images, images, base / "labels", None
    if not (base / "images").is_dir():
        raise BadInputError(f"{base}: has labels/ but no images/ folder (pass the folder holding the images: "
                            f"{_IMAGES_HINT})")
    return base, base / "images", base / "labels", None


def _parse_label_file(path: Path, n_classes: int | None, *, with_scores: bool,
                      line_numbers: list[int] | None = None) -> np.ndarray:
    """(L, 5) or (L, 6) float rows: class, cx, cy, w, h[, score]; each row's line number appended to
    ``line_numbers``."""
    rows = []
    width = 6 if with_scores else 5
    top = n_classes if n_classes is not None else MAX_CLASSES
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
        if k != int(k) or k < 0 or k >= top:
            valid = f"0..{top - 1}"
            raise BadInputError(f"{path}:{n}: class {parts[0]!r} is not a class index ({valid})")
        if vals[3] <= 0 or vals[4] <= 0:
            raise BadInputError(f"{path}:{n}: box has zero or negative size (w={parts[3]}, h={parts[4]})")
        rows.append(vals)
        if line_numbers is not None:
            line_numbers.append(n)
    return np.array(rows, dtype=np.float64).reshape(-1, width)


def ultralytics_label_path(image: Path) -> Path:
    """The label file of ``image`` by Ultralytics' rule: the last ``images`` folder becomes ``labels``, the
    suffix ``.txt`` (``a/images/b/c.jpg`` -> ``a/labels/b/c.txt``; no ``images`` folder: beside the image)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _listing_items(listing: Path) -> list[_Item]:
    """Items of a ``data.yaml`` split given as a ``.txt`` list of image paths.

    Paths are relative to the list's folder (a leading ``./`` is dropped, as
    Ultralytics does); absolute paths and ``..`` are refused, like every name
    read from a dataset file.  Labels follow :func:`ultralytics_label_path`.
    """
    base = listing.parent
    items: list[_Item] = []
    for n, line in enumerate(read_text(listing).splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        name = entry[2:] if entry.startswith("./") else entry
        try:
            img = safe_join(base, name)
        except BadInputError as exc:
            raise BadInputError(f"{listing}:{n}: {exc} (paths in the list are relative to its folder)") from None
        if not img.is_file():
            raise BadInputError(f"{listing}:{n}: image {name!r} not found in {base}")
        items.append((img, check_relative_name(name).as_posix(), ultralytics_label_path(img)))
    return items


def _scan(images_dir: Path, labels_dir: Path, root: Path) -> list[_Item]:
    """(image path, file_name relative to root, label path) for every image, sorted."""
    out = []
    for p in walk_files(images_dir, IMAGE_SUFFIXES):
        if not p.is_file():
            continue
        rel_in = p.relative_to(images_dir)
        try:
            file_name = p.relative_to(root).as_posix()
        except ValueError:
            file_name = p.as_posix()
        safe_join(root, file_name)
        out.append((p, file_name, labels_dir / rel_in.with_suffix(".txt")))
    return out


# ----------------------------------------------------------------- Darknet / CVAT "YOLO 1.1"
def is_darknet_folder(path: Path) -> bool:
    """A folder holding ``obj.data`` or ``obj.names`` (and no ``data.yaml``)."""
    return path.is_dir() and not (path / "data.yaml").is_file() and any(
        (path / m).is_file() for m in DARKNET_MARKERS)


def darknet_splits(root: Path) -> list[str]:
    """Splits (``train``, ``val``, ``test``) a Darknet export has a list or a folder for."""
    data = _read_obj_data(root / "obj.data") if (root / "obj.data").is_file() else {}
    return [s for s, keys in _DARKNET_SPLIT_KEYS.items()
            if any(k in data or (root / f"{k}.txt").is_file() or (root / f"obj_{k}_data").is_dir() for k in keys)]


def _read_obj_data(path: Path) -> dict[str, str]:
    """``key = value`` lines of a Darknet ``obj.data`` (``#`` comments, blank lines skipped)."""
    entries: dict[str, str] = {}
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise BadInputError(f"{path}:{n}: expected 'key = value'")
        key, value = line.split("=", 1)
        entries[key.strip()] = value.strip()
    return entries


def _export_names(root: Path, entry: str) -> list[PurePosixPath]:
    """Candidate paths under ``root`` for a path written in ``obj.data`` or ``train.txt``.

    Darknet resolves them from its own working folder, so they usually start
    with ``data/`` (the export folder itself); that prefix and ``./`` are
    tried without.  Absolute or ``..`` paths give no candidate.
    """
    entry = entry.strip().replace("\\", "/")
    cands = [entry]
    for prefix in ("./", "data/"):
        if entry.startswith(prefix):
            cands.append(entry[len(prefix):])
    out = []
    for c in cands:
        try:
            out.append(check_relative_name(c))
        except BadInputError:
            continue
    return out


def _find_image(folder: Path, rel: PurePosixPath, *, any_suffix: bool, by_base_name: bool) -> Path | None:
    """``folder/rel``, else (``by_base_name``) ``folder/<base name>``; with ``any_suffix`` ``rel`` is a
    stem tried with every image suffix."""
    names = [rel, PurePosixPath(rel.name)] if by_base_name and len(rel.parts) > 1 else [rel]
    for name in names:
        stems = [name.parent / (name.name + s) for s in IMAGE_SUFFIXES + tuple(x.upper() for x in IMAGE_SUFFIXES)] \
            if any_suffix else [name]
        for cand in stems:
            p = safe_join(folder, cand.as_posix())
            if p.is_file():
                return p
    return None


def _darknet_locate(root: Path, split: str, images: Path | None) -> tuple[Path, list[_Item], list[str] | None, Path]:
    """(dataset root, items, names, source) of a Darknet / CVAT YOLO 1.1 export."""
    obj_data = root / "obj.data"
    data = _read_obj_data(obj_data) if obj_data.is_file() else {}
    names_file = None
    if "names" in data:
        names_file = next((safe_join(root, c.as_posix()) for c in _export_names(root, data["names"])
                           if safe_join(root, c.as_posix()).is_file()), None)
        if names_file is None and (root / "obj.names").is_file():
            names_file = root / "obj.names"  # e.g. an absolute path from the machine that wrote obj.data
        if names_file is None:
            raise BadInputError(f"{obj_data}: names file {data['names']!r} not found in {root}")
    elif (root / "obj.names").is_file():
        names_file = root / "obj.names"
    names = read_class_names(names_file) if names_file is not None else None
    keys = _DARKNET_SPLIT_KEYS.get(split, (split,))
    listing = None
    for k in keys:
        if k in data:
            listing = next((safe_join(root, c.as_posix()) for c in _export_names(root, data[k])
                            if safe_join(root, c.as_posix()).is_file()), None)
            if listing is None and (root / f"{k}.txt").is_file():
                listing = root / f"{k}.txt"
            if listing is None:
                raise BadInputError(f"{obj_data}: '{k}' list {data[k]!r} not found in {root}")
            break
    if listing is None:
        listing = next((root / f"{k}.txt" for k in keys if (root / f"{k}.txt").is_file()), None)
    folders = [root / f"obj_{k}_data" for k in keys if (root / f"obj_{k}_data").is_dir()]
    img_root = images if images is not None else root
    labels: list[tuple[PurePosixPath, Path]] = []  # (image name relative to root, label file)
    if listing is not None:
        source = listing
        for n, line in enumerate(read_text(listing).splitlines(), start=1):
            if not line.strip():
                continue
            cands = _export_names(root, line)
            if not cands and folders:  # an absolute path from the exporting machine: its base name
                cands = [PurePosixPath(f.name) / PurePosixPath(line.strip().replace("\\", "/")).name
                         for f in folders]
            hit = next((c for c in cands if (root / c).with_suffix(".txt").is_file() or (root / c).is_file()), None)
            if hit is None:
                raise BadInputError(f"{listing}:{n}: neither the image nor its label file exists under {root}")
            labels.append((hit, (root / hit).with_suffix(".txt")))
    elif folders:
        source = folders[0]
        for folder in folders:
            for lab in walk_files(folder, (".txt",)):
                labels.append((PurePosixPath(lab.relative_to(root).with_suffix("").as_posix()), lab))
    else:
        raise BadInputError(f"{root}: Darknet export with no '{'/'.join(keys)}' list in obj.data, no "
                            f"{keys[0]}.txt and no obj_{keys[0]}_data/ folder")
    items: list[_Item] = []
    for rel, lab in labels:
        listed = rel.suffix.lower() in IMAGE_SUFFIXES
        img = _find_image(img_root, rel, any_suffix=not listed, by_base_name=images is not None)
        if img is None:
            where = f"in {images}" if images is not None else \
                f"beside its label file (pass the folder holding the images: {_IMAGES_HINT})"
            raise BadInputError(f"{lab}: no image {rel.name if listed else rel.name + '.*'} {where}")
        items.append((img, img.relative_to(img_root).as_posix(), lab))
    return img_root, items, names, source


def read_yolo(path: str | os.PathLike[str], *, split: str = "train", clip: bool = False,
              images: str | os.PathLike[str] | None = None) -> Dataset:
    """Read a YOLO dataset (folder or ``data.yaml``, or a Darknet / CVAT "YOLO 1.1" export).

    Parameters
    ----------
    path : path-like
        ``data.yaml``, a folder holding it, a folder with ``images/`` and
        ``labels/`` (or ``{split}/images`` and ``{split}/labels``), or a
        Darknet export folder (``obj.data``/``obj.names``).
    split : str
        The ``data.yaml`` entry to read (Darknet: ``train``, ``val`` reads
        ``valid``, ``test``).
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.
        Boxes out by less than one pixel (rounding of the normalised
        coordinates) are clipped either way.
    images : path-like, optional
        Folder holding the images when they are not in the layout (a
        ``labels/`` folder alone, a Darknet export without images): looked
        up by relative path, else by base name; it becomes ``Dataset.root``.

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
    images_path = Path(images) if images is not None else None
    if images_path is not None and not images_path.is_dir():
        raise BadInputError(f"{images_path}: images folder not found")
    if is_darknet_folder(path):
        root, items, names, source = _darknet_locate(path, split, images_path)
    else:
        root, images_dir, labels_dir, names = _locate(path, split, images_path)
        if names is None:
            classes = find_classes_file(labels_dir.parent)
            names = read_class_names(classes) if classes is not None else None
        if images_dir.is_file():  # a .txt list of images (its labels dir may hold other splits' labels)
            items = _listing_items(images_dir)
            source = images_dir
        else:
            items = _scan(images_dir, labels_dir, root)
            wanted = {lab for _, _, lab in items}
            if labels_dir.is_dir():
                for lab in walk_files(labels_dir, (".txt",)):
                    if lab not in wanted:
                        raise BadInputError(f"{lab}: label file without an image in {images_dir}")
            source = labels_dir
    images_out, ids, rows = [], [], []
    origin: list[tuple[Path, int]] = []  # (label file, line) of each annotation, for messages
    for i, (img, file_name, lab) in enumerate(items, start=1):
        w, h = image_size(img)
        images_out.append(ImageRecord(id=i, file_name=file_name, width=w, height=h))
        if lab.is_file():
            lines: list[int] = []
            r = _parse_label_file(lab, len(names) if names is not None else None, with_scores=False,
                                  line_numbers=lines)
            origin.extend((lab, n) for n in lines)
            r[:, 1:] = box_ops.convert(r[:, 1:], "cxcywhn", "xyxy", image_size=(w, h))
            rows.append(r)
            ids.append(np.full(len(r), i, np.int64))
    table = np.concatenate(rows) if rows else np.zeros((0, 5))
    if names is None:
        top = int(table[:, 0].max()) + 1 if len(table) else 0
        names = [str(k) for k in range(top)]
    ds = Dataset(images=images_out, categories=[Category(k + 1, n) for k, n in enumerate(names)],
                 ann_image_ids=np.concatenate(ids) if ids else np.zeros(0, np.int64),
                 ann_boxes=table[:, 1:].copy(), ann_labels=table[:, 0].astype(np.int64) + 1,
                 ann_iscrowd=np.zeros(len(table), bool), ann_difficult=np.zeros(len(table), bool), root=root)
    return ds.validate(source=str(source), clip=clip, tolerance=1.0,
                       where=lambda j: f"{origin[j][0]}:{origin[j][1]}: label")


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


def _write_labels(ds: Dataset, out: Path, index_of: dict[int, int], *, overwrite: bool, images: str) -> None:
    """``out/images/**`` (placed per ``images``) and ``out/labels/**.txt`` of ``ds``."""
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


def write_data_yaml(out: str | os.PathLike[str], names: list[str], entries: dict[str, str], *,
                    overwrite: bool = False) -> Path:
    """Write ``OUT/data.yaml`` (and ``OUT/classes.txt``) as Ultralytics reads it.

    ``entries`` maps ``train``/``val``/``test`` to image folders relative to
    ``OUT``; ``val`` falls back to ``test``, then ``train``, when missing
    (Ultralytics requires both ``train`` and ``val``).  ``names`` is written
    as ``{index: name}``.  No ``path:`` key is written: Ultralytics then uses
    the yaml's own folder as the root, so the folder can be moved (a relative
    ``path: .`` is taken from the working directory by Ultralytics 8.0-8.3,
    and an absolute one breaks when the folder moves).
    """
    out = Path(out)
    entries = dict(entries)
    if "train" not in entries:
        raise ValueError(f"entries must have 'train', got {sorted(entries)}")
    entries.setdefault("val", entries.get("test", entries["train"]))
    doc: dict[str, Any] = {k: entries[k] for k in ("train", "val", "test") if k in entries}
    doc["nc"] = len(names)
    doc["names"] = {k: n for k, n in enumerate(names)}
    atomic_write_text(out / "classes.txt", "".join(f"{n}\n" for n in names), overwrite=overwrite)
    text = yaml_dump(doc)
    atomic_write_text(out / "data.yaml", text, overwrite=overwrite)
    return out / "data.yaml"


def yaml_dump(doc: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _merged_categories(datasets: dict[str, Dataset]) -> list[Category]:
    """The categories of every split by id; the same id must carry the same name everywhere."""
    by_id: dict[int, Category] = {}
    for name, ds in datasets.items():
        for c in ds.categories:
            if c.id in by_id and by_id[c.id].name != c.name:
                raise BadInputError(f"split {name}: category {c.id} is {c.name!r}, another split calls it "
                                    f"{by_id[c.id].name!r}")
            by_id.setdefault(c.id, c)
    return [by_id[k] for k in sorted(by_id)]


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
        ``OUT/data.yaml``: ``train: images`` and ``val: images`` (one
        dataset; Ultralytics requires a ``val`` entry), ``names`` (see
        :func:`write_data_yaml`).  Use :func:`write_yolo_splits` for
        separate splits.

    Notes
    -----
    Classes are numbered 0.. in category-id order; crowd and difficult flags
    are not representable and are dropped.
    """
    return write_yolo_splits({"": ds}, out, overwrite=overwrite, images=images)


def write_yolo_splits(datasets: dict[str, Dataset], out: str | os.PathLike[str], *, overwrite: bool = False,
                      images: str = "link") -> Path:
    """Write several splits as one YOLO dataset with one root ``data.yaml``.

    Split ``s`` goes to ``OUT/s/images`` and ``OUT/s/labels`` (Ultralytics
    finds labels by replacing the last ``/images/`` of an image path with
    ``/labels/``); ``OUT/data.yaml`` names ``train``, ``val`` and ``test``
    (those present) and the classes, numbered 0.. in category-id order over
    all splits (a category id must have one name in every split).  A single
    dataset under the key ``""`` is written to ``OUT/images``.

    Returns
    -------
    Path
        ``OUT/data.yaml``.
    """
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    out = Path(out)
    cats = _merged_categories(datasets)
    index_of = {c.id: k for k, c in enumerate(cats)}
    entries: dict[str, str] = {}
    for name, ds in datasets.items():
        _write_labels(ds, out / name if name else out, index_of, overwrite=overwrite, images=images)
        entries[name or "train"] = f"{name}/images" if name else "images"
    return write_data_yaml(out, [c.name for c in cats], entries, overwrite=overwrite)

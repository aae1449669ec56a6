"""``load_dataset``: pick the format from the path and read it.

Recognised layouts (first match wins):

============================================  ======
path                                          format
============================================  ======
``*.json`` file                               coco
``*.yaml`` / ``*.yml`` file (YOLO data.yaml)  yolo
folder with ``{split}/annotations.json``      coco (the ``prepare`` layout)
folder with ``annotations.json``              coco
folder with ``data.yaml``                     yolo (``split`` picks the entry)
folder with ``{split}/labels/`` or ``labels/``  yolo
folder with ``{split}/Annotations/`` or ``Annotations/``  voc
folder with ``obj.data`` / ``obj.names``      yolo (Darknet / CVAT "YOLO 1.1")
folder with ``annotations/*.xml`` or ``*.xml``  voc (flat folder, LabelImg)
``*.txt`` file or folder of ``*.txt`` files   text (``format='text'`` only)
============================================  ======
"""

from __future__ import annotations

import os
from pathlib import Path

from cvtool.datasets.core import Dataset
from cvtool.errors import BadInputError, UsageError

DATASET_FORMATS = ("coco", "yolo", "voc", "text")


def detect_format(path: str | os.PathLike[str], *, split: str = "train") -> tuple[str, Path]:
    """``(format, path to read)`` for a dataset path (see the module table).

    Raises
    ------
    BadInputError
        The path does not exist or matches no layout.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "coco", path
        if suffix in (".yaml", ".yml"):
            return "yolo", path
        if suffix == ".txt":
            return "text", path
        raise BadInputError(f"{path}: cannot tell the dataset format from the name; pass the format")
    for base in (path / split, path):
        if (base / "annotations.json").is_file():
            return "coco", base / "annotations.json"
    if (path / "data.yaml").is_file():
        return "yolo", path / "data.yaml"
    for base in (path / split, path):
        if (base / "labels").is_dir():
            return "yolo", base
        if (base / "Annotations").is_dir():
            return "voc", base
    from cvtool.datasets.voc import voc_layout
    from cvtool.datasets.yolo import is_darknet_folder

    if is_darknet_folder(path):
        return "yolo", path
    if voc_layout(path, split=split) is not None:
        return "voc", path
    raise BadInputError(
        f"{path}: not a dataset folder (expected {split}/annotations.json, annotations.json, data.yaml, "
        "labels/, Annotations/, obj.data or .xml files)")


def load_dataset(path: str | os.PathLike[str], *, split: str = "train", format: str | None = None,
                 clip: bool = False, images: str | os.PathLike[str] | None = None) -> Dataset:
    """Read a dataset in any supported format.

    Parameters
    ----------
    path : path-like
        A ``prepare`` output folder, a COCO JSON, a YOLO folder or
        ``data.yaml``, a VOC folder, or (``format='text'``) text box files.
    split : str
        Which split of a multi-split layout (``prepare`` folders, ``data.yaml``).
    format : {'coco', 'yolo', 'voc', 'text'}, optional
        Skip detection.  ``text`` reads ``class a b c d`` files as xyxy pixels;
        use :func:`cvtool.datasets.text.read_text_boxes` for other conventions.
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.
    images : path-like, optional
        Folder holding the images when the annotations do not sit in a layout
        that has them (a flat folder of VOC XML, a Darknet export without
        images, a lone ``labels/`` folder, a COCO JSON kept apart from its
        images).  It becomes ``Dataset.root``; file names are looked up in
        it by relative path, else by base name (VOC, YOLO).

    Returns
    -------
    Dataset
        Validated (see :meth:`Dataset.validate`).

    Raises
    ------
    UsageError
        Unknown ``format``.
    BadInputError
        Missing, empty or malformed files (naming the file and record).
    """
    if format is not None and format not in DATASET_FORMATS:
        raise UsageError(f"unknown dataset format {format!r}; valid: {', '.join(DATASET_FORMATS)}")
    path = Path(path)
    if format is None:
        fmt, target = detect_format(path, split=split)
    else:
        fmt, target = format, path
        if not path.exists():
            raise BadInputError(f"{path}: no such file or folder")
        if path.is_dir() and not (fmt == "yolo" and (path / "data.yaml").is_file()):
            target = path / split if (path / split).is_dir() else path
            if fmt == "coco":
                target = target / "annotations.json"
    if images is not None and not Path(images).is_dir():
        raise BadInputError(f"{images}: images folder not found")
    if fmt == "coco":
        from cvtool.datasets.coco import read_coco

        return read_coco(target, clip=clip, root=images)
    if fmt == "yolo":
        from cvtool.datasets.yolo import read_yolo

        return read_yolo(target, split=split, clip=clip, images=images)
    if fmt == "voc":
        from cvtool.datasets.voc import read_voc

        return read_voc(target, split=split, clip=clip, images=images)
    if images is not None:
        raise UsageError("images= does not apply to text box files (their images are named by "
                         "read_text_boxes' own options)")
    from cvtool.datasets.text import read_text_boxes

    return read_text_boxes(target, clip=clip)

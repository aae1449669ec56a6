"""Convert a dataset between formats (the core of ``cvtool prepare convert``).

A source with split folders (``SRC/train``, ``SRC/val``, ``SRC/test``, as
``prepare`` writes) is converted split by split into ``OUT/{split}``; any
other source is converted into ``OUT`` itself.  Images are hard-linked
(copied where the file system cannot link) or copied or left out
(``images``).  Target layouts:

* ``coco``: ``OUT/annotations.json`` + ``OUT/images/``
* ``yolo``: ``OUT/images/``, ``OUT/labels/``, ``OUT/data.yaml``, ``OUT/classes.txt``; with splits
  ``OUT/{split}/images/``, ``OUT/{split}/labels/`` and one ``OUT/data.yaml`` naming them all
* ``voc``: ``OUT/Annotations/``, ``OUT/JPEGImages/``, ``OUT/classes.txt``
* ``text``: ``OUT/<name>.txt`` (``class a b c d``), ``OUT/classes.txt`` (no images)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvtool.datasets.core import Dataset
from cvtool.errors import UsageError

TARGET_FORMATS = ("coco", "yolo", "voc", "text")
SPLITS = ("train", "val", "test")
_MARKERS = {"coco": "annotations.json", "yolo": "data.yaml", "voc": "Annotations", "text": "classes.txt"}


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of one conversion (see :func:`convert_dataset`)."""

    to: str
    source_format: str | None = None
    images: str = "link"
    overwrite: bool = False
    clip: bool = False
    box_format: str = "xyxy"
    relative: bool = False
    image_size: tuple[int, int] | None = None
    image_dir: Path | None = None

    def validate(self) -> ConvertConfig:
        from cvtool.datasets._files import IMAGE_MODES
        from cvtool.datasets.loader import DATASET_FORMATS

        if self.to not in TARGET_FORMATS:
            raise UsageError(f"--to {self.to!r}: choose one of {', '.join(TARGET_FORMATS)}")
        if self.source_format is not None and self.source_format not in DATASET_FORMATS:
            raise UsageError(f"--from {self.source_format!r}: choose one of auto, {', '.join(DATASET_FORMATS)}")
        if self.images not in IMAGE_MODES:
            raise UsageError(f"--images {self.images!r}: choose one of {', '.join(IMAGE_MODES)}")
        return self


def source_splits(src: Path) -> list[str]:
    """Splits of the source (empty: a single dataset).

    A YOLO ``data.yaml`` (the file, or in the folder) lists its splits: those
    of ``train``/``val``/``test`` present, each only once when several name
    the same folder (one folder named by every entry is a single dataset).
    A Darknet export has the splits its ``obj.data``, ``{split}.txt`` lists
    or ``obj_{split}_data/`` folders name.  A Pascal VOC folder has the splits
    of its ``ImageSets/Main/{split}.txt`` lists.  Otherwise: the ``train``,
    ``val`` and ``test`` folders of a prepare-style source.
    """
    yaml_path = src if src.is_file() and src.suffix.lower() in (".yaml", ".yml") else (
        src / "data.yaml" if src.is_dir() and (src / "data.yaml").is_file() else None)
    if yaml_path is not None:
        from cvtool.datasets._files import read_yaml

        data = read_yaml(yaml_path)
        if not isinstance(data, dict):
            return []
        seen: dict[str, str] = {}
        for s in SPLITS:
            entry = data.get(s)
            if entry and str(entry).rstrip("/") not in seen.values():
                seen[s] = str(entry).rstrip("/")
        return list(seen) if len(seen) > 1 else []
    if not src.is_dir():
        return []
    from cvtool.datasets.yolo import is_darknet_folder

    if is_darknet_folder(src):
        from cvtool.datasets.yolo import darknet_splits

        found = darknet_splits(src)
        return found if len(found) > 1 else []
    folders = [s for s in SPLITS if (src / s).is_dir()]
    if not folders and (src / "Annotations").is_dir():  # Pascal VOC: ImageSets/Main/{split}.txt
        listed = [s for s in SPLITS if (src / "ImageSets" / "Main" / f"{s}.txt").is_file()]
        return listed if len(listed) > 1 else []
    return folders


def read_source(src: Path, cfg: ConvertConfig, split: str) -> Dataset:
    """Read one split (or the whole single dataset) of ``src``."""
    from cvtool.datasets.loader import load_dataset

    if cfg.source_format == "text":
        from cvtool.datasets.text import read_text_boxes

        path = src / split if (src / split).is_dir() else src
        return read_text_boxes(path, box_format=cfg.box_format, relative=cfg.relative,
                               image_size_default=cfg.image_size, clip=cfg.clip)
    return load_dataset(src, split=split, format=cfg.source_format, clip=cfg.clip, images=cfg.image_dir)


def _declares_sizes(src: Path, cfg: ConvertConfig) -> bool:
    """Whether the source's annotations state image sizes (a YOLO reader took them from the headers)."""
    if cfg.source_format == "text":
        return True  # --image-size may stand in for missing images
    from cvtool.datasets.loader import detect_format

    fmt = cfg.source_format if cfg.source_format not in (None, "auto") else detect_format(src)[0]
    return fmt != "yolo"


def write_target(ds: Dataset, out: Path, cfg: ConvertConfig) -> Path:
    """Write ``ds`` into ``out`` in ``cfg.to``; returns the main file written."""
    if cfg.to == "coco":
        from cvtool.datasets.coco import write_coco_folder

        return write_coco_folder(ds, out, overwrite=cfg.overwrite, images=cfg.images)
    if cfg.to == "yolo":
        from cvtool.datasets.yolo import write_yolo

        return write_yolo(ds, out, overwrite=cfg.overwrite, images=cfg.images)
    if cfg.to == "voc":
        from cvtool.datasets.voc import write_voc

        return write_voc(ds, out, overwrite=cfg.overwrite, images=cfg.images)
    from cvtool.datasets.text import write_text_boxes

    return write_text_boxes(ds, out, box_format=cfg.box_format, relative=cfg.relative, overwrite=cfg.overwrite)


def convert_dataset(src: str | os.PathLike[str], out: str | os.PathLike[str], cfg: ConvertConfig) -> dict[str, Any]:
    """Read ``src`` (every split) and write it under ``out`` in ``cfg.to``.

    Everything is read and validated before anything is written, so a bad
    source leaves ``out`` untouched.  Unless ``cfg.images`` is ``'none'``,
    every image's header must show the size its annotations declare.

    Returns
    -------
    dict
        ``{split or "all": {"images": n, "annotations": k, "written": path}}``.

    Raises
    ------
    UsageError
        ``out`` is ``src`` or inside it; bad settings.
    FileExistsError
        The target exists and ``cfg.overwrite`` is false.
    BadInputError
        The source is unreadable or invalid.
    """
    cfg.validate()
    src, out = Path(src), Path(out)
    if not src.exists():
        from cvtool.errors import BadInputError

        raise BadInputError(f"{src}: no such file or folder")
    src_dir = src if src.is_dir() else src.parent
    out_real, src_real = os.path.realpath(out), os.path.realpath(src_dir)
    if out_real == src_real or (src.is_dir() and out_real.startswith(src_real + os.sep)):
        raise UsageError(f"--out {out} is the source folder or inside it; choose another folder")
    splits = source_splits(src) if cfg.source_format != "text" or src.is_dir() else []
    jobs = [(s, out / s) for s in splits] or [("all", out)]
    datasets = {name: read_source(src, cfg, name if name != "all" else "train") for name, _ in jobs}
    if cfg.images != "none" and _declares_sizes(src, cfg):
        # the images travel with the labels: their sizes must be the declared ones
        from cvtool.datasets._files import check_image_sizes

        for ds in datasets.values():
            check_image_sizes(ds)
    if cfg.to == "yolo" and splits:
        jobs_check = [("all", out)]
    else:
        jobs_check = jobs
    for name, target in jobs_check:
        marker = target / _MARKERS[cfg.to]
        if marker.exists() and not cfg.overwrite:
            raise FileExistsError(f"{marker} exists; pass --overwrite to replace it")
    summary: dict[str, Any] = {}
    if cfg.to == "yolo" and splits:  # one root data.yaml naming every split (as Ultralytics reads it)
        from cvtool.datasets.yolo import write_yolo_splits

        written = write_yolo_splits(datasets, out, overwrite=cfg.overwrite, images=cfg.images)
        for name, ds in datasets.items():
            summary[name] = {"images": len(ds.images), "annotations": ds.num_annotations, "written": str(written)}
        return summary
    for name, target in jobs:
        ds = datasets[name]
        written = write_target(ds, target, cfg)
        summary[name] = {"images": len(ds.images), "annotations": ds.num_annotations, "written": str(written)}
    return summary

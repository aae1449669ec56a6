"""A dataset split as plain arrays, for training loops that want tensors, not files.

``prepare localization|detection --npz`` writes ``OUT/{split}.npz`` (a compressed
NumPy archive, loadable with ``allow_pickle=False``) with these keys:

==================  =====================  =====================================
key                 dtype, shape           meaning
==================  =====================  =====================================
``images``          uint8 (N, H, W[, C])   the canvases (grey, or BGR when C=3)
``boxes``           float32 (M, 4)         xyxy pixel boxes of every object
``labels``          int64 (M,)             category id of each box
``box_image``       int64 (M,)             index into ``images`` of each box
``category_ids``    int64 (C,)             the dataset's category ids, in order
``category_names``  str (C,)               their names (``classes.txt`` order)
==================  =====================  =====================================

:func:`load_arrays` reads that file when it exists and otherwise decodes the
COCO split (``OUT/{split}/annotations.json`` and its PNGs) into the same arrays,
so a training script never needs to know which of the two was written
(any format :func:`cvtool.datasets.load_dataset` reads works; images must share one size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtool.errors import BadInputError, UsageError

NPZ_KEYS = ("images", "boxes", "labels", "box_image", "category_ids", "category_names")
"""Keys every ``{split}.npz`` written by ``prepare`` holds."""


@dataclass
class ArrayDataset:
    """One split as arrays (see the module docstring for the layout).

    Attributes
    ----------
    images : (N, H, W) or (N, H, W, C) uint8 ndarray
    boxes : (M, 4) float32 ndarray
        xyxy pixel boxes.
    labels : (M,) int64 ndarray
        Category id of each box.
    box_image : (M,) int64 ndarray
        Index into ``images`` of each box (sorted ascending).
    category_ids : (C,) int64 ndarray
    category_names : (C,) str ndarray
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    box_image: np.ndarray
    category_ids: np.ndarray
    category_names: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def class_index(self) -> np.ndarray:
        """(M,) int64: each box's class as an index 0..C-1 into ``category_ids``."""
        order = np.argsort(self.category_ids, kind="stable")
        pos = np.searchsorted(self.category_ids[order], self.labels)
        return order[np.clip(pos, 0, len(order) - 1)].astype(np.int64)

    def boxes_of(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 4) and labels (K,) of image ``index``."""
        lo, hi = np.searchsorted(self.box_image, [index, index + 1])
        return self.boxes[lo:hi], self.labels[lo:hi]

    def single_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """For localisation data (one box per image): boxes (N, 4) and labels (N,).

        Raises
        ------
        BadInputError
            Some image has no box or more than one.
        """
        counts = np.bincount(self.box_image, minlength=len(self))
        if counts.shape[0] != len(self) or not np.all(counts == 1):
            bad = int(np.flatnonzero(counts != 1)[0]) if np.any(counts != 1) else len(self)
            raise BadInputError(
                f"image {bad} has {int(counts[bad]) if bad < counts.shape[0] else 0} boxes; "
                "localisation needs exactly one box per image"
            )
        order = np.argsort(self.box_image, kind="stable")
        return self.boxes[order], self.labels[order]

    def validate(self, *, source: str = "arrays") -> ArrayDataset:
        """Check dtypes, shapes and cross-references; return self."""
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise BadInputError(f"{source}: images must be uint8 (N,H,W[,C]), got {self.images.dtype} {self.images.shape}")
        m = self.boxes.shape[0]
        if self.boxes.shape != (m, 4):
            raise BadInputError(f"{source}: boxes have shape {self.boxes.shape}, expected (M, 4)")
        for name in ("labels", "box_image"):
            arr = getattr(self, name)
            if arr.shape != (m,):
                raise BadInputError(f"{source}: {name} has shape {arr.shape}, expected ({m},)")
        if self.category_ids.shape != self.category_names.shape or self.category_ids.ndim != 1:
            raise BadInputError(f"{source}: category_ids {self.category_ids.shape} and category_names "
                                f"{self.category_names.shape} must be two (C,) arrays")
        if m:
            if not np.isfinite(self.boxes).all():
                raise BadInputError(f"{source}: non-finite box values")
            if self.box_image.min() < 0 or self.box_image.max() >= len(self):
                raise BadInputError(f"{source}: box_image refers to an image outside 0..{len(self) - 1}")
            if np.any(np.diff(self.box_image) < 0):
                raise BadInputError(f"{source}: box_image must be sorted ascending")
            unknown = ~np.isin(self.labels, self.category_ids)
            if unknown.any():
                raise BadInputError(f"{source}: label {int(self.labels[unknown][0])} is not one of category_ids")
        return self


def _load_npz(path: Path) -> ArrayDataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise BadInputError(f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(NPZ_KEYS)}")
            arrays = {k: data[k] for k in NPZ_KEYS}
    except BadInputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(f"{path}: not a readable .npz archive ({exc})") from None
    return ArrayDataset(
        images=arrays["images"],
        boxes=arrays["boxes"].astype(np.float32, copy=False),
        labels=arrays["labels"].astype(np.int64, copy=False),
        box_image=arrays["box_image"].astype(np.int64, copy=False),
        category_ids=arrays["category_ids"].astype(np.int64, copy=False),
        category_names=arrays["category_names"].astype(str),
    ).validate(source=str(path))


def _load_dataset_split(path: Path, split: str,
                        images_dir: str | os.PathLike[str] | None = None) -> ArrayDataset:
    from cvtool.datasets.core import check_image_shape
    from cvtool.datasets.loader import load_dataset
    from cvtool.io.images import read_image

    ds = load_dataset(path, split=split, images=images_dir)
    ann_path = path
    images = sorted(ds.images, key=lambda im: im.id)
    index_of = {im.id: i for i, im in enumerate(images)}
    pixels = []
    shape = None
    for im in images:
        image_path = ds.image_path(im)
        arr = read_image(image_path)
        check_image_shape(im, arr.shape, path=image_path)
        if arr.dtype != np.uint8:
            raise BadInputError(f"{im.file_name}: {arr.dtype} image; arrays hold uint8 only")
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise BadInputError(f"{ann_path}: {im.file_name} is {arr.shape}, the first image {shape}; "
                                "arrays need images of one size")
        pixels.append(arr)
    box_image = np.array([index_of[int(i)] for i in ds.ann_image_ids], dtype=np.int64)
    order = np.argsort(box_image, kind="stable")
    cats = sorted(ds.categories, key=lambda c: c.id)
    stacked = np.stack(pixels) if pixels else np.zeros((0, 1, 1), dtype=np.uint8)
    return ArrayDataset(
        images=stacked,
        boxes=ds.ann_boxes[order].astype(np.float32),
        labels=ds.ann_labels[order].astype(np.int64),
        box_image=box_image[order],
        category_ids=np.array([c.id for c in cats], dtype=np.int64),
        category_names=np.array([c.name for c in cats], dtype=str),
    ).validate(source=str(ann_path))


def load_arrays(path: str | os.PathLike[str], *, split: str = "train",
                images: str | os.PathLike[str] | None = None) -> ArrayDataset:
    """Load one split of a ``prepare`` dataset as arrays.

    Parameters
    ----------
    path : path-like
        The dataset folder written by ``cvtool prepare`` (``OUT``), a ``.npz``
        file, or anything :func:`cvtool.datasets.load_dataset` reads (COCO
        JSON, a split folder, YOLO, VOC).
    split : str
        Split name used when ``path`` is the dataset folder.
    images : path-like, optional
        Folder holding the images when the annotations are kept apart (see
        :func:`cvtool.datasets.load_dataset`); not with a ``.npz``, which
        holds the pixels itself.

    Returns
    -------
    ArrayDataset
        From ``OUT/{split}.npz`` when it exists, else decoded from the
        annotations and images of the split (same arrays; boxes sorted by image).

    Raises
    ------
    BadInputError
        Nothing loadable at ``path``, a malformed file, images of different
        sizes, or an image whose size differs from the one its annotations declare.
    UsageError
        ``images`` given for a ``.npz``.
    """
    p = Path(path)
    npz = p if p.is_file() and p.suffix == ".npz" else p / f"{split}.npz" if p.is_dir() else None
    if npz is not None and npz.is_file():
        if images is not None:
            raise UsageError(f"{npz}: an .npz holds its images; images= (--image-dir) applies to "
                             "annotation files")
        return _load_npz(npz)
    if not p.exists():
        raise BadInputError(
            f"{p}: no such file or folder (write a dataset with cvtool prepare localization|detection --out DIR [--npz])")
    return _load_dataset_split(p, split, images)

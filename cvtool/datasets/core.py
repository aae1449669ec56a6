"""The one in-memory dataset every reader returns and every writer takes.

Annotations are held as parallel arrays (not a list of dicts) so evaluation
and training can work on them without Python loops.  Boxes are float64 xyxy in
pixels (see :mod:`cvtool.boxes`); readers convert from their file's format and
writers convert back.

File names in :class:`ImageRecord` are POSIX paths relative to
``Dataset.root``; :meth:`Dataset.image_path` resolves them and refuses any
path that escapes the root (``..``, absolute paths, file symlinks pointing out;
symlinked folders are followed, see :func:`safe_join`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from cvtool.errors import BadInputError

MAX_IMAGE_SIDE = 2 ** 16
"""Largest declared image width or height accepted (65,536 px, JPEG's own limit is 65,535)."""
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
"""Ids (image, category, annotation) must fit in int64."""

_UNWRITABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""Characters no line-based writer can write back: control characters, line
separators (``str.splitlines`` breaks on them) and lone surrogates (not UTF-8)."""


def check_name(name: object, what: str) -> str:
    """``name`` if it can be written to and read back from every format (YOLO
    ``classes.txt``/``data.yaml``, VOC ``<name>``, COCO); BadInputError naming
    ``what`` otherwise (empty, control characters or line breaks, lone
    surrogates, leading or trailing spaces)."""
    if not isinstance(name, str) or not name.strip():
        raise BadInputError(f"{what}: name {name!r} is empty")
    bad = _UNWRITABLE.search(name)
    if bad is not None:
        raise BadInputError(f"{what}: name {name!r} holds the character {bad.group()!r} (U+{ord(bad.group()):04X}); "
                            "names must be one line of printable text")
    if name != name.strip():
        raise BadInputError(f"{what}: name {name!r} has leading or trailing spaces (YOLO and VOC files strip them)")
    return name


def check_id(value: int, what: str) -> int:
    """``value`` if it fits in int64, else BadInputError naming ``what``."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadInputError(f"{what}: id {value} does not fit in a 64-bit integer")
    return value


def check_image_shape(image: ImageRecord, shape: tuple[int, ...], *, path: str | os.PathLike[str]) -> None:
    """Refuse an image whose decoded size differs from the size its annotations declare.

    Call it wherever pixels of a dataset image are decoded (``shape`` is the
    array's ``(H, W[, C])``): boxes are validated against the declared size,
    so a mismatch means the annotations describe another image.

    Raises
    ------
    BadInputError
        Naming the file and both sizes; when the declared size is the one
        stored in the file and its EXIF orientation turns it (a phone photo
        held upright), saying so.
    """
    h, w = int(shape[0]), int(shape[1])
    if (w, h) != (image.width, image.height):
        hint = ""
        if (h, w) == (image.width, image.height) and _stored_size(path) == (image.width, image.height):
            hint = (" (the annotations give the stored size; the EXIF orientation rotates it: re-save the image "
                    "upright or set CVTOOL_EXIF_ORIENTATION=0)")
        raise BadInputError(f"{path}: image is {w}x{h}, its annotations say {image.width}x{image.height}{hint}")


def _stored_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` as stored in the file's header, before EXIF orientation; None when unreadable."""
    from cvtool.io.images import read_image_size  # only on the error path: keeps cv2 out of imports

    try:
        return read_image_size(path, exif_orientation=False)
    except (BadInputError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes
    ----------
    id : int
        Unique image id.
    file_name : str
        POSIX path relative to the dataset root.
    width, height : int
        Size in pixels (must be > 0).
    """

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Category:
    """One object class: a unique integer id and a name."""

    id: int
    name: str


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float64)


def _empty_int() -> np.ndarray:
    return np.zeros((0,), dtype=np.int64)


def _empty_bool() -> np.ndarray:
    return np.zeros((0,), dtype=bool)


@dataclass
class Dataset:
    """Images, categories and annotations (parallel arrays of length K).

    Attributes
    ----------
    images : list of ImageRecord
    categories : list of Category
    ann_image_ids : (K,) int64 ndarray
        Image id of each annotation.
    ann_boxes : (K, 4) float64 ndarray
        xyxy pixel boxes.
    ann_labels : (K,) int64 ndarray
        Category id of each annotation.
    ann_iscrowd : (K,) bool ndarray
        COCO crowd flag (crowd regions are ignored by matching, not counted).
    ann_difficult : (K,) bool ndarray
        Pascal VOC difficult flag (ignored by VOC evaluation).
    ann_area : (K,) float64 ndarray or None
        COCO ``area`` field when the source had one (segment area); ``None``
        means "use the box area".
    ann_ids : (K,) int64 ndarray or None
        Annotation ids from the source file, when it had them.
    root : Path or None
        Folder the ``file_name`` entries are relative to.
    ann_truncated : (K,) bool ndarray or None
        Pascal VOC truncated flag, when the source had one.
    """

    images: list[ImageRecord] = field(default_factory=list)
    categories: list[Category] = field(default_factory=list)
    ann_image_ids: np.ndarray = field(default_factory=_empty_int)
    ann_boxes: np.ndarray = field(default_factory=_empty_boxes)
    ann_labels: np.ndarray = field(default_factory=_empty_int)
    ann_iscrowd: np.ndarray = field(default_factory=_empty_bool)
    ann_difficult: np.ndarray = field(default_factory=_empty_bool)
    ann_area: np.ndarray | None = None
    ann_ids: np.ndarray | None = None
    root: Path | None = None
    ann_truncated: np.ndarray | None = None

    # ------------------------------------------------------------------ basics
    @property
    def num_annotations(self) -> int:
        return int(self.ann_boxes.shape[0])

    @property
    def category_names(self) -> dict[int, str]:
        """Mapping category id -> name."""
        return {c.id: c.name for c in self.categories}

    @property
    def image_by_id(self) -> dict[int, ImageRecord]:
        return {im.id: im for im in self.images}

    def areas(self) -> np.ndarray:
        """(K,) float64: the ``area`` field where present, else the box area."""
        if self.ann_area is not None:
            return self.ann_area
        b = self.ann_boxes
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def annotations_of(self, image_id: int) -> np.ndarray:
        """Indices (into the ``ann_*`` arrays) of the annotations of ``image_id``."""
        return np.flatnonzero(self.ann_image_ids == image_id)

    def subset(self, image_ids: list[int] | np.ndarray) -> Dataset:
        """A dataset with only the given images and their annotations."""
        keep_ids = set(int(i) for i in image_ids)
        images = [im for im in self.images if im.id in keep_ids]
        mask = np.isin(self.ann_image_ids, np.fromiter(keep_ids, dtype=np.int64, count=len(keep_ids)))
        return replace(
            self,
            images=images,
            ann_image_ids=self.ann_image_ids[mask],
            ann_boxes=self.ann_boxes[mask],
            ann_labels=self.ann_labels[mask],
            ann_iscrowd=self.ann_iscrowd[mask],
            ann_difficult=self.ann_difficult[mask],
            ann_area=None if self.ann_area is None else self.ann_area[mask],
            ann_ids=None if self.ann_ids is None else self.ann_ids[mask],
            ann_truncated=None if self.ann_truncated is None else self.ann_truncated[mask],
        )

    # ------------------------------------------------------------------ paths
    def image_path(self, image: ImageRecord) -> Path:
        """Absolute path of ``image``, refusing names that escape ``root``.

        Raises
        ------
        BadInputError
            The name is absolute, contains ``..``, or is a file symlink
            resolving outside the dataset root (see :func:`safe_join`).
        """
        return safe_join(self.root or Path("."), image.file_name)

    # -------------------------------------------------------------- validation
    def validate(self, *, source: str = "dataset", clip: bool = False, tolerance: float = 0.0,
                 where: Callable[[int], str] | None = None) -> Dataset:
        """Check shapes, ids and boxes; return self (or a clipped copy).

        Parameters
        ----------
        source : str
            Name used in error messages (usually the file path).
        clip : bool
            Clip boxes that stick out of their image instead of refusing them
            (the ``--clip`` repair).  Boxes entirely outside, empty or
            non-finite boxes are refused either way.
        tolerance : float
            Boxes sticking out by less than this many pixels are clipped
            without asking (rounding in normalised formats: a YOLO box ending
            at 480.00024 in a 480-pixel image); 0 clips nothing silently.
        where : callable, optional
            ``where(i)`` names annotation ``i`` where its file holds it, replacing
            ``"{source}: annotation #i"`` at the start of messages (YOLO:
            ``"labels/a.txt:3: label"``, the label file and line; VOC:
            ``"Annotations/a.xml: object 2"``).

        Raises
        ------
        BadInputError
            Naming ``source`` and the offending record.
        """
        def at(i: int) -> str:
            return where(i) if where is not None else f"{source}: annotation {self._ann_name(i)}"

        k = self.num_annotations
        for name in ("ann_image_ids", "ann_labels", "ann_iscrowd", "ann_difficult"):
            arr = getattr(self, name)
            if arr.shape != (k,):
                raise BadInputError(f"{source}: {name} has shape {arr.shape}, expected ({k},)")
        for name in ("ann_area", "ann_ids", "ann_truncated"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (k,):
                raise BadInputError(f"{source}: {name} has shape {arr.shape}, expected ({k},)")
        if self.ann_boxes.shape != (k, 4):
            raise BadInputError(f"{source}: boxes have shape {self.ann_boxes.shape}, expected ({k}, 4)")
        if self.ann_ids is not None and k:
            uniq, first, counts = np.unique(self.ann_ids, return_index=True, return_counts=True)
            if (counts > 1).any():
                raise BadInputError(f"{source}: duplicate annotation id {int(uniq[counts > 1][0])}")
        ids = [im.id for im in self.images]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise BadInputError(f"{source}: duplicate image id {dup}")
        cat_ids = [c.id for c in self.categories]
        if len(set(cat_ids)) != len(cat_ids):
            dup = next(i for i in cat_ids if cat_ids.count(i) > 1)
            raise BadInputError(f"{source}: duplicate category id {dup}")
        for im in self.images:
            if not (0 < im.width <= MAX_IMAGE_SIDE and 0 < im.height <= MAX_IMAGE_SIDE):
                raise BadInputError(f"{source}: image {im.id} ({im.file_name}) has size {im.width}x{im.height} "
                                    f"(sides must be 1..{MAX_IMAGE_SIDE})")
        for i in ids:
            check_id(i, f"{source}: image")
        for i in cat_ids:
            check_id(i, f"{source}: category")
        seen_names: dict[str, int] = {}
        for c in self.categories:
            check_name(c.name, f"{source}: category {c.id}")
            if c.name in seen_names:
                raise BadInputError(f"{source}: categories {seen_names[c.name]} and {c.id} share the name {c.name!r}")
            seen_names[c.name] = c.id
        if k == 0:
            return self
        known_images = np.array(ids, dtype=np.int64)
        bad = ~np.isin(self.ann_image_ids, known_images)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BadInputError(f"{at(i)} refers to unknown image id {int(self.ann_image_ids[i])}")
        bad = ~np.isin(self.ann_labels, np.array(cat_ids, dtype=np.int64))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BadInputError(f"{at(i)} has unknown category id {int(self.ann_labels[i])}")
        b = self.ann_boxes
        bad = ~np.isfinite(b).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BadInputError(f"{at(i)} has a non-finite box {b[i].tolist()}")
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BadInputError(f"{at(i)} has an empty or negative box {b[i].tolist()} (xyxy)")
        if self.ann_area is not None and k and not (np.isfinite(self.ann_area).all() and (self.ann_area >= 0).all()):
            i = int(np.flatnonzero(~(np.isfinite(self.ann_area) & (self.ann_area >= 0)))[0])
            raise BadInputError(f"{at(i)} has area {float(self.ann_area[i])}")
        by_id = self.image_by_id
        w = np.array([by_id[int(i)].width for i in self.ann_image_ids], dtype=np.float64)
        h = np.array([by_id[int(i)].height for i in self.ann_image_ids], dtype=np.float64)
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)
        if outside.any() and tolerance > 0:
            slight = outside & (b[:, 0] > -tolerance) & (b[:, 1] > -tolerance) & (b[:, 2] < w + tolerance) \
                & (b[:, 3] < h + tolerance)
            if slight.any():
                b = b.copy()
                b[slight, 0::2] = np.clip(b[slight, 0::2], 0, w[slight, None])
                b[slight, 1::2] = np.clip(b[slight, 1::2], 0, h[slight, None])
                outside = outside & ~slight
                if not outside.any():
                    gone = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
                    if gone.any():
                        i = int(np.flatnonzero(gone)[0])
                        raise BadInputError(f"{at(i)} box "
                                            f"{self.ann_boxes[i].tolist()} lies entirely outside its image")
                    return replace(self, ann_boxes=b)
        if outside.any():
            if not clip:
                i = int(np.flatnonzero(outside)[0])
                raise BadInputError(
                    f"{at(i)} box {b[i].tolist()} lies outside its "
                    f"{int(w[i])}x{int(h[i])} image (pass --clip to clip boxes to the image)"
                )
            clipped = b.copy()
            clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, w[:, None])
            clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, h[:, None])
            gone = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
            if gone.any():
                i = int(np.flatnonzero(gone)[0])
                raise BadInputError(f"{at(i)} box {b[i].tolist()} lies entirely outside its image")
            return replace(self, ann_boxes=clipped)
        return self

    def _ann_name(self, i: int) -> str:
        if self.ann_ids is not None:
            return f"id {int(self.ann_ids[i])}"
        return f"#{i}"


@dataclass
class Predictions:
    """Detections for a set of images (parallel arrays of length D).

    Attributes
    ----------
    image_ids : (D,) int64 ndarray
    boxes : (D, 4) float64 ndarray, xyxy pixels
    scores : (D,) float64 ndarray
    labels : (D,) int64 ndarray
        Category ids (matching the ground truth's categories).
    """

    image_ids: np.ndarray = field(default_factory=_empty_int)
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.float64))
    labels: np.ndarray = field(default_factory=_empty_int)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def safe_join(root: str | os.PathLike[str], name: str) -> Path:
    """Join ``name`` under ``root``, refusing paths that escape it.

    The rule has two halves.  The name itself (text from an annotation file)
    must stay inside ``root`` lexically: no ``..``, no absolute path (see
    :func:`check_relative_name`).  The folders on the way are the dataset
    owner's layout and are followed wherever they point (an ``images/``
    folder that is a symlink to another disk is fine, also when ``name``
    itself names that folder).  A *file* that is
    itself a symlink must point inside ``root`` or inside its own folder.

    Parameters
    ----------
    root : path-like
        Dataset root folder.
    name : str
        Relative POSIX (or native) path from an annotation file.

    Returns
    -------
    Path
        ``root / name``.

    Raises
    ------
    BadInputError
        ``name`` is empty, absolute or contains ``..``, or the file is a
        symlink resolving outside ``root`` and outside its own folder.

    Examples
    --------
    >>> safe_join("/data", "images/0001.png").as_posix()
    '/data/images/0001.png'
    """
    pure = check_relative_name(name)
    root_path = Path(root)
    path = root_path.joinpath(*pure.parts)
    if path.is_symlink() and not path.is_dir():
        # a link to a folder (data.yaml's ``train: images`` on another disk) is
        # the owner's layout, followed like the folders on the way
        real = os.path.realpath(path)
        bases = {os.path.realpath(root_path), os.path.realpath(path.parent)}
        if not any(os.path.commonpath([b, real]) == b for b in bases):
            raise BadInputError(f"file name {name!r} is a symlink resolving outside the dataset root")
    return path


def check_relative_name(name: str) -> PurePosixPath:
    """Lexical half of :func:`safe_join` (no file-system access): refuse empty,
    absolute (``/x``, ``C:x``) and ``..`` names; return the name as a POSIX path.

    Readers call it for every name they load (cheap); :func:`safe_join` adds
    the symlink check when a file is opened.

    Raises
    ------
    BadInputError
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise BadInputError(f"empty or invalid file name {name!r} in annotations")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise BadInputError(f"file name {name!r} is absolute; annotation paths must be relative to the dataset root")
    if ".." in pure.parts:
        raise BadInputError(f"file name {name!r} escapes the dataset root")
    return pure

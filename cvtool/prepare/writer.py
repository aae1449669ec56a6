"""Render scenes in chunks (in parallel) and stream them to disk.

Layout written under ``OUT`` (CONTRIBUTING.md):

* ``OUT/{split}/images/NNNNNN.png`` and ``OUT/{split}/annotations.json`` (COCO),
  or the YOLO / VOC layout with ``--format``;
* ``OUT/{split}.npz`` with ``--npz`` (see :mod:`cvtool.datasets.arrays`);
* ``OUT/classes.txt`` and ``OUT/run.json``.

A split is built in a hidden temporary folder ``OUT/.{split}.cvtool-tmp-*``
and renamed to ``OUT/{split}`` when complete, so a killed run never leaves a
half-written split under its final name.  Workers get object pools through
memory-mapped ``.npy`` files and return only boxes (and, for ``--npz``, the
chunk's pixels, written to the archive in order as they arrive), so memory
stays bounded by a few chunks whatever the dataset size.

Determinism: each scene's generator is seeded from ``(seed, split, index)``,
PNG encoding is deterministic, the ``.npz`` members carry a fixed timestamp and
the JSON is written with sorted, fixed formatting: the same seed gives
byte-identical files whatever ``jobs`` is.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtool.errors import UsageError
from cvtool.prepare.scenes import SceneSettings, detection_scene, localization_scene, scene_rng
from cvtool.prepare.sources import ObjectPool

FORMATS = ("coco", "yolo", "voc")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_WORKER_CACHE: dict[str, tuple[ObjectPool, list[np.ndarray]]] = {}


@dataclass(frozen=True)
class OutputOptions:
    """Where and how a synthetic dataset is written.

    Attributes
    ----------
    out : Path
    format : {'coco', 'yolo', 'voc'}
    png : bool
        Write the PNG images and annotation files (``--no-png`` turns it off; needs ``npz``).
    npz : bool
        Write ``OUT/{split}.npz``.
    png_level : int
        zlib level 0..9 of the PNG encoder.
    npz_level : int
        zlib level 0..9 of the ``.npz`` members.
    jobs : int
        Worker processes (0: all cores).
    chunk : int
        Scenes per task.
    overwrite : bool
    """

    out: Path
    format: str = "coco"
    png: bool = True
    npz: bool = False
    png_level: int = 1
    npz_level: int = 1
    jobs: int = 0
    chunk: int = 1000
    overwrite: bool = False

    def validate(self) -> OutputOptions:
        if self.format not in FORMATS:
            raise UsageError(f"--format {self.format!r}: choose one of {', '.join(FORMATS)}")
        if not self.png and not self.npz:
            raise UsageError("--no-png needs --npz (otherwise nothing would be written)")
        if not self.png and self.format != "coco":
            raise UsageError(f"--no-png writes only the .npz; --format {self.format} needs the PNGs")
        for name, level in (("--png-level", self.png_level), ("--npz-level", self.npz_level)):
            if not 0 <= level <= 9:
                raise UsageError(f"{name} {level}: expected 0..9")
        if self.chunk < 1:
            raise UsageError(f"--chunk {self.chunk}: expected >= 1")
        return self


@dataclass
class SplitPlan:
    """What to render for one split: ``count`` scenes from ``pool``."""

    name: str
    pool: ObjectPool
    count: int
    object_order: np.ndarray | None = None  # localisation: the object of each scene


@dataclass
class SplitResult:
    """Annotations of a written split (category ids, not class indices)."""

    name: str
    num_images: int
    image_shape: tuple[int, ...]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    box_image: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class _Chunk:
    split: str
    start: int
    stop: int
    seed: int
    settings: SceneSettings
    object_order: np.ndarray | None
    images_dir: str | None
    png_level: int
    return_images: bool
    pool_dir: str | None  # memory-mapped pool for worker processes


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_png(image: np.ndarray, *, level: int = 1) -> bytes:
    """Encode an 8-bit grey (H, W) or BGR (H, W, 3) image as PNG.

    A minimal deterministic encoder (filter type 0 on every row, one IDAT
    chunk, zlib at ``level``): for the small canvases of synthetic datasets it
    is about twice as fast as ``cv2.imencode`` with an explicit compression
    level, whose per-call set-up dominates at this size.  Any PNG reader
    decodes the result (tests compare with OpenCV).
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"encode_png needs uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else 3
    raw = np.zeros((h, w * channels + 1), dtype=np.uint8)
    raw[:, 1:] = (image if channels == 1 else image[:, :, ::-1]).reshape(h, w * channels)
    comp = zlib.compressobj(level, zlib.DEFLATED, 15, 8)
    data = comp.compress(raw.tobytes()) + comp.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def image_name(index: int) -> str:
    """File name (relative to the split folder) of scene ``index``."""
    return f"images/{index:06d}.png"


def render_one(pool: ObjectPool, settings: SceneSettings, *, seed: int, split: str, index: int,
               object_index: int | None = None, backgrounds: list[np.ndarray] | None = None):
    """Scene ``index`` of ``split``: ``(image, boxes (K,4) xyxy, class indices (K,))``."""
    rng = scene_rng(seed, split, index)
    if settings.kind == "localization":
        return localization_scene(pool, int(object_index), settings, rng, backgrounds)
    return detection_scene(pool, settings, rng, backgrounds)


def _save_pool(pool: ObjectPool, backgrounds: list[np.ndarray], folder: Path) -> None:
    """The object pool for worker processes, in a scratch folder (a full disk names the file)."""
    from cvtool.io.atomic import naming_write_errors

    folder.mkdir(parents=True)
    arrays = {"alpha": pool.alpha, "sizes": pool.sizes, "labels": pool.labels}
    if pool.colour is not None:
        arrays["colour"] = pool.colour
    arrays.update((f"bg{i:05d}", bg) for i, bg in enumerate(backgrounds))
    for name, arr in arrays.items():
        with naming_write_errors(folder / f"{name}.npy"):
            np.save(folder / f"{name}.npy", arr)
    with naming_write_errors(folder / "classes.json"):
        (folder / "classes.json").write_text(json.dumps(list(pool.class_names)), encoding="utf-8")


def _load_pool(folder: str) -> tuple[ObjectPool, list[np.ndarray]]:
    cached = _WORKER_CACHE.get(folder)
    if cached is not None:
        return cached
    p = Path(folder)
    colour = np.load(p / "colour.npy", mmap_mode="r") if (p / "colour.npy").exists() else None
    pool = ObjectPool(colour=colour, alpha=np.load(p / "alpha.npy", mmap_mode="r"),
                      sizes=np.load(p / "sizes.npy"), labels=np.load(p / "labels.npy"),
                      class_names=tuple(json.loads((p / "classes.json").read_text(encoding="utf-8"))))
    backgrounds = [np.load(f) for f in sorted(p.glob("bg*.npy"))]
    _WORKER_CACHE.clear()
    _WORKER_CACHE[folder] = (pool, backgrounds)
    return pool, backgrounds


def _render_chunk(chunk: _Chunk, pool: ObjectPool | None = None,
                  backgrounds: list[np.ndarray] | None = None):
    if pool is None:
        pool, backgrounds = _load_pool(chunk.pool_dir)
    n = chunk.stop - chunk.start
    images = None
    all_boxes, all_labels, counts = [], [], np.zeros(n, dtype=np.int64)
    for k in range(n):
        index = chunk.start + k
        obj = None if chunk.object_order is None else int(chunk.object_order[k])
        image, boxes, labels = render_one(pool, chunk.settings, seed=chunk.seed, split=chunk.split,
                                          index=index, object_index=obj, backgrounds=backgrounds)
        if chunk.return_images:
            if images is None:
                images = np.empty((n,) + image.shape, dtype=np.uint8)
            images[k] = image
        if chunk.images_dir is not None:
            data = encode_png(image, level=chunk.png_level)
            _write_file(os.path.join(chunk.images_dir, f"{index:06d}.png"), data)
        all_boxes.append(boxes)
        all_labels.append(labels)
        counts[k] = len(labels)
    return (np.concatenate(all_boxes).astype(np.float64), np.concatenate(all_labels).astype(np.int64),
            counts, images)


def _write_file(name: str, data: bytes) -> None:
    """Write all of ``data`` (os.write may write less: a file-size limit); errors name the file."""
    from cvtool.io.atomic import naming_write_errors

    with naming_write_errors(name):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


class NpzStreamWriter:
    """Write a ``.npz`` whose big ``images`` member is streamed chunk by chunk.

    Members are deflated at ``level`` with a fixed timestamp (byte-identical
    output for identical arrays); the file appears under its final name only on
    :meth:`close` (temp file + rename).
    """

    def __init__(self, path: Path, *, image_shape: tuple[int, ...], count: int, level: int = 1,
                 overwrite: bool = False) -> None:
        from cvtool.io.atomic import temp_path_for

        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
        self.path = path
        self.overwrite = overwrite
        self.tmp = temp_path_for(path)
        self.level = level
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.expected = count
        self.written = 0
        self.stream = self.zf.open(self._info("images.npy"), "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (count,) + tuple(image_shape)}
        np.lib.format.write_array_header_2_0(self.stream, header)

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        if "compress_level" in zipfile.ZipInfo.__slots__:  # Python >= 3.13
            info.compress_level = self.level
        else:
            info._compresslevel = self.level
        info.external_attr = 0o600 << 16
        return info

    def add_images(self, images: np.ndarray) -> None:
        from cvtool.io.atomic import naming_write_errors

        with naming_write_errors(self.path):
            self.stream.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        self.written += images.shape[0]

    def close(self, arrays: dict[str, np.ndarray]) -> None:
        if self.written != self.expected:
            raise RuntimeError(f"npz writer got {self.written} images, expected {self.expected}")
        from cvtool.io.atomic import _commit, naming_write_errors

        with naming_write_errors(self.path):
            self.stream.close()
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
                self.zf.writestr(self._info(f"{name}.npy"), buf.getvalue())
            self.zf.close()
            _commit(self.tmp, self.path, self.overwrite)

    def abort(self) -> None:
        try:
            self.stream.close()
            self.zf.close()
        except Exception:  # noqa: BLE001 - best effort clean-up
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def _chunks(plan: SplitPlan, settings: SceneSettings, seed: int, opts: OutputOptions,
            images_dir: Path | None, pool_dir: str | None) -> list[_Chunk]:
    out = []
    for start in range(0, plan.count, opts.chunk):
        stop = min(plan.count, start + opts.chunk)
        order = None if plan.object_order is None else plan.object_order[start:stop]
        out.append(_Chunk(plan.name, start, stop, seed, settings, order,
                          None if images_dir is None else str(images_dir), opts.png_level,
                          opts.npz, pool_dir))
    return out


def _run_chunks(chunks: list[_Chunk], plan: SplitPlan, backgrounds: list[np.ndarray],
                opts: OutputOptions, work: Path) -> Iterator[tuple]:
    from cvtool.batch import default_jobs

    n_jobs = opts.jobs if opts.jobs > 0 else default_jobs()
    n_jobs = min(n_jobs, len(chunks))
    if n_jobs <= 1:
        for c in chunks:
            yield _render_chunk(c, plan.pool, backgrounds)
        return
    pool_dir = work / f"pool-{plan.name}"
    _save_pool(plan.pool, backgrounds, pool_dir)
    chunks = [_Chunk(**{**c.__dict__, "pool_dir": str(pool_dir)}) for c in chunks]
    from joblib import Parallel, delayed

    from cvtool.workers import call_watched

    parent = os.getpid()  # workers stop if this process is killed
    yield from Parallel(n_jobs=n_jobs, backend="loky", return_as="generator",
                        pre_dispatch="2*n_jobs")(delayed(call_watched)(_render_chunk, parent, c) for c in chunks)


def prepare_out(out: Path, splits: list[str], *, npz: bool, png: bool, overwrite: bool) -> None:
    """Refuse (exit 2) when a split output exists and ``overwrite`` is off."""
    existing = []
    for s in splits:
        if png and (out / s).exists():
            existing.append(out / s)
        if npz and (out / f"{s}.npz").exists():
            existing.append(out / f"{s}.npz")
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0]} exists{more}; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)


def write_split(plan: SplitPlan, settings: SceneSettings, *, seed: int, opts: OutputOptions,
                backgrounds: list[np.ndarray] | None, category_ids: np.ndarray,
                advance=lambda n: None) -> SplitResult:
    """Render and write one split; return its annotations.

    Parameters
    ----------
    plan : SplitPlan
    settings : SceneSettings
    seed : int
    opts : OutputOptions
    backgrounds : list of ndarray or None
    category_ids : (C,) int64 ndarray
        Category id of each class index.
    advance : callable
        Progress callback, called with the number of scenes finished.
    """
    from cvtool.io.atomic import temp_path_for

    out = opts.out
    final_dir = out / plan.name
    tmp_dir = temp_path_for(final_dir)
    work = temp_path_for(out / f"work-{plan.name}")
    images_dir = tmp_dir / "images" if opts.png else None
    if images_dir is not None:
        images_dir.mkdir(parents=True)
    work.mkdir(parents=True)
    npz_writer = None
    h, w = settings.canvas
    shape = (h, w) if settings.channels == 1 else (h, w, 3)
    if opts.npz:
        npz_writer = NpzStreamWriter(out / f"{plan.name}.npz", image_shape=shape, count=plan.count,
                                     level=opts.npz_level, overwrite=opts.overwrite)
    boxes, labels, counts = [], [], []
    try:
        chunks = _chunks(plan, settings, seed, opts, images_dir, None)
        for b, lab, cnt, imgs in _run_chunks(chunks, plan, backgrounds or [], opts, work):
            boxes.append(b)
            labels.append(lab)
            counts.append(cnt)
            if npz_writer is not None:
                npz_writer.add_images(imgs)
            advance(len(cnt))
        all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        class_idx = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        cnts = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        box_image = np.repeat(np.arange(plan.count, dtype=np.int64), cnts)
        result = SplitResult(plan.name, plan.count, shape, all_boxes, category_ids[class_idx], box_image)
        if npz_writer is not None:
            npz_writer.close({
                "boxes": all_boxes.astype(np.float32), "labels": result.labels,
                "box_image": box_image, "category_ids": category_ids.astype(np.int64),
                "category_names": np.array(plan.pool.class_names, dtype=str)})
            npz_writer = None
        if opts.png:
            write_annotations(tmp_dir, result, plan.pool.class_names, category_ids, fmt=opts.format)
            commit_dir(tmp_dir, final_dir, overwrite=opts.overwrite)
        return result
    except OSError as exc:  # name the file as it would have appeared, not the temp folder
        from cvtool.io.atomic import relocate_write_error

        raise relocate_write_error(exc, tmp_dir, final_dir) from None
    finally:
        if npz_writer is not None:
            npz_writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_annotations(split_dir: Path, result: SplitResult, class_names: tuple[str, ...],
                      category_ids: np.ndarray, *, fmt: str = "coco") -> None:
    """Write the split's annotation file(s) into ``split_dir`` (which holds ``images/``)."""
    from cvtool.datasets.core import Category, Dataset, ImageRecord

    h, w = result.image_shape[:2]
    ds = Dataset(
        images=[ImageRecord(i + 1, image_name(i), w, h) for i in range(result.num_images)],
        categories=[Category(int(c), n) for c, n in zip(category_ids, class_names)],
        ann_image_ids=result.box_image + 1, ann_boxes=result.boxes.astype(np.float64),
        ann_labels=result.labels, ann_iscrowd=np.zeros(len(result.labels), dtype=bool),
        ann_difficult=np.zeros(len(result.labels), dtype=bool), root=split_dir)
    write_dataset_files(ds, split_dir, fmt=fmt)


def write_dataset_files(ds, split_dir: Path, *, fmt: str = "coco") -> None:
    """Write ``ds``'s annotations in ``fmt`` into ``split_dir`` (images already under ``split_dir/images``)."""
    if fmt == "coco":
        from cvtool.datasets.coco import write_coco

        write_coco(ds, split_dir / "annotations.json", overwrite=True)
    elif fmt == "yolo":  # split_dir/labels/*.txt, data.yaml, classes.txt
        from cvtool.datasets.yolo import write_yolo

        write_yolo(ds, split_dir, overwrite=True, images="none")
    elif fmt == "voc":  # split_dir/Annotations/*.xml naming images/NNNNNN.png
        from cvtool.datasets.voc import write_voc

        write_voc(ds, split_dir, overwrite=True, images="none")
    else:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")


def write_yolo_root(out: Path, class_names: tuple[str, ...]) -> Path | None:
    """``OUT/data.yaml`` for Ultralytics over the YOLO splits written so far.

    Names ``train``, ``val`` and ``test`` for each ``OUT/{split}`` that holds
    ``images/`` and ``labels/`` (the per-split ``data.yaml`` files stay).
    Nothing is written without a ``train`` split (Ultralytics requires one).
    Returns the path written, or None.
    """
    from cvtool.datasets.yolo import write_data_yaml

    entries = {s: f"{s}/images" for s in ("train", "val", "test")
               if (out / s / "images").is_dir() and (out / s / "labels").is_dir()}
    if "train" not in entries:
        return None
    return write_data_yaml(out, list(class_names), entries, overwrite=True)


def commit_dir(tmp_dir: Path, final_dir: Path, *, overwrite: bool) -> None:
    """Rename a finished temporary folder to its final name (replacing it only with ``overwrite``)."""
    if final_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{final_dir} exists; pass --overwrite to replace it")
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


def write_classes(out: Path, class_names: tuple[str, ...]) -> None:
    """``OUT/classes.txt``: one class name per line, in category-id order."""
    from cvtool.io.atomic import atomic_write_text

    atomic_write_text(out / "classes.txt", "".join(f"{n}\n" for n in class_names), overwrite=True)

"""Box-aware augmentation: one affine matrix moves the image and its boxes together.

Geometry (flips, rotation, shear, scale, translation, random crop) is composed
into a single 3x3 matrix in *continuous* pixel coordinates (pixel ``i`` covers
``[i, i + 1)``, the convention of xyxy boxes).  The image is warped with the
same matrix expressed for OpenCV's pixel-centre convention, so a box corner and
the pixel edge it sits on move to the same place.  Each box becomes the
axis-aligned hull of its four transformed corners, is clipped to the image,
and is dropped when less than ``min_visible`` of the hull's area stays inside
the image (default 0.5).  Photometric changes (colour shift, brightness,
contrast, blur, noise) do not touch boxes.

The maths (:func:`affine_matrix`, :func:`warp_image`, :func:`transform_boxes`,
:func:`photometric`) is pure; :func:`sample_params` draws the random settings
from a generator, and :func:`augment` ties them together.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from cvtool.errors import BadInputError, UsageError


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random transformations (each disabled at its neutral value).

    Attributes
    ----------
    flip_h, flip_v : float
        Probabilities of a horizontal / vertical flip.
    rotate : float
        Rotation angle drawn uniformly in ``[-rotate, rotate]`` degrees.
    shear : float
        Horizontal and vertical shear angles drawn in ``[-shear, shear]`` degrees.
    scale : (float, float)
        Zoom factor range (about the image centre).
    translate : float
        Shift drawn in ``[-translate, translate]`` times the width / height.
    crop : float
        Random crop: a window whose sides are ``[crop, 1]`` times the image's,
        resized back to the image size (1: off).
    colour : float
        Per-channel shift drawn in ``[-colour, colour]`` grey levels.
    brightness : float
        Added ``[-brightness, brightness]`` x 255.
    contrast : float
        Deviation from the image mean multiplied by ``1 + [-contrast, contrast]``.
    blur : float
        Gaussian blur sigma drawn in ``[0, blur]`` pixels.
    noise : float
        Gaussian noise sigma (grey levels).
    min_visible : float
        Boxes keeping less than this fraction of their transformed area are dropped.
    border : {'constant', 'reflect', 'replicate'}
        How the warp fills pixels from outside the source.
    """

    flip_h: float = 0.5
    flip_v: float = 0.0
    rotate: float = 0.0
    shear: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    crop: float = 1.0
    colour: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    min_visible: float = 0.5
    border: str = "constant"

    def validate(self) -> AugmentSettings:
        for name in ("flip_h", "flip_v", "min_visible"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise UsageError(f"--{name.replace('_', '-')} {v}: expected 0..1")
        for name in ("rotate", "shear", "translate", "colour", "brightness", "contrast", "blur", "noise"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise UsageError(f"--{name} {v}: expected a finite value >= 0")
        if self.shear >= 80:
            raise UsageError(f"--shear {self.shear}: expected < 80 degrees")
        if not 0 < self.crop <= 1:
            raise UsageError(f"--crop {self.crop}: expected a side fraction in (0, 1]")
        lo, hi = self.scale
        if not 0 < lo <= hi or not math.isfinite(hi):
            raise UsageError(f"--scale {lo}-{hi}: expected 0 < LOW <= HIGH")
        if self.border not in BORDERS:
            raise UsageError(f"--border {self.border!r}: choose one of {', '.join(BORDERS)}")
        return self


BORDERS = ("constant", "reflect", "replicate")


@dataclass(frozen=True)
class AugmentParams:
    """One draw of :class:`AugmentSettings` (what :func:`augment` applies)."""

    flip_h: bool = False
    flip_v: bool = False
    angle: float = 0.0
    shear_x: float = 0.0
    shear_y: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x, y, w, h as fractions
    colour: tuple[float, ...] = field(default_factory=tuple)
    brightness: float = 0.0
    contrast: float = 1.0
    blur: float = 0.0
    noise: float = 0.0


def sample_params(settings: AugmentSettings, rng: np.random.Generator, *, channels: int = 1) -> AugmentParams:
    """Draw one set of parameters (always the same number of draws, so streams stay aligned)."""
    u = rng.uniform(size=14)
    cw = settings.crop + (1 - settings.crop) * u[8]
    ch = settings.crop + (1 - settings.crop) * u[9]
    lo, hi = settings.scale
    return AugmentParams(
        flip_h=bool(u[0] < settings.flip_h),
        flip_v=bool(u[1] < settings.flip_v),
        angle=float((2 * u[2] - 1) * settings.rotate),
        shear_x=float((2 * u[3] - 1) * settings.shear),
        shear_y=float((2 * u[4] - 1) * settings.shear),
        scale=float(lo + (hi - lo) * u[5]),
        shift=(float((2 * u[6] - 1) * settings.translate), float((2 * u[7] - 1) * settings.translate)),
        crop=(float((1 - cw) * u[10]), float((1 - ch) * u[11]), float(cw), float(ch)),
        colour=tuple(float(v) for v in rng.uniform(-settings.colour, settings.colour, size=channels)),
        brightness=float((2 * u[12] - 1) * settings.brightness * 255),
        contrast=float(1 + (2 * u[13] - 1) * settings.contrast),
        blur=float(rng.uniform(0, settings.blur)),
        noise=settings.noise,
    )


def affine_matrix(params: AugmentParams, size: tuple[int, int]) -> np.ndarray:
    """3x3 matrix mapping continuous source coordinates to output coordinates.

    Parameters
    ----------
    params : AugmentParams
    size : (width, height)

    Returns
    -------
    (3, 3) float64 ndarray
        ``crop . translate . centre^-1 . rotate . shear . scale . centre . flip``
        (flips first, then the centred linear part, then the shift, then the
        crop window stretched back to the full image).
    """
    w, h = size
    m = np.eye(3)
    if params.flip_h:
        m = np.array([[-1.0, 0, w], [0, 1, 0], [0, 0, 1]]) @ m
    if params.flip_v:
        m = np.array([[1.0, 0, 0], [0, -1, h], [0, 0, 1]]) @ m
    cx, cy = w / 2.0, h / 2.0
    a = math.radians(params.angle)
    rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    shear = np.array([[1, math.tan(math.radians(params.shear_x)), 0],
                      [math.tan(math.radians(params.shear_y)), 1, 0], [0, 0, 1]])
    zoom = np.diag([params.scale, params.scale, 1.0])
    to_c = np.array([[1.0, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    from_c = np.array([[1.0, 0, cx + params.shift[0] * w], [0, 1, cy + params.shift[1] * h], [0, 0, 1]])
    m = from_c @ rot @ shear @ zoom @ to_c @ m
    x0, y0, fw, fh = params.crop
    crop = np.array([[1 / fw, 0, -x0 * w / fw], [0, 1 / fh, -y0 * h / fh], [0, 0, 1]])
    return crop @ m


def warp_image(image: np.ndarray, matrix: np.ndarray, *, border: str = "constant",
               interpolation: str = "linear") -> np.ndarray:
    """Warp ``image`` by a continuous-coordinate ``matrix`` (see :func:`affine_matrix`), same size.

    OpenCV samples at pixel centres (index coordinates), so the matrix is
    conjugated by a half-pixel shift: ``M_idx = T(-0.5) M T(+0.5)``.
    """
    import cv2

    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    half = np.array([[1.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    m_idx = np.linalg.inv(half) @ matrix @ half
    h, w = image.shape[:2]
    flags = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
    mode = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101,
            "replicate": cv2.BORDER_REPLICATE}[border]
    return cv2.warpAffine(image, m_idx[:2], (w, h), flags=flags, borderMode=mode, borderValue=0)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray, size: tuple[int, int], *,
                    min_visible: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Move xyxy boxes with an affine ``matrix``; clip; drop the mostly hidden.

    Parameters
    ----------
    boxes : (N, 4) float ndarray
        xyxy pixel boxes.
    matrix : (3, 3) ndarray
        Continuous-coordinate affine map (see :func:`affine_matrix`).
    size : (width, height)
        Output image size (clipping window).
    min_visible : float
        Keep a box when clipped area / hull area >= this.

    Returns
    -------
    boxes : (K, 4) float64 ndarray
        Hulls of the four transformed corners, clipped to the image.
    keep : (K,) int64 ndarray
        Indices of the kept input boxes.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)  # (N, 4, 2)
    pts = corners @ matrix[:2, :2].T + matrix[:2, 2]
    hull = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
    w, h = size
    clipped = hull.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, w)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, h)
    area = (hull[:, 2] - hull[:, 0]) * (hull[:, 3] - hull[:, 1])
    kept_area = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
    ok = (kept_area > 0) & (kept_area >= min_visible * np.maximum(area, 1e-12))
    keep = np.flatnonzero(ok).astype(np.int64)
    return clipped[keep], keep


def photometric(image: np.ndarray, params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Colour shift, brightness, contrast, blur and noise on an 8-bit image (boxes unchanged)."""
    import cv2

    if not (any(params.colour) or params.brightness or params.contrast != 1 or params.blur or params.noise):
        return image
    out = image.astype(np.float32)
    if any(params.colour):
        shift = np.array(params.colour, dtype=np.float32)
        out += shift[0] if out.ndim == 2 else shift[: out.shape[2]]
    if params.contrast != 1:
        out = (out - out.mean()) * params.contrast + out.mean()
    out += params.brightness
    if params.blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), params.blur)
    if params.noise > 0:
        out += rng.normal(0, params.noise, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def augment(image: np.ndarray, boxes: np.ndarray, settings: AugmentSettings, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random augmentation of an image and its boxes.

    Parameters
    ----------
    image : (H, W) or (H, W, C) uint8 ndarray
    boxes : (N, 4) float ndarray, xyxy pixels
    settings : AugmentSettings
    rng : numpy.random.Generator

    Returns
    -------
    image : same shape and dtype
    boxes : (K, 4) float64 ndarray
    keep : (K,) int64 ndarray
        Indices of the input boxes that survived (use it to pick labels).
    """
    if image.dtype != np.uint8:
        raise ValueError(f"augment needs an 8-bit image, got {image.dtype}")
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    params = sample_params(settings, rng, channels=channels)
    m = affine_matrix(params, (w, h))
    out = image if np.allclose(m, np.eye(3)) else warp_image(image, m, border=settings.border)
    new_boxes, keep = transform_boxes(boxes, m, (w, h), min_visible=settings.min_visible)
    return photometric(out, params, rng), new_boxes, keep


# ---------------------------------------------------------------------------
# Whole datasets
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageJob:
    index: int
    path: str
    width: int  # declared by the annotations; the decoded image must match
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    flags: np.ndarray  # (K, 2) bool: iscrowd, difficult


def _augment_chunk(jobs: list[_ImageJob], *, settings: AugmentSettings, copies: int, keep_original: bool,
                   seed: int, images_dir: str, max_pixels: int) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Augment a few images; write their PNGs.

    Returns, per output image, ``(j, width, height, boxes, labels, flags)``, and per
    unreadable input ``(None, path, reason)`` (the job goes on without it).
    """
    import os

    import cv2

    from cvtool.datasets.core import ImageRecord, check_image_shape
    from cvtool.io.atomic import naming_write_errors
    from cvtool.io.images import encode_image, read_image

    per = copies + int(keep_original)
    out = []
    for job in jobs:
        try:
            image = read_image(job.path, max_pixels=max_pixels)
            declared = ImageRecord(job.index, job.path, job.width, job.height)
            check_image_shape(declared, image.shape, path=job.path)
            if image.dtype != np.uint8:
                raise ValueError(f"{job.path}: {image.dtype} image; augment works on 8-bit images")
        except Exception as exc:  # noqa: BLE001 - CvtoolError and friends: report, skip
            out.append((None, job.path, str(exc) or type(exc).__name__))
            continue
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        h, w = image.shape[:2]
        for k in range(per):
            if keep_original and k == 0:
                img, b, lab, flags = image, job.boxes, job.labels, job.flags
            else:
                rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA06, job.index, k]))
                img, b, keep = augment(image, job.boxes, settings, rng)
                lab, flags = job.labels[keep], job.flags[keep]
            j = job.index * per + k
            name = os.path.join(images_dir, f"{j:06d}.png")
            with naming_write_errors(name), open(name, "wb") as fh:
                fh.write(encode_image(img, ".png", params=[cv2.IMWRITE_PNG_COMPRESSION, 1]))
            out.append((j, w, h, np.asarray(b, dtype=np.float64).reshape(-1, 4), np.asarray(lab, dtype=np.int64),
                        np.asarray(flags, dtype=bool).reshape(-1, 2)))
    return out


def augment_dataset(ds, settings: AugmentSettings, *, out_dir, copies: int = 1, keep_original: bool = False,
                    seed: int = 0, jobs: int = 0, fmt: str = "coco", overwrite: bool = False,
                    max_pixels: int = 200_000_000, chunk: int = 64, advance=lambda n: None,
                    on_failure=lambda path, reason: None) -> dict:
    """Write ``copies`` augmented versions of every image of ``ds`` to ``out_dir`` (a split folder).

    Output image ``i * (copies + keep_original) + k`` is named
    ``images/NNNNNN.png``; its generator is seeded from ``(seed, i, k)`` so the
    result does not depend on ``jobs``.  Categories, crowd and difficult flags
    are kept (COCO segment areas are not: areas become box areas).

    Unreadable images are reported through ``on_failure(path, reason)``, listed
    under ``"failed"`` and skipped; the rest is written.

    Returns
    -------
    dict
        ``{"images": n, "boxes": m, "dropped": d, "failed": [{"path", "reason"}, ...]}``.

    Raises
    ------
    BadInputError
        No image at all could be read.
    """
    from pathlib import Path

    from cvtool.batch import default_jobs
    from cvtool.datasets.core import Dataset, ImageRecord
    from cvtool.io.atomic import temp_path_for
    from cvtool.prepare.writer import commit_dir, image_name, write_dataset_files, write_yolo_root

    settings.validate()
    if copies < 0 or (copies == 0 and not keep_original):
        raise UsageError(f"--copies {copies}: expected >= 1 (or 0 with --keep-original)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UsageError(f"{out_dir} exists; pass --overwrite to replace it")
    jobs_list = []
    for i, im in enumerate(ds.images):
        idx = ds.annotations_of(im.id)
        flags = np.stack([ds.ann_iscrowd[idx], ds.ann_difficult[idx]], axis=1).astype(bool)
        jobs_list.append(_ImageJob(i, str(ds.image_path(im)), im.width, im.height, ds.ann_boxes[idx],
                                   ds.ann_labels[idx], flags))
    chunks = [jobs_list[s:s + chunk] for s in range(0, len(jobs_list), chunk)]
    tmp = temp_path_for(out_dir)
    (tmp / "images").mkdir(parents=True)
    kwargs = dict(settings=settings, copies=copies, keep_original=keep_original, seed=seed,
                  images_dir=str(tmp / "images"), max_pixels=max_pixels)
    n_jobs = min(jobs if jobs > 0 else default_jobs(), max(1, len(chunks)))
    results = []
    try:
        if n_jobs <= 1:
            stream = (_augment_chunk(c, **kwargs) for c in chunks)
        else:
            from joblib import Parallel, delayed

            from cvtool.workers import call_watched

            parent = os.getpid()  # workers stop if this process is killed
            stream = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
                delayed(call_watched)(_augment_chunk, parent, c, **kwargs) for c in chunks)
        failures = []
        for res in stream:
            for r in res:
                if r[0] is None:
                    failures.append({"path": r[1], "reason": r[2]})
                    on_failure(r[1], r[2])
                else:
                    results.append(r)
            advance(len(res))
        if not results:
            raise BadInputError(f"no image could be augmented ({len(failures)} failed)")
        images = [ImageRecord(r[0] + 1, image_name(r[0]), r[1], r[2]) for r in results]
        counts = np.array([len(r[4]) for r in results], dtype=np.int64)
        boxes = np.concatenate([r[3] for r in results])
        labels = np.concatenate([r[4] for r in results])
        flags = np.concatenate([r[5] for r in results])
        k = len(labels)
        out_ds = Dataset(images=images, categories=list(ds.categories),
                         ann_image_ids=np.repeat(np.array([im.id for im in images], dtype=np.int64), counts),
                         ann_boxes=boxes, ann_labels=labels, ann_iscrowd=flags[:, 0].copy(),
                         ann_difficult=flags[:, 1].copy(), root=tmp)
        write_dataset_files(out_ds, tmp, fmt=fmt)
        commit_dir(tmp, out_dir, overwrite=overwrite)
        if fmt == "yolo":  # OUT/data.yaml over OUT's splits, out_dir being OUT/{split}
            write_yolo_root(out_dir.parent, tuple(c.name for c in sorted(ds.categories, key=lambda c: c.id)))
    except OSError as exc:  # name the file as it would have appeared, not the temp folder
        from cvtool.io.atomic import relocate_write_error

        raise relocate_write_error(exc, tmp, out_dir) from None
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    per = copies + int(keep_original)
    kept_in = int(sum(len(j.labels) for j in jobs_list)) - int(sum(
        len(j.labels) for j in jobs_list if j.path in {f["path"] for f in failures}))
    return {"images": len(results), "boxes": int(k), "dropped": int(kept_in * per - k), "failed": failures}

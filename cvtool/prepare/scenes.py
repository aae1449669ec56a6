"""Synthetic scenes: objects from an :class:`~cvtool.prepare.sources.ObjectPool` pasted on canvases.

Pure functions of (pool, settings, random generator).  Every scene gets its own
generator, seeded from ``(seed, split, index)`` through
:class:`numpy.random.SeedSequence` (:func:`scene_rng`), so a scene does not
depend on which worker makes it or in what order: the same seed gives the same
dataset whatever ``--jobs``.

Boxes are float xyxy pixels:

* localisation, default: the pasted object's full extent (28x28 for a digit at
  scale 1: MNIST's own frame, the "seed study" convention);
* localisation ``tight=True`` and every detection box: the extent of the ink,
  i.e. of the object's pixels with alpha above ``ink_threshold`` (default 0),
  measured on the scaled object before any other object covers it (amodal).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from cvtool.errors import UsageError
from cvtool.prepare.sources import ObjectPool

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split`` (independent of workers and order)."""
    code = SPLIT_CODES.get(split, zlib.crc32(split.encode("utf-8")) + 3)
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, code, int(index)]))


@dataclass(frozen=True)
class SceneSettings:
    """How scenes are made (shared by localisation and detection).

    Attributes
    ----------
    kind : {'localization', 'detection'}
    canvas : (int, int)
        Canvas ``(height, width)``.
    channels : {1, 3}
        Grey or BGR canvases.
    scale : (float, float)
        Uniform scale range applied to each object.
    tight : bool
        Localisation only: ink box instead of the full extent (detection is always tight).
    ink_threshold : int
        Alpha above this is ink (0..254).
    noise : float
        Standard deviation of Gaussian pixel noise added to the finished canvas (grey levels).
    clutter : int
        Number of ``clutter_size`` square fragments of other objects pasted under the objects.
    clutter_size : int
    objects : (int, int)
        Detection: object count range (inclusive).
    max_iou : float
        Detection: largest IoU allowed between two boxes of a scene.
    min_visible : float
        Detection: smallest fraction of an object's ink that must stay uncovered.
    tries : int
        Detection: positions tried per object before the scene is restarted.
    restarts : int
        Detection: scene restarts before giving up with an error.
    """

    kind: str = "localization"
    canvas: tuple[int, int] = (75, 75)
    channels: int = 1
    scale: tuple[float, float] = (1.0, 1.0)
    tight: bool = False
    ink_threshold: int = 0
    noise: float = 0.0
    clutter: int = 0
    clutter_size: int = 8
    objects: tuple[int, int] = (3, 5)
    max_iou: float = 0.2
    min_visible: float = 0.75
    tries: int = 100
    restarts: int = 20

    def validate(self, pool: ObjectPool) -> SceneSettings:
        """Check the settings against the pool; raise :class:`UsageError` naming the bad value."""
        h, w = self.canvas
        if h < 1 or w < 1:
            raise UsageError(f"--canvas {w}x{h}: width and height must be positive")
        lo, hi = self.scale
        if not (0 < lo <= hi) or not np.isfinite(hi):
            raise UsageError(f"--scale {lo:g}-{hi:g}: expected 0 < LOW <= HIGH")
        if self.channels not in (1, 3):
            raise UsageError(f"channels must be 1 or 3, got {self.channels}")
        if not 0 <= self.ink_threshold < 255:
            raise UsageError(f"--ink-threshold {self.ink_threshold}: expected 0..254")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise UsageError(f"--noise {self.noise}: expected a standard deviation >= 0")
        if self.clutter < 0 or self.clutter_size < 1:
            raise UsageError(f"--clutter {self.clutter}: expected >= 0 fragments of size >= 1")
        if len(pool) == 0:
            raise UsageError("the object source is empty")
        oh, ow = (int(v) for v in pool.sizes.max(axis=0))
        sh, sw = _scaled_size(oh, ow, hi)
        if sh > h or sw > w:
            raise UsageError(
                f"--canvas {w}x{h} is smaller than an object: the largest object is {ow}x{oh}, "
                f"{sw}x{sh} at scale {hi:g}; enlarge --canvas or lower --scale")
        if self.kind == "detection":
            a, b = self.objects
            if not 1 <= a <= b:
                raise UsageError(f"--objects {a}-{b}: expected 1 <= LOW <= HIGH")
            if not 0 <= self.max_iou <= 1:
                raise UsageError(f"--max-iou {self.max_iou}: expected 0..1")
            if not 0 <= self.min_visible <= 1:
                raise UsageError(f"--min-visible {self.min_visible}: expected 0..1")
            if self.tries < 1 or self.restarts < 1:
                raise UsageError("--tries and --restarts must be >= 1")
            if self.max_iou == 0:
                smallest = float(ink_areas(pool, self.ink_threshold).min()) * lo * lo
                if a * smallest > h * w:
                    raise UsageError(
                        f"--objects {a}-{b} cannot fit: {a} ink boxes of at least {smallest:.0f} pixels without "
                        f"overlap (--max-iou 0) need more than the {w}x{h} canvas")
        return self


class PlacementError(UsageError):
    """The overlap/visibility constraints could not be met within the allowed attempts."""


def _scaled_size(h: int, w: int, s: float) -> tuple[int, int]:
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def _object(pool: ObjectPool, i: int, s: float) -> tuple[np.ndarray | None, np.ndarray]:
    """Colour (or None) and alpha of object ``i`` scaled by ``s``."""
    import cv2

    h, w = (int(v) for v in pool.sizes[i])
    alpha = pool.alpha[i, :h, :w]
    colour = None if pool.colour is None else pool.colour[i, :h, :w]
    if s != 1.0:
        nh, nw = _scaled_size(h, w, s)
        if (nh, nw) != (h, w):
            alpha = cv2.resize(np.ascontiguousarray(alpha), (nw, nh), interpolation=cv2.INTER_LINEAR)
            if colour is not None:
                colour = cv2.resize(np.ascontiguousarray(colour), (nw, nh), interpolation=cv2.INTER_LINEAR)
    return colour, np.asarray(alpha)


def ink_box(alpha: np.ndarray, threshold: int = 0) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the pixels of ``alpha`` above ``threshold`` (full extent when none are)."""
    ink = alpha > threshold
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return 0, 0, alpha.shape[1], alpha.shape[0]
    cols = np.flatnonzero(ink.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def ink_areas(pool: ObjectPool, threshold: int = 0) -> np.ndarray:
    """(N,) int64: area of each object's ink box at scale 1 (vectorised :func:`ink_box`)."""
    ink = pool.alpha > threshold
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    h = np.where(rows.any(axis=1), rows.shape[1] - np.argmax(rows[:, ::-1], axis=1) - np.argmax(rows, axis=1),
                 pool.sizes[:, 0])
    w = np.where(cols.any(axis=1), cols.shape[1] - np.argmax(cols[:, ::-1], axis=1) - np.argmax(cols, axis=1),
                 pool.sizes[:, 1])
    return (h * w).astype(np.int64)


def blank_canvas(settings: SceneSettings, rng: np.random.Generator,
                 backgrounds: list[np.ndarray] | None) -> np.ndarray:
    """A float32 canvas: black, or a random crop of a random background (resized up when smaller)."""
    import cv2

    h, w = settings.canvas
    shape = (h, w) if settings.channels == 1 else (h, w, 3)
    if not backgrounds:
        return np.zeros(shape, dtype=np.float32)
    bg = backgrounds[int(rng.integers(len(backgrounds)))]
    bh, bw = bg.shape[:2]
    if bh < h or bw < w:
        f = max(h / bh, w / bw)
        bg = cv2.resize(bg, (max(w, int(np.ceil(bw * f))), max(h, int(np.ceil(bh * f)))),
                        interpolation=cv2.INTER_LINEAR)
        bh, bw = bg.shape[:2]
    y = int(rng.integers(bh - h + 1))
    x = int(rng.integers(bw - w + 1))
    crop = bg[y:y + h, x:x + w]
    if settings.channels == 1 and crop.ndim == 3:
        crop = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
    elif settings.channels == 3 and crop.ndim == 2:
        crop = np.repeat(crop[:, :, None], 3, axis=2)
    return crop.astype(np.float32)


def paste(canvas: np.ndarray, colour: np.ndarray | None, alpha: np.ndarray, top: int, left: int) -> None:
    """Blend an object into ``canvas`` (float32, in place): ``c = c (1 - a) + colour a``.

    ``colour`` None is white ink.  The object must lie inside the canvas.
    """
    h, w = alpha.shape
    region = canvas[top:top + h, left:left + w]
    a = alpha.astype(np.float32) * (1.0 / 255.0)
    if canvas.ndim == 3:
        a = a[:, :, None]
    if colour is None:
        region += (255.0 - region) * a
    else:
        col = colour.astype(np.float32)
        if canvas.ndim == 3 and col.ndim == 2:
            col = col[:, :, None]
        elif canvas.ndim == 2 and col.ndim == 3:
            col = col.mean(axis=2)  # colour crops on a grey canvas (only when forced)
        region += (col - region) * a


def add_clutter(canvas: np.ndarray, pool: ObjectPool, settings: SceneSettings, rng: np.random.Generator) -> None:
    """Paste ``settings.clutter`` random square fragments of random pool objects (not annotated)."""
    ch, cw = canvas.shape[:2]
    for _ in range(settings.clutter):
        i = int(rng.integers(len(pool)))
        colour, alpha = _object(pool, i, 1.0)
        fh, fw = min(settings.clutter_size, alpha.shape[0], ch), min(settings.clutter_size, alpha.shape[1], cw)
        y = int(rng.integers(alpha.shape[0] - fh + 1))
        x = int(rng.integers(alpha.shape[1] - fw + 1))
        top = int(rng.integers(ch - fh + 1))
        left = int(rng.integers(cw - fw + 1))
        paste(canvas, None if colour is None else colour[y:y + fh, x:x + fw], alpha[y:y + fh, x:x + fw], top, left)


def finish(canvas: np.ndarray, settings: SceneSettings, rng: np.random.Generator) -> np.ndarray:
    """Add noise, round and clip to uint8."""
    if settings.noise > 0:
        canvas = canvas + rng.normal(0.0, settings.noise, size=canvas.shape).astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def localization_scene(pool: ObjectPool, object_index: int, settings: SceneSettings,
                       rng: np.random.Generator, backgrounds: list[np.ndarray] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One object at a uniform random position on a canvas.

    Parameters
    ----------
    pool : ObjectPool
    object_index : int
        Which object to paste.
    settings : SceneSettings
        Canvas, scale range, tight, noise, clutter.
    rng : numpy.random.Generator
    backgrounds : list of ndarray, optional

    Returns
    -------
    image : (H, W) or (H, W, 3) uint8 ndarray
    boxes : (1, 4) float64 ndarray
        xyxy: the object's full extent, or its ink extent when ``settings.tight``.
    labels : (1,) int64 ndarray
        Class index into ``pool.class_names``.
    """
    s = float(rng.uniform(*settings.scale)) if settings.scale[0] != settings.scale[1] else float(settings.scale[0])
    colour, alpha = _object(pool, object_index, s)
    h, w = alpha.shape
    ch, cw = settings.canvas
    if colour is None and settings.channels == 1 and not (backgrounds or settings.clutter or settings.noise):
        # Fast path, same pixels: white ink on black is the alpha itself.
        top = int(rng.integers(ch - h + 1))
        left = int(rng.integers(cw - w + 1))
        image = np.zeros((ch, cw), dtype=np.uint8)
        image[top:top + h, left:left + w] = alpha
    else:
        canvas = blank_canvas(settings, rng, backgrounds)
        if settings.clutter:
            add_clutter(canvas, pool, settings, rng)
        top = int(rng.integers(ch - h + 1))
        left = int(rng.integers(cw - w + 1))
        paste(canvas, colour, alpha, top, left)
        image = finish(canvas, settings, rng)
    x1, y1, x2, y2 = ink_box(alpha, settings.ink_threshold) if settings.tight else (0, 0, w, h)
    boxes = np.array([[left + x1, top + y1, left + x2, top + y2]], dtype=np.float64)
    return image, boxes, np.array([pool.labels[object_index]], dtype=np.int64)


def _box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    if others.shape[0] == 0:
        return np.zeros(0)
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _try_layout(pool: ObjectPool, settings: SceneSettings, rng: np.random.Generator):
    """One attempt at a scene layout; None when an object found no valid place."""
    ch, cw = settings.canvas
    k = int(rng.integers(settings.objects[0], settings.objects[1] + 1))
    ids = rng.integers(len(pool), size=k)
    lo, hi = settings.scale
    scales = rng.uniform(lo, hi, size=k) if lo != hi else np.full(k, lo)
    owner = np.full((ch, cw), -1, dtype=np.int32)
    visible = np.zeros(k, dtype=np.int64)
    total = np.zeros(k, dtype=np.int64)
    placed = []
    boxes = np.zeros((0, 4), dtype=np.float64)
    for j in range(k):
        colour, alpha = _object(pool, int(ids[j]), float(scales[j]))
        h, w = alpha.shape
        ink = alpha > settings.ink_threshold
        bx1, by1, bx2, by2 = ink_box(alpha, settings.ink_threshold)
        for _ in range(settings.tries):
            top = int(rng.integers(ch - h + 1))
            left = int(rng.integers(cw - w + 1))
            box = np.array([left + bx1, top + by1, left + bx2, top + by2], dtype=np.float64)
            if j and np.any(_box_iou(box, boxes) > settings.max_iou):
                continue
            covered = owner[top:top + h, left:left + w][ink]
            if j:
                lost = np.bincount(covered[covered >= 0], minlength=j)[:j]
                if np.any((visible[:j] - lost) < settings.min_visible * total[:j]):
                    continue
                visible[:j] -= lost
            owner[top:top + h, left:left + w][ink] = j
            total[j] = visible[j] = int(ink.sum())
            placed.append((colour, alpha, top, left))
            boxes = np.vstack([boxes, box])
            break
        else:
            return None
    return ids, placed, boxes


def detection_scene(pool: ObjectPool, settings: SceneSettings, rng: np.random.Generator,
                    backgrounds: list[np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several objects on one canvas, with bounded overlap and occlusion.

    Objects are drawn uniformly from ``pool``, scaled uniformly in
    ``settings.scale`` and placed one after the other at random positions
    (later objects on top).  A position is accepted when the new tight box has
    IoU <= ``max_iou`` with every earlier box and every earlier object keeps at
    least ``min_visible`` of its ink uncovered.  An object that finds no place
    in ``tries`` positions restarts the scene; after ``restarts`` failed scenes
    :class:`PlacementError` says which constraint to relax.

    Returns
    -------
    image : (H, W) or (H, W, 3) uint8 ndarray
    boxes : (K, 4) float64 ndarray
        Tight (ink) xyxy boxes, in pasting order.
    labels : (K,) int64 ndarray
        Class indices into ``pool.class_names``.

    Raises
    ------
    PlacementError
        The constraints could not be met (never loops forever).
    """
    for _ in range(settings.restarts):
        layout = _try_layout(pool, settings, rng)
        if layout is not None:
            break
    else:
        a, b = settings.objects
        h, w = settings.canvas
        raise PlacementError(
            f"could not place {a}-{b} objects (scale {settings.scale[0]:g}-{settings.scale[1]:g}) on a "
            f"{w}x{h} canvas with --max-iou {settings.max_iou:g} and --min-visible {settings.min_visible:g} "
            f"in {settings.restarts} scenes x {settings.tries} tries per object; lower --objects or "
            "--scale, enlarge --canvas, or raise --max-iou / lower --min-visible")
    ids, placed, boxes = layout
    canvas = blank_canvas(settings, rng, backgrounds)
    if settings.clutter:
        add_clutter(canvas, pool, settings, rng)
    for colour, alpha, top, left in placed:
        paste(canvas, colour, alpha, top, left)
    image = finish(canvas, settings, rng)
    return image, boxes, pool.labels[ids].astype(np.int64)

"""Histograms of oriented gradients (Dalal & Triggs 2005) with two engines.

Engines
-------
``opencv`` (default)
    :class:`cv2.HOGDescriptor`.  Votes are interpolated trilinearly (bilinear
    between the four cells of a block and linear between the two nearest
    orientation bins), each block is weighted by a Gaussian (``win_sigma``,
    OpenCV default ``(block_w + block_h) / 8`` pixels), gradients are taken with
    ``[-1, 0, 1]`` and reflected image borders, and colour images use the
    channel with the largest gradient.  Blocks are normalised with L2-Hys
    only (clip at 0.2, then renormalise): OpenCV's vectorised code keeps the
    clip threshold of the first descriptor a process uses (a ``static``
    variable), so other thresholds, and with them plain L2, cannot be had
    reliably.  L2, L1 and L1-sqrt need the ``skimage`` engine.
``skimage``
    :func:`skimage.feature.hog` with its own parameters.  Votes go to one cell
    and one orientation bin (no interpolation), blocks are not weighted,
    gradients on the outermost pixel ring are zero, and the block stride is
    always one cell.  Signed gradients are not available.

Layouts
-------
The two engines order a window's descriptor differently:

* ``opencv``: blocks column by column (block x outer, block y inner), inside a
  block the cells column by column too, bins innermost: ``(bx, by, cx, cy, bin)``.
* ``skimage``: blocks row by row, cells row by row, bins innermost:
  ``(by, bx, cy, cx, bin)``.

:func:`reorder` converts between them.  With matched settings
(``win_sigma=0``, block stride one cell, unsigned) and after reordering the
engines agree closely but not exactly, the difference being the
interpolation of votes; ``tests/test_hog.py`` states the tolerance.

References
----------
N. Dalal and B. Triggs, "Histograms of Oriented Gradients for Human
Detection", CVPR 2005, doi:10.1109/CVPR.2005.177.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BLOCK_NORMS: tuple[str, ...] = ("L2-Hys", "L2", "L1", "L1-sqrt")
ENGINES: tuple[str, ...] = ("opencv", "skimage")
LAYOUTS: tuple[str, ...] = ("opencv", "skimage")
L2HYS_CLIP = 0.2


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a (w, h) pair, got {value!r}") from None
    return a, b


@dataclass(frozen=True)
class HogParams:
    """HOG settings shared by both engines.

    Attributes
    ----------
    cell : (w, h) int
        Cell size in pixels.
    block : (w, h) int
        Block size in cells.
    block_stride : (w, h) int
        Block stride in cells (``skimage``: must be ``(1, 1)``).
    bins : int
        Orientation bins over 180 degrees (unsigned) or 360 (signed).
    signed : bool
        Signed gradients (``opencv`` only).
    block_norm : {'L2-Hys', 'L2', 'L1', 'L1-sqrt'}
        Block normalisation (L2-Hys clips at 0.2 then renormalises).
    sqrt : bool
        Gamma (power-law) compression: square root of the intensities first.
    win_sigma : float or None
        ``opencv`` only: sigma in pixels of the Gaussian weighting each block;
        ``None`` is OpenCV's default ``(block_w + block_h) / 8``, ``0`` turns it off.
    """

    cell: tuple[int, int] = (8, 8)
    block: tuple[int, int] = (2, 2)
    block_stride: tuple[int, int] = (1, 1)
    bins: int = 9
    signed: bool = False
    block_norm: str = "L2-Hys"
    sqrt: bool = False
    win_sigma: float | None = None

    def __post_init__(self) -> None:
        for name in ("cell", "block", "block_stride"):
            w, h = _pair(getattr(self, name), name)
            if not (1 <= w <= 512 and 1 <= h <= 512):
                raise ValueError(f"{name} must be between 1 and 512, got {w}x{h}")
            object.__setattr__(self, name, (w, h))
        if self.block_stride[0] > self.block[0] or self.block_stride[1] > self.block[1]:
            raise ValueError(
                f"block_stride {self.block_stride[0]}x{self.block_stride[1]} cells is larger than "
                f"the block ({self.block[0]}x{self.block[1]} cells)")
        if not 2 <= int(self.bins) <= 360:
            raise ValueError(f"bins must be between 2 and 360, got {self.bins}")
        object.__setattr__(self, "bins", int(self.bins))
        if self.block_norm not in BLOCK_NORMS:
            raise ValueError(f"block_norm {self.block_norm!r} is not one of {', '.join(BLOCK_NORMS)}")
        if self.win_sigma is not None:
            if not np.isfinite(self.win_sigma) or self.win_sigma < 0:
                raise ValueError(f"win_sigma must be >= 0 or None, got {self.win_sigma}")
            object.__setattr__(self, "win_sigma", float(self.win_sigma))
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "sqrt", bool(self.sqrt))

    # ----------------------------------------------------------------- sizes
    @property
    def block_px(self) -> tuple[int, int]:
        """Block size in pixels ``(w, h)``."""
        return self.cell[0] * self.block[0], self.cell[1] * self.block[1]

    @property
    def stride_px(self) -> tuple[int, int]:
        """Block stride in pixels ``(w, h)``."""
        return self.cell[0] * self.block_stride[0], self.cell[1] * self.block_stride[1]

    @property
    def block_dim(self) -> int:
        """Length of one normalised block histogram."""
        return self.block[0] * self.block[1] * self.bins

    def describe(self) -> str:
        return (f"{self.cell[0]}x{self.cell[1]} cells and {self.block[0]}x{self.block[1]} blocks")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HogParams:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown HOG parameter(s): {', '.join(sorted(unknown))}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def min_size(params: HogParams) -> tuple[int, int]:
    """Smallest image ``(w, h)`` that holds one block."""
    return params.block_px


def fit_size(size: tuple[int, int], params: HogParams) -> tuple[int, int]:
    """Largest ``(w, h)`` not above ``size`` that a whole number of block strides fills.

    Raises
    ------
    ValueError
        ``size`` is smaller than one block (the message gives the minimum).
    """
    check_size(size, params.block_px, params)
    (w, h), (bw, bh), (sx, sy) = size, params.block_px, params.stride_px
    return bw + ((w - bw) // sx) * sx, bh + ((h - bh) // sy) * sy


def check_size(size: tuple[int, int], need: tuple[int, int], params: HogParams, what: str = "image") -> None:
    """Raise ``ValueError`` naming the minimum when ``size`` (w, h) is below ``need``."""
    if size[0] < need[0] or size[1] < need[1]:
        raise ValueError(
            f"{what} is {size[0]}x{size[1]}; HOG with {params.describe()} "
            f"needs at least {need[0]}x{need[1]}")


def grid_shape(size: tuple[int, int], params: HogParams) -> tuple[int, int]:
    """Blocks ``(rows, cols)`` in a window or image of ``size`` (w, h)."""
    (w, h), (bw, bh), (sx, sy) = size, params.block_px, params.stride_px
    return (h - bh) // sy + 1, (w - bw) // sx + 1


def check_window(window: tuple[int, int], params: HogParams) -> None:
    """Raise ``ValueError`` unless whole block strides fill ``window``."""
    check_size(window, params.block_px, params, what="window")
    (w, h), (bw, bh), (sx, sy) = window, params.block_px, params.stride_px
    if (w - bw) % sx or (h - bh) % sy:
        fw, fh = fit_size(window, params)
        raise ValueError(
            f"window {w}x{h} is not a whole number of block strides ({sx}x{sy} px) beyond one "
            f"block ({bw}x{bh} px); try {fw}x{fh} or {fw + sx}x{fh + sy}")


def descriptor_size(window: tuple[int, int], params: HogParams) -> int:
    """Length of the descriptor of a ``window`` (w, h)."""
    rows, cols = grid_shape(window, params)
    return rows * cols * params.block_dim


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


def as_hog_input(image: np.ndarray, *, gray: bool = False) -> np.ndarray:
    """Return a uint8 grey ``(H, W)`` or BGR ``(H, W, 3)`` image for HOG.

    16-bit images are scaled to 8 bits, alpha is dropped, ``gray=True``
    converts colour to grey.

    Raises
    ------
    ValueError
        Not a 2-D/3-D uint8/uint16 array.
    """
    import cv2

    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise ValueError(f"image must be an (H, W) or (H, W, C) array, got {getattr(image, 'shape', type(image))}")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"HOG needs an 8- or 16-bit image, got {image.dtype}")
    if image.ndim == 3:
        c = image.shape[2]
        if c == 1:
            image = image[:, :, 0]
        elif c == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        elif c != 3:
            raise ValueError(f"image has {c} channels; HOG takes 1, 3 or 4")
    if gray and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(image)


# ---------------------------------------------------------------------------
# OpenCV engine
# ---------------------------------------------------------------------------


def opencv_descriptor(params: HogParams, window: tuple[int, int]):
    """A :class:`cv2.HOGDescriptor` for ``window`` (w, h) with ``params`` (L2-Hys, clip 0.2).

    ``win_sigma=0`` becomes a sigma of 1e6 pixels: uniform block weights.
    """
    import cv2

    sigma = -1.0 if params.win_sigma is None else (1e6 if params.win_sigma == 0 else params.win_sigma)
    return cv2.HOGDescriptor(
        tuple(int(v) for v in window), params.block_px, params.stride_px, params.cell, params.bins,
        1, sigma, cv2.HOGDescriptor_L2Hys, L2HYS_CLIP, params.sqrt, 64, params.signed)


def dense_blocks(image: np.ndarray, params: HogParams) -> np.ndarray:
    """Normalised block histograms over a whole image (the OpenCV engine).

    Every window descriptor at a position on the block-stride grid is a
    re-arrangement of these blocks (see :func:`gather_windows`), so a sliding
    window search computes HOG once per image.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 ndarray
    params : HogParams

    Returns
    -------
    (rows, cols, block_dim) float32 ndarray
        Block ``(i, j)`` has its top-left corner at pixel
        ``(j * stride_w, i * stride_h)``; inside a block the order is
        OpenCV's ``(cx, cy, bin)``.

    Raises
    ------
    ValueError
        The image is smaller than one block.
    """
    image = as_hog_input(image)
    h, w = image.shape[:2]
    check_size((w, h), params.block_px, params)
    rows, cols = grid_shape((w, h), params)
    hog = opencv_descriptor(params, params.block_px)
    desc = hog.compute(image, winStride=params.stride_px, padding=(0, 0))
    return np.asarray(desc, dtype=np.float32).reshape(rows, cols, params.block_dim)


def gather_windows(blocks: np.ndarray, window_grid: tuple[int, int], *,
                   step: tuple[int, int] = (1, 1), layout: str = "opencv") -> np.ndarray:
    """Window descriptors gathered from a dense block grid.

    Parameters
    ----------
    blocks : (rows, cols, block_dim) ndarray
        From :func:`dense_blocks` (or skimage's block grid, with ``layout='skimage'``).
    window_grid : (wrows, wcols)
        Blocks per window (:func:`grid_shape` of the window).
    step : (sx, sy)
        Window stride in blocks.
    layout : {'opencv', 'skimage'}
        Block order inside a descriptor: column-major (OpenCV) or row-major.

    Returns
    -------
    (ny, nx, D) ndarray
        A view when possible; ``D = wrows * wcols * block_dim``.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    wr, wc = window_grid
    view = sliding_window_view(blocks, (wr, wc), axis=(0, 1))  # (ny, nx, K, wr, wc)
    view = view[:: step[1], :: step[0]]
    order = (0, 1, 4, 3, 2) if layout == "opencv" else (0, 1, 3, 4, 2)
    view = view.transpose(order)
    return view.reshape(view.shape[0], view.shape[1], -1)


# ---------------------------------------------------------------------------
# Both engines
# ---------------------------------------------------------------------------


@dataclass
class HogFeatures:
    """Descriptors of an image's windows.

    Attributes
    ----------
    features : (N, D) float32 ndarray
        One row per window.
    positions : (N, 2) int64 ndarray
        Top-left ``(x, y)`` of each window, row-major order.
    window : (w, h)
        Window size (for a whole image: the largest size whole blocks fill).
    grid : (rows, cols)
        Blocks per window.
    layout : {'opencv', 'skimage'}
        Descriptor order (see the module notes).
    """

    features: np.ndarray
    positions: np.ndarray
    window: tuple[int, int]
    grid: tuple[int, int]
    layout: str


def check_engine(engine: str, params: HogParams) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "opencv" and params.block_norm != "L2-Hys":
        raise ValueError(f"the opencv engine normalises blocks with L2-Hys only; use --engine skimage "
                         f"for {params.block_norm}")
    if engine == "skimage":
        if params.block_stride != (1, 1):
            raise ValueError("the skimage engine always uses a block stride of one cell; "
                             f"got {params.block_stride[0]}x{params.block_stride[1]} cells")
        if params.signed:
            raise ValueError("the skimage engine has no signed gradients; use --engine opencv")
        if params.win_sigma not in (None, 0.0):
            raise ValueError("win_sigma (Gaussian block weighting) exists only in the opencv engine")


def _skimage_blocks(image: np.ndarray, params: HogParams, *, visualize: bool = False):
    from skimage.feature import hog

    return hog(image, orientations=params.bins, pixels_per_cell=(params.cell[1], params.cell[0]),
               cells_per_block=(params.block[1], params.block[0]), block_norm=params.block_norm,
               visualize=visualize, transform_sqrt=params.sqrt, feature_vector=False,
               channel_axis=-1 if image.ndim == 3 else None)


MAX_DESCRIPTOR_BYTES = 2**30
"""Largest descriptor array one image may produce (windows x descriptor length x 4 bytes)."""


def compute_hog(
    image: np.ndarray,
    *,
    params: HogParams = HogParams(),
    engine: str = "opencv",
    window: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
) -> HogFeatures:
    """HOG descriptors of a whole image or of its sliding windows.

    Parameters
    ----------
    image : (H, W) or (H, W, 3|4) uint8/uint16 ndarray
        Grey or BGR(A).  Colour uses the channel with the strongest gradient.
    params : HogParams
    engine : {'opencv', 'skimage'}
    window : (w, h), optional
        Window size; ``None`` describes the whole image (cropped at the
        right/bottom to the largest size whole block strides fill).
    stride : (w, h), optional
        Window stride in pixels, a multiple of the block stride (default: the
        block stride).

    Returns
    -------
    HogFeatures
        ``features`` is ``(N, D)`` in the engine's own layout.

    Raises
    ------
    ValueError
        Bad engine/parameters, or the image is smaller than one block or one
        window (the message states the minimum size).

    Examples
    --------
    >>> img = np.zeros((128, 64), np.uint8)
    >>> compute_hog(img, window=(64, 128)).features.shape
    (1, 3780)
    """
    check_engine(engine, params)
    image = as_hog_input(image)
    h, w = image.shape[:2]
    sx, sy = params.stride_px
    if window is None:
        win = fit_size((w, h), params)
        step = (sx, sy)
    else:
        win = _pair(window, "window")
        check_window(win, params)
        check_size((w, h), win, params)
        step = _pair(stride, "stride") if stride is not None else (sx, sy)
        if step[0] <= 0 or step[1] <= 0 or step[0] % sx or step[1] % sy:
            raise ValueError(f"stride {step[0]}x{step[1]} must be a positive multiple of the "
                             f"block stride {sx}x{sy} px")
    grid = grid_shape(win, params)
    full = image  # skimage ignores the partial cells itself (and zeroes gradients on the image's own border)
    if window is None:
        image = np.ascontiguousarray(image[: win[1], : win[0]])
        h, w = win[1], win[0]
    nx, ny = (w - win[0]) // step[0] + 1, (h - win[1]) // step[1] + 1
    size = nx * ny * grid[0] * grid[1] * params.block_dim * 4
    if size > MAX_DESCRIPTOR_BYTES:
        raise ValueError(f"{nx * ny} windows of {win[0]}x{win[1]} on a {w}x{h} image make {size / 2**30:.1f} GiB "
                         f"of descriptors; at most {MAX_DESCRIPTOR_BYTES // 2**30} GiB per image "
                         "(use a larger stride or window, or a smaller image)")
    ys, xs = np.meshgrid(np.arange(ny) * step[1], np.arange(nx) * step[0], indexing="ij")
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    if engine == "opencv":
        hog = opencv_descriptor(params, win)
        desc = hog.compute(image, winStride=step, padding=(0, 0))
        feats = np.asarray(desc, dtype=np.float32).reshape(ny * nx, -1)
        return HogFeatures(feats, positions, win, grid, "opencv")
    blocks = _skimage_blocks(full, params)  # (rows, cols, by, bx, bins)
    blocks = blocks.reshape(blocks.shape[0], blocks.shape[1], -1).astype(np.float32)
    cube = gather_windows(blocks, grid, step=(step[0] // sx, step[1] // sy), layout="skimage")
    feats = np.ascontiguousarray(cube[:ny, :nx]).reshape(ny * nx, -1)
    return HogFeatures(feats, positions, win, grid, "skimage")


def reorder(features: np.ndarray, *, grid: tuple[int, int], params: HogParams,
            src: str, dst: str) -> np.ndarray:
    """Convert descriptors between the OpenCV and scikit-image layouts.

    Parameters
    ----------
    features : (..., D) ndarray
        ``D = rows * cols * block_w * block_h * bins``.
    grid : (rows, cols)
        Blocks per window.
    src, dst : {'opencv', 'skimage'}

    Returns
    -------
    (..., D) ndarray
    """
    for name, v in (("src", src), ("dst", dst)):
        if v not in LAYOUTS:
            raise ValueError(f"{name} layout {v!r} is not one of {', '.join(LAYOUTS)}")
    rows, cols = grid
    bw, bh = params.block
    lead = features.shape[:-1]
    if features.shape[-1] != rows * cols * bw * bh * params.bins:
        raise ValueError(f"descriptor length {features.shape[-1]} does not match a {rows}x{cols} "
                         f"grid of {bw}x{bh}-cell blocks with {params.bins} bins")
    if src == dst:
        return features
    n = len(lead)
    if src == "opencv":  # (bx, by, cx, cy, bin) -> (by, bx, cy, cx, bin)
        a = features.reshape(*lead, cols, rows, bw, bh, params.bins)
    else:  # (by, bx, cy, cx, bin) -> (bx, by, cx, cy, bin)
        a = features.reshape(*lead, rows, cols, bh, bw, params.bins)
    axes = tuple(range(n)) + (n + 1, n, n + 3, n + 2, n + 4)
    return np.ascontiguousarray(a.transpose(axes)).reshape(*lead, -1)


# ---------------------------------------------------------------------------
# Visualisation
# ---------------------------------------------------------------------------


def cell_histograms(descriptor: np.ndarray, *, grid: tuple[int, int], params: HogParams,
                    layout: str = "opencv") -> np.ndarray:
    """Per-cell histograms ``(cell_rows, cell_cols, bins)``: each cell's normalised
    histograms averaged over the blocks that contain it."""
    rows, cols = grid
    d = reorder(descriptor.reshape(-1), grid=grid, params=params, src=layout, dst="skimage")
    bw, bh = params.block
    sx, sy = params.block_stride
    d = d.reshape(rows, cols, bh, bw, params.bins)
    ncy, ncx = (rows - 1) * sy + bh, (cols - 1) * sx + bw
    acc = np.zeros((ncy, ncx, params.bins), np.float64)
    cnt = np.zeros((ncy, ncx, 1), np.float64)
    for cy in range(bh):
        for cx in range(bw):
            acc[cy: cy + rows * sy: sy, cx: cx + cols * sx: sx] += d[:, :, cy, cx]
            cnt[cy: cy + rows * sy: sy, cx: cx + cols * sx: sx] += 1
    return acc / np.maximum(cnt, 1)


def render_cells(cells: np.ndarray, *, cell: tuple[int, int], signed: bool = False) -> np.ndarray:
    """Draw one line glyph per cell and bin, brightness proportional to the bin.

    Each line runs through the cell centre perpendicular to the bin's gradient
    direction (along the edge), as in Dalal & Triggs' figures.

    Returns
    -------
    (cell_rows * cell_h, cell_cols * cell_w) uint8 ndarray
    """
    import cv2

    ncy, ncx, bins = cells.shape
    cw, ch = cell
    span = 2 * np.pi if signed else np.pi
    mids = span * (np.arange(bins) + 0.5) / bins
    radius = max(1.0, min(cw, ch) / 2.0 - 0.5)
    dx, dy = -np.sin(mids) * radius, np.cos(mids) * radius  # edge direction = gradient + 90 deg
    canvas = np.zeros((ncy * ch, ncx * cw), np.float32)
    top = float(cells.max()) or 1.0
    layer = np.zeros_like(canvas)
    for b in range(bins):
        layer[:] = 0
        for r in range(ncy):
            cy = r * ch + ch / 2.0
            for c in range(ncx):
                v = float(cells[r, c, b])
                if v <= 0:
                    continue
                cx = c * cw + cw / 2.0
                p1 = (int(round(cx - dx[b])), int(round(cy - dy[b])))
                p2 = (int(round(cx + dx[b])), int(round(cy + dy[b])))
                cv2.line(layer, p1, p2, v / top, 1, cv2.LINE_AA)
        canvas += layer
    # Scale by a high percentile rather than the maximum: a few strong cells would
    # otherwise leave every other glyph too dim to see.
    lit = canvas[canvas > 0]
    scale = float(np.percentile(lit, 99.5)) if lit.size else 1.0
    canvas = np.clip(canvas / max(scale, 1e-12), 0.0, 1.0)
    return (canvas * 255 + 0.5).astype(np.uint8)


def visualize_hog(image: np.ndarray, *, params: HogParams = HogParams(),
                  engine: str = "opencv") -> np.ndarray:
    """A picture of an image's HOG: one glyph per cell.

    ``skimage`` returns scikit-image's own ``visualize=True`` image; ``opencv``
    draws the cell histograms of :func:`cell_histograms` with :func:`render_cells`.

    Returns
    -------
    (H', W') uint8 ndarray
        ``H', W'`` cover the whole cells of the image.
    """
    check_engine(engine, params)
    image = as_hog_input(image)
    h, w = image.shape[:2]
    check_size((w, h), params.block_px, params)
    if engine == "opencv" and params.block_norm != "L2-Hys":
        raise ValueError(f"the opencv engine normalises blocks with L2-Hys only; use --engine skimage "
                         f"for {params.block_norm}")
    if engine == "skimage":
        _, vis = _skimage_blocks(image, params, visualize=True)
        vis = np.asarray(vis, dtype=np.float64)
        vis = vis / max(float(vis.max()), 1e-12)
        return (np.sqrt(vis) * 255 + 0.5).astype(np.uint8)
    res = compute_hog(image, params=params, engine="opencv")
    cells = cell_histograms(res.features[0], grid=res.grid, params=params, layout="opencv")
    return render_cells(cells, cell=params.cell, signed=params.signed)

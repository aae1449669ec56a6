"""Pure image operations behind ``cvtool filter``.

Every function takes an image ``(H, W)`` (grey) or ``(H, W, 3)`` (BGR) of dtype
``uint8``, ``uint16`` or float (nominal range 0..1) and returns an image of the
same dtype (see :mod:`cvtool.filters.dtypes` for rounding and saturation).
Alpha channels are split off by the pipeline (:mod:`cvtool.filters.parse`)
before an operation runs, so the functions here never see them.

Colour images are processed per channel, except: ``bilateral`` and
``nlmeans`` (joint colour weights), ``equalize`` and ``clahe`` (applied to the
luma channel Y of YCrCb, so hues do not shift), ``stretch`` (one range for all
channels) and the colour conversions.

Borders: spatial filters reflect without repeating the edge pixel
(``dcb|abcd|cba``, OpenCV ``BORDER_REFLECT_101``, SciPy ``mode='mirror'``),
except ``median``/``min``/``max`` (edge pixel repeated, SciPy ``'nearest'``) and
adaptive thresholds (edge pixel repeated, as OpenCV).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from cvtool.filters.dtypes import check_dtype, from_float, level, max_value

BORDER = cv2.BORDER_REFLECT_101

NOISE_KINDS = ("gaussian", "salt-pepper", "poisson", "speckle")
THRESHOLD_METHODS = ("fixed", "otsu", "adaptive")
ADAPTIVE_WEIGHTS = ("mean", "gaussian")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _per_channel(func: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return func(image)
    return np.dstack([func(np.ascontiguousarray(image[:, :, c])) for c in range(image.shape[2])])


def _cv_float(image: np.ndarray) -> np.ndarray:
    """float64 images go to float32 for OpenCV functions that only take 32F."""
    return image.astype(np.float32) if image.dtype == np.float64 else image


def _odd(name: str, k: int, minimum: int = 1) -> None:
    if k < minimum or k % 2 == 0:
        raise ValueError(f"{name}={k} must be an odd integer >= {minimum}")


def gaussian_ksize(sigma: float) -> int:
    """Kernel size used when only ``sigma`` is given: ``2 * ceil(3 * sigma) + 1``."""
    return 2 * math.ceil(3.0 * sigma) + 1


def _to_u16(image: np.ndarray) -> np.ndarray:
    return from_float(np.clip(image, 0.0, 1.0) * 65535.0, np.uint16)


def _from_u16(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return (image.astype(np.float64) / 65535.0).astype(dtype)


def _on_luma(func: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Apply a single-channel integer operation to grey, or to Y of YCrCb for colour."""
    dtype = image.dtype
    work = image if dtype in (np.uint8, np.uint16) else _to_u16(image)
    if work.ndim == 2:
        out = func(work)
    else:
        ycc = cv2.cvtColor(work, cv2.COLOR_BGR2YCrCb)
        ycc[:, :, 0] = func(np.ascontiguousarray(ycc[:, :, 0]))
        out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)
    return out if out.dtype == dtype else _from_u16(out, dtype)


# ---------------------------------------------------------------------------
# smoothing
# ---------------------------------------------------------------------------


def mean(image: np.ndarray, *, k: int = 3) -> np.ndarray:
    """Box (mean) filter over a ``k x k`` window.

    Parameters
    ----------
    image : (H, W[, 3]) uint8, uint16 or float ndarray
    k : int
        Window side, >= 1.

    Returns
    -------
    (H, W[, 3]) ndarray of the input dtype.
    """
    check_dtype(image)
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    return cv2.blur(image, (k, k), borderType=BORDER)


def weighted(image: np.ndarray) -> np.ndarray:
    """Weighted average with the 3x3 kernel ``[1,2,1]^T [1,2,1] / 16``."""
    check_dtype(image)
    k1 = np.array([1.0, 2.0, 1.0]) / 4.0
    return cv2.sepFilter2D(image, -1, k1, k1, borderType=BORDER)


def gaussian(image: np.ndarray, *, sigma: float | None = None, ksize: int | None = None) -> np.ndarray:
    """Gaussian blur.

    Parameters
    ----------
    sigma : float, optional
        Standard deviation in pixels (> 0).  Without ``ksize`` the kernel is
        ``2 * ceil(3 sigma) + 1`` wide.
    ksize : int, optional
        Odd kernel size.  Without ``sigma``, sigma follows OpenCV's rule
        ``0.3 * ((ksize - 1) / 2 - 1) + 0.8`` (computed here and passed on, so the
        kernel is an exact sampled Gaussian).  Neither: sigma = 1.
    """
    check_dtype(image)
    if sigma is None and ksize is None:
        sigma = 1.0
    if sigma is not None and sigma <= 0:
        raise ValueError(f"sigma={sigma} must be > 0")
    if ksize is None:
        ksize = gaussian_ksize(float(sigma))
    _odd("ksize", ksize)
    if sigma is None:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    return cv2.GaussianBlur(image, (ksize, ksize), sigmaX=float(sigma), sigmaY=float(sigma), borderType=BORDER)


def median(image: np.ndarray, *, k: int = 3) -> np.ndarray:
    """Median over a ``k x k`` window (odd ``k``); edge pixels repeated at the border."""
    check_dtype(image)
    _odd("k", k)
    if k == 1:
        return image.copy()
    if image.dtype == np.uint8 or (k <= 5 and image.dtype in (np.uint16, np.float32)):
        return cv2.medianBlur(image, k)
    from scipy import ndimage

    size = (k, k) if image.ndim == 2 else (k, k, 1)
    return ndimage.median_filter(image, size=size, mode="nearest")


def minimum(image: np.ndarray, *, k: int = 3) -> np.ndarray:
    """Minimum (grey erosion) over a ``k x k`` window."""
    check_dtype(image)
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    return cv2.erode(image, np.ones((k, k), np.uint8))


def maximum(image: np.ndarray, *, k: int = 3) -> np.ndarray:
    """Maximum (grey dilation) over a ``k x k`` window."""
    check_dtype(image)
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    return cv2.dilate(image, np.ones((k, k), np.uint8))


def bilateral(image: np.ndarray, *, d: int = 9, sigma_color: float = 25.0, sigma_space: float = 5.0) -> np.ndarray:
    """Edge-preserving bilateral filter (Tomasi and Manduchi, 1998).

    Parameters
    ----------
    d : int
        Neighbourhood diameter; 0 derives it from ``sigma_space``.
    sigma_color : float
        Range sigma on the 8-bit scale (0..255) whatever the dtype.
    sigma_space : float
        Spatial sigma in pixels.
    """
    check_dtype(image)
    dtype = image.dtype
    if dtype == np.uint8:
        return cv2.bilateralFilter(image, d, sigma_color, sigma_space, borderType=BORDER)
    work = image.astype(np.float32)
    out = cv2.bilateralFilter(work, d, level(sigma_color, dtype), sigma_space, borderType=BORDER)
    return from_float(out, dtype)


def nlmeans(image: np.ndarray, *, h: float = 10.0, template: int = 7, search: int = 21) -> np.ndarray:
    """Non-local means denoising (Buades, Coll and Morel, 2005) via OpenCV.

    ``h`` is the filter strength on the 8-bit scale.  uint8 colour uses OpenCV's
    coloured variant (CIELAB); uint16 uses the L1 patch norm per channel (the
    only norm OpenCV offers for 16 bits); float is quantised to 16 bits first.
    """
    check_dtype(image)
    _odd("template", template)
    _odd("search", search)
    dtype = image.dtype
    if dtype == np.uint8:
        if image.ndim == 3:
            return cv2.fastNlMeansDenoisingColored(image, None, h, h, template, search)
        return cv2.fastNlMeansDenoising(image, None, h, template, search)
    work = image if dtype == np.uint16 else _to_u16(image)

    def one(ch: np.ndarray) -> np.ndarray:
        return cv2.fastNlMeansDenoising(ch, h=[level(h, np.uint16)], templateWindowSize=template,
                                        searchWindowSize=search, normType=cv2.NORM_L1)

    out = _per_channel(one, work)
    return out if dtype == np.uint16 else _from_u16(out, dtype)


def wiener(image: np.ndarray, *, k: int = 3, noise: float | None = None) -> np.ndarray:
    """Adaptive Wiener filter from local mean and variance (Lim, 1990, sec. 9.2).

    ``out = m + max(0, 1 - noise / v) * (x - m)`` where ``m`` and ``v`` are the
    mean and variance over a ``k x k`` window (box filters, O(1) per pixel) --
    the same estimator as :func:`scipy.signal.wiener`, which pads with zeros;
    here the border is reflected.

    Parameters
    ----------
    k : int
        Window side (odd, >= 1).
    noise : float, optional
        Noise variance on the 8-bit scale (grey levels squared).  Default: the
        mean of the local variances over the image, per channel.
    """
    check_dtype(image)
    _odd("k", k)
    dtype = image.dtype
    scale = max_value(dtype) / 255.0

    def one(ch: np.ndarray) -> np.ndarray:
        x = ch.astype(np.float64)
        m = cv2.blur(x, (k, k), borderType=BORDER)
        v = cv2.blur(x * x, (k, k), borderType=BORDER) - m * m
        np.maximum(v, 0.0, out=v)
        nv = float(v.mean()) if noise is None else float(noise) * scale * scale
        gain = np.zeros_like(v)
        np.divide(nv, v, out=gain, where=v > 0)
        gain = 1.0 - gain
        out = m + gain * (x - m)
        out = np.where(v < nv, m, out)
        return from_float(out, dtype)

    return _per_channel(one, image)


# ---------------------------------------------------------------------------
# sharpening and custom kernels
# ---------------------------------------------------------------------------

LAPLACIAN_4 = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
LAPLACIAN_8 = np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], np.float32)


def correlate(image: np.ndarray, kernel: np.ndarray | Sequence[Sequence[float]], *, normalize: bool = False) -> np.ndarray:
    """Correlate with a custom kernel (OpenCV ``filter2D``: the kernel is not flipped).

    Parameters
    ----------
    kernel : (kh, kw) array-like of float
        Finite weights; the anchor is the centre (``kh // 2, kw // 2``).
    normalize : bool
        Divide by the sum of the weights (refused when the sum is 0).
    """
    check_dtype(image)
    kern = np.asarray(kernel, dtype=np.float64)
    if kern.ndim != 2 or kern.size == 0 or not np.isfinite(kern).all():
        raise ValueError("kernel must be a non-empty 2-D array of finite numbers")
    if normalize:
        total = kern.sum()
        if total == 0:
            raise ValueError("kernel weights sum to 0; cannot normalize")
        kern = kern / total
    ddepth = cv2.CV_64F if image.dtype == np.float64 else cv2.CV_32F
    out = cv2.filter2D(image, ddepth, kern.astype(np.float32 if ddepth == cv2.CV_32F else np.float64),
                       borderType=BORDER)
    return from_float(out, image.dtype)


def sharpen(image: np.ndarray, *, neighbours: int = 4, amount: float = 1.0) -> np.ndarray:
    """Laplacian sharpening: ``x - amount * laplacian(x)`` (identity plus the negated Laplacian).

    With ``amount=1`` the kernels are ``[[0,-1,0],[-1,5,-1],[0,-1,0]]`` (4
    neighbours) and ``[[-1,-1,-1],[-1,9,-1],[-1,-1,-1]]`` (8 neighbours).
    """
    if neighbours not in (4, 8):
        raise ValueError(f"neighbours={neighbours} must be 4 or 8")
    lap = LAPLACIAN_4 if neighbours == 4 else LAPLACIAN_8
    ident = np.zeros((3, 3), np.float32)
    ident[1, 1] = 1.0
    return correlate(image, ident - np.float32(amount) * lap)


def unsharp(image: np.ndarray, *, sigma: float = 1.0, amount: float = 1.0, threshold: float = 0.0) -> np.ndarray:
    """Unsharp mask: ``x + amount * (x - gaussian(x, sigma))``.

    Detail smaller than ``threshold`` (8-bit scale) in absolute value is left alone.
    """
    check_dtype(image)
    if sigma <= 0:
        raise ValueError(f"sigma={sigma} must be > 0")
    x = image.astype(np.float32)
    k = gaussian_ksize(sigma)
    detail = x - cv2.GaussianBlur(x, (k, k), sigma, borderType=BORDER)
    if threshold > 0:
        detail[np.abs(detail) < level(threshold, image.dtype)] = 0.0
    return from_float(x + np.float32(amount) * detail, image.dtype)


# ---------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------


def noise(image: np.ndarray, *, kind: str = "gaussian", sigma: float = 10.0, amount: float = 0.05,
          salt: float = 0.5, peak: float = 255.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Add noise, computed on the image scaled to 0..1 and clipped back into range.

    Parameters
    ----------
    kind : {'gaussian', 'salt-pepper', 'poisson', 'speckle'}
        ``gaussian``: ``x + N(0, sigma)``; ``speckle``: ``x + x * N(0, sigma)``;
        ``salt-pepper``: a fraction ``amount`` of pixel positions set to white
        (share ``salt``) or black, all channels alike; ``poisson``:
        ``Poisson(x * peak) / peak`` (``peak`` = photon count at full scale).
    sigma : float
        Standard deviation on the 8-bit scale (``sigma / 255`` of full range).
    rng : numpy.random.Generator
        Source of randomness (the CLI derives one per image from ``--seed``).
    """
    check_dtype(image)
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind {kind!r} is not one of {', '.join(NOISE_KINDS)}")
    rng = rng if rng is not None else np.random.default_rng()
    top = max_value(image.dtype)
    x = image.astype(np.float64) / top
    if kind == "gaussian":
        x = x + rng.normal(0.0, sigma / 255.0, size=x.shape)
    elif kind == "speckle":
        x = x + x * rng.normal(0.0, sigma / 255.0, size=x.shape)
    elif kind == "poisson":
        x = rng.poisson(np.clip(x, 0.0, None) * peak) / peak
    else:
        u = rng.random(size=x.shape[:2])
        hit = u < amount
        white = u < amount * salt
        if x.ndim == 3:
            hit, white = hit[:, :, None], white[:, :, None]
        x = np.where(hit, np.where(white, 1.0, 0.0), x)
    np.clip(x, 0.0, 1.0, out=x)
    return from_float(x * top, image.dtype)


# ---------------------------------------------------------------------------
# pointwise
# ---------------------------------------------------------------------------


def invert(image: np.ndarray) -> np.ndarray:
    """Negative: ``max - x`` (255, 65535 or 1.0)."""
    check_dtype(image)
    if np.issubdtype(image.dtype, np.floating):
        return (1.0 - image).astype(image.dtype)
    return (np.asarray(max_value(image.dtype), image.dtype) - image).astype(image.dtype)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold (Otsu, 1979): pixels ``> t`` are foreground.

    Integer images use one histogram bin per grey level; float images 256
    bins between their minimum and maximum (the bin centre is returned).
    """
    flat = np.asarray(values).ravel()
    if flat.dtype in (np.uint8, np.uint16):
        hist = np.bincount(flat, minlength=int(max_value(flat.dtype)) + 1).astype(np.float64)
        centres = np.arange(hist.size, dtype=np.float64)
    else:
        lo, hi = float(flat.min()), float(flat.max())
        if lo == hi:
            return lo
        hist, edges = np.histogram(flat, bins=256, range=(lo, hi))
        hist = hist.astype(np.float64)
        centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = np.divide(s0, w0, out=np.zeros_like(s0), where=w0 > 0)
    m1 = np.divide(s0[-1] - s0, w1, out=np.zeros_like(s0), where=w1 > 0)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between[:-1]))]) if hist.size > 1 else float(centres[0])


def threshold(image: np.ndarray, *, method: str = "fixed", t: float = 128.0, block: int = 11, c: float = 2.0,
              weights: str = "mean") -> np.ndarray:
    """Binarise to 0 / full scale (per channel), same dtype.

    Parameters
    ----------
    method : {'fixed', 'otsu', 'adaptive'}
        ``fixed``: ``x > t``; ``otsu``: ``x > otsu_threshold(x)``;
        ``adaptive``: ``x > local_mean(block) - c`` (``weights='gaussian'`` for a
        Gaussian-weighted mean), as OpenCV's ``adaptiveThreshold``.
    t, c : float
        On the 8-bit scale.
    block : int
        Odd neighbourhood side (>= 3) for ``adaptive``.
    """
    check_dtype(image)
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold method {method!r} is not one of {', '.join(THRESHOLD_METHODS)}")
    dtype = image.dtype
    top = max_value(dtype)

    def binary(mask: np.ndarray) -> np.ndarray:
        return (mask * top).astype(dtype)

    if method == "fixed":
        return binary(image > level(t, dtype))
    if method == "otsu":
        return _per_channel(lambda ch: binary(ch > otsu_threshold(ch)), image)
    _odd("block", block, 3)
    if weights not in ADAPTIVE_WEIGHTS:
        raise ValueError(f"weights={weights!r} is not one of {', '.join(ADAPTIVE_WEIGHTS)}")
    if dtype == np.uint8:
        how = cv2.ADAPTIVE_THRESH_MEAN_C if weights == "mean" else cv2.ADAPTIVE_THRESH_GAUSSIAN_C
        return _per_channel(lambda ch: cv2.adaptiveThreshold(ch, 255, how, cv2.THRESH_BINARY, block, c), image)
    border = cv2.BORDER_REPLICATE | cv2.BORDER_ISOLATED

    def adaptive(ch: np.ndarray) -> np.ndarray:
        x = ch.astype(np.float64)
        if weights == "mean":
            local = cv2.blur(x, (block, block), borderType=border)
        else:
            local = cv2.GaussianBlur(x, (block, block), 0, borderType=border)
        return binary(x > local - level(c, dtype))

    return _per_channel(adaptive, image)


def stretch(image: np.ndarray, *, low: float = 0.0, high: float = 100.0) -> np.ndarray:
    """Linear contrast stretch of the ``[low, high]`` percentiles to the full range.

    ``low=0, high=100`` is the min-max stretch.  One range is computed over all
    colour channels together (hues are kept).  A constant image is returned
    unchanged.
    """
    check_dtype(image)
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    if low == 0 and high == 100:
        lo, hi = float(image.min()), float(image.max())
    else:
        lo, hi = (float(v) for v in np.percentile(image, [low, high]))
    if hi <= lo:
        return image.copy()
    top = max_value(image.dtype)
    out = (image.astype(np.float64) - lo) * (top / (hi - lo))
    np.clip(out, 0.0, top, out=out)
    return from_float(out, image.dtype)


def slice_levels(image: np.ndarray, *, low: float = 100.0, high: float = 200.0, value: float = 255.0,
                 background: str = "keep") -> np.ndarray:
    """Grey-level slicing: pixels in ``[low, high]`` (8-bit scale) become ``value``.

    Others keep their level (``background='keep'``) or become 0 (``'zero'``).
    """
    check_dtype(image)
    if low > high:
        raise ValueError(f"low={low} must be <= high={high}")
    if background not in ("keep", "zero"):
        raise ValueError(f"background={background!r} is not one of keep, zero")
    dtype = image.dtype
    inside = (image >= level(low, dtype)) & (image <= level(high, dtype))
    fill = from_float(np.asarray(level(value, dtype)), dtype)
    rest = image if background == "keep" else np.zeros_like(image)
    return np.where(inside, fill, rest).astype(dtype)


def log_transform(image: np.ndarray, *, c: float | None = None) -> np.ndarray:
    """Log transform ``s = c * log(1 + r)`` on the 8-bit scale (``r`` in 0..255).

    Default ``c = 255 / log(256)`` maps 0..255 onto 0..255.
    """
    check_dtype(image)
    scale = max_value(image.dtype) / 255.0
    c = 255.0 / math.log(256.0) if c is None else c
    r = image.astype(np.float64) / scale
    return from_float(c * np.log1p(np.clip(r, 0.0, None)) * scale, image.dtype)


def power(image: np.ndarray, *, gamma: float = 1.0, c: float = 1.0, lam: float = 0.0) -> np.ndarray:
    """Power law ``s = c * (r + lambda) ** gamma`` with ``r`` scaled to 0..1.

    ``lam`` (``lambda`` in operation strings) is on the 8-bit scale; ``s`` is
    scaled back to the full range and saturated.
    """
    check_dtype(image)
    if gamma <= 0:
        raise ValueError(f"gamma={gamma} must be > 0")
    top = max_value(image.dtype)
    r = image.astype(np.float64) / top + lam / 255.0
    return from_float(c * np.power(np.clip(r, 0.0, None), gamma) * top, image.dtype)


def _equalize_u16(ch: np.ndarray) -> np.ndarray:
    hist = np.bincount(ch.ravel(), minlength=65536)
    cdf = np.cumsum(hist)
    first = int(np.flatnonzero(hist)[0])
    total = ch.size
    if cdf[first] == total:
        return np.full_like(ch, first)
    lut = np.rint((cdf - cdf[first]) * (65535.0 / (total - cdf[first])))
    return np.clip(lut, 0, 65535).astype(np.uint16)[ch]


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation ``lut[v] = round((cdf[v] - cdf_min) * max / (N - cdf_min))``.

    uint8 through OpenCV ``equalizeHist``; uint16 with the same formula over
    65536 levels; float quantised to 16 bits.  Colour: on Y of YCrCb.
    """
    check_dtype(image)

    def one(ch: np.ndarray) -> np.ndarray:
        return cv2.equalizeHist(ch) if ch.dtype == np.uint8 else _equalize_u16(ch)

    return _on_luma(one, image)


def clahe(image: np.ndarray, *, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (Zuiderveld, 1994) via OpenCV.

    ``tiles x tiles`` grid, clip limit ``clip``.  Colour: on Y of YCrCb.
    """
    check_dtype(image)
    if clip <= 0 or tiles < 1:
        raise ValueError(f"need clip > 0 and tiles >= 1, got clip={clip}, tiles={tiles}")
    op = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles)))
    return _on_luma(op.apply, image)


# ---------------------------------------------------------------------------
# colour conversions
# ---------------------------------------------------------------------------


def gray(image: np.ndarray) -> np.ndarray:
    """BGR to grey, ``Y = 0.299 R + 0.587 G + 0.114 B`` (grey input returned as is)."""
    check_dtype(image)
    if image.ndim == 2:
        return image
    out = cv2.cvtColor(_cv_float(image), cv2.COLOR_BGR2GRAY)
    return out.astype(image.dtype, copy=False)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(_cv_float(image), cv2.COLOR_GRAY2BGR) if image.ndim == 2 else _cv_float(image)


def hsv(image: np.ndarray) -> np.ndarray:
    """BGR to HSV, channels (H, S, V).

    uint8/uint16: every channel scaled to the full range (H: hue / 360 * max).
    float: OpenCV's float convention (H in degrees 0..360, S and V in 0..1).
    """
    check_dtype(image)
    dtype = image.dtype
    bgr = _as_bgr(image)
    if dtype == np.uint8:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV_FULL)
    out = cv2.cvtColor((bgr / max_value(dtype)).astype(np.float32), cv2.COLOR_BGR2HSV)
    if dtype == np.uint16:
        out[:, :, 0] /= 360.0
        return from_float(out * 65535.0, dtype)
    return out.astype(dtype)


def lab(image: np.ndarray) -> np.ndarray:
    """BGR to CIE L*a*b* (D65), channels (L, a, b).

    uint8: OpenCV's encoding (L * 255 / 100, a + 128, b + 128); uint16 the same
    scaled by 257; float: L in 0..100, a and b signed.
    """
    check_dtype(image)
    dtype = image.dtype
    bgr = _as_bgr(image)
    if dtype == np.uint8:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    out = cv2.cvtColor((bgr / max_value(dtype)).astype(np.float32), cv2.COLOR_BGR2LAB)
    if dtype == np.uint16:
        out[:, :, 0] *= 255.0 / 100.0
        out[:, :, 1:] += 128.0
        return from_float(out * 257.0, dtype)
    return out.astype(dtype)

"""Edge detectors behind ``cvtool edges``.

Every detector takes a grey or colour image (colour is converted to grey with
``Y = 0.299 R + 0.587 G + 0.114 B``; alpha ignored), works in ``float32`` on the
**8-bit scale** (uint16 divided by 257, float multiplied by 255), and returns a
float32 response ``(H, W)`` in those units, or a boolean map for the binary
detectors (``marr-hildreth``, ``canny``).  :func:`to_output` turns a response
into the image that is written (uint8 PNG by default).

Kernels (correlation; borders reflected ``dcb|abcd|cba``, OpenCV
``BORDER_REFLECT_101``, except LoG which uses SciPy's default ``cba|abc``):

* sobel ``x``: ``[[-1,0,1],[-2,0,2],[-1,0,1]]`` (OpenCV ``Sobel``, any odd ``ksize``);
* prewitt ``x``: ``[[-1,0,1]] * 3 rows``; scharr ``x``: ``[[-3,0,3],[-10,0,10],[-3,0,3]]``;
* roberts: ``[[1,0],[0,-1]]`` and ``[[0,1],[-1,0]]`` (the two diagonals as x and y);
* laplacian: ``[[0,1,0],[1,-4,1],[0,1,0]]`` (4) or ``[[1,1,1],[1,-8,1],[1,1,1]]`` (8);
* LoG: separable Gaussian second derivatives, truncated at 4 sigma
  (the same maths as ``scipy.ndimage.gaussian_laplace``);
* marr-hildreth: zero crossings of the LoG whose slope exceeds a fraction of
  the largest one (Marr and Hildreth, 1980);
* canny: OpenCV ``Canny`` (Canny, 1986) on the 8-bit grey image (uint8
  colour converted directly by OpenCV, others rounded), with explicit
  thresholds or automatic ones from the median ``m``:
  ``low = max(0, (1 - s) m)``, ``high = min(255, (1 + s) m)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

GRADIENT_METHODS = ("sobel", "prewitt", "scharr", "roberts")
METHODS = (*GRADIENT_METHODS, "laplacian", "log", "marr-hildreth", "canny")
MODES = ("magnitude", "x", "y", "direction")
SCALES = ("max", "clip")

BORDER = cv2.BORDER_REFLECT_101

_KERNELS = {
    "prewitt": (np.array([-1, 0, 1], np.float32), np.array([1, 1, 1], np.float32)),
    "scharr": (np.array([-1, 0, 1], np.float32), np.array([3, 10, 3], np.float32)),
}


def gray_8bit_scale(image: np.ndarray) -> np.ndarray:
    """Grey float32 on the 8-bit scale from a grey/BGR/BGRA uint8, uint16 or float image."""
    from cvtool.filters.dtypes import check_dtype, check_finite, max_value

    check_dtype(image)
    check_finite(image)
    img = image
    if img.ndim == 3:
        img = img[:, :, 0] if img.shape[2] == 1 else img[:, :, :3]
    if img.dtype == np.float64:
        img = img.astype(np.float32)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    out = img.astype(np.float32)
    if image.dtype == np.uint16:
        out /= np.float32(257.0)  # exact for every uint16 that is a multiple of 257
    elif image.dtype != np.uint8:
        out *= np.float32(255.0 / max_value(image.dtype))
    return out


def gradients(gray: np.ndarray, *, method: str = "sobel", ksize: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical derivatives ``(gx, gy)`` of a float32 grey image.

    Parameters
    ----------
    gray : (H, W) float32 ndarray
    method : {'sobel', 'prewitt', 'scharr', 'roberts'}
    ksize : int
        Sobel aperture (1, 3, 5 or 7); ignored by the others.

    Returns
    -------
    gx, gy : (H, W) float32 ndarrays
        ``gx`` responds to intensity increasing to the right, ``gy`` downwards
        (for roberts: the two diagonal differences).
    """
    if method not in GRADIENT_METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(GRADIENT_METHODS)}")
    if method == "sobel":
        if ksize not in (1, 3, 5, 7):
            raise ValueError(f"ksize={ksize} must be 1, 3, 5 or 7")
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=ksize, borderType=BORDER)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=ksize, borderType=BORDER)
        return gx, gy
    if method == "roberts":
        k1 = np.array([[1, 0], [0, -1]], np.float32)
        k2 = np.array([[0, 1], [-1, 0]], np.float32)
        # anchor (0, 0): out[i, j] uses pixels (i..i+1, j..j+1)
        gx = cv2.filter2D(gray, cv2.CV_32F, k1, anchor=(0, 0), borderType=BORDER)
        gy = cv2.filter2D(gray, cv2.CV_32F, k2, anchor=(0, 0), borderType=BORDER)
        return gx, gy
    deriv, smooth = _KERNELS[method]
    gx = cv2.sepFilter2D(gray, cv2.CV_32F, deriv, smooth, borderType=BORDER)
    gy = cv2.sepFilter2D(gray, cv2.CV_32F, smooth, deriv, borderType=BORDER)
    return gx, gy


def gradient_edges(gray: np.ndarray, *, method: str = "sobel", mode: str = "magnitude", ksize: int = 3) -> np.ndarray:
    """Gradient response: ``|gx|``, ``|gy|``, ``sqrt(gx^2 + gy^2)`` or the direction.

    ``mode='direction'`` gives ``atan2(gy, gx)`` in degrees, 0..360.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    gx, gy = gradients(gray, method=method, ksize=ksize)
    if mode == "x":
        return np.abs(gx)
    if mode == "y":
        return np.abs(gy)
    if mode == "direction":
        return cv2.phase(gx, gy, angleInDegrees=True)
    return cv2.magnitude(gx, gy)


def laplacian(gray: np.ndarray, *, neighbours: int = 4) -> np.ndarray:
    """Signed discrete Laplacian with the 4- or 8-neighbour kernel."""
    if neighbours not in (4, 8):
        raise ValueError(f"neighbours={neighbours} must be 4 or 8")
    from cvtool.filters.ops import LAPLACIAN_4, LAPLACIAN_8

    kern = LAPLACIAN_4 if neighbours == 4 else LAPLACIAN_8
    return cv2.filter2D(gray, cv2.CV_32F, kern, borderType=BORDER)


def _gaussian_kernels(sigma: float, truncate: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised 1-D Gaussian ``g`` and its second derivative ``g * (x^2/s^4 - 1/s^2)``."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / (sigma * sigma))
    g /= g.sum()
    g2 = g * (x * x / sigma**4 - 1.0 / sigma**2)
    return g, g2


def log_response(gray: np.ndarray, *, sigma: float = 2.0) -> np.ndarray:
    """Laplacian of Gaussian (signed), as ``scipy.ndimage.gaussian_laplace(gray, sigma)``.

    Separable: ``d2/dx2 G * I + d2/dy2 G * I`` with kernels truncated at 4 sigma,
    borders reflected ``cba|abc``.
    """
    if not sigma >= 0.5:  # smaller: a degenerate 1-3 pixel kernel, and sigma**4 underflows to 0
        raise ValueError(f"sigma={sigma} must be at least 0.5")
    g, g2 = _gaussian_kernels(sigma)
    img = gray.astype(np.float64)
    border = cv2.BORDER_REFLECT
    dxx = cv2.sepFilter2D(img, cv2.CV_64F, g2, g, borderType=border)
    dyy = cv2.sepFilter2D(img, cv2.CV_64F, g, g2, borderType=border)
    return (dxx + dyy).astype(np.float32)


def zero_crossings(response: np.ndarray, *, threshold: float = 0.1) -> np.ndarray:
    """Pixels where ``response`` changes sign with its right or lower neighbour.

    A crossing counts when the absolute difference across it is at least
    ``threshold`` times the largest such difference in the image (0: every
    sign change).  The pixel with the smaller absolute value is marked.

    Returns
    -------
    (H, W) bool ndarray
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold} must be within 0..1")
    r = response.astype(np.float32)
    edges = np.zeros(r.shape, bool)
    pairs = []
    for a, b, sl_a, sl_b in (
        (r[:, :-1], r[:, 1:], (slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        (r[:-1, :], r[1:, :], (slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        cross = ((a < 0) & (b > 0)) | ((a > 0) & (b < 0))
        pairs.append((a, b, sl_a, sl_b, cross, np.abs(a - b)))
    top = max((float(d[c].max()) if c.any() else 0.0) for *_, c, d in pairs)
    if top == 0:
        return edges
    for a, b, sl_a, sl_b, cross, diff in pairs:
        strong = cross & (diff >= threshold * top)
        a_smaller = np.abs(a) <= np.abs(b)
        edges[sl_a] |= strong & a_smaller
        edges[sl_b] |= strong & ~a_smaller
    return edges


def auto_canny_thresholds(gray_u8: np.ndarray, *, spread: float = 0.33) -> tuple[float, float]:
    """Median-based thresholds ``((1 - s) m, (1 + s) m)`` clipped to 0..255."""
    if not 0 <= spread <= 1:
        raise ValueError(f"spread={spread} must be within 0..1")
    m = median_u8(gray_u8)
    return max(0.0, (1.0 - spread) * m), min(255.0, (1.0 + spread) * m)


def median_u8(gray_u8: np.ndarray) -> float:
    """``np.median`` of a uint8 image from its histogram (several times faster than sorting)."""
    cdf = np.cumsum(np.bincount(gray_u8.ravel(), minlength=256))
    n = int(cdf[-1])
    lo = int(np.searchsorted(cdf, (n - 1) // 2, side="right"))  # value of element (n - 1) // 2
    hi = int(np.searchsorted(cdf, n // 2, side="right"))  # value of element n // 2
    return (lo + hi) / 2.0


def gray_u8(image: np.ndarray) -> np.ndarray:
    """8-bit grey image for Canny: uint8 converted directly, others rounded from the 8-bit scale."""
    if image.dtype == np.uint8:
        from cvtool.io.images import to_gray

        return np.ascontiguousarray(to_gray(image))
    return np.clip(np.rint(gray_8bit_scale(image)), 0, 255).astype(np.uint8)


def canny(gray: np.ndarray, *, low: float | None = None, high: float | None = None, spread: float = 0.33,
          sigma: float = 0.0, aperture: int = 3, l2: bool = True) -> np.ndarray:
    """Canny edges of an 8-bit grey image (OpenCV ``Canny``): uint8, 255 on edges, else 0.

    Parameters
    ----------
    gray : (H, W) uint8 ndarray
        See :func:`gray_u8`.
    low, high : float, optional
        Hysteresis thresholds on the gradient (OpenCV units).  Both or neither;
        neither: :func:`auto_canny_thresholds` of the (blurred) image.
    sigma : float
        Gaussian pre-blur (0: none, OpenCV's plain ``Canny``).
    aperture : {3, 5, 7}
        Sobel aperture.
    l2 : bool
        Use the exact L2 gradient norm (OpenCV's ``L2gradient``).
    """
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"canny needs a (H, W) uint8 image, got {gray.dtype} {gray.shape}")
    if (low is None) != (high is None):
        raise ValueError("give both low and high Canny thresholds, or neither for automatic ones")
    if low is not None and not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
    if aperture not in (3, 5, 7):
        raise ValueError(f"aperture={aperture} must be 3, 5 or 7")
    u8 = gray
    if sigma > 0:
        k = 2 * math.ceil(3 * sigma) + 1
        u8 = cv2.GaussianBlur(u8, (k, k), sigma, borderType=BORDER)
    if low is None:
        low, high = auto_canny_thresholds(u8, spread=spread)
    return cv2.Canny(u8, float(low), float(high), apertureSize=aperture, L2gradient=l2)


def to_output(response: np.ndarray, *, scale: str = "max", depth: int = 8, binarize: float | None = None,
              signed: bool = False, direction: bool = False) -> np.ndarray:
    """Turn a response into the image that is written.

    Parameters
    ----------
    response : (H, W) float32 or bool ndarray
    scale : {'max', 'clip'}
        ``max``: divide by the image's largest absolute response so it maps to
        full scale (a flat image gives 0); ``clip``: keep the 8-bit-scale values
        as they are and saturate at 255.  Boolean maps are 0 / full scale;
        directions map 0..360 degrees onto 0..full scale.
    depth : {8, 16}
        uint8 or uint16 output (16: values multiplied by 257).
    binarize : float, optional
        After scaling, values ``>= binarize`` (8-bit scale) become full scale,
        the rest 0.
    signed : bool
        Absolute value first (signed responses such as the Laplacian).

    Returns
    -------
    (H, W) uint8 or uint16 ndarray
    """
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {', '.join(SCALES)}")
    if depth not in (8, 16):
        raise ValueError(f"depth={depth} must be 8 or 16")
    dtype = np.uint8 if depth == 8 else np.uint16
    top = 255 if depth == 8 else 65535
    if response.dtype == bool:
        return response.astype(dtype) * dtype(top)
    r = response.astype(np.float64)
    if signed:
        r = np.abs(r)
    if direction:
        r = r * (255.0 / 360.0)
    elif scale == "max":
        peak = float(r.max()) if r.size else 0.0
        r = r * (255.0 / peak) if peak > 0 else np.zeros_like(r)
    if binarize is not None:
        return ((r >= binarize) * top).astype(dtype)
    return np.clip(np.rint(r * (top / 255.0)), 0, top).astype(dtype)


def detect_edges(image: np.ndarray, *, method: str = "sobel", mode: str = "magnitude", ksize: int = 3,
                 neighbours: int = 4, sigma: float | None = None, low: float | None = None,
                 high: float | None = None, spread: float = 0.33, zc_threshold: float = 0.1,
                 scale: str = "max", depth: int = 8, binarize: float | None = None) -> np.ndarray:
    """Run one detector on an image and return the output image (see :func:`to_output`).

    Parameters
    ----------
    image : (H, W[, 3|4]) uint8, uint16 or float ndarray
    method : {'sobel', 'prewitt', 'scharr', 'roberts', 'laplacian', 'log', 'marr-hildreth', 'canny'}
    mode : {'magnitude', 'x', 'y', 'direction'}
        For the gradient methods.
    sigma : float, optional
        LoG / marr-hildreth scale (default 2) or Canny pre-blur (default 0).

    Returns
    -------
    (H, W) uint8 or uint16 ndarray
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if method == "canny":
        found = canny(gray_u8(image), low=low, high=high, spread=spread, sigma=sigma or 0.0)
        if depth == 8 and binarize is None:
            return found  # already the 0/255 uint8 map
        return to_output(found > 0, scale=scale, depth=depth, binarize=binarize)
    gray = gray_8bit_scale(image)
    signed = False
    if method in GRADIENT_METHODS:
        resp = gradient_edges(gray, method=method, mode=mode, ksize=ksize)
        return to_output(resp, scale=scale, depth=depth, binarize=binarize, direction=mode == "direction")
    if method == "laplacian":
        resp, signed = laplacian(gray, neighbours=neighbours), True
    elif method == "log":
        resp, signed = log_response(gray, sigma=2.0 if sigma is None else sigma), True
    else:  # marr-hildreth
        resp = zero_crossings(log_response(gray, sigma=2.0 if sigma is None else sigma), threshold=zc_threshold)
    return to_output(resp, scale=scale, depth=depth, binarize=binarize, signed=signed)

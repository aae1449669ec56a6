"""The dtype rules every ``filter`` operation and ``edges`` output follows.

Rules
-----
* Supported pixel types: ``uint8`` (full range 0..255), ``uint16`` (0..65535)
  and floating point (``float32``/``float64``, nominal range 0..1).  Anything
  else (``int8``, ``int32``, complex...) is refused with a clear error.
* An operation returns the dtype it was given.  Arithmetic happens in
  ``float32`` (``float64`` where precision needs it) and integer results are
  **rounded to nearest (ties to even) and saturated** to the type's range:
  values below 0 become 0, above the maximum become the maximum.  Nothing ever
  wraps around.  Float results are neither rounded nor clipped (except where an
  operation defines its output range, e.g. ``threshold``).
* Intensity-valued parameters (thresholds, slicing bounds, ``sigma_color``,
  noise ``sigma``, ``h`` ...) are given on the **8-bit scale 0..255** whatever
  the image dtype, and mapped to the image's range (x257 for ``uint16``, /255 for
  float), so one operation string means the same on any image.
* Colour images are BGR ``(H, W, 3)``; with alpha ``(H, W, 4)`` the alpha
  channel is carried through unchanged (see :func:`split_alpha`).
"""

from __future__ import annotations

import numpy as np


def check_dtype(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` has a supported dtype and shape."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a NumPy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"unsupported pixel type {image.dtype}; use uint8, uint16 or float")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"unsupported image shape {image.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image {image.shape}")


def check_finite(image: np.ndarray) -> None:
    """Raise ``ValueError`` when a float image holds NaN or infinite values."""
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("image has NaN or infinite values; cvtool filters need finite pixels")


def max_value(dtype: np.dtype | type) -> float:
    """Full-scale value of ``dtype``: 255, 65535, or 1.0 for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def level(value: float, dtype: np.dtype | type) -> float:
    """Map an 8-bit-scale intensity (0..255) to the range of ``dtype``."""
    return float(value) * max_value(dtype) / 255.0


def to_float(image: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Return ``image`` as floating point in its own units (no rescaling)."""
    return image.astype(dtype, copy=False)


def from_float(values: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Round and saturate ``values`` into ``dtype`` (floats are cast unchanged)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype, copy=False)
    out = np.rint(values)
    if isinstance(out, np.ndarray) and out.ndim:
        np.clip(out, 0, max_value(dtype), out=out)
    else:
        out = np.clip(out, 0, max_value(dtype))
    return np.asarray(out).astype(dtype)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split ``(H, W, 4)`` into colour ``(H, W, 3)`` and alpha ``(H, W)``; else ``(image, None)``."""
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3]), image[:, :, 3]
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0], None
    return image, None


def merge_alpha(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_alpha` (alpha cast to the colour dtype, rescaled)."""
    if alpha is None:
        return colour
    if alpha.dtype != colour.dtype:
        scale = max_value(colour.dtype) / max_value(alpha.dtype)
        alpha = from_float(alpha.astype(np.float64) * scale, colour.dtype)
    if colour.ndim == 2:
        colour = np.repeat(colour[:, :, None], 3, axis=2)
    return np.dstack([colour, alpha])

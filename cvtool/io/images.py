"""Reading and writing images safely.

Rules
-----
* Images are decoded by OpenCV from the file's bytes (so Unicode paths work
  everywhere) with ``IMREAD_UNCHANGED``: grey stays ``(H, W)``, colour is BGR
  ``(H, W, 3)``, alpha is kept as ``(H, W, 4)``, 16-bit stays ``uint16``.
* Before decoding, the header's width x height is checked against
  ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`), so a decompression bomb is
  refused before any pixel memory is allocated.
* Empty files, files that are not images, and truncated JPEG/PNG files raise
  :class:`~cvtool.errors.BadInputError` with the path and the reason.
* Writes are atomic (:mod:`cvtool.io.atomic`); the encoder is chosen by the
  output extension.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from cvtool.errors import BadInputError
from cvtool.io.atomic import atomic_write_bytes

DEFAULT_MAX_PIXELS = 200_000_000
"""Largest width x height decoded unless raised with ``--max-pixels``."""


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        seg_len = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 <= n:
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return int(w), int(h)
            return None
        i += 2 + seg_len
    return None


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """Return ``(width, height)`` read from an encoded image's header, or None.

    PNG and JPEG headers are parsed directly; other formats go through Pillow's
    lazy ``Image.open`` (which reads only the header).
    """
    size = _png_size(data) or _jpeg_size(data)
    if size is not None:
        return size
    try:
        import io

        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # we apply our own limit
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return None


def _check_complete(data: bytes, path: Path) -> None:
    if data[:2] == b"\xff\xd8":
        tail = data.rstrip(b"\x00")[-2:]
        if tail != b"\xff\xd9":
            raise BadInputError(f"{path}: truncated JPEG (no end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            raise BadInputError(f"{path}: truncated PNG (no IEND chunk)")


def decode_image(data: bytes, *, path: str | os.PathLike[str] = "<bytes>",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, flags: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (see :func:`read_image`)."""
    import cv2

    path = Path(path)
    if len(data) == 0:
        raise BadInputError(f"{path}: empty file")
    size = image_size_from_header(data)
    if size is None:
        raise BadInputError(f"{path}: not a recognised image format")
    w, h = size
    if w <= 0 or h <= 0:
        raise BadInputError(f"{path}: header gives an empty image ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise BadInputError(
            f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
            "(raise it with --max-pixels)"
        )
    _check_complete(data, path)
    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if flags is None else flags)
    if image is None or image.size == 0:
        raise BadInputError(f"{path}: cannot decode image (corrupt or unsupported)")
    return image


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               flags: int | None = None) -> np.ndarray:
    """Read an image file.

    Parameters
    ----------
    path : path-like
        Image file (any format OpenCV decodes).
    max_pixels : int or None
        Refuse images whose header claims more than this many pixels
        (``None``: no limit).
    flags : int, optional
        ``cv2.IMREAD_*`` flags; default ``IMREAD_UNCHANGED``.

    Returns
    -------
    image : (H, W) or (H, W, C) ndarray
        ``uint8``, ``uint16`` or ``float32`` as stored; colour in BGR(A) order.

    Raises
    ------
    BadInputError
        Empty, unreadable, truncated, not an image, or too large.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, path=path, max_pixels=max_pixels, flags=flags)


def encode_image(image: np.ndarray, ext: str, *, params: list[int] | None = None) -> bytes:
    """Encode ``image`` with the codec for ``ext`` (``'.png'``, ``'.jpg'``...)."""
    import cv2

    ok, buf = cv2.imencode(ext, image, params or [])
    if not ok:
        raise BadInputError(f"cannot encode a {image.dtype} {image.shape} image as {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike[str], image: np.ndarray, *, overwrite: bool = False,
                params: list[int] | None = None) -> None:
    """Encode by extension and write atomically (temp file + rename).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    BadInputError
        The codec cannot store this dtype/shape (e.g. float to JPEG).
    """
    path = Path(path)
    atomic_write_bytes(path, encode_image(image, path.suffix.lower() or ".png", params=params),
                       overwrite=overwrite)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a single-channel view/copy of a BGR(A) or grey image."""
    import cv2

    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Return a 3-channel BGR image (grey replicated, alpha dropped)."""
    import cv2

    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image

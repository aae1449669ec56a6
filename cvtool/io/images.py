"""Reading and writing images safely.

Rules
-----
* Inputs must be regular files of at most 2 GiB (:mod:`cvtool.io.files`): a
  FIFO, a device such as ``/dev/zero`` or a folder is refused before reading.
* Images are decoded by OpenCV from the file's bytes (so Unicode paths work
  everywhere) with ``IMREAD_UNCHANGED``: grey stays ``(H, W)``, colour is BGR
  ``(H, W, 3)``, alpha is kept as ``(H, W, 4)``, 16-bit stays ``uint16``.
* The EXIF orientation tag is applied (a phone photo comes out upright), as
  ``cv2.imread`` and photo viewers do; ``exif_orientation=False`` or the
  environment variable ``CVTOOL_EXIF_ORIENTATION=0`` reads pixels as stored.
* Before decoding, the header is parsed (:mod:`cvtool.io.headers`) and the
  largest frame it declares is checked against ``max_pixels`` (default
  :data:`DEFAULT_MAX_PIXELS`), so a decompression bomb is refused before any
  pixel memory is allocated; a header whose size cannot be determined is refused.
* Empty files, files that are not images, truncated JPEG/PNG files and JPEG
  files whose entropy-coded data ends early or is corrupt (libjpeg's "Corrupt
  JPEG data" warnings) raise :class:`~cvtool.errors.BadInputError` with the
  path and the reason.
* Writes are atomic (:mod:`cvtool.io.atomic`); the encoder is chosen by the
  output extension.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np

from cvtool.errors import BadInputError
from cvtool.io.atomic import atomic_write_bytes
from cvtool.io.files import DEFAULT_MAX_FILE_BYTES, read_bounded_regular_file
from cvtool.io.headers import HeaderError, ImageHeader, parse_header

DEFAULT_MAX_PIXELS = 200_000_000
"""Largest width x height decoded unless raised with ``--max-pixels``."""

EXIF_ORIENTATION_ENV = "CVTOOL_EXIF_ORIENTATION"
"""Set to ``0`` to read images as stored, ignoring their EXIF orientation tag."""

# libjpeg warnings that mean pixels are missing or wrong (the decoder fills them with
# grey and carries on), as the start of the line libjpeg prints.  Anchored, so that
# other stderr lines caught in the same window (cvtool's own "error: ..." messages,
# which quote these) never count.  "N extraneous bytes before marker" is harmless.
_JPEG_CORRUPT = (b"Corrupt JPEG data: premature end of data segment", b"Corrupt JPEG data: bad Huffman code",
                 b"Corrupt JPEG data: bad arithmetic code", b"Corrupt JPEG data: found marker",
                 b"Premature end of JPEG file")


def _corrupt_lines(messages: bytes) -> list[bytes]:
    """The lines of captured stderr that are libjpeg's corrupt-data warnings."""
    return [ln.strip() for ln in messages.splitlines() if ln.lstrip().startswith(_JPEG_CORRUPT)]


def _orientation_default(exif_orientation: bool | None) -> bool:
    if exif_orientation is not None:
        return exif_orientation
    return os.environ.get(EXIF_ORIENTATION_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def image_size_from_header(data: bytes, *, exif_orientation: bool | None = None) -> tuple[int, int] | None:
    """Return ``(width, height)`` of the image :func:`decode_image` returns, or None.

    Read from the header without decoding (see :mod:`cvtool.io.headers`); with
    EXIF orientation 5-8 (a phone held upright) width and height are swapped,
    as the decoded image is.  ``None`` when the header is unsupported,
    malformed or declares an empty image.
    """
    try:
        header = parse_header(data)
    except HeaderError:
        return None
    return header.size(exif_orientation=_orientation_default(exif_orientation))


_SIZE_HEAD = 1 << 18  # read_image_size reads the first 256 KiB, the whole file only when needed


def read_image_size(path: str | os.PathLike[str], *, exif_orientation: bool | None = None,
                    max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> tuple[int, int]:
    """``(width, height)`` of the image :func:`read_image` would return, from its header.

    EXIF orientation is applied as :func:`read_image` applies it (a portrait phone
    photo stored landscape gives its upright size).  Only the first 256 KiB are
    read unless the header lies further in.  Use this, not Pillow's ``Image.open``,
    wherever a size must agree with the decoded image (normalised boxes).

    Raises
    ------
    BadInputError
        Unreadable, not a regular file, too large, or no size in the header.
    """
    path = Path(path)
    data = read_bounded_regular_file(path, max_bytes, head=_SIZE_HEAD)
    try:
        header = parse_header(data, scan=False)
    except HeaderError as exc:
        if len(data) < _SIZE_HEAD:
            raise BadInputError(f"{path}: {exc}") from None
        data = read_bounded_regular_file(path, max_bytes)  # a header past the first bytes (TIFF)
        try:
            header = parse_header(data, scan=False)
        except HeaderError as exc2:
            raise BadInputError(f"{path}: {exc2}") from None
    return header.size(exif_orientation=_orientation_default(exif_orientation))


def check_header(data: bytes, *, path: str | os.PathLike[str] = "<bytes>",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Parse the header and apply the pixel limit to the largest frame the file declares.

    Raises
    ------
    BadInputError
        Empty, unsupported, malformed, truncated, or over ``max_pixels``.
    """
    if len(data) == 0:
        raise BadInputError(f"{path}: empty file")
    try:
        header = parse_header(data)
    except HeaderError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    if max_pixels is not None and header.max_pixels > max_pixels:
        w, h = header.max_width, header.max_height
        raise BadInputError(
            f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
            "(raise it with --max-pixels)"
        )
    return header


def _check_complete(data: bytes, path: Path, fmt: str) -> None:
    # JPEG: the header parser already requires an end-of-image marker after the scans.
    # PNG: an IEND chunk (length 0) must be there; bytes after it are ignored, as libpng does.
    if fmt == "png" and data.rfind(b"\x00\x00\x00\x00IEND", 33) < 0:
        raise BadInputError(f"{path}: truncated PNG (no IEND chunk)")


class _StderrCapture:
    """Capture what C code writes to file descriptor 2 while JPEG files decode.

    libjpeg reports "Corrupt JPEG data: premature end of data segment" only as
    a warning printed on stderr, and decodes the rest as grey.  While at least
    one decode runs, fd 2 points at an in-memory file; each decode reads back
    what was written during its own window.  Decodes in several threads share
    one window (no serialisation); a warning seen while windows overlapped is
    attributed by decoding the suspect again in a window of its own.  The last
    decode to leave writes everything captured, except those warnings (they
    become errors), back to the real stderr.  A few microseconds per decode.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pid = -1
        self.sink = None
        self.saved = -1
        self.active = 0
        self.entries = 0
        self.exclusive = False
        self.waiting_exclusive = 0

    def _sink_fd(self) -> int:
        if self.pid != os.getpid():  # a forked child: fresh state
            if hasattr(os, "memfd_create"):
                self.sink = os.fdopen(os.memfd_create("cvtool-stderr", os.MFD_CLOEXEC), "w+b", buffering=0)
            else:  # pragma: no cover - non-Linux
                import tempfile

                self.sink = tempfile.TemporaryFile(buffering=0)
            # O_APPEND: writes from several threads land one after the other, never over each other
            import fcntl

            fd = self.sink.fileno()
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
            self.pid, self.active, self.entries, self.exclusive, self.waiting_exclusive = os.getpid(), 0, 0, False, 0
        return self.sink.fileno()

    def run(self, func, *, exclusive: bool = False):
        """Return ``(func(), captured bytes, whether other decodes overlapped)``."""
        with self.cond:
            if exclusive:
                self.waiting_exclusive += 1
                while self.active or self.exclusive:
                    self.cond.wait()
                self.waiting_exclusive -= 1
                self.exclusive = True
            else:
                while self.exclusive or self.waiting_exclusive:
                    self.cond.wait()
            try:
                sink = self._sink_fd()
                if self.active == 0:
                    try:
                        sys.stderr.flush()
                    except (AttributeError, ValueError, OSError):
                        pass
                    self.saved = os.dup(2)
                    try:
                        os.ftruncate(sink, 0)
                        os.dup2(sink, 2)
                    except OSError:
                        os.close(self.saved)
                        raise
            except OSError:  # no stderr to redirect: decode without capturing
                self.exclusive = self.exclusive and not exclusive
                self.cond.notify_all()
                return func(), b"", False
            self.active += 1
            self.entries += 1
            start, entries, crowded = os.lseek(sink, 0, os.SEEK_END), self.entries, self.active > 1
        mine = b""
        try:
            result = func()
        finally:
            with self.cond:
                self.active -= 1
                if self.active == 0:  # restore stderr first: nothing below may leave it redirected
                    try:
                        os.dup2(self.saved, 2)
                    finally:
                        os.close(self.saved)
                end = os.lseek(sink, 0, os.SEEK_END)
                mine = _pread_all(sink, start, end)
                crowded = crowded or self.active > 0 or self.entries != entries
                if self.active == 0:  # hand back what others wrote meanwhile, less libjpeg's warnings
                    keep = b"".join(ln for ln in _pread_all(sink, 0, end).splitlines(keepends=True)
                                    if not ln.lstrip().startswith(_JPEG_CORRUPT))
                    if keep:
                        try:
                            os.write(2, keep)
                        except OSError:
                            pass
                if exclusive:
                    self.exclusive = False
                self.cond.notify_all()
        return result, mine, crowded


def _pread_all(fd: int, start: int, end: int) -> bytes:
    """Bytes ``start:end`` of ``fd`` (pread may return fewer than asked)."""
    parts = []
    while start < end:
        chunk = os.pread(fd, end - start, start)
        if not chunk:
            break
        parts.append(chunk)
        start += len(chunk)
    return b"".join(parts)


_STDERR = _StderrCapture()


def _decode_jpeg_checked(buf: np.ndarray, cv_flags: int, path: Path):
    import cv2

    def decode():
        return cv2.imdecode(buf, cv_flags)

    image, messages, crowded = _STDERR.run(decode)
    if crowded and _corrupt_lines(messages):
        image, messages, _ = _STDERR.run(decode, exclusive=True)  # whose warning was it?
    corrupt = _corrupt_lines(messages)
    if corrupt:
        raise BadInputError(f"{path}: corrupt or truncated JPEG data "
                            f"(libjpeg: {corrupt[0].decode('ascii', 'replace')[:120]})")
    return image


def _orient(image: np.ndarray, orientation: int, *, inverse: bool = False) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` (1-8) to a decoded image (or undo it)."""
    import cv2

    if inverse and orientation in (6, 8):
        orientation = 14 - orientation  # the other quarter turn; 2-5 and 7 are their own inverses
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(image), -1)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def decode_image(data: bytes, *, path: str | os.PathLike[str] = "<bytes>",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, flags: int | None = None,
                 exif_orientation: bool | None = None) -> np.ndarray:
    """Decode encoded image bytes (see :func:`read_image`)."""
    import cv2

    path = Path(path)
    header = check_header(data, path=path, max_pixels=max_pixels)
    _check_complete(data, path, header.format)
    orient = _orientation_default(exif_orientation)
    if flags is None:
        cv_flags = cv2.IMREAD_UNCHANGED  # keeps alpha and depth; OpenCV then skips the orientation
    else:
        cv_flags = flags | (0 if orient else cv2.IMREAD_IGNORE_ORIENTATION)
    buf = np.frombuffer(data, dtype=np.uint8)
    if header.format == "jpeg":
        image = _decode_jpeg_checked(buf, cv_flags, path)
    else:
        image = cv2.imdecode(buf, cv_flags)
    if image is None or image.size == 0:
        raise BadInputError(f"{path}: cannot decode image (corrupt or unsupported)")
    if header.decoder_orients:
        if not orient and header.orientation != 1:
            image = _orient(image, header.orientation, inverse=True)
    elif flags is None and orient and header.orientation != 1:
        image = _orient(image, header.orientation)
    return image


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               flags: int | None = None, exif_orientation: bool | None = None,
               max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> np.ndarray:
    """Read an image file.

    Parameters
    ----------
    path : path-like
        A regular image file (any format :mod:`cvtool.io.headers` sizes).
    max_pixels : int or None
        Refuse images whose largest declared frame has more than this many
        pixels, before decoding (``None``: no limit).
    flags : int, optional
        ``cv2.IMREAD_*`` flags; default ``IMREAD_UNCHANGED``.
    exif_orientation : bool, optional
        Apply the EXIF orientation tag, as ``cv2.imread`` and photo viewers do
        (default: true, unless the environment variable ``CVTOOL_EXIF_ORIENTATION``
        is ``0``).
    max_bytes : int or None
        Refuse files larger than this (default 2 GiB).

    Returns
    -------
    image : (H, W) or (H, W, C) ndarray
        ``uint8``, ``uint16`` or ``float32`` as stored; colour in BGR(A) order.

    Raises
    ------
    BadInputError
        Empty, unreadable, not a regular file, truncated or corrupt, not a
        supported image, or too large.
    """
    path = Path(path)
    data = read_bounded_regular_file(path, max_bytes)
    return decode_image(data, path=path, max_pixels=max_pixels, flags=flags, exif_orientation=exif_orientation)


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

"""Image sizes and EXIF orientation read from encoded headers, without decoding.

:func:`parse_header` answers, before any pixel memory exists, the question a
pixel limit needs: how many pixels may the decoder allocate for this file?
Each parser walks its format the way the decoder OpenCV uses does (libjpeg's
marker reader, libpng's chunk list, libwebp's RIFF chunks, libtiff's IFD chain,
...), and reports the *largest* frame, page, tile or canvas the file declares,
so a small decoy header cannot hide a large real one.  A file whose size cannot
be determined is refused (:class:`HeaderError`), never decoded blindly.

Formats are recognised by the same signatures OpenCV's decoders check, so the
parser and the decoder always agree on what the file is.

Supported: JPEG, PNG (and APNG), WebP (VP8, VP8L, VP8X, animation frames),
TIFF (classic and BigTIFF), BMP, GIF, PNM (P1-P6), PAM (P7), PFM, Sun raster,
Radiance HDR, JPEG 2000 (JP2 and raw codestream).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

__all__ = ["HeaderError", "ImageHeader", "parse_header", "FORMATS"]

FORMATS = ("JPEG", "PNG", "WebP", "TIFF", "BMP", "GIF", "PNM/PAM/PFM", "Sun raster", "Radiance HDR", "JPEG 2000")
"""Formats whose headers are parsed (others are refused)."""

_MAX_IFDS = 4096   # TIFF pages followed before giving up
_MAX_GIF_FRAMES = 100_000


class HeaderError(ValueError):
    """The header is not a supported image, is malformed, or its size cannot be determined."""


@dataclass(frozen=True)
class ImageHeader:
    """What a header declares.

    Attributes
    ----------
    format : str
        ``'jpeg'``, ``'png'``, ``'webp'``, ``'tiff'``, ``'bmp'``, ``'gif'``,
        ``'pnm'``, ``'pam'``, ``'pfm'``, ``'sun'``, ``'hdr'``, ``'jp2'``.
    width, height : int
        Size of the image the decoder returns, as stored (before EXIF orientation).
    max_width, max_height : int
        The frame (page, tile, canvas) with the most pixels the file declares;
        ``max_width * max_height >= width * height``.
    orientation : int
        EXIF orientation 1-8 as OpenCV reads it (1: none or unreadable).
    decoder_orients : bool
        The decoder applies the orientation itself (TIFF); otherwise the caller does.
    """

    format: str
    width: int
    height: int
    max_width: int
    max_height: int
    orientation: int = 1
    decoder_orients: bool = False

    @property
    def max_pixels(self) -> int:
        """Largest pixel count any frame of the file declares (what decoding may allocate)."""
        return self.max_width * self.max_height

    def size(self, *, exif_orientation: bool = True) -> tuple[int, int]:
        """``(width, height)`` of the image as returned with or without EXIF orientation applied."""
        if exif_orientation and self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def _largest(frames: list[tuple[int, int]]) -> tuple[int, int]:
    return max(frames, key=lambda wh: (wh[0] * wh[1], wh[0], wh[1]))


def _header(fmt: str, size: tuple[int, int], frames: list[tuple[int, int]], orientation: int = 1,
            decoder_orients: bool = False) -> ImageHeader:
    w, h = size
    if w <= 0 or h <= 0:
        raise HeaderError(f"header gives an empty image ({w}x{h})")
    mw, mh = _largest([size, *frames])
    return ImageHeader(fmt, w, h, mw, mh, orientation if 1 <= orientation <= 8 else 1, decoder_orients)


# ---------------------------------------------------------------------------- EXIF


def exif_orientation(tiff: bytes) -> int:
    """Orientation tag (274) of IFD0 in a TIFF-structured EXIF block; 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    e = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(e + "H", tiff[ifd:ifd + 2])
    for k in range(count):
        off = ifd + 2 + 12 * k
        if off + 12 > len(tiff):
            break
        tag, _typ = struct.unpack(e + "HH", tiff[off:off + 4])
        if tag == 274:
            (value,) = struct.unpack(e + "H", tiff[off + 8:off + 10])
            return value if 1 <= value <= 8 else 1
    return 1


# ---------------------------------------------------------------------------- JPEG

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_WITH_LENGTH = frozenset({0xC4, 0xC8, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xFE} | set(range(0xE0, 0xF0))
                         | set(range(0xF0, 0xFE)))
# In entropy-coded data, FF 00 is a stuffed zero and FF D0-D7 a restart marker; FF FF is fill.
_SCAN_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def _jpeg(data: bytes, scan: bool = True) -> ImageHeader:
    """libjpeg's marker reader (jdmarker.c), frames collected up to EOI.

    Outside entropy-coded data, bytes up to the next FF are skipped and FF fill
    bytes and FF 00 pairs are discarded (``next_marker``); TEM, RST0-7 have no
    length; a length below 2 advances past the length field only.  Entropy-coded
    data after SOS is skipped to the next real marker.  Data after EOI is ignored
    (phones append trailers there).
    """
    n = len(data)
    frames: list[tuple[int, int]] = []
    orientation = 1
    saw_app1 = False
    saw_sos = False
    i = 2
    while True:
        # next_marker: skip garbage to an FF, then FF fill bytes; FF 00 is discarded.
        while True:
            i = data.find(b"\xff", i)
            if i < 0:
                raise HeaderError("truncated JPEG (no end-of-image marker)" if saw_sos
                                  else "truncated JPEG header (no start-of-scan)")
            while i < n and data[i] == 0xFF:
                i += 1
            if i >= n:
                raise HeaderError("truncated JPEG (no end-of-image marker)")
            if data[i] != 0x00:
                break
            i += 1
        marker = data[i]
        i += 1  # i now points after the marker byte
        if marker == 0xD9:  # EOI
            if not saw_sos:
                raise HeaderError("JPEG has no image (end-of-image before any scan)")
            break
        if marker == 0xD8:
            raise HeaderError("malformed JPEG (second start-of-image marker)")
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker not in _WITH_LENGTH and marker not in _SOF:
            raise HeaderError(f"malformed JPEG (unknown marker 0xFF{marker:02X})")
        if i + 2 > n:
            raise HeaderError("truncated JPEG header")
        seg_len = (data[i] << 8) | data[i + 1]
        if marker in _SOF:
            if i + 7 > n:
                raise HeaderError("truncated JPEG frame header")
            h = (data[i + 3] << 8) | data[i + 4]
            w = (data[i + 5] << 8) | data[i + 6]
            frames.append((w, h))
        elif marker == 0xE1 and not saw_app1 and not saw_sos:
            # OpenCV parses the first APP1 segment, 6 bytes in ("Exif\0\0"), as EXIF.
            saw_app1 = True
            if seg_len > 8:
                orientation = exif_orientation(data[i + 8:i + seg_len])
        i += max(seg_len, 2)
        if marker == 0xDA:  # SOS: skip the entropy-coded segment to the next real marker
            if not frames:
                raise HeaderError("malformed JPEG (scan before any frame header)")
            if not scan:
                break
            saw_sos = True
            m = _SCAN_MARKER.search(data, i)
            if m is None:
                raise HeaderError("truncated JPEG (no end-of-image marker)")
            i = m.start()  # at the last FF before the marker byte
    return _header("jpeg", frames[0], frames, orientation)


# ----------------------------------------------------------------------------- PNG


def _png(data: bytes) -> ImageHeader:
    """IHDR must be the first chunk; APNG frames (fcTL) are counted with their offsets."""
    n = len(data)
    if n < 33 or data[12:16] != b"IHDR":
        raise HeaderError("malformed PNG (IHDR is not the first chunk)")
    (length,) = struct.unpack(">I", data[8:12])
    if length != 13:
        raise HeaderError(f"malformed PNG (IHDR length {length}, expected 13)")
    w, h = struct.unpack(">II", data[16:24])
    if w > 0x7FFFFFFF or h > 0x7FFFFFFF:
        raise HeaderError(f"malformed PNG (IHDR size {w}x{h} out of range)")
    frames: list[tuple[int, int]] = []
    orientation = 1
    animated = False
    i = 33
    while i + 8 <= n:
        (length,) = struct.unpack(">I", data[i:i + 4])
        ctype = data[i + 4:i + 8]
        if length > 0x7FFFFFFF:
            raise HeaderError("malformed PNG (chunk length out of range)")
        body = data[i + 8:i + 8 + length] if ctype in (b"IHDR", b"fcTL", b"eXIf") else b""
        if ctype == b"IDAT" and not animated:
            break
        if ctype == b"IEND":
            break
        if ctype == b"acTL":
            animated = True
        elif ctype == b"IHDR" and len(body) >= 8:  # out of place, but count what it declares
            frames.append(struct.unpack(">II", body[:8]))
        elif ctype == b"fcTL" and len(body) >= 20:
            fw, fh, fx, fy = struct.unpack(">IIII", body[4:20])
            frames.append((fw + fx, fh + fy))
        elif ctype == b"eXIf" and orientation == 1:
            orientation = exif_orientation(body)
        i += 12 + length
    return _header("png", (w, h), frames, orientation)


# ---------------------------------------------------------------------------- WebP


def _vp8_size(body: bytes) -> tuple[int, int] | None:
    if len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", body[6:10])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _vp8l_size(body: bytes) -> tuple[int, int] | None:
    if len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack("<I", body[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _u24(b: bytes) -> int:
    return b[0] | (b[1] << 8) | (b[2] << 16)


def _webp_chunks(data: bytes, start: int, end: int):
    """``(fourcc, payload)``; bitstream payloads are cut to their first 16 bytes (all a size needs)."""
    i = start
    while i + 8 <= end:
        fourcc = data[i:i + 4]
        (size,) = struct.unpack("<I", data[i + 4:i + 8])
        stop = min(i + 8 + size, end)
        if fourcc in (b"VP8 ", b"VP8L", b"ALPH", b"ICCP", b"XMP "):
            stop = min(stop, i + 8 + 16)
        yield fourcc, data[i + 8:stop]
        i += 8 + size + (size & 1)


def _webp(data: bytes) -> ImageHeader:
    """RIFF chunks: VP8X canvas, VP8 / VP8L bitstreams, ANMF frames (with their own bitstreams)."""
    (riff,) = struct.unpack("<I", data[4:8])
    end = min(len(data), 8 + riff)
    canvas = None
    image = None
    frames: list[tuple[int, int]] = []
    orientation = 1
    for fourcc, body in _webp_chunks(data, 12, end):
        if fourcc == b"VP8X" and len(body) >= 10:
            canvas = (_u24(body[4:7]) + 1, _u24(body[7:10]) + 1)
        elif fourcc == b"VP8 ":
            size = _vp8_size(body)
            if size is None:
                raise HeaderError("malformed WebP (bad VP8 frame header)")
            frames.append(size)
            image = image or size
        elif fourcc == b"VP8L":
            size = _vp8l_size(body)
            if size is None:
                raise HeaderError("malformed WebP (bad VP8L header)")
            frames.append(size)
            image = image or size
        elif fourcc == b"ANMF" and len(body) >= 16:
            x, y = 2 * _u24(body[0:3]), 2 * _u24(body[3:6])
            fw, fh = _u24(body[6:9]) + 1, _u24(body[9:12]) + 1
            frames.append((x + fw, y + fh))
            for sub, sbody in _webp_chunks(body, 16, len(body)):
                size = _vp8_size(sbody) if sub == b"VP8 " else _vp8l_size(sbody) if sub == b"VP8L" else None
                if size is not None:
                    frames.append(size)
        elif fourcc == b"EXIF" and orientation == 1:
            orientation = exif_orientation(body[6:] if body[:6] == b"Exif\x00\x00" else body)
    size = canvas or image
    if size is None:
        raise HeaderError("malformed WebP (no VP8X, VP8 or VP8L chunk)")
    return _header("webp", size, frames, orientation)


# ---------------------------------------------------------------------------- TIFF

_TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
               16: 8, 17: 8, 18: 8}


def _tiff(data: bytes) -> ImageHeader:
    """Every IFD of the main chain (classic and BigTIFF): image sizes and tile sizes."""
    e = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(e + "H", data[2:4])
    big = version == 43
    n = len(data)
    if big:
        if n < 16:
            raise HeaderError("truncated TIFF header")
        (offset,) = struct.unpack(e + "Q", data[8:16])
        count_fmt, count_size, entry_size, off_fmt, off_size = "Q", 8, 20, "Q", 8
    else:
        (offset,) = struct.unpack(e + "I", data[4:8])
        count_fmt, count_size, entry_size, off_fmt, off_size = "H", 2, 12, "I", 4
    sizes: list[tuple[int, int]] = []
    frames: list[tuple[int, int]] = []
    orientation = 1
    seen: set[int] = set()
    while offset and len(seen) < _MAX_IFDS:
        if offset in seen or offset + count_size > n:
            break
        seen.add(offset)
        (count,) = struct.unpack(e + count_fmt, data[offset:offset + count_size])
        tags: dict[int, int] = {}
        base = offset + count_size
        for k in range(min(count, (n - base) // entry_size)):
            p = base + k * entry_size
            tag, typ = struct.unpack(e + "HH", data[p:p + 4])
            if tag not in (256, 257, 274, 322, 323) or typ not in (3, 4, 16):
                continue
            vfmt = {3: "H", 4: "I", 16: "Q"}[typ]
            vpos = p + 4 + off_size
            tags[tag] = struct.unpack(e + vfmt, data[vpos:vpos + _TIFF_TYPES[typ]])[0]
        end = base + count * entry_size
        if 256 in tags and 257 in tags:
            size = (tags[256], tags[257])
            sizes.append(size)
            frames.append(size)
            if 322 in tags and 323 in tags:
                frames.append((tags[322], tags[323]))
            if len(sizes) == 1:
                orientation = tags.get(274, 1)
        elif not sizes:
            raise HeaderError("malformed TIFF (first page has no ImageWidth/ImageLength)")
        if end + off_size > n:
            break
        (offset,) = struct.unpack(e + off_fmt, data[end:end + off_size])
    if not sizes:
        raise HeaderError("malformed TIFF (no readable image directory)")
    return _header("tiff", sizes[0], frames, orientation, decoder_orients=True)


# ----------------------------------------------------------------------------- BMP


def _bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise HeaderError("truncated BMP header")
    (hsize,) = struct.unpack("<I", data[14:18])
    if hsize == 12:
        w, h = struct.unpack("<HH", data[18:22])
    elif hsize >= 36:
        w, h = struct.unpack("<ii", data[18:26])
        if h == -(2 ** 31):
            raise HeaderError("malformed BMP (height out of range)")
        h = abs(h)  # negative height: stored top-down
    else:
        raise HeaderError(f"malformed BMP (info header of {hsize} bytes)")
    return _header("bmp", (w, h), [])


# ----------------------------------------------------------------------------- GIF


def _gif(data: bytes) -> ImageHeader:
    """Logical screen and every frame (offset + size) up to the trailer."""
    n = len(data)
    if n < 13:
        raise HeaderError("truncated GIF header")
    w, h, flags = struct.unpack("<HHB", data[6:11])
    frames: list[tuple[int, int]] = []
    i = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)  # after the global colour table

    def skip_blocks(j: int) -> int:
        while j < n and data[j]:
            j += data[j] + 1
        return j + 1

    while i < n and len(frames) < _MAX_GIF_FRAMES:
        kind = data[i]
        if kind == 0x21:  # extension: label, sub-blocks
            i = skip_blocks(i + 2)
        elif kind == 0x2C:  # image descriptor
            if i + 10 > n:
                break
            x, y, fw, fh, fflags = struct.unpack("<HHHHB", data[i + 1:i + 10])
            frames.append((x + fw, y + fh))
            i += 10 + ((3 << ((fflags & 7) + 1)) if fflags & 0x80 else 0)  # local colour table
            i = skip_blocks(i + 1)  # LZW minimum code size, then data sub-blocks
        else:  # trailer (0x3B) or garbage: the decoder stops here too
            break
    return _header("gif", (w, h), frames)


# --------------------------------------------------------------------- PNM/PAM/PFM

_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n\r]*)*(\S+)")


def _pnm_numbers(data: bytes, start: int, count: int) -> list[int]:
    values = []
    i = start
    for _ in range(count):
        m = _PNM_TOKEN.match(data, i)
        if m is None:
            raise HeaderError("truncated PNM header")
        tok = m.group(1)
        # a comment may follow a number without a space
        tok = tok.split(b"#", 1)[0]
        if not tok.isdigit() or len(tok) > 10:
            raise HeaderError("malformed PNM header (expected a size)")
        values.append(int(tok))
        i = m.start(1) + len(tok)
    return values


def _pnm(data: bytes) -> ImageHeader:
    if data[1:2] == b"7":
        return _pam(data)
    if data[1:2] in (b"F", b"f"):
        w, h = _pnm_numbers(data, 2, 2)
        return _header("pfm", (w, h), [])
    w, h = _pnm_numbers(data, 2, 2)
    return _header("pnm", (w, h), [])


def _pam(data: bytes) -> ImageHeader:
    head = data[:4096]
    end = head.find(b"ENDHDR")
    if end < 0:
        raise HeaderError("malformed PAM header (no ENDHDR within 4096 bytes)")
    fields: dict[bytes, int] = {}
    for line in head[3:end].splitlines():
        parts = line.split(b"#", 1)[0].split()
        if len(parts) >= 2 and parts[0] in (b"WIDTH", b"HEIGHT"):
            if not parts[1].isdigit() or len(parts[1]) > 10:
                raise HeaderError("malformed PAM header (bad WIDTH or HEIGHT)")
            fields[parts[0]] = int(parts[1])
    if b"WIDTH" not in fields or b"HEIGHT" not in fields:
        raise HeaderError("malformed PAM header (no WIDTH or HEIGHT)")
    return _header("pam", (fields[b"WIDTH"], fields[b"HEIGHT"]), [])


# --------------------------------------------------------------- Sun raster, HDR


def _sun(data: bytes) -> ImageHeader:
    if len(data) < 32:
        raise HeaderError("truncated Sun raster header")
    w, h = struct.unpack(">ii", data[4:12])
    return _header("sun", (w, h), [])


_HDR_RES = re.compile(rb"([-+])([XY])\s+(\d{1,10})\s+([-+])([XY])\s+(\d{1,10})")


def _hdr(data: bytes) -> ImageHeader:
    head = data[:65536]
    blank = head.find(b"\n\n")
    if blank < 0:
        raise HeaderError("malformed Radiance HDR header (no end of header)")
    line_end = head.find(b"\n", blank + 2)
    m = _HDR_RES.match(head[blank + 2:line_end if line_end >= 0 else None].strip())
    if m is None or m.group(2) == m.group(5):
        raise HeaderError("malformed Radiance HDR header (no resolution line)")
    a, b = int(m.group(3)), int(m.group(6))
    w, h = (b, a) if m.group(2) == b"Y" else (a, b)
    return _header("hdr", (w, h), [])


# ------------------------------------------------------------------------ JPEG 2000


def _j2k_codestream(cs: bytes) -> tuple[int, int]:
    if len(cs) < 4 + 2 + 2 + 16 or cs[:4] != b"\xff\x4f\xff\x51":
        raise HeaderError("malformed JPEG 2000 codestream (no SIZ marker)")
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", cs[8:24])
    if xo >= xsiz or yo >= ysiz:
        raise HeaderError("malformed JPEG 2000 codestream (empty image area)")
    return xsiz - xo, ysiz - yo


def _jp2(data: bytes) -> ImageHeader:
    if data[:4] == b"\xff\x4f\xff\x51":
        return _header("jp2", _j2k_codestream(data), [])
    i, n = 0, len(data)
    frames: list[tuple[int, int]] = []
    size = None
    while i + 8 <= n:
        (length,) = struct.unpack(">I", data[i:i + 4])
        btype = data[i + 4:i + 8]
        head = 8
        if length == 1:
            if i + 16 > n:
                break
            (length,) = struct.unpack(">Q", data[i + 8:i + 16])
            head = 16
        elif length == 0:
            length = n - i
        if length < head:
            raise HeaderError("malformed JP2 (bad box length)")
        if btype == b"jp2h":  # header super-box: ihdr holds HEIGHT, WIDTH
            j = data.find(b"ihdr", i + head, i + length)
            if j >= 0 and j + 12 <= n:
                ih, iw = struct.unpack(">II", data[j + 4:j + 12])
                frames.append((iw, ih))
        elif btype == b"jp2c":
            size = _j2k_codestream(data[i + head:i + length])
            break
        i += length
    if size is None:
        raise HeaderError("malformed JP2 (no codestream box)")
    return _header("jp2", size, frames)


# ------------------------------------------------------------------------- dispatch


def sniff_format(data: bytes) -> str | None:
    """The format OpenCV's decoder would pick for these bytes (by signature), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if len(data) >= 32 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data[:2] == b"BM":
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(data) >= 3 and data[0:1] == b"P" and data[1:2] in b"1234567Ff" and data[2:3].isspace():
        return "pnm"
    if data[:4] == b"\x59\xa6\x6a\x95":
        return "sun"
    if data[:10] == b"#?RADIANCE" or data[:6] == b"#?RGBE":
        return "hdr"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "jp2"
    return None


_PARSERS = {"jpeg": _jpeg, "png": _png, "webp": _webp, "tiff": _tiff, "bmp": _bmp, "gif": _gif,
            "pnm": _pnm, "sun": _sun, "hdr": _hdr, "jp2": _jp2}


def parse_header(data: bytes, *, scan: bool = True) -> ImageHeader:
    """Parse an encoded image's header (and frame list) without decoding pixels.

    Parameters
    ----------
    data : bytes
        The whole file (JPEG frames after the first scan, APNG/GIF/WebP frames
        and TIFF pages are found by walking the file).
    scan : bool
        JPEG: walk past the scans to the end-of-image marker, collecting every
        frame header (what a pixel limit needs; a file without the marker is
        refused as truncated).  ``False`` stops at the first scan, enough for
        the image's size and orientation from the first bytes of a file.

    Returns
    -------
    ImageHeader

    Raises
    ------
    HeaderError
        Not one of :data:`FORMATS`, malformed, truncated before the size, or the
        size is zero.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise HeaderError(f"not a recognised image format (supported: {', '.join(FORMATS)})")
    try:
        return _jpeg(data, scan) if fmt == "jpeg" else _PARSERS[fmt](data)
    except (struct.error, IndexError):
        raise HeaderError(f"truncated or malformed {fmt.upper()} header") from None

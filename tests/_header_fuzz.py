"""Fuzz :func:`cvtool.io.headers.parse_header` against OpenCV's decoder.

Run by ``test_image_headers.py`` in a child process with a bounded address
space.  Property, for byte-level mutations of small valid files of every
supported format: either the parser refuses the file, or whatever
``cv2.imdecode`` returns has at most as many pixels as the parser declared.
"""

from __future__ import annotations

import io
import struct
import sys

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cvtool.io.headers import HeaderError, parse_header


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (10, 14, 3), dtype=np.uint8), (3, 3), 1)
    out: dict[str, bytes] = {}
    for ext in (".jpg", ".png", ".bmp", ".tif", ".webp", ".ppm", ".pgm", ".pam", ".ras"):
        ok, enc = cv2.imencode(ext, img if ext != ".pgm" else img[:, :, 0])
        out[ext] = enc.tobytes()
    out[".pfm"] = cv2.imencode(".pfm", img.astype(np.float32))[1].tobytes()
    out[".hdr"] = cv2.imencode(".hdr", img.astype(np.float32))[1].tobytes()
    for fmt, kw in (("GIF", {}), ("JPEG", {"progressive": True}), ("WEBP", {"lossless": True})):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, **kw)
        out[fmt] = buf.getvalue()
    # multi-frame files: APNG, animated GIF and WebP, multi-page TIFF
    frames = [Image.fromarray(img), Image.fromarray(img[::-1].copy())]
    for fmt, kw in (("PNG", {}), ("GIF", {}), ("WEBP", {"lossless": True}), ("TIFF", {})):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **kw)
        out[fmt + "-anim"] = buf.getvalue()
    for name, kw in (("jp2", {}), ("j2k", {"no_jp2": True})):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG2000", num_resolutions=2, **kw)
        out[name] = buf.getvalue()
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_RST_INTERVAL, 1])
    out["jpeg-rst"] = enc.tobytes()
    return out


SEEDS = _seeds()
NAMES = sorted(SEEDS)

# Mutations that target size fields: overwrite 1-4 bytes at a position with
# small or large values, insert or delete bytes, truncate.
mutation = st.tuples(
    st.sampled_from(["set", "u16", "u32", "insert", "delete", "truncate"]),
    st.integers(0, 400),
    st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0x100, 0x7FFF, 0xFFFF, 30000, 65535, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF]),
)


def _mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, val in muts:
        if not b:
            break
        pos = pos % len(b)
        if kind == "set":
            b[pos] = val & 0xFF
        elif kind == "u16":
            b[pos:pos + 2] = struct.pack(">H" if val & 1 else "<H", val & 0xFFFF)
        elif kind == "u32":
            b[pos:pos + 4] = struct.pack(">I" if val & 1 else "<I", val & 0xFFFFFFFF)
        elif kind == "insert":
            b[pos:pos] = bytes([val & 0xFF]) * (1 + val % 7)
        elif kind == "delete":
            del b[pos:pos + 1 + val % 5]
        else:
            del b[pos:]
    return bytes(b)


@settings(max_examples=int(sys.argv[1]) if len(sys.argv) > 1 else 600, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(NAMES), muts=st.lists(mutation, min_size=1, max_size=3))
def fuzz(name: str, muts) -> None:
    data = _mutate(SEEDS[name], muts)
    try:
        header = parse_header(data)
    except HeaderError:
        return
    if header.max_pixels > 1 << 22:
        return  # refused by any sane --max-pixels; not decoded here
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return
    pixels = image.shape[0] * image.shape[1]
    assert pixels <= header.max_pixels, (name, muts, image.shape, header)


# Structured JPEG decoys: segments a naive marker walk gets wrong (FF 00 pairs, fill
# bytes, garbage between segments, fake frame headers inside APP/COM segments,
# standalone RST/TEM markers, lengths below 2) around one real frame header.
_TINY = cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes()
_SOF_AT = _TINY.index(b"\xff\xc0")
_SOF_END = _SOF_AT + 2 + struct.unpack(">H", _TINY[_SOF_AT + 2:_SOF_AT + 4])[0]


def _fake_sof(w: int, h: int) -> bytes:
    return b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"


dims = st.integers(1, 1500)
piece = st.one_of(
    st.tuples(st.just("ff00"), st.binary(min_size=0, max_size=3)),
    st.tuples(st.just("fill"), st.integers(1, 4)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=6).filter(lambda b: b"\xff" not in b)),
    st.tuples(st.just("app"), st.tuples(st.integers(0xE0, 0xEF), dims, dims)),
    st.tuples(st.just("com"), st.tuples(dims, dims)),
    st.tuples(st.just("rst"), st.integers(0xD0, 0xD7)),
    st.tuples(st.just("tem"), st.just(0)),
    st.tuples(st.just("short"), st.integers(0, 1)),
)


def _render(p) -> bytes:
    kind, arg = p
    if kind == "ff00":
        return b"\xff\x00" + arg
    if kind == "fill":
        return b"\xff" * arg
    if kind == "garbage":
        return arg
    if kind == "app":
        marker, w, h = arg
        body = b"x" + _fake_sof(w, h)
        return bytes([0xFF, marker]) + struct.pack(">H", 2 + len(body)) + body
    if kind == "com":
        body = _fake_sof(*arg)
        return b"\xff\xfe" + struct.pack(">H", 2 + len(body)) + body
    if kind in ("rst", "tem"):
        return bytes([0xFF, arg if kind == "rst" else 0x01])
    return b"\xff\xee" + struct.pack(">H", arg)  # APP14 with a bogus length below 2


@settings(max_examples=int(sys.argv[1]) // 2 if len(sys.argv) > 1 else 300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(before=st.lists(piece, max_size=4), after=st.lists(piece, max_size=3), w=dims, h=dims)
def fuzz_jpeg_structure(before, after, w, h) -> None:
    sof = bytearray(_TINY[_SOF_AT:_SOF_END])
    sof[5:9] = struct.pack(">HH", h, w)
    data = (_TINY[:2] + b"".join(map(_render, before)) + _TINY[2:_SOF_AT] + bytes(sof)
            + b"".join(map(_render, after)) + _TINY[_SOF_END:])
    try:
        header = parse_header(data)
    except HeaderError:
        return
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return
    assert image.shape[0] * image.shape[1] <= header.max_pixels, (before, after, w, h, image.shape, header)
    assert (image.shape[1], image.shape[0]) == (header.width, header.height), (before, after, image.shape, header)


if __name__ == "__main__":
    cv2.setNumThreads(1)
    # every seed parses and decodes to its declared size
    for name, data in SEEDS.items():
        h = parse_header(data)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img is not None and (img.shape[1], img.shape[0]) == h.size(exif_orientation=False), name
    fuzz()
    fuzz_jpeg_structure()
    print("fuzz ok")

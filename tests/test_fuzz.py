"""Property-based fuzzing of every reader and parser: only cvtool's own errors come out.

Each property feeds random or mutated input to one reader and accepts exactly
two outcomes: a valid result, or a :class:`cvtool.errors.CvtoolError` (which
the CLI prints as one line with exit 1 or 2).  Any other exception -- a
traceback for the user -- fails the test.

Profiles: ``ci`` (default, a fixed example count that keeps this file around
half a minute) and ``long`` (``HYPOTHESIS_PROFILE=long``, 20x more examples).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvtool.errors import CvtoolError

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=800, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _valid_png() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (12, 9, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _valid_jpg() -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (16, 16), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


@st.composite
def mutated(draw, seed_bytes: bytes):
    """Bytes derived from a valid file: truncated, bit-flipped, spliced or extended."""
    data = bytearray(seed_bytes)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


def _accept(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CvtoolError as exc:
        assert str(exc), "errors must carry a message"
        return None


# ---------------------------------------------------------------- images
@given(st.one_of(st.binary(max_size=64), mutated(_valid_png()), mutated(_valid_jpg())))
def test_image_decoder(data):
    from cvtool.io.images import decode_image

    out = _accept(decode_image, data, path="fuzz.img", max_pixels=10_000)
    if out is not None:
        assert out.ndim in (2, 3) and out.size > 0


# ------------------------------------------------------------------- IDX
def _valid_idx() -> bytes:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    return struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2, 3, 4) + arr.tobytes()


@given(st.one_of(st.binary(max_size=40), mutated(_valid_idx())))
def test_idx_reader(tmp_path_factory, data):
    from cvtool.prepare.sources import read_idx

    p = tmp_path_factory.mktemp("idx") / "f-idx3-ubyte"
    p.write_bytes(data)
    out = _accept(read_idx, p)
    if out is not None:
        assert out.ndim >= 1


# ------------------------------------------------------ filter operations
_OP_ALPHABET = st.sampled_from(list("gaussianmedthrolpkcvx:=,;.-_0123456789 ") + ["sigma", "k=", "gaussian",
                                                                                   "median", "kernel", "threshold",
                                                                                   "otsu", "gamma", "noise", "nan",
                                                                                   "inf", "1e308", "-1"])


@given(st.lists(_OP_ALPHABET, min_size=0, max_size=12).map("".join))
def test_filter_operation_parser(text):
    from cvtool.filters.parse import parse_operation

    _accept(parse_operation, text)


@given(st.lists(st.sampled_from(["gaussian", "median:k=", "threshold:", "gamma:g=", "kernel:", "clahe:clip=",
                                 "stretch:low=", "noise:gaussian:sigma=", "wiener:k=", "bilateral:d="]),
                min_size=1, max_size=1),
       st.one_of(st.integers(-5, 300).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.text(max_size=6)))
def test_filter_operation_values_then_apply(prefix, value):
    """Parsed operations either run on a real image or were refused at parse time."""
    from cvtool.filters.parse import apply_pipeline, parse_pipeline

    steps = _accept(parse_pipeline, [prefix[0] + value])
    if steps is None:
        return
    img = np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8)
    out = _accept(apply_pipeline, img, steps, seed=0, key="x")
    if out is not None:
        assert out.shape[:2] == img.shape[:2]

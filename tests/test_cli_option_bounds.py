"""Numeric options are range-checked up front (#13).

Property: for any value of one numeric option, a command on a tiny input
either succeeds or exits 2 with one ``error:`` line -- never a traceback,
never exit 1 because of the option's value, never unbounded work.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_counter = itertools.count()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("bounds")
    path = folder / "coins.png"
    cv2.imwrite(str(path), np.ascontiguousarray(data.coins()[40:80, 60:108]))  # 48x40 real photo crop
    return folder, path


def _value_text(v) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)  # 'nan', 'inf', '-inf'
    return str(v)


def _ints(low, high):
    """Small valid values, the edges and far outside on both sides."""
    return st.one_of(st.integers(low, min(high, low + 20)), st.sampled_from([low - 1, high, high + 1, -(2**63), 2**64]),
                     st.integers(-(10**30), 10**30))


def _floats(low, high):
    return st.one_of(st.floats(low, high), st.sampled_from([low - 1e-6, high * 1.5 + 1, 1e308, -1e308]),
                     st.floats(allow_nan=True, allow_infinity=True))


# (argv with {img}/{out} placeholders, option, strategy)
CASES = [
    (["edges", "{img}", "--out", "{out}", "canny"], "--sigma", _floats(0, 100)),
    (["edges", "{img}", "--out", "{out}", "log"], "--sigma", _floats(0, 100)),
    (["edges", "{img}", "--out", "{out}", "sobel"], "--ksize", _ints(1, 7)),
    (["edges", "{img}", "--out", "{out}", "canny"], "--spread", _floats(0, 1)),
    (["edges", "{img}", "--out", "{out}", "canny", "--high", "1e6"], "--low", _floats(0, 1e6)),
    (["edges", "{img}", "--out", "{out}", "sobel"], "--binarize", _floats(0, 255)),
    (["filter", "{img}", "--out", "{out}", "noise"], "--seed", _ints(0, 2**32 - 1)),
    (["filter", "{img}", "--out", "{out}", "invert"], "--jobs", _ints(0, 256)),
    (["hog", "{img}", "--out", "{out}", "--format", "npy"], "--bins", _ints(2, 360)),
    (["hog", "{img}", "--out", "{out}", "--format", "npy"], "--win-sigma", _floats(0, 1000)),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "single"], "--k", _floats(0.001, 1e5)),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "single"], "--max", _ints(1, 10**7)),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "single"], "--resize", _ints(4, 16384)),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "single"], "--draw", _ints(0, 10**5)),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "single"], "--workers", _ints(1, 256)),
]


@pytest.mark.parametrize("argv,option,values", CASES, ids=lambda v: v if isinstance(v, str) else None)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_numeric_option_succeeds_or_is_one_line_usage_error(cli, tiny, argv, option, values, data):
    folder, img = tiny
    value = data.draw(values, label=option)
    out = folder / f"out{next(_counter)}"
    cmd = [a.replace("{img}", str(img)).replace("{out}", str(out)) for a in argv]
    res = cli([*cmd, f"{option}={_value_text(value)}", "--jobs", "1", "--quiet"] if option != "--jobs" else
              [*cmd, f"{option}={_value_text(value)}", "--quiet"])
    assert res.exit_code in (0, 2), (option, value, res.exit_code, res.output)
    if res.exit_code == 2:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (option, value, res.stderr)
        assert option in lines[0] or option.lstrip("-") in lines[0], (option, value, lines[0])


@pytest.mark.parametrize("argv, option", [
    (["prepare", "localization"], "--count"),
    (["prepare", "localization"], "--clutter"),
    (["prepare", "localization"], "--noise"),
    (["prepare", "localization"], "--clutter-size"),
    (["prepare", "localization"], "--chunk"),
    (["prepare", "detection"], "--tries"),
    (["prepare", "detection"], "--restarts"),
    (["prepare", "augment", "{img}"], "--copies"),
    (["prepare", "augment", "{img}"], "--rotate"),
    (["prepare", "augment", "{img}"], "--blur"),
])
@pytest.mark.parametrize("value", ["-1", "1e30", "10000000000000", "nan", "inf"])
def test_prepare_options_have_upper_bounds(cli, tiny, tmp_path, argv, option, value):
    """Values that would ask for unbounded work are refused before any is done."""
    folder, img = tiny
    cmd = [a.replace("{img}", str(folder)) for a in argv]
    res = cli([*cmd, "--out", tmp_path / "o", f"{option}={value}"])
    assert res.exit_code == 2, (option, value, res.output)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}"), lines
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    (["edges", "{img}", "--out", "{out}", "canny", "--sigma", "1e6"], "--sigma 1e6 is out of range: must be <= 100"),
    (["hog", "{img}", "--out", "{out}", "--window", "100000x100000"], "--window '100000x100000'"),
    (["selective-search", "{img}", "--out", "{out}", "--mode", "single", "--k", "1e308"], "--k 1e308"),
    (["edges", "{img}", "--out", "{out}", "canny", "--low", "inf", "--high", "inf"], "--low inf"),
    (["edges", "{img}", "--out", "{out}", "log", "--sigma", "1e-300"], "--sigma 1e-300"),
    (["filter", "{img}", "--out", "{out}", "invert", "--seed", "-1"], "--seed -1"),
    (["detect", "{img}", "--model", "{img}", "--out", "{out}", "--min-size", "50", "--max-size", "10"],
     "--min-size 50 must not exceed --max-size 10"),
    (["filter", "{img}", "--out", "{out}", "invert", "--jobs", "100000"], "--jobs 100000"),
    (["prepare", "detection", "--out", "{out}", "--objects", "1-100000"], "--objects 1-100000"),
    (["prepare", "localization", "--out", "{out}", "--scale", "inf"], "--scale 'inf'"),
    (["prepare", "localization", "--out", "{out}", "--scale", "1-1e9"], "--scale '1-1e9'"),
])
def test_issue_examples_are_usage_errors(cli, tiny, tmp_path, argv, needle):
    folder, img = tiny
    res = cli([a.replace("{img}", str(img)).replace("{out}", str(tmp_path / "o")) for a in argv])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [res.stderr.strip()] and needle in res.stderr, res.stderr

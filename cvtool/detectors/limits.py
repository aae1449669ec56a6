"""Sane ranges for the settings a model file carries, checked before anything is allocated.

A model file is untrusted input: a checkpoint's ``model_config`` decides how big
a network is built, a HOG+SVM ``model.npz`` decides how many pyramid levels an
image is scanned at.  Every such setting is checked here against a range (and
the network's parameter count against :data:`MAX_PARAMETERS`, counted on the
``meta`` device, which allocates nothing) before a byte is spent on it.  The
same ranges bound the ``train`` options that set them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

MAX_WIDTH = 256
"""First-stage channels of a CNN (later stages use up to 8x)."""
MAX_CLASSES = 1000
MAX_CANVAS = 1024
"""Largest side of a localiser canvas, pixels."""
MAX_WARP = 256
"""Largest R-CNN warp side, pixels."""
MAX_PARAMETERS = 50_000_000
"""Largest network (about 200 MB of float32 weights)."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def int_setting(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]`` (bools and fractional numbers refused).

    Raises
    ------
    ValueError
        Naming ``name``, the value and the range.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, numbers.Real) and not isinstance(value, bool):
        ok = math.isfinite(float(value)) and float(value).is_integer()
    if not ok or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {_show(value)}")
    return int(value)


def float_setting(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).

    Raises
    ------
    ValueError
        Naming ``name``, the value and the range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        raise ValueError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {_show(value)}")
    return float(value)


def check_network_size(build, what: str) -> None:
    """Build the network with ``build()`` on the meta device and refuse it above :data:`MAX_PARAMETERS`.

    Raises
    ------
    ValueError
        The network would hold more parameters than the limit.
    """
    import torch

    with torch.device("meta"):
        net = build()
    n = sum(p.numel() for p in net.parameters())
    if n > MAX_PARAMETERS:
        raise ValueError(f"{what} would build a network of {n:,} parameters ({n * 4 / 2**30:.1f} GiB); "
                         f"at most {MAX_PARAMETERS:,} are allowed")

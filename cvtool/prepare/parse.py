"""Parsing of the ``prepare`` option strings (sizes, ranges); light imports only."""

from __future__ import annotations

import math

from cvtool.errors import UsageError


MAX_SIDE = 8192
"""Largest canvas side: a canvas is allocated per scene, so the limit keeps memory bounded."""


def parse_size(text: str, *, option: str = "--canvas") -> tuple[int, int]:
    """``"75"`` or ``"128x96"`` (WIDTHxHEIGHT) -> ``(height, width)``, each side 1..MAX_SIDE."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise UsageError(f"{option} {text!r}: expected SIZE or WIDTHxHEIGHT in pixels, e.g. 75 or 128x96")
    if max(vals) > MAX_SIDE:
        raise UsageError(f"{option} {text!r}: sides are limited to {MAX_SIDE} pixels")
    return vals[1], vals[0]


def parse_range(text: str, *, option: str, integer: bool = False) -> tuple[float, float]:
    """``"0.8-1.2"``, ``"0.8:1.2"`` or ``"1"`` -> ``(low, high)`` with low <= high."""
    sep = ":" if ":" in text else "-"
    parts = [p for p in text.split(sep)] if sep in text.lstrip("-") else [text]
    try:
        vals = [int(p) if integer else float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(math.isfinite(v) for v in vals) or vals[0] > vals[1]:
        example = "3-5" if integer else "0.8-1.2"
        raise UsageError(f"{option} {text!r}: expected LOW-HIGH with LOW <= HIGH (or one value), e.g. {example}")
    return vals[0], vals[1]

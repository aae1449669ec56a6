"""Precision-recall pictures: one PNG per class and an overall PNG.

matplotlib (Agg backend, no display) is imported when a function is called.
Files are written atomically.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvtool.io.atomic import atomic_write_bytes

Curve = tuple[str, np.ndarray, np.ndarray]  # (label, recall (N,), precision (N,))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, *, overwrite: bool) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite)
    return path


def safe_file_stem(name: str) -> str:
    """A class name made safe as a file name (letters, digits, ``-``, ``_``, ``.``)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "class"
    return stem[:80]


def envelope_at(recall: np.ndarray, precision: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Interpolated precision (largest precision at recall >= r) at each of ``points``."""
    if recall.size == 0:
        return np.zeros_like(points, dtype=np.float64)
    env = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, points, side="left")
    return np.where(idx < recall.size, env[np.minimum(idx, recall.size - 1)], 0.0)


def plot_pr_curves(jobs: Sequence[tuple[str | os.PathLike[str], str, Sequence[Curve]]], *,
                   overwrite: bool = False) -> list[Path]:
    """One PNG of PR curves (recall on x, precision on y) per job ``(path, title, curves)``.

    One figure is drawn and reused for every job (fixed layout, no
    ``tight_layout``): most of matplotlib's cost is building figures and
    laying out text, so a set with 80 classes stays quick.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.92)
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.grid(True, alpha=0.3)
    written = []
    try:
        for path, title, curves in jobs:
            for artist in list(ax.lines):
                artist.remove()
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
            ax.set_prop_cycle(None)  # same colours in every file
            for label, rec, prec in curves:
                if rec.size:
                    ax.plot(np.r_[0.0, rec], np.r_[prec[0], prec], label=label)
            ax.set_title(title)
            if curves:
                ax.legend(loc="lower left", fontsize=8)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            atomic_write_bytes(Path(path), buf.getvalue(), overwrite=overwrite)
            written.append(Path(path))
    finally:
        plt.close(fig)
    return written


def plot_overall(curves: Sequence[Curve], ap_by_class: dict[str, float], path: str | os.PathLike[str], *,
                 title: str, ap_label: str = "AP", overwrite: bool = False) -> Path:
    """Mean PR curves (left) and per-class AP as horizontal bars (right)."""
    plt = _pyplot()
    names = [n for n, v in ap_by_class.items() if v is not None and np.isfinite(v) and v >= 0]
    height = max(4.5, 0.22 * len(names) + 1.5)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, height), gridspec_kw={"width_ratios": [1.2, 1]})
    for label, rec, prec in curves:
        ax.plot(rec, prec, label=label)
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="mean precision over classes")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    values = [ap_by_class[n] for n in names]
    bx.barh(np.arange(len(names)), values, color="tab:blue")
    bx.set_yticks(np.arange(len(names)), names, fontsize=8 if len(names) < 40 else 6)
    bx.invert_yaxis()
    bx.set(xlim=(0, 1), xlabel=ap_label, title=f"{ap_label} per class")
    bx.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(path), overwrite=overwrite)


def plot_localization(ious: np.ndarray, per_class: list[dict], threshold: float, path: str | os.PathLike[str], *,
                      title: str = "", overwrite: bool = False) -> Path:
    """IoU histogram with the threshold (left) and per-class accuracy / IoU hit rate (right)."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax.hist(ious, bins=np.linspace(0, 1, 21), color="tab:blue")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"IoU {threshold:g}")
    ax.set(xlabel="IoU of the top prediction", ylabel="images", title="IoU distribution")
    ax.legend()
    names = [r["name"] for r in per_class]
    x = np.arange(len(names))
    acc = [r["accuracy"] if r["accuracy"] is not None else 0 for r in per_class]
    hit = [r["iou_hit_rate"] if r["iou_hit_rate"] is not None else 0 for r in per_class]
    bx.bar(x - 0.2, acc, width=0.4, label="accuracy")
    bx.bar(x + 0.2, hit, width=0.4, label=f"IoU >= {threshold:g}")
    bx.set_xticks(x, names, rotation=45 if len(names) > 8 else 0, fontsize=8)
    bx.set(ylim=(0, 1.2), title="per class")
    bx.legend(loc="upper right", ncols=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(path), overwrite=overwrite)

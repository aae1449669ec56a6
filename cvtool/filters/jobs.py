"""The per-image job of ``filter`` and ``edges``: read, transform, write atomically.

These live outside ``cvtool.cli`` so that worker processes, which unpickle
the job, import only NumPy, OpenCV and the core -- not Typer and its
dependencies (faster worker start-up for ``--jobs N``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cvtool.io.images import DEFAULT_MAX_PIXELS


_ALLOCATOR_TUNED = False


def tune_allocator() -> None:
    """Keep freed image buffers in glibc's heap instead of returning them to the OS.

    Decoding and filtering 1080p images allocates and frees several 6 MB
    arrays per image.  glibc's adaptive thresholds can send each of them
    through ``mmap``/``munmap``, so every image pays ~2,000 fresh page faults
    (measured: +5 ms system time per 1080p image, ~20% of a Gaussian job).
    Fixing the mmap threshold at 32 MB and the trim threshold at 128 MB lets
    the buffers be reused; memory held back stays bounded by the trim
    threshold.  Done once per process, only on glibc, and never when the user
    set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` themselves.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        libc.mallopt(m_trim_threshold, 128 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        pass


@dataclass(frozen=True)
class ImageJob:
    """A picklable ``task -> record`` function for :func:`cvtool.batch.run_batch`.

    Attributes
    ----------
    transform : callable
        ``transform(image, key) -> image``; ``key`` is the input's relative
        path (seeds per-image randomness).  Must be picklable (a module-level
        function or a ``functools.partial`` of one).
    max_pixels : int
        Decompression-bomb limit for :func:`cvtool.io.images.read_image`.
    overwrite : bool
        Replace existing outputs.
    """

    transform: Callable[..., Any]
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False

    def __call__(self, task) -> dict[str, Any]:
        from cvtool.io.images import read_image, write_image

        tune_allocator()
        image = read_image(task.item.path, max_pixels=self.max_pixels)
        result = self.transform(image, str(task.item.rel))
        write_image(task.out, result, overwrite=self.overwrite)
        return {"out": str(task.out), "shape": list(result.shape), "dtype": str(result.dtype)}


def filter_transform(image, key: str, *, steps, seed: int = 0, alpha: str = "keep"):
    """``filter``: run the parsed pipeline on one image (``key``, its relative path, seeds noise)."""
    from cvtool.filters.parse import apply_pipeline

    return apply_pipeline(image, steps, seed=seed, key=key, alpha=alpha)


def edges_transform(image, key: str, *, method: str, settings: tuple[tuple[str, Any], ...]):
    """``edges``: detect edges in one image (``key`` is unused: edges are deterministic)."""
    from cvtool.edges import detect_edges

    return detect_edges(image, method=method, **dict(settings))


def ok_record(outcome) -> dict[str, Any]:
    """The ``--json`` record of a processed image."""
    return {"path": outcome.path, "rel": outcome.rel, "status": "ok", **(outcome.result or {})}

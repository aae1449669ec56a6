"""The per-image job of ``filter`` and ``edges``: read, transform, write atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cvtool.io.images import DEFAULT_MAX_PIXELS


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

        image = read_image(task.item.path, max_pixels=self.max_pixels)
        result = self.transform(image, str(task.item.rel))
        write_image(task.out, result, overwrite=self.overwrite)
        return {"out": str(task.out), "shape": list(result.shape), "dtype": str(result.dtype)}


def ok_record(outcome) -> dict[str, Any]:
    """The ``--json`` record of a processed image."""
    return {"path": outcome.path, "rel": outcome.rel, "status": "ok", **(outcome.result or {})}

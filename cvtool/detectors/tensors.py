"""Image <-> tensor helpers shared by the CNN detectors (R-CNN, single-shot).

Images enter every detector as uint8 NumPy arrays, grey ``(H, W)`` or BGR
``(H, W, 3)``; the networks take float tensors ``(B, C, H, W)`` in ``[0, 1]``
with ``C`` fixed at training time (1 for grey data, 3 for colour).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cvtool.errors import BadInputError


def channels_of(images: Sequence[np.ndarray] | np.ndarray) -> int:
    """1 when every image is grey (or BGR with equal channels), else 3.

    Parameters
    ----------
    images : sequence of (H, W[, C]) uint8 ndarray, or (N, H, W[, C]) ndarray
    """
    for im in images:
        if im.ndim == 3 and im.shape[2] >= 3:
            if not (np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 0], im[..., 2])):
                return 3
    return 1


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Return ``image`` as ``(H, W, channels)`` uint8 (grey <-> BGR as needed).

    Raises
    ------
    BadInputError
        The image is not 2-D or 3-D with 1, 3 or 4 channels, or not uint8.
    """
    if image.dtype != np.uint8:
        raise BadInputError(f"image dtype is {image.dtype}; detectors take uint8 images")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise BadInputError(f"image shape is {image.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if channels == 1 and image.shape[2] == 3:
        # BT.601 luma on BGR, as cv2.cvtColor(..., COLOR_BGR2GRAY)
        g = image[:, :, 0] * 0.114 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.299
        image = np.clip(np.rint(g), 0, 255).astype(np.uint8)[:, :, None]
    elif channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def batch_tensor(images: Sequence[np.ndarray], *, channels: int, multiple: int, device=None):
    """Stack equally sized images into a ``(B, C, H', W')`` float tensor in [0, 1].

    ``H'`` and ``W'`` are ``H`` and ``W`` rounded up to ``multiple`` by padding
    zeros at the bottom and right, so box coordinates are unchanged.
    """
    import torch

    arr = np.stack([to_channels(im, channels) for im in images])  # (B, H, W, C)
    b, h, w, c = arr.shape
    hp = -(-h // multiple) * multiple
    wp = -(-w // multiple) * multiple
    t = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2)
    x = torch.zeros((b, c, hp, wp), dtype=torch.float32, device=t.device)
    x[:, :, :h, :w] = t.float() / 255.0
    return x


def group_by_size(images: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of ``images`` grouped into batches of equal ``(H, W)``, input order kept within a size."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault((int(im.shape[0]), int(im.shape[1])), []).append(i)
    groups = []
    for idx in by_size.values():
        for s in range(0, len(idx), batch_size):
            groups.append(idx[s:s + batch_size])
    return groups

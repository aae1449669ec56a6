"""Region features of selective search, computed for all regions at once.

Per pixel, every channel's value is quantised once into 25 colour bins and each
of 8 oriented Gaussian-derivative responses into 10 texture bins (so a colour
space with C channels has ``25 C`` colour and ``80 C`` texture bins).  Those
per-pixel bin codes depend on the colour space only and are shared by every
segmentation (k) and similarity set of a strategy; the histograms of all regions
of one segmentation then come from a single ``np.bincount`` over
``label * n_bins + code``.

References
----------
J. R. R. Uijlings, K. E. A. van de Sande, T. Gevers and A. W. M. Smeulders,
"Selective search for object recognition", IJCV 104(2), 2013, section 3.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOUR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8
TEXTURE_SIGMA = 1.0
_CHUNK_ENTRIES = 1 << 22  # pixels x codes per np.bincount call (32 MiB of int64 indices)


@dataclass(frozen=True)
class PixelCodes:
    """Per-pixel histogram bin codes of one colour-converted image.

    Attributes
    ----------
    colour : (H*W, C) uint8 ndarray
        ``channel * 25 + bin``.
    texture : (H*W, 8 C) uint8 ndarray
        ``(channel * 8 + orientation) * 10 + bin``.
    n_colour, n_texture : int
        Histogram lengths (25 C and 80 C).
    shape : (int, int)
        Image height and width.
    """

    colour: np.ndarray
    texture: np.ndarray
    n_colour: int
    n_texture: int
    shape: tuple[int, int]


@dataclass(frozen=True)
class RegionFeatures:
    """Features of the n regions of a label map.

    Attributes
    ----------
    sizes : (n,) float64 ndarray
        Pixel counts.
    boxes : (n, 4) float64 ndarray
        Bounding boxes, xyxy with exclusive right/bottom edges (pixel edges).
    colour : (n, 25 C) float32 ndarray
        L1-normalised colour histograms.
    texture : (n, 80 C) float32 ndarray
        L1-normalised texture histograms.
    pairs : (P, 2) int64 ndarray
        Adjacent region pairs ``i < j`` (8-connectivity), each once.
    """

    sizes: np.ndarray
    boxes: np.ndarray
    colour: np.ndarray
    texture: np.ndarray
    pairs: np.ndarray

    @property
    def n(self) -> int:
        return int(self.sizes.shape[0])


def _gaussian_derivative_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    dg = x * g
    dg /= np.sum(x * dg)  # correlation kernel with response +1 to the ramp f(x) = x
    return g.astype(np.float32), dg.astype(np.float32)


def oriented_derivatives(channel: np.ndarray, *, sigma: float = TEXTURE_SIGMA) -> np.ndarray:
    """Half-wave rectified Gaussian derivatives in 8 orientations.

    Parameters
    ----------
    channel : (H, W) ndarray
        One image channel.
    sigma : float
        Scale of the Gaussian derivative.

    Returns
    -------
    responses : (8, H, W) float32 ndarray
        For directions 0, 45, 90 and 135 degrees (steered from the x and y
        derivatives) the positive part, then the negative parts (180 .. 315 deg).
    """
    import cv2

    g, dg = _gaussian_derivative_kernels(sigma)
    f = channel.astype(np.float32, copy=False)
    gx = cv2.sepFilter2D(f, cv2.CV_32F, dg, g, borderType=cv2.BORDER_REFLECT)
    gy = cv2.sepFilter2D(f, cv2.CV_32F, g, dg, borderType=cv2.BORDER_REFLECT)
    r = np.float32(np.sqrt(0.5))
    directions = (gx, (gx + gy) * r, gy, (gy - gx) * r)
    out = np.empty((ORIENTATIONS,) + f.shape, dtype=np.float32)
    for o, d in enumerate(directions):
        np.maximum(d, 0, out=out[o])
        np.maximum(-d, 0, out=out[o + 4])
    return out


def pixel_codes(converted: np.ndarray, ranges: tuple[int, ...]) -> PixelCodes:
    """Quantise every pixel once for colour and texture histograms.

    Parameters
    ----------
    converted : (H, W, C) uint8 ndarray
        Image in the strategy's colour space (see
        :func:`cvtool.proposals.segmentation.convert_colour`).
    ranges : tuple of C int
        One past each channel's largest value (e.g. 180 for OpenCV hue).

    Returns
    -------
    PixelCodes
        Colour bins: 25 equal bins of each channel's range.  Texture bins:
        10 equal bins of ``[0, max]`` of each (channel, orientation) response
        over the image.
    """
    h, w, c = converted.shape
    colour = np.empty((h * w, c), dtype=np.uint8)
    texture = np.empty((h * w, ORIENTATIONS * c), dtype=np.uint8)
    for ch in range(c):
        v = converted[:, :, ch].reshape(-1).astype(np.uint16)
        colour[:, ch] = (v * COLOUR_BINS // ranges[ch]).astype(np.uint8) + ch * COLOUR_BINS
        responses = oriented_derivatives(converted[:, :, ch]).reshape(ORIENTATIONS, -1)
        peak = responses.max(axis=1, keepdims=True)
        scale = np.where(peak > 0, TEXTURE_BINS / np.maximum(peak, 1e-12), 0).astype(np.float32)
        bins = np.minimum(responses * scale, TEXTURE_BINS - 1).astype(np.uint8)
        offsets = ((ch * ORIENTATIONS + np.arange(ORIENTATIONS)) * TEXTURE_BINS).astype(np.uint8)
        texture[:, ch * ORIENTATIONS:(ch + 1) * ORIENTATIONS] = (bins + offsets[:, None]).T
    return PixelCodes(colour, texture, COLOUR_BINS * c, TEXTURE_BINS * ORIENTATIONS * c, (h, w))


def region_histograms(labels_flat: np.ndarray, codes: np.ndarray, n_regions: int, n_bins: int) -> np.ndarray:
    """L1-normalised histograms of all regions from per-pixel bin codes.

    Parameters
    ----------
    labels_flat : (N,) int ndarray
        Region label of each pixel, ``0 .. n_regions-1``.
    codes : (N, K) uint8 ndarray
        K bin codes per pixel (each pixel adds one count to each of its K bins).
    n_regions, n_bins : int

    Returns
    -------
    hist : (n_regions, n_bins) float32 ndarray
        Each row sums to 1.
    """
    step = max(1, _CHUNK_ENTRIES // max(1, codes.shape[1]))  # bounds the int64 index memory
    counts = np.zeros(n_regions * n_bins, dtype=np.int64)
    for start in range(0, labels_flat.shape[0], step):
        index = labels_flat[start:start + step].astype(np.int64)[:, None] * n_bins + codes[start:start + step]
        counts += np.bincount(index.ravel(), minlength=n_regions * n_bins)
    hist = counts.reshape(n_regions, n_bins).astype(np.float32)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    return hist


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Pairs of regions that touch (8-connectivity), from one pass over the label map.

    Parameters
    ----------
    labels : (H, W) int ndarray

    Returns
    -------
    pairs : (P, 2) int64 ndarray
        ``i < j``, sorted, each pair once.
    """
    n = int(labels.max()) + 1
    lab = labels.astype(np.int64, copy=False)
    chunks = []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :]),
                 (lab[:-1, :-1], lab[1:, 1:]), (lab[:-1, 1:], lab[1:, :-1])):
        differ = a != b
        if differ.any():
            x, y = a[differ], b[differ]
            chunks.append(np.minimum(x, y) * n + np.maximum(x, y))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    keys = np.unique(np.concatenate(chunks))
    return np.stack([keys // n, keys % n], axis=1)


def region_boxes(labels: np.ndarray, n_regions: int) -> np.ndarray:
    """Bounding boxes (xyxy, exclusive right/bottom) of labels ``0 .. n-1``."""
    from scipy import ndimage

    boxes = np.zeros((n_regions, 4), dtype=np.float64)
    for i, sl in enumerate(ndimage.find_objects(labels + 1, max_label=n_regions)):
        if sl is not None:
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    return boxes


def region_features(labels: np.ndarray, codes: PixelCodes, *, colour: bool = True,
                    texture: bool = True) -> RegionFeatures:
    """Sizes, boxes, histograms and adjacency of every region of ``labels``.

    Parameters
    ----------
    labels : (H, W) int32 ndarray
        Labels ``0 .. n-1`` (see :func:`cvtool.proposals.segmentation.felzenszwalb`).
    codes : PixelCodes
        From :func:`pixel_codes` on the same image.
    colour, texture : bool
        Compute the colour / texture histograms (skipped ones are ``(n, 0)``).

    Returns
    -------
    RegionFeatures
    """
    if labels.shape != codes.shape:
        raise ValueError(f"label map is {labels.shape} but the pixel codes are for {codes.shape}")
    n = int(labels.max()) + 1
    flat = labels.reshape(-1)
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    col = (region_histograms(flat, codes.colour, n, codes.n_colour) if colour
           else np.zeros((n, 0), dtype=np.float32))
    tex = (region_histograms(flat, codes.texture, n, codes.n_texture) if texture
           else np.zeros((n, 0), dtype=np.float32))
    return RegionFeatures(sizes, region_boxes(labels, n), col, tex, adjacent_pairs(labels))

"""Object sources for synthetic scenes: MNIST IDX files, scikit-learn digits, crop folders.

Every source becomes an :class:`ObjectPool`: padded object pictures with their
alpha (coverage) maps, sizes, class labels, class names and, for MNIST, its own
train/test membership.  An object is pasted onto a canvas as
``out = canvas * (1 - a) + colour * a`` with ``a = alpha / 255``:

* digits (MNIST, Fashion-MNIST, scikit-learn digits) are white ink whose grey
  level *is* the alpha, so on a black canvas the canvas shows the digit itself;
* crops with an alpha channel use it;
* crops without alpha get a 0/255 mask from a threshold: the background colour
  is the median of the crop's border pixels and a pixel is object when its grey
  level differs from that by more than ``threshold`` (default 16).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtool.errors import BadInputError, UsageError

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ObjectPool:
    """Objects to paste, padded to a common size.

    Attributes
    ----------
    colour : (N, h, w) or (N, h, w, 3) uint8 ndarray, or None
        Object colours (BGR for 3 channels); ``None`` means white ink (digits).
    alpha : (N, h, w) uint8 ndarray
        Coverage 0..255; zero outside each object's own size.
    sizes : (N, 2) int64 ndarray
        Each object's own ``(height, width)`` (the top-left part of its slot).
    labels : (N,) int64 ndarray
        Class index 0..C-1 into ``class_names``.
    class_names : tuple of str
    splits : dict of str to (K,) int64 ndarray, or None
        The source's own split (MNIST: ``train``, ``test``), as object indices.
    name : str
        Where it came from (for run.json).
    """

    colour: np.ndarray | None
    alpha: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    splits: dict[str, np.ndarray] | None = None
    name: str = ""

    def __len__(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def channels(self) -> int:
        """1 for grey objects, 3 for colour."""
        return 1 if self.colour is None or self.colour.ndim == 3 else 3

    def take(self, index: np.ndarray) -> ObjectPool:
        """The objects at ``index`` (a new pool without a split)."""
        index = np.asarray(index, dtype=np.int64)
        return ObjectPool(None if self.colour is None else self.colour[index], self.alpha[index],
                          self.sizes[index], self.labels[index], self.class_names, None, self.name)


# ---------------------------------------------------------------------------
# IDX (MNIST)
# ---------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Parameters
    ----------
    path : path-like
        ``*-idx3-ubyte`` (images, (N, rows, cols)) or ``*-idx1-ubyte`` (labels, (N,)),
        optionally ``.gz``.

    Returns
    -------
    ndarray
        Shape from the header, dtype from its type byte (uint8 for MNIST).

    Raises
    ------
    BadInputError
        Unreadable file, wrong magic number (the first two bytes must be zero,
        the third a known type code), or a body shorter or longer than the
        header's dimensions say.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise BadInputError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4:
        raise BadInputError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_DTYPES or not 1 <= ndim <= 4:
        raise BadInputError(f"{path}: wrong magic number 0x{data[:4].hex()} (IDX files start with "
                            "00 00, a type code 08-0e and 1-4 dimensions, e.g. 0x00000803 for MNIST images)")
    if len(data) < 4 + 4 * ndim:
        raise BadInputError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(data) - 4 - 4 * ndim
    if body != expected:
        kind = "truncated" if body < expected else "too long"
        raise BadInputError(f"{path}: {kind}: header says {'x'.join(map(str, dims))} "
                            f"({expected} bytes of data), file has {body}")
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` (uint8, 1-4 dimensions) as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    The inverse of :func:`read_idx`; used to build small MNIST-format fixtures.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 4:
        raise ValueError(f"write_idx needs a uint8 array of 1-4 dimensions, got {array.dtype} {array.shape}")
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array).tobytes()
    from cvtool.io.atomic import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data, overwrite=True)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"{folder}: no {stem}[.gz] (an MNIST folder holds train-images-idx3-ubyte, "
                     "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, optionally .gz)")


def load_mnist(folder: str | os.PathLike[str], *, fashion: bool = False) -> ObjectPool:
    """Load MNIST (or Fashion-MNIST, same files) from its four IDX files.

    Returns
    -------
    ObjectPool
        70,000 28x28 objects (train first), ``splits`` = MNIST's own train/test.

    Raises
    ------
    UsageError
        The folder or a file is missing.
    BadInputError
        A malformed file, images/labels count mismatch, labels outside 0-9.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--mnist {folder}: not a folder")
    parts = []
    for prefix in ("train", "t10k"):
        img_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        lab_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        images = read_idx(img_path)
        labels = read_idx(lab_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise BadInputError(f"{img_path}: expected uint8 images (N, rows, cols), got {images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise BadInputError(f"{lab_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
        if images.shape[0] != labels.shape[0]:
            raise BadInputError(f"{img_path} has {images.shape[0]} images but {lab_path} has "
                                f"{labels.shape[0]} labels")
        if labels.size and labels.max() > 9:
            raise BadInputError(f"{lab_path}: label {int(labels.max())} outside 0-9")
        parts.append((images, labels))
    if parts[0][0].shape[1:] != parts[1][0].shape[1:]:
        raise BadInputError(f"{folder}: train images are {parts[0][0].shape[1:]}, test images {parts[1][0].shape[1:]}")
    images = np.concatenate([parts[0][0], parts[1][0]])
    labels = np.concatenate([parts[0][1], parts[1][1]]).astype(np.int64)
    n_train = parts[0][0].shape[0]
    h, w = images.shape[1:]
    return ObjectPool(
        colour=None, alpha=images, sizes=np.tile(np.array([[h, w]], dtype=np.int64), (len(labels), 1)),
        labels=labels, class_names=FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES,
        splits={"train": np.arange(n_train, dtype=np.int64),
                "test": np.arange(n_train, len(labels), dtype=np.int64)},
        name=f"{'fashion-mnist' if fashion else 'mnist'}:{folder}")


def load_sklearn_digits(*, size: int = 28) -> ObjectPool:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 0..16), as ``size`` x ``size`` uint8.

    Each 8x8 digit is scaled to 0..255 and resized with bilinear interpolation
    to ``size`` x ``size`` (OpenCV ``INTER_LINEAR``), so it looks like an MNIST digit.
    """
    import cv2
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.float32)
    big = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in small])
    alpha = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return ObjectPool(colour=None, alpha=alpha,
                      sizes=np.tile(np.array([[size, size]], dtype=np.int64), (len(alpha), 1)),
                      labels=bunch.target.astype(np.int64), class_names=MNIST_CLASSES,
                      splits=None, name="sklearn-digits")


# ---------------------------------------------------------------------------
# Crop folders and backgrounds
# ---------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def crop_mask(image: np.ndarray, *, threshold: float = 16.0) -> np.ndarray:
    """Alpha (0..255) of an object crop.

    Parameters
    ----------
    image : (h, w), (h, w, 3) or (h, w, 4) uint8 ndarray
        With 4 channels the alpha channel is returned as is.
    threshold : float
        Without alpha: the background grey level is the median of the border
        pixels; pixels whose grey differs from it by more than ``threshold``
        are object (255), the rest 0.

    Returns
    -------
    (h, w) uint8 ndarray
    """
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, 3])
    from cvtool.io.images import to_gray

    grey = to_gray(image).astype(np.int16)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    return np.where(np.abs(grey - background) > threshold, 255, 0).astype(np.uint8)


def load_crop_folder(folder: str | os.PathLike[str], *, threshold: float = 16.0,
                     max_pixels: int = 4_000_000) -> ObjectPool:
    """Load object crops laid out as ``folder/class_name/*.png`` (any image format).

    Class names are the sub-folder names (sorted); masks from :func:`crop_mask`.
    Colour is kept when any crop has colour (grey crops are replicated).

    Raises
    ------
    UsageError
        Not a folder, no class folders, or an empty class folder.
    BadInputError
        An unreadable crop (named) or a crop whose mask is empty.
    """
    from cvtool.io.images import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--crops {folder}: not a folder")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"--crops {folder}: no class folders (expected {folder}/CLASS_NAME/*.png)")
    crops, alphas, labels = [], [], []
    for ci, cdir in enumerate(classes):
        files = _image_files(cdir)
        if not files:
            raise UsageError(f"--crops: class folder {cdir} holds no images ({', '.join(IMAGE_EXTS)})")
        for f in files:
            img = read_image(f, max_pixels=max_pixels)
            if img.dtype != np.uint8:
                raise BadInputError(f"{f}: {img.dtype} crop; crops must be 8-bit")
            if img.ndim == 3 and img.shape[2] == 1:
                img = img[:, :, 0]
            alpha = crop_mask(img, threshold=threshold)
            if not alpha.any():
                raise BadInputError(f"{f}: empty mask (no alpha, or nothing differs from the border "
                                    f"by more than --threshold {threshold:g})")
            colour = img[:, :, :3] if img.ndim == 3 else img
            crops.append(colour)
            alphas.append(alpha)
            labels.append(ci)
    hmax = max(a.shape[0] for a in alphas)
    wmax = max(a.shape[1] for a in alphas)
    is_colour = any(c.ndim == 3 for c in crops)
    n = len(crops)
    colour = np.zeros((n, hmax, wmax, 3) if is_colour else (n, hmax, wmax), dtype=np.uint8)
    alpha_arr = np.zeros((n, hmax, wmax), dtype=np.uint8)
    sizes = np.zeros((n, 2), dtype=np.int64)
    for i, (c, a) in enumerate(zip(crops, alphas)):
        h, w = a.shape
        if is_colour and c.ndim == 2:
            c = np.repeat(c[:, :, None], 3, axis=2)
        colour[i, :h, :w] = c
        alpha_arr[i, :h, :w] = a
        sizes[i] = (h, w)
    return ObjectPool(colour=colour, alpha=alpha_arr, sizes=sizes, labels=np.array(labels, dtype=np.int64),
                      class_names=tuple(c.name for c in classes), splits=None, name=f"crops:{folder}")


def load_backgrounds(folder: str | os.PathLike[str], *, max_pixels: int = 50_000_000) -> list[np.ndarray]:
    """Background pictures from a folder (sorted), as uint8 grey or BGR.

    Raises
    ------
    UsageError
        Not a folder or no images in it.
    BadInputError
        An unreadable or non-8-bit image.
    """
    from cvtool.io.images import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--backgrounds {folder}: not a folder")
    files = _image_files(folder)
    if not files:
        raise UsageError(f"--backgrounds {folder}: no images ({', '.join(IMAGE_EXTS)})")
    out = []
    for f in files:
        img = read_image(f, max_pixels=max_pixels)
        if img.dtype != np.uint8:
            raise BadInputError(f"{f}: {img.dtype} background; backgrounds must be 8-bit")
        if img.ndim == 3:
            img = img[:, :, :3] if img.shape[2] >= 3 else img[:, :, 0]
        out.append(np.ascontiguousarray(img))
    return out


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, float, float]:
    """Parse ``--split`` ``"0.8,0.1,0.1"`` (train, val, test; need not sum to 1: normalised)."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--split {text!r}: expected three numbers TRAIN,VAL,TEST such as 0.8,0.1,0.1") from None
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(not np.isfinite(p) or p < 0 for p in parts) or parts[0] <= 0:
        raise UsageError(f"--split {text!r}: expected TRAIN,VAL,TEST fractions >= 0 with TRAIN > 0, e.g. 0.8,0.1,0.1")
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def split_objects(pool: ObjectPool, fractions: tuple[float, float, float] | None, *,
                  seed: int) -> dict[str, np.ndarray]:
    """Divide object indices into disjoint train/val/test sets (before any scene is made).

    With the source's own split (MNIST) its test set is kept and ``fractions``
    (when given) divides its train set into train and val in the ratio
    TRAIN:VAL.  Otherwise the objects are shuffled (seeded) and cut by
    ``fractions`` (default 0.8, 0.1, 0.1).  Empty splits are left out.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5317]))
    if pool.splits is not None:
        out = {name: idx for name, idx in pool.splits.items()}
        if fractions is not None and fractions[1] > 0:
            train = rng.permutation(out["train"])
            n_val = int(round(len(train) * fractions[1] / (fractions[0] + fractions[1])))
            out = {"train": np.sort(train[n_val:]), "val": np.sort(train[:n_val]), "test": out["test"]}
        return {k: v for k, v in out.items() if len(v)}
    fr = fractions or (0.8, 0.1, 0.1)
    perm = rng.permutation(len(pool))
    n = len(perm)
    n_train = int(round(n * fr[0]))
    n_val = int(round(n * fr[1]))
    if fr[2] == 0:
        n_val = n - n_train
    out = {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]),
           "test": np.sort(perm[n_train + n_val:])}
    return {k: v for k, v in out.items() if len(v)}

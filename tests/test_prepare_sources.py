"""prepare sources: IDX reader against hand-built files, MNIST errors, crop folders, splits."""

from __future__ import annotations

import gzip
import struct

import cv2
import numpy as np
import pytest

from cvtool.errors import BadInputError, UsageError
from cvtool.prepare.sources import (FASHION_MNIST_CLASSES, crop_mask, load_crop_folder, load_mnist,
                                    load_sklearn_digits, parse_split, read_idx, split_objects, write_idx)


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """IDX written by hand (independent of write_idx): 0x0000, type 0x08, ndim, big-endian dims."""
    head = struct.pack(">I", magic if magic is not None else 0x0800 | arr.ndim)
    return head + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def _mnist_dir(tmp_path, n_train=6, n_test=4, gz=False, rng=None):
    rng = rng or np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labs = rng.integers(0, 10, size=n).astype(np.uint8)
        for kind, arr in (("images-idx3-ubyte", imgs), ("labels-idx1-ubyte", labs)):
            data = _idx_bytes(arr)
            (d / f"{prefix}-{kind}{ext}").write_bytes(gzip.compress(data) if gz else data)
    return d


def test_read_idx_matches_hand_built_file(tmp_path):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    (tmp_path / "a").write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    write_idx(tmp_path / "b.gz", arr)
    assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == _idx_bytes(arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), arr)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:-3], "truncated"),
    (lambda b: b + b"\x00", "too long"),
    (lambda b: b"\x01\x02" + b[2:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "magic"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b"", "too short"),
])
def test_read_idx_refuses_bad_files(tmp_path, mutate, message):
    good = _idx_bytes(np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "x").write_bytes(mutate(good))
    with pytest.raises(BadInputError, match=message):
        read_idx(tmp_path / "x")


def test_read_idx_refuses_corrupt_gzip(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 2), np.uint8)))[:-10])
    with pytest.raises(BadInputError, match="cannot read"):
        read_idx(tmp_path / "x.gz")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_keeps_its_own_split(tmp_path, gz):
    d = _mnist_dir(tmp_path, gz=gz)
    pool = load_mnist(d)
    assert len(pool) == 10 and pool.alpha.shape == (10, 28, 28)
    np.testing.assert_array_equal(pool.splits["train"], np.arange(6))
    np.testing.assert_array_equal(pool.splits["test"], np.arange(6, 10))
    raw = gzip.decompress((d / f"train-images-idx3-ubyte{'.gz' if gz else ''}").read_bytes()) if gz else \
        (d / "train-images-idx3-ubyte").read_bytes()
    np.testing.assert_array_equal(pool.alpha[:6], np.frombuffer(raw[16:], np.uint8).reshape(6, 28, 28))
    assert load_mnist(d, fashion=True).class_names == FASHION_MNIST_CLASSES
    # --split divides MNIST-train into train/val; test stays MNIST's
    sp = split_objects(pool, (0.5, 0.5, 0.0), seed=1)
    assert sorted(np.concatenate([sp["train"], sp["val"]]).tolist()) == list(range(6))
    assert len(sp["val"]) == 3 and sp["test"].tolist() == [6, 7, 8, 9]


def test_load_mnist_errors(tmp_path):
    d = _mnist_dir(tmp_path)
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(BadInputError, match="4 images but .* 3 labels"):
        load_mnist(d)
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.full(4, 12, np.uint8)))
    with pytest.raises(BadInputError, match="label 12"):
        load_mnist(d)
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte"):
        load_mnist(d)
    with pytest.raises(UsageError, match="not a folder"):
        load_mnist(tmp_path / "nope")


def test_sklearn_digits_default():
    from sklearn.datasets import load_digits

    pool = load_sklearn_digits()
    ref = load_digits()
    assert pool.alpha.shape == (1797, 28, 28) and pool.alpha.dtype == np.uint8
    np.testing.assert_array_equal(pool.labels, ref.target)
    # downsampling back to 8x8 recovers the original (scaled to 0..255)
    back = cv2.resize(pool.alpha[5].astype(np.float32), (8, 8), interpolation=cv2.INTER_AREA)
    assert np.abs(back - ref.images[5] * 255 / 16).mean() < 20
    assert pool.alpha.max() == 255


def test_crop_mask_rules():
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[1:3, 2:4, 3] = 200
    np.testing.assert_array_equal(crop_mask(rgba), rgba[:, :, 3])
    white = np.full((10, 10, 3), 250, np.uint8)
    white[3:7, 4:8] = 20  # dark object on a white background
    m = crop_mask(white, threshold=16)
    assert m[3:7, 4:8].all() and m.sum() == 16 * 255


def test_crop_folder(tmp_path):
    (tmp_path / "crops" / "cat").mkdir(parents=True)
    (tmp_path / "crops" / "dog").mkdir()
    a = np.zeros((12, 9, 4), np.uint8)
    a[2:10, 2:7] = (0, 0, 255, 255)
    cv2.imwrite(str(tmp_path / "crops" / "cat" / "a.png"), a)
    cv2.imwrite(str(tmp_path / "crops" / "dog" / "b.png"), np.pad(np.full((5, 5), 200, np.uint8), 3))
    pool = load_crop_folder(tmp_path / "crops")
    assert pool.class_names == ("cat", "dog") and pool.labels.tolist() == [0, 1]
    assert pool.sizes.tolist() == [[12, 9], [11, 11]] and pool.channels == 3
    assert pool.alpha[1, 3:8, 3:8].all() and pool.alpha[1].sum() == 25 * 255
    (tmp_path / "crops" / "empty").mkdir()
    with pytest.raises(UsageError, match="empty.* holds no images"):
        load_crop_folder(tmp_path / "crops")
    (tmp_path / "crops" / "empty" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match="bad.png"):
        load_crop_folder(tmp_path / "crops")


def test_splits_are_disjoint_and_seeded():
    pool = load_sklearn_digits()
    a = split_objects(pool, None, seed=3)
    assert [len(v) for v in a.values()] == [1438, 180, 179]
    assert len(set(np.concatenate(list(a.values())).tolist())) == len(pool)
    b = split_objects(pool, None, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["val"], split_objects(pool, None, seed=4)["val"])
    assert parse_split("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("a,b,c", "0,1,1", "-1,1,1", "1,2,3,4"):
        with pytest.raises(UsageError, match="--split"):
            parse_split(bad)

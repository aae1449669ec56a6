"""cvtool.prepare.windows geometry and sampling, and `cvtool prepare windows`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvtool.prepare.windows import (BACKGROUND, WindowSpec, auto_window, crop_window, extract_windows, fix_aspect,
                                    object_box, region_of, sample_negatives)


def test_aspect_is_fixed_by_padding_not_stretching():
    spec = WindowSpec((32, 64), context=0.25)  # aspect 0.5
    narrow = np.array([[10, 10, 20, 50]])  # 10x40: too narrow -> widen to 20
    wide = np.array([[0, 0, 40, 20]])  # 40x20: too wide -> heighten to 80
    np.testing.assert_allclose(fix_aspect(narrow, spec.aspect), [[5, 10, 25, 50]])
    np.testing.assert_allclose(fix_aspect(wide, spec.aspect), [[0, -30, 40, 50]])
    # context 0.25: the region is 1.5x the object box, same centre
    reg = region_of(fix_aspect(narrow, spec.aspect), spec)
    np.testing.assert_allclose(reg, [[0, 0, 30, 60]])
    np.testing.assert_allclose(object_box(reg, spec), [[5, 10, 25, 50]])
    assert spec.object_size == (32 / 1.5, 64 / 1.5)


def test_crop_window_samples_the_region(real_gray):
    import cv2

    # same size, integer region: an exact copy
    np.testing.assert_array_equal(crop_window(real_gray, (100, 50, 132, 114), (32, 64)), real_gray[50:114, 100:132])
    # 2x upsampling equals cv2.resize of the crop away from its border
    up = crop_window(real_gray, (100, 50, 132, 114), (64, 128)).astype(int)
    ref = cv2.resize(real_gray[40:124, 90:142], (104, 168), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(up[4:-4, 4:-4] - ref[24:-24, 24:-24]).max() <= 1
    # outside the image: border pixels repeat; flip mirrors
    out = crop_window(real_gray, (-10, 0, 22, 64), (32, 64))
    np.testing.assert_array_equal(out[:, :10], np.repeat(real_gray[:64, :1], 10, axis=1))
    flipped = crop_window(real_gray, (100, 50, 132, 114), (32, 64), flip=True)
    np.testing.assert_array_equal(flipped, real_gray[50:114, 100:132][:, ::-1])
    # strong downsampling averages (area filter) instead of skipping pixels
    small = crop_window(real_gray, (0, 0, 256, 512), (16, 32))
    np.testing.assert_array_equal(small, cv2.resize(real_gray[:512, :256], (16, 32), interpolation=cv2.INTER_AREA))


def test_negatives_avoid_every_box():
    rng = np.random.default_rng(0)
    gt = np.array([[10, 10, 40, 50], [60, 20, 90, 70]], float)
    neg = sample_negatives((128, 96), gt, 50, aspect=0.75, heights=(20, 40), max_iou=0.3, rng=rng)
    assert 0 < len(neg) <= 50
    w, h = neg[:, 2] - neg[:, 0], neg[:, 3] - neg[:, 1]
    np.testing.assert_allclose(w / h, 0.75)
    assert (h >= 20 - 1e-9).all() and (h <= 40 + 1e-9).all()
    assert (neg[:, :2] >= 0).all() and (neg[:, 2] <= 128).all() and (neg[:, 3] <= 96).all()
    for b in neg:
        for g in gt:
            iw = max(0, min(b[2], g[2]) - max(b[0], g[0]))
            ih = max(0, min(b[3], g[3]) - max(b[1], g[1]))
            inter = iw * ih
            assert inter / ((b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter) < 0.3


def test_extract_windows_counts_and_labels():
    img = np.zeros((64, 64), np.uint8)
    img[10:30, 12:24] = 255
    ws = extract_windows([img, img], [np.array([[12, 10, 24, 30.0]]), np.zeros((0, 4))],
                         [np.array([1]), np.zeros(0, np.int64)], spec=WindowSpec((16, 24), 0.1),
                         negatives_per_image=3, flip=True, rng=np.random.default_rng(1))
    assert ws.images.shape[1:] == (24, 16)
    assert ws.counts(["a", "b"]) == {"a": 0, "b": 2, "background": 6}
    assert ws.flipped.sum() == 1 and (ws.labels[ws.flipped] == 1).all()
    pos = ws.images[ws.labels == 1][0].astype(float)
    # the bright object fills the centre of the positive window, context around it is dark
    assert pos[6:18, 4:12].mean() > 200 and pos[:, :1].mean() < 60
    assert (ws.source == np.r_[0, 0, 0, 0, 0, 1, 1, 1]).all() and (ws.labels[ws.source == 1] == BACKGROUND).all()


def test_auto_window_and_bad_specs():
    boxes = np.array([[0, 0, 20, 28], [0, 0, 18, 30], [0, 0, 22, 26]], float)
    w, h = auto_window(boxes, context=0.125, base=(8, 8), step=(4, 4))
    assert (w - 8) % 4 == 0 and (h - 8) % 4 == 0 and 30 <= h <= 36 and w < h
    with pytest.raises(ValueError, match="context"):
        WindowSpec((16, 16), context=-0.1)
    with pytest.raises(ValueError, match="at least 4x4"):
        WindowSpec((2, 16))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    root = tmp_path_factory.mktemp("wins") / "data"
    res = CliRunner().invoke(app, ["prepare", "detection", "--out", str(root), "--count", "12", "--seed", "3",
                                   "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    return root


def test_cli_npz_and_png(cli, dataset, tmp_path):
    out = tmp_path / "w"
    res = cli(["prepare", "windows", dataset, "--out", out, "--window", "24x32", "--negatives", "4", "--json"])
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout.splitlines()[-1])
    ann = json.loads((dataset / "train" / "annotations.json").read_text())
    n_boxes = len(ann["annotations"])
    assert sum(v for k, v in summary["counts"].items() if k != "background") == n_boxes
    with np.load(out / "windows.npz", allow_pickle=False) as z:
        assert z["images"].shape[1:3] == (32, 24)
        assert (z["labels"] >= 0).sum() == n_boxes
        assert z["classes"].tolist() == [c["name"] for c in sorted(ann["categories"], key=lambda c: c["id"])]
    assert json.loads((out / "run.json").read_text())["counts"] == summary["counts"]
    again = cli(["prepare", "windows", dataset, "--out", out])
    assert again.exit_code == 2
    png = tmp_path / "p"
    res = cli(["prepare", "windows", dataset, "--out", png, "--format", "png", "--negatives", "2", "--max-images", "3"])
    assert res.exit_code == 0, res.stderr
    assert len(list((png / "background").glob("*.png"))) == 6
    bad = cli(["prepare", "windows", dataset, "--out", tmp_path / "b", "--window", "0x3"])
    assert bad.exit_code == 2

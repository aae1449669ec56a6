"""`cvtool hog` end to end: npz/npy outputs, windows, pictures, JSON, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture()
def folder(tmp_path, real_gray, china_bgr):
    import cv2

    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    cv2.imwrite(str(d / "a.png"), real_gray[:128, :96])
    cv2.imwrite(str(d / "b.png"), china_bgr[:128, :96])
    (d / "bad.png").write_bytes(b"not an image")
    return d


def test_folder_to_one_npz(cli, folder, tmp_path, real_gray):
    import cv2

    out = tmp_path / "out"
    res = cli(["hog", folder, "--out", out, "--jobs", "1", "--json", "--visualize"])
    assert res.exit_code == 1  # bad.png reported, the rest written
    assert "bad.png" in res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["file"] == "a.png" and lines[0]["shape"] == [1, 15 * 11 * 36]
    assert [x["file"] for x in lines[:-1]] == ["a.png", "b.png"]
    assert lines[-1]["summary"]["failed"] == 1
    with np.load(out / "hog.npz", allow_pickle=False) as z:
        assert z["features"].shape == (2, 15 * 11 * 36)
        assert z["files"].tolist() == ["a.png", "b.png"]
        params = json.loads(str(z["params"]))
        assert params["cell"] == [8, 8] and str(z["engine"]) == "opencv"
        ref = cv2.HOGDescriptor((96, 128), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, cv2.HOGDescriptor_L2Hys,
                                0.2, False, 64, False).compute(real_gray[:128, :96])
        np.testing.assert_allclose(z["features"][0], ref.ravel(), atol=1e-6)
    vis = cv2.imread(str(out / "vis" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert vis.shape == (128, 96) and vis.max() > 100
    assert (out / "run.json").is_file()
    again = cli(["hog", folder / "a.png", "--out", out])
    assert again.exit_code == 2 and "exists" in again.stderr


def test_windows_npy_and_skimage_engine(cli, folder, tmp_path):
    out = tmp_path / "npy"
    res = cli(["hog", folder / "a.png", "--out", out, "--format", "npy", "--window", "32x64",
               "--stride", "16x32", "--engine", "skimage", "--cell", "8", "--block", "2x2",
               "--block-norm", "L1-sqrt"])
    assert res.exit_code == 0, res.stderr
    arr = np.load(out / "a.npy", allow_pickle=False)
    assert arr.shape == (((128 - 64) // 32 + 1) * ((96 - 32) // 16 + 1), 7 * 3 * 36)


@pytest.mark.parametrize("args, message", [
    (["--window", "30x64"], "window 30x64 is not a whole number"),
    (["--block-norm", "L1"], "L2-Hys only"),
    (["--engine", "skimage", "--signed"], "no signed"),
    (["--cell", "8xx"], "--cell '8xx'"),
    (["--stride", "8x8"], "--stride needs --window"),
])
def test_usage_errors_exit_2(cli, folder, tmp_path, args, message):
    res = cli(["hog", folder / "a.png", "--out", tmp_path / "o", *args])
    assert res.exit_code == 2
    assert message in res.stderr


def test_small_image_fails_with_minimum(cli, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((20, 12), np.uint8))
    res = cli(["hog", tmp_path / "tiny.png", "--out", tmp_path / "o", "--window", "64x128"])
    assert res.exit_code == 1
    assert "image is 12x20" in res.stderr and "needs at least 64x128" in res.stderr


def test_folder_of_mixed_sizes_gives_one_array_per_image(cli, tmp_path):
    """The first example of the help on photos of different sizes: every image described, counts true (#12)."""
    import cv2
    from skimage import data

    d = tmp_path / "mixed"
    d.mkdir()
    images = {"astronaut.png": data.astronaut()[::4, ::4, ::-1], "camera.png": data.camera()[::4, ::4],
              "coffee.png": data.coffee()[::4, ::4, ::-1], "coins.png": data.coins()[::2, ::2]}
    for name, img in images.items():
        cv2.imwrite(str(d / name), np.ascontiguousarray(img))
    out = tmp_path / "o"
    res = cli(["hog", d, "--out", out, "--jobs", "1", "--json"])
    assert res.exit_code == 0, res.stderr
    records = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["file"] for r in records[:-1]] == sorted(images)
    assert records[-1]["summary"] == {"total": 4, "ok": 4, "skipped": 0, "failed": 0}
    assert json.loads((out / "run.json").read_text())["counts"] == records[-1]["summary"]
    with np.load(out / "hog.npz", allow_pickle=False) as z:
        assert bool(z["ragged"]) and "features" not in z.files
        assert z["files"].tolist() == sorted(images)
        for name, key in zip(z["files"].tolist(), z["feature_keys"].tolist()):
            img = cv2.imread(str(d / name), cv2.IMREAD_UNCHANGED)
            h, w = img.shape[:2]
            win = (w // 8 * 8, h // 8 * 8)  # cropped to whole 8-pixel block strides
            gray_or_bgr = img[:win[1], :win[0]]
            ref = cv2.HOGDescriptor(win, (16, 16), (8, 8), (8, 8), 9, 1, -1.0, cv2.HOGDescriptor_L2Hys,
                                    0.2, False, 64, False).compute(gray_or_bgr)
            assert z[key].shape == (1, ref.size)
            np.testing.assert_allclose(z[key][0], ref.ravel(), atol=1e-5)

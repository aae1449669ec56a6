"""cvtool.hog against OpenCV's and scikit-image's own HOG, and the layout/normalisation claims."""

from __future__ import annotations

import numpy as np
import pytest

from cvtool.hog import (BLOCK_NORMS, HogParams, compute_hog, dense_blocks, fit_size, gather_windows,
                        grid_shape, reorder, visualize_hog)


@pytest.fixture(scope="module")
def images():
    from skimage import data

    return {
        "camera": data.camera()[:256, 128:384],
        "astronaut": np.ascontiguousarray(data.astronaut()[:256, :256, ::-1]),
        "coffee": np.ascontiguousarray(data.coffee()[:256, :320, ::-1]),
    }


def test_opencv_engine_equals_bare_hogdescriptor(images):
    import cv2

    img = images["camera"]
    p = HogParams(cell=(8, 8), block=(2, 2), bins=9)
    ref = cv2.HOGDescriptor((256, 256), (16, 16), (8, 8), (8, 8), 9, 1, -1.0,
                            cv2.HOGDescriptor_L2Hys, 0.2, False, 64, False).compute(img)
    got = compute_hog(img, params=p).features
    assert got.shape == (1, ref.size)
    np.testing.assert_array_equal(got[0], ref.ravel())


@pytest.mark.parametrize("norm", BLOCK_NORMS)
def test_skimage_engine_equals_skimage_hog(images, norm):
    from skimage.feature import hog

    img = images["astronaut"][:100, :90]
    p = HogParams(cell=(6, 5), block=(3, 2), bins=8, block_norm=norm, sqrt=True)
    ref = hog(img, orientations=8, pixels_per_cell=(5, 6), cells_per_block=(2, 3),
              block_norm=norm, transform_sqrt=True, channel_axis=-1)
    got = compute_hog(img, params=p, engine="skimage").features[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# The stated tolerance (README, hog section): with matched settings (Gaussian block
# weighting off, unsigned, one-cell block stride) and after reordering, the engines'
# descriptors (L2-Hys) have Pearson r >= 0.80 and mean |difference| <= 0.045; the residue is OpenCV's trilinear vote interpolation.
@pytest.mark.parametrize("name", ["camera", "astronaut", "coffee"])
def test_engines_agree_after_reordering(images, name):
    img = images[name]
    p = HogParams(cell=(8, 8), block=(2, 2), bins=9, win_sigma=0)
    a = compute_hog(img, params=p, engine="opencv")
    b = compute_hog(img, params=p, engine="skimage")
    assert a.window == b.window and a.grid == b.grid
    ra = reorder(a.features, grid=a.grid, params=p, src="opencv", dst="skimage")[0]
    r = np.corrcoef(ra, b.features[0])[0, 1]
    assert r >= 0.80
    assert np.abs(ra - b.features[0]).mean() <= 0.045
    unordered = np.corrcoef(a.features[0], b.features[0])[0, 1]
    assert unordered < r - 0.2  # the layouts really differ


def test_opencv_engine_refuses_other_norms():
    with pytest.raises(ValueError, match="L2-Hys only; use --engine skimage for L1"):
        compute_hog(np.zeros((64, 64), np.uint8), params=HogParams(block_norm="L1"))


def test_l2hys_clips_then_renormalises(images):
    blocks = dense_blocks(images["coffee"], HogParams()).reshape(-1, 36)
    norms = np.linalg.norm(blocks, axis=1)
    strong = norms > 0.5
    np.testing.assert_allclose(norms[strong], 1, atol=5e-3)
    # after clipping at 0.2 and renormalising, a block's largest entries are all equal
    top = np.sort(blocks[strong], axis=1)[:, -2:]
    tied = np.isclose(top[:, 0], top[:, 1], rtol=1e-4)
    assert tied.mean() > 0.5


def test_windows_equal_opencv_multiwindow_compute_and_dense_gather(images):
    import cv2

    img = images["camera"]
    p = HogParams()
    res = compute_hog(img, params=p, window=(64, 128), stride=(16, 24))
    ny, nx = (256 - 128) // 24 + 1, (256 - 64) // 16 + 1
    assert res.features.shape == (ny * nx, 3780)
    assert res.positions[1].tolist() == [16, 0] and res.positions[nx].tolist() == [0, 24]
    ref = cv2.HOGDescriptor((64, 128), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, cv2.HOGDescriptor_L2Hys,
                            0.2, False, 64, False).compute(img, winStride=(16, 24), padding=(0, 0))
    np.testing.assert_array_equal(res.features.ravel(), ref.ravel())
    cube = gather_windows(dense_blocks(img, p), grid_shape((64, 128), p), step=(2, 3))
    np.testing.assert_array_equal(cube[:ny, :nx].reshape(-1, 3780), res.features)


def test_skimage_windows_match_hog_of_crop_inside(images):
    from skimage.feature import hog

    img = images["camera"]
    res = compute_hog(img, params=HogParams(), engine="skimage", window=(64, 128), stride=(32, 64))
    x, y = res.positions[3]
    ref = hog(img[y:y + 128, x:x + 64], pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    # equal up to the outer pixel ring, where a crop has zero gradient
    assert np.corrcoef(ref, res.features[3])[0, 1] > 0.97


def test_reorder_round_trip_and_validation():
    p = HogParams(block=(3, 2), bins=4)
    x = np.random.default_rng(0).random((5, 4 * 3 * 6 * 4)).astype(np.float32)
    y = reorder(x, grid=(4, 3), params=p, src="opencv", dst="skimage")
    assert not np.array_equal(x, y)
    np.testing.assert_array_equal(reorder(y, grid=(4, 3), params=p, src="skimage", dst="opencv"), x)
    with pytest.raises(ValueError, match="descriptor length"):
        reorder(x, grid=(3, 3), params=p, src="opencv", dst="skimage")


def test_too_small_image_states_minimum():
    img = np.zeros((10, 30), np.uint8)
    with pytest.raises(ValueError, match=r"image is 30x10; HOG with 8x8 cells and 2x2 blocks needs at least 16x16"):
        compute_hog(img)
    with pytest.raises(ValueError, match=r"image is 30x10.*needs at least 64x128"):
        compute_hog(img, window=(64, 128))


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="block_norm 'L3'"):
        HogParams(block_norm="L3")
    with pytest.raises(ValueError, match="window 60x128 is not a whole number"):
        compute_hog(np.zeros((200, 200), np.uint8), window=(60, 128))
    with pytest.raises(ValueError, match="no signed"):
        compute_hog(np.zeros((64, 64), np.uint8), params=HogParams(signed=True), engine="skimage")
    with pytest.raises(ValueError, match="8- or 16-bit"):
        compute_hog(np.zeros((64, 64), np.float32))
    assert fit_size((70, 50), HogParams()) == (64, 48)


def test_signed_gradients_tell_opposite_contrast_apart():
    img = np.zeros((32, 32), np.uint8)
    img[:, 16:] = 200  # dark -> bright edge
    p_uns, p_sig = HogParams(signed=False), HogParams(signed=True, bins=18)
    a = compute_hog(img, params=p_uns).features
    b = compute_hog(255 - img, params=p_uns).features
    np.testing.assert_allclose(a, b, atol=1e-6)  # unsigned: same for inverted contrast
    c = compute_hog(img, params=p_sig).features
    d = compute_hog(255 - img, params=p_sig).features
    assert np.abs(c - d).max() > 0.1


def test_visualisation_shows_the_dominant_orientation():
    img = np.zeros((64, 64), np.uint8)
    img[:, 32:] = 255  # a vertical edge: gradient along x, glyphs along y
    for engine in ("opencv", "skimage"):
        vis = visualize_hog(img, params=HogParams(win_sigma=0 if engine == "skimage" else None), engine=engine)
        assert vis.shape == (64, 64) and vis.dtype == np.uint8
        band = vis[:, 24:40].astype(float)
        assert band.sum() > 5 * vis[:, :8].astype(float).sum()
        cols = band.sum(axis=0)
        rows = band.sum(axis=1)
        assert rows.std() / rows.mean() < cols.std() / cols.mean()  # vertical strokes

"""edges detectors against scikit-image / SciPy and hand-computed cases.

scikit-image normalises its kernels (Sobel smoothing [1,2,1]/4, Prewitt
[1,1,1]/3, Scharr [3,10,3]/16), works on images scaled to 0..1 and divides
the magnitude by sqrt(2); cvtool uses the classic integer kernels on the
8-bit scale, so the references are multiplied by those constants.  Borders
differ (scikit-image reflects ``cba|abc``), so gradient tests compare the
interior.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cvtool import edges


@pytest.fixture(scope="module")
def cam(real_gray):
    return np.ascontiguousarray(real_gray[96:224, 160:288])


@pytest.fixture(scope="module")
def camg(cam):
    return cam.astype(np.float32)


@pytest.mark.parametrize("method, factor", [
    ("sobel", 255 * 4 * np.sqrt(2)),
    ("prewitt", 255 * 3 * np.sqrt(2)),
    ("scharr", 255 * 16 * np.sqrt(2)),
    ("roberts", 255 * np.sqrt(2)),
])
def test_gradient_magnitude_matches_skimage(cam, camg, method, factor):
    from skimage import filters

    ref = getattr(filters, method)(cam / 255.0) * factor
    got = edges.gradient_edges(camg, method=method)
    np.testing.assert_allclose(got[2:-2, 2:-2], ref[2:-2, 2:-2], rtol=1e-5, atol=1e-3)


def test_sobel_components_and_direction(cam, camg):
    from skimage import filters

    gx = edges.gradient_edges(camg, method="sobel", mode="x")
    gy = edges.gradient_edges(camg, method="sobel", mode="y")
    np.testing.assert_allclose(gx[1:-1, 1:-1], np.abs(filters.sobel_v(cam / 255.0) * 1020)[1:-1, 1:-1], atol=1e-3)
    np.testing.assert_allclose(gy[1:-1, 1:-1], np.abs(filters.sobel_h(cam / 255.0) * 1020)[1:-1, 1:-1], atol=1e-3)
    ramp_right = np.tile(np.arange(8, dtype=np.float32) * 10, (8, 1))
    ramp_down = ramp_right.T.copy()
    assert np.allclose(edges.gradient_edges(ramp_right, mode="direction")[2:-2, 2:-2], 0.0, atol=0.1)
    assert np.allclose(edges.gradient_edges(ramp_down, mode="direction")[2:-2, 2:-2], 90.0, atol=0.1)
    assert np.allclose(edges.gradient_edges(ramp_right[:, ::-1].copy(), mode="direction")[2:-2, 2:-2], 180.0, atol=0.1)


def test_sobel_hand_5x5():
    img = np.zeros((5, 5), np.float32)
    img[:, 3:] = 10.0  # vertical step between columns 2 and 3
    gx = edges.gradient_edges(img, method="sobel", mode="x")
    expected = np.zeros((5, 5))
    expected[:, 2] = expected[:, 3] = 40.0  # (1 + 2 + 1) * 10
    np.testing.assert_allclose(gx, expected)
    assert np.all(edges.gradient_edges(img, method="sobel", mode="y") == 0)


def test_laplacian_matches_scipy(camg):
    np.testing.assert_allclose(edges.laplacian(camg, neighbours=4), ndimage.laplace(camg, mode="mirror"), atol=1e-3)
    k8 = np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], np.float32)
    np.testing.assert_allclose(edges.laplacian(camg, neighbours=8), ndimage.correlate(camg, k8, mode="mirror"),
                               atol=1e-3)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_log_matches_scipy_gaussian_laplace(camg, sigma):
    ref = ndimage.gaussian_laplace(camg.astype(np.float64), sigma)
    np.testing.assert_allclose(edges.log_response(camg, sigma=sigma), ref, atol=1e-3)


def test_zero_crossings_hand_5x5():
    r = np.array([
        [1.0, 1.0, -1.0, -1.0, -1.0],
        [1.0, 1.0, -3.0, -1.0, -1.0],
        [1.0, 1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0, 1.0],
    ], np.float32)
    zc = edges.zero_crossings(r, threshold=0.0)
    expected = np.zeros((5, 5), bool)
    expected[0, 1] = expected[1, 1] = True  # |1| <= |-1| and |1| < |-3|: the left pixel
    expected[1, 3] = expected[1, 4] = True  # -1 above 1: tie marks the upper pixel
    expected[2, 2] = True  # -3 above 1: the lower (smaller) pixel
    np.testing.assert_array_equal(zc, expected)
    strong = edges.zero_crossings(r, threshold=0.9)  # only the |-3 - 1| = 4 crossings survive
    assert strong.sum() == 2 and strong[1, 1] and strong[2, 2]


def test_marr_hildreth_finds_disc_boundary():
    yy, xx = np.mgrid[:96, :96]
    radius = np.hypot(yy - 48, xx - 48)
    disc = np.where(radius < 25, 200, 40).astype(np.uint8)
    out = edges.detect_edges(disc, method="marr-hildreth", sigma=2.0)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 255}
    on = radius[out > 0]
    assert on.size > 100 and np.all(np.abs(on - 25) < 2.0)


def test_canny_auto_thresholds_and_step_edges(cam):
    import cv2

    lo, hi = edges.auto_canny_thresholds(cam, spread=0.33)
    m = float(np.median(cam))
    for img in (cam, cam[:-1], cam[:1, :1], np.array([[0, 255]], np.uint8), np.array([[3, 9, 200]], np.uint8)):
        assert edges.median_u8(img) == np.median(img)  # even and odd counts
    assert (lo, hi) == pytest.approx((max(0.0, 0.67 * m), min(255.0, 1.33 * m)))
    got = edges.detect_edges(cam, method="canny")
    np.testing.assert_array_equal(got, cv2.Canny(cam, lo, hi, L2gradient=True))
    square = np.zeros((64, 64), np.uint8)
    square[16:48, 16:48] = 200
    out = edges.detect_edges(square, method="canny", low=50, high=100)
    ys, xs = np.nonzero(out)
    assert ys.size > 100
    on_boundary = (np.isin(ys, [15, 16, 47, 48]) | np.isin(xs, [15, 16, 47, 48]))
    assert on_boundary.all()


def test_output_scaling_rules():
    resp = np.array([[0.0, 10.0], [20.0, 300.0]], np.float32)
    np.testing.assert_array_equal(edges.to_output(resp, scale="max"), [[0, 8], [17, 255]])  # 8.5 -> 8 (to even)
    np.testing.assert_array_equal(edges.to_output(resp, scale="clip"), [[0, 10], [20, 255]])
    np.testing.assert_array_equal(edges.to_output(resp, scale="clip", depth=16), [[0, 2570], [5140, 65535]])
    np.testing.assert_array_equal(edges.to_output(resp, scale="clip", binarize=15), [[0, 0], [255, 255]])
    np.testing.assert_array_equal(edges.to_output(-resp, scale="clip", signed=True), [[0, 10], [20, 255]])
    np.testing.assert_array_equal(edges.to_output(np.array([[0.0, 180.0]], np.float32), direction=True), [[0, 128]])
    assert edges.to_output(np.zeros((3, 3), np.float32)).max() == 0  # flat image: no division by zero


@pytest.mark.parametrize("method", edges.METHODS)
def test_every_method_on_all_dtypes(real_color_bgr, method):
    small = real_color_bgr[100:164, 200:264]
    grey = np.ascontiguousarray(small[:, :, 1])
    u8 = edges.detect_edges(grey, method=method)
    assert u8.shape == grey.shape and u8.dtype == np.uint8
    # 8-bit scale rule: a uint16 copy (x257) gives the same map; a float copy (/255) within rounding
    np.testing.assert_array_equal(edges.detect_edges(grey.astype(np.uint16) * 257, method=method), u8)
    f = edges.detect_edges(grey.astype(np.float32) / 255, method=method)
    assert (f != u8).mean() < 0.01 and np.abs(f.astype(int) - u8).mean() < 0.5
    colour = edges.detect_edges(small, method=method)
    bgra = np.dstack([small, np.full(small.shape[:2], 9, np.uint8)])
    np.testing.assert_array_equal(edges.detect_edges(bgra, method=method), colour)  # alpha ignored
    # uint16 colour converts to grey without rounding to 8 bits first: close, not equal
    c16 = edges.detect_edges(small.astype(np.uint16) * 257, method=method)
    assert (c16 != colour).mean() < 0.5 and np.abs(c16.astype(int) - colour).mean() < 1.5
    assert edges.detect_edges(small, method=method, depth=16).dtype == np.uint16


def test_bad_settings_raise():
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="ksize=4"):
        edges.gradients(img, ksize=4)
    with pytest.raises(ValueError, match="method 'bogus'"):
        edges.detect_edges(img, method="bogus")
    with pytest.raises(ValueError, match="both low and high"):
        edges.canny(img.astype(np.uint8), low=10)

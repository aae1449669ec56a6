"""filter operations against independent references (SciPy, scikit-image, NumPy, hand-computed cases).

Images: crops of scikit-image's camera (grey) and astronaut (colour).  Tolerances
are stated per test: exact where both sides compute the same integer maths,
+-1 grey level where one side rounds from float, more only where OpenCV uses
fixed-point arithmetic (stated).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cvtool.errors import UsageError
from cvtool.filters import ops
from cvtool.filters.parse import OPERATIONS, apply_pipeline, image_seed, parse_operation, parse_pipeline


@pytest.fixture(scope="module")
def cam(real_gray):
    return np.ascontiguousarray(real_gray[96:224, 160:288])


@pytest.fixture(scope="module")
def cam16(cam):
    return cam.astype(np.uint16) * 257


@pytest.fixture(scope="module")
def camf(cam):
    return cam.astype(np.float64) / 255.0


@pytest.fixture(scope="module")
def astro(real_color_bgr):
    return np.ascontiguousarray(real_color_bgr[64:192, 160:288])


def run(text, image, **kw):
    return apply_pipeline(image, parse_pipeline([text]), **kw)


def maxdiff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ---------------------------------------------------------------------------
# smoothing
# ---------------------------------------------------------------------------


def test_mean_matches_scipy_uniform_filter(cam):
    ref = ndimage.uniform_filter(cam.astype(np.float64), 5, mode="mirror")
    assert maxdiff(run("mean:k=5", cam), ref) <= 0.5 + 1e-9  # rounded to nearest


def test_weighted_is_121_kernel(cam):
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    ref = ndimage.correlate(cam.astype(np.float64), k, mode="mirror")
    assert maxdiff(run("weighted", cam), ref) <= 0.5 + 1e-9


def test_gaussian_matches_scipy(cam, camf):
    ref = ndimage.gaussian_filter(camf, 1.5, mode="mirror", radius=5)  # ksize 2*ceil(4.5)+1 = 11
    assert maxdiff(run("gaussian:sigma=1.5", camf.astype(np.float32)), ref) < 1e-5
    # uint8 goes through OpenCV's fixed-point 8-bit path: within 2 levels, 0.3 on average
    got = run("gaussian:sigma=1.5", cam).astype(np.float64)
    assert maxdiff(got, ref * 255) <= 2 and np.abs(got - ref * 255).mean() < 0.3
    # ksize only: sigma from OpenCV's rule 0.3 * ((ksize - 1) / 2 - 1) + 0.8
    for ksize, sigma in ((5, 1.1), (9, 1.7)):
        ref_k = ndimage.gaussian_filter(camf, sigma, mode="mirror", radius=ksize // 2)
        assert maxdiff(run(f"gaussian:ksize={ksize}", camf.astype(np.float32)), ref_k) < 1e-5


@pytest.mark.parametrize("dtype_k", [("u8", 5), ("u8", 9), ("u16", 5), ("u16", 7), ("f32", 3)])
def test_median_matches_scipy(cam, cam16, dtype_k):
    kind, k = dtype_k
    img = {"u8": cam, "u16": cam16, "f32": cam.astype(np.float32) / 255}[kind]
    np.testing.assert_array_equal(run(f"median:k={k}", img), ndimage.median_filter(img, k, mode="nearest"))


def test_min_max_match_scipy(cam, astro):
    np.testing.assert_array_equal(run("min:k=4", cam), ndimage.minimum_filter(cam, 4, mode="nearest"))
    np.testing.assert_array_equal(run("max:5", cam), ndimage.maximum_filter(cam, 5, mode="nearest"))
    np.testing.assert_array_equal(run("max:3", astro), ndimage.maximum_filter(astro, (3, 3, 1), mode="nearest"))


def test_bilateral_matches_brute_force_formula(camf):
    img = camf.astype(np.float32)
    d, sc, ss = 7, 25.0, 3.0
    got = run(f"bilateral:d={d}:sigma_color={sc}:sigma_space={ss}", img)
    r, s_col = d // 2, sc / 255.0
    rng = np.random.default_rng(0)
    for y, x in rng.integers(10, 118, size=(40, 2)):
        num = den = 0.0
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if dy * dy + dx * dx > r * r:  # OpenCV uses a disc of radius d // 2
                    continue
                q = float(img[y + dy, x + dx])
                w = np.exp(-(dy * dy + dx * dx) / (2 * ss * ss)) * np.exp(-((q - img[y, x]) ** 2) / (2 * s_col**2))
                num += w * q
                den += w
        assert abs(got[y, x] - num / den) < 2e-3  # OpenCV tabulates the range weights


def test_nlmeans_denoises_all_dtypes(cam):
    rng = np.random.default_rng(1)
    noisy = np.clip(cam + rng.normal(0, 15, cam.shape), 0, 255)
    for img, top in ((np.rint(noisy).astype(np.uint8), 255.0), (np.rint(noisy * 257).astype(np.uint16), 65535.0)):
        out = run("nlmeans:h=15", img)
        assert out.dtype == img.dtype
        err_in = np.abs(img / top - cam / 255.0).mean()
        err_out = np.abs(out / top - cam / 255.0).mean()
        assert err_out < 0.75 * err_in


def test_wiener_matches_scipy_signal_wiener(camf):
    from scipy.signal import wiener

    noise = 0.002  # in the float image's units; the operation takes 8-bit levels squared
    ref = wiener(camf, 5, noise=noise)
    got = run(f"wiener:k=5:noise={noise * 255**2}", camf)
    # scipy pads with zeros, cvtool reflects: compare away from the border
    assert maxdiff(got[2:-2, 2:-2], ref[2:-2, 2:-2]) < 1e-9


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # scipy's, on flat windows
def test_wiener_default_noise_is_mean_local_variance(camf):
    from scipy.signal import wiener

    pad = np.pad(camf, 3, mode="reflect")  # reflect101 == numpy 'reflect'
    ref = wiener(pad, 3)[3:-3, 3:-3]  # scipy's estimate includes the padded ring; cvtool's does not
    got = run("wiener:k=3", camf)
    assert np.abs(got - ref)[2:-2, 2:-2].mean() < 2e-3


# ---------------------------------------------------------------------------
# sharpening and kernels: hand-computed 5x5 cases
# ---------------------------------------------------------------------------


def test_sharpen_hand_5x5_and_saturation():
    img = np.zeros((5, 5), np.float32)
    img[2, 2] = 100.0
    out4 = run("sharpen:4", img)
    exp4 = np.zeros((5, 5))
    exp4[2, 2] = 500.0
    exp4[1, 2] = exp4[3, 2] = exp4[2, 1] = exp4[2, 3] = -100.0
    np.testing.assert_allclose(out4, exp4, atol=1e-5)
    out8 = run("sharpen:8", img)
    exp8 = np.full((5, 5), 0.0)
    exp8[1:4, 1:4] = -100.0
    exp8[2, 2] = 900.0
    np.testing.assert_allclose(out8, exp8, atol=1e-5)
    # uint8: saturated at 255 and 0, never wrapped (500 % 256 = 244, -100 % 256 = 156)
    out_u8 = run("sharpen:4", img.astype(np.uint8))
    assert out_u8[2, 2] == 255 and out_u8[1, 2] == 0 and out_u8.max() == 255
    out_u16 = run("sharpen:8:amount=2", (img * 600).astype(np.uint16))
    assert out_u16[2, 2] == 65535 and out_u16[1, 1] == 0


def test_sharpen_matches_scipy_correlate(camf):
    k = np.array([[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]], float)
    ref = ndimage.correlate(camf, k, mode="mirror")
    assert maxdiff(run("sharpen:neighbours=8", camf), ref) < 1e-9


def test_kernel_is_correlation_hand_5x5():
    img = np.arange(25, dtype=np.float32).reshape(5, 5)
    out = run("kernel:0,0,0;0,0,1;0,0,0", img)  # picks the right neighbour (not flipped)
    exp = np.empty((5, 5))
    exp[:, :4] = img[:, 1:]
    exp[:, 4] = img[:, 3]  # reflected border dcb|abcd|cba
    np.testing.assert_allclose(out, exp)
    box = run("kernel:'1 1 1;1 1 1;1 1 1':normalize=true", img)
    assert box[2, 2] == pytest.approx(img[1:4, 1:4].mean())


def test_kernel_from_file_matches_inline(tmp_path, cam):
    f = tmp_path / "k.txt"
    f.write_text("# emboss\n-2 -1 0\n-1 1 1\n0 1 2\n", encoding="utf-8")
    npy = tmp_path / "k.npy"
    np.save(npy, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], float))
    inline = run("kernel:-2,-1,0;-1,1,1;0,1,2", cam)
    np.testing.assert_array_equal(run(f"kernel:file={f}", cam), inline)
    np.testing.assert_array_equal(run(f"kernel:file={npy}", cam), inline)
    ref = np.clip(np.rint(ndimage.correlate(cam.astype(float), np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
                                            mode="mirror")), 0, 255)
    assert maxdiff(inline, ref) <= 1


def test_unsharp_matches_formula(camf):
    blur = ndimage.gaussian_filter(camf, 2.0, mode="mirror", radius=6)
    ref = camf + 1.5 * (camf - blur)
    assert maxdiff(run("unsharp:sigma=2:amount=1.5", camf), ref) < 1e-5


# ---------------------------------------------------------------------------
# noise: seeded, per image, with the right statistics
# ---------------------------------------------------------------------------


def test_noise_seeding_is_per_image_and_reproducible(cam):
    steps = parse_pipeline(["noise:gaussian:sigma=20"])
    a = apply_pipeline(cam, steps, seed=3, key="a/x.png")
    np.testing.assert_array_equal(a, apply_pipeline(cam, steps, seed=3, key="a/x.png"))
    assert not np.array_equal(a, apply_pipeline(cam, steps, seed=3, key="a/y.png"))
    assert not np.array_equal(a, apply_pipeline(cam, steps, seed=4, key="a/x.png"))
    assert image_seed(3, "a/x.png") != image_seed(3, "a/y.png")


def test_noise_statistics():
    flat = np.full((256, 256), 128, np.uint8)
    g = run("noise:gaussian:sigma=10", flat, seed=0).astype(float)
    assert abs(g.mean() - 128) < 0.3 and abs(g.std() - 10) < 0.3
    sp = run("noise:salt-pepper:amount=0.1:salt=0.25", flat, seed=0)
    assert abs((sp != 128).mean() - 0.1) < 0.01 and abs((sp == 255).mean() - 0.025) < 0.005
    assert set(np.unique(sp)) == {0, 128, 255}
    p = run("noise:poisson", flat, seed=0).astype(float)  # peak 255: Poisson(128) grey levels
    assert abs(p.mean() - 128) < 0.3 and abs(p.var() - 128) < 6
    s = run("noise:speckle:sigma=25.5", flat, seed=0).astype(float)  # 128 * N(0, 0.1)
    assert abs(s.std() - 12.8) < 0.4
    f = run("noise:gaussian:sigma=200", np.full((64, 64), 0.5), seed=0)
    assert f.min() >= 0.0 and f.max() <= 1.0  # clipped into the nominal float range


# ---------------------------------------------------------------------------
# pointwise
# ---------------------------------------------------------------------------


def test_invert(cam, cam16):
    np.testing.assert_array_equal(run("invert", cam), 255 - cam.astype(int))
    np.testing.assert_array_equal(run("invert", cam16), 65535 - cam16.astype(int))
    np.testing.assert_allclose(run("invert", cam / 255.0), 1 - cam / 255.0)


def test_threshold_fixed_and_otsu(cam, cam16):
    from skimage.filters import threshold_otsu

    np.testing.assert_array_equal(run("threshold:t=100", cam), (cam > 100) * 255)
    np.testing.assert_array_equal(run("threshold:t=100", cam16), (cam16 > 100 * 257) * 65535)
    t = threshold_otsu(cam)
    assert ops.otsu_threshold(cam) == t
    np.testing.assert_array_equal(run("threshold:otsu", cam), (cam > t) * 255)
    t16 = threshold_otsu(cam16)
    assert ops.otsu_threshold(cam16) == t16
    np.testing.assert_array_equal(run("threshold:otsu", cam16), (cam16 > t16) * 65535)


def test_threshold_adaptive_matches_skimage(cam, cam16):
    from skimage.filters import threshold_local

    ref = cam16 > threshold_local(cam16.astype(float), 15, method="mean", offset=4 * 257, mode="nearest")
    got = run("threshold:adaptive:block=15:c=4", cam16)
    np.testing.assert_array_equal(got, ref * 65535)
    # uint8 goes through OpenCV, which rounds the local mean to an integer first
    ref8 = cam > threshold_local(cam.astype(float), 15, method="mean", offset=4, mode="nearest")
    assert (run("threshold:adaptive:block=15:c=4", cam) == ref8 * 255).mean() > 0.98


def test_stretch_minmax_and_percentile(cam):
    low = (cam // 2 + 40).astype(np.uint8)  # 40..167
    lo, hi = float(low.min()), float(low.max())
    np.testing.assert_array_equal(run("stretch", low), np.rint((low - lo) * 255 / (hi - lo)))
    p2, p98 = np.percentile(cam, [2, 98])
    ref = np.clip(np.rint((cam - p2) * 255 / (p98 - p2)), 0, 255)
    np.testing.assert_array_equal(run("percentile", cam), ref)
    np.testing.assert_array_equal(run("stretch:low=2:high=98", cam), ref)
    flat = np.full((4, 4), 7, np.uint8)
    np.testing.assert_array_equal(run("minmax", flat), flat)


def test_slice(cam):
    keep = run("slice:low=100:high=150:value=255", cam)
    np.testing.assert_array_equal(keep, np.where((cam >= 100) & (cam <= 150), 255, cam))
    zero = run("slice:low=100:high=150:value=200:background=zero", cam)
    np.testing.assert_array_equal(zero, np.where((cam >= 100) & (cam <= 150), 200, 0))


def test_log_and_power(cam, cam16):
    ref = np.rint(255 / np.log(256) * np.log1p(cam.astype(float)))
    np.testing.assert_array_equal(run("log", cam), ref)
    ref16 = np.rint(255 / np.log(256) * np.log1p(cam16 / 257.0) * 257)
    np.testing.assert_array_equal(run("log", cam16), ref16)
    from skimage.exposure import adjust_gamma

    assert maxdiff(run("power:gamma=0.5", cam), adjust_gamma(cam, 0.5)) <= 1
    r = cam / 255.0
    ref_p = np.clip(np.rint(0.8 * (r + 10 / 255) ** 2.2 * 255), 0, 255)
    np.testing.assert_array_equal(run("power:gamma=2.2:c=0.8:lambda=10", cam), ref_p)


def _hand_equalize(channel, top):
    """Textbook histogram equalisation, written out with a Python loop over levels."""
    hist = np.bincount(channel.ravel(), minlength=top + 1)
    cdf, total, lut = 0, channel.size, np.zeros(top + 1)
    cdf_min = hist[np.nonzero(hist)[0][0]]
    for v in range(top + 1):
        cdf += hist[v]
        lut[v] = np.rint((cdf - cdf_min) * top / (total - cdf_min)) if cdf else 0
    return lut[channel]


def test_equalize_matches_hand_formula(cam, cam16, astro):
    np.testing.assert_array_equal(run("equalize", cam), _hand_equalize(cam, 255))
    sub = cam16[:40, :40]
    np.testing.assert_array_equal(run("equalize", sub), _hand_equalize(sub, 65535))
    import cv2

    ycc = cv2.cvtColor(astro, cv2.COLOR_BGR2YCrCb)
    ycc[:, :, 0] = _hand_equalize(ycc[:, :, 0], 255)
    assert maxdiff(run("equalize", astro), cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)) <= 1  # on luma only


def test_clahe_without_clipping_on_one_tile_is_global_equalisation(cam, cam16):
    hist = np.bincount(cam.ravel(), minlength=256)
    ref = np.rint(np.cumsum(hist) * 255.0 / cam.size)[cam]  # CLAHE's LUT: cdf * max / N
    assert maxdiff(run("clahe:clip=1000:tiles=1", cam), ref) <= 1
    hist16 = np.bincount(cam16.ravel(), minlength=65536)
    ref16 = np.rint(np.cumsum(hist16) * 65535.0 / cam16.size)[cam16]
    out16 = run("clahe:clip=100000:tiles=1", cam16)
    assert out16.dtype == np.uint16 and maxdiff(out16, ref16) <= 1


# ---------------------------------------------------------------------------
# colour conversions
# ---------------------------------------------------------------------------


def test_gray_hsv_lab_match_skimage(astro):
    from skimage import color

    rgb = astro[:, :, ::-1]
    ref_gray = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    assert maxdiff(run("gray", astro), ref_gray) <= 1
    h_ref = color.rgb2hsv(rgb)
    hsv = run("hsv", astro).astype(float) / 255
    assert maxdiff(hsv[:, :, 2], h_ref[:, :, 2]) < 1e-9
    assert maxdiff(hsv[:, :, 1], h_ref[:, :, 1]) <= 1 / 255 + 1e-9
    dh = np.abs(hsv[:, :, 0] - h_ref[:, :, 0])
    assert np.minimum(dh, 1 - dh)[h_ref[:, :, 1] > 0.1].max() <= 2 / 255
    lab_ref = color.rgb2lab(rgb)
    # OpenCV's float L*a*b* uses slightly different constants from scikit-image: within 0.5
    lab16 = run("lab", astro.astype(np.uint16) * 257).astype(float) / 65535 * 255
    assert maxdiff(lab16[:, :, 0] * 100 / 255, lab_ref[:, :, 0]) < 0.25
    assert maxdiff(lab16[:, :, 1:] - 128, lab_ref[:, :, 1:]) < 0.5
    labf = run("lab", astro / 255.0)
    assert maxdiff(labf, lab_ref) < 0.5
    lab8 = run("lab", astro).astype(float)
    assert maxdiff(lab8[:, :, 0] * 100 / 255, lab_ref[:, :, 0]) < 1.0


# ---------------------------------------------------------------------------
# dtype and alpha rules, across every operation
# ---------------------------------------------------------------------------

SMOKE = [op.name for op in OPERATIONS if op.name != "kernel"] + ["kernel:1,2,1;2,4,2;1,2,1:normalize=1"]


@pytest.mark.parametrize("text", SMOKE)
def test_every_operation_keeps_dtype_and_alpha(text, astro):
    small = astro[:24, :32]
    bgra = np.dstack([small, np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)])
    images = [small[:, :, 0], small, bgra, small.astype(np.uint16) * 257, small / 255.0, small[:, :, 0] / 255.0]
    op = parse_operation(text).info
    for img in images:
        out = run(text, img)
        assert out.dtype == img.dtype, (text, img.dtype)
        if op.name == "gray":
            assert out.shape == img.shape[:2]
        elif op.drops_alpha:
            assert out.shape == img.shape[:2] + (3,)
        else:
            assert out.shape == img.shape
            if img.ndim == 3 and img.shape[2] == 4:
                np.testing.assert_array_equal(out[:, :, 3], img[:, :, 3])
        if op.name != "noise" and img.dtype != np.float64:
            np.testing.assert_array_equal(out, run(text, img))  # deterministic
    dropped = run(text, bgra, alpha="drop")
    assert dropped.ndim == 2 or dropped.shape[2] == 3


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------


def test_parser_syntax_variants():
    a = parse_operation("gaussian:ksize=5:sigma=1.2")
    assert a == parse_operation("gaussian:ksize=5,sigma=1.2") == parse_operation("blur:1.2:ksize=5")
    assert dict(parse_operation("threshold:adaptive:block=15").kwargs) == {
        "method": "adaptive", "block": 15, "t": 128.0, "c": 2.0, "weights": "mean"}  # defaults spelled out
    assert dict(parse_operation("power:2:lambda=5").kwargs) == {"gamma": 2.0, "lam": 5.0, "c": 1.0}
    assert dict(parse_operation("kernel:0,-1,0;-1,5,-1;0,-1,0").kwargs)["kernel"][1] == (-1.0, 5.0, -1.0)


@pytest.mark.parametrize("text, words", [
    ("gausian:sigma=1", ["'gausian'", "gaussian", "median"]),
    ("median:k=4", ["k='4'", "odd"]),
    ("median:k=five", ["k='five'", "integer"]),
    ("gaussian:sigma=0", ["sigma='0'", "out of range", "0 < sigma"]),
    ("gaussian:size=3", ["'size'", "sigma, ksize"]),
    ("threshold:magic", ["'magic'", "fixed, otsu, adaptive"]),
    ("noise:pink", ["'pink'", "gaussian, salt-pepper, poisson, speckle"]),
    ("kernel:1,2;3", ["rows have different lengths"]),
    ("kernel", ["exactly one"]),
    ("kernel:file=/no/such/kernel.txt", ["/no/such/kernel.txt"]),
    ("invert:3", ["unexpected value '3'"]),
    ("median:k=3:k=5", ["given twice"]),
    ("stretch:low=60:high=40", ["low must be below high"]),
    ("sharpen:6", ["'6'", "4, 8"]),
])
def test_parser_errors_name_value_and_choices(text, words):
    with pytest.raises(UsageError) as err:
        parse_operation(text)
    for w in words:
        assert w in str(err.value)


def test_pipeline_validates_everything_first():
    with pytest.raises(UsageError, match="'bogus'"):
        parse_pipeline(["gaussian", "median:k=5", "bogus"])
    with pytest.raises(UsageError, match="no operation"):
        parse_pipeline([])


def test_chain_applies_in_order(cam):
    chained = run("gaussian:sigma=1", cam)
    both = apply_pipeline(cam, parse_pipeline(["gaussian:sigma=1", "invert"]))
    np.testing.assert_array_equal(both, 255 - chained.astype(int))


@pytest.mark.parametrize("text, words", [
    ("threshold:otsu:t=5", ["t=5", "method=otsu", "method=fixed only"]),
    ("threshold:t=5:block=15", ["block=15", "method=fixed", "method=adaptive only"]),
    ("threshold:otsu:weights=gaussian", ["weights=gaussian", "method=adaptive only"]),
    ("noise:poisson:sigma=3", ["sigma=3", "kind=poisson", "kind=gaussian|speckle only"]),
    ("noise:amount=0.1", ["amount=0.1", "kind=gaussian", "kind=salt-pepper only"]),
    ("noise:speckle:peak=9", ["peak=9", "kind=poisson only"]),
])
def test_irrelevant_parameters_are_errors(text, words):
    """A parameter that the chosen mode ignores is refused, naming it and why (#12)."""
    with pytest.raises(UsageError) as err:
        parse_operation(text)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_relevant_parameters_still_accepted():
    assert dict(parse_operation("threshold:adaptive:block=15:c=4:weights=gaussian").kwargs)["block"] == 15
    assert dict(parse_operation("noise:salt-pepper:amount=0.1:salt=0.3").kwargs)["salt"] == 0.3
    assert dict(parse_operation("noise:poisson:peak=30").kwargs)["peak"] == 30.0
    assert dict(parse_operation("threshold:fixed:t=9").kwargs)["t"] == 9.0


def test_kernel_file_error_never_echoes_contents(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("s3cr3t-token:x:0:0:adm:/home/s3cr3t:/bin/bash\nline two\n")
    npy = tmp_path / "fake.npy"
    npy.write_bytes(b"s3cr3t-bytes" * 10)
    binary = tmp_path / "k.txt"
    binary.write_bytes(b"\xff\xfes3cr3t")
    for path in (secret, npy, binary):
        with pytest.raises(UsageError) as err:
            parse_operation(f"kernel:file={path}")
        assert "s3cr3t" not in str(err.value), str(err.value)
        assert str(path) in str(err.value)


def test_kernel_file_must_be_a_small_regular_file(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code = ("from cvtool.errors import UsageError\nfrom cvtool.filters.parse import parse_operation\n"
            f"try:\n    parse_operation('kernel:file={fifo}')\nexcept UsageError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "FIFO" in out.stdout, out.stderr[-300:]  # refused before opening for reading: never blocks
    with pytest.raises(UsageError, match="folder"):
        parse_operation(f"kernel:file={tmp_path}")
    big = tmp_path / "big.txt"
    big.write_text(("1 " * 99 + "\n") * 6000)
    with pytest.raises(UsageError, match="limit"):
        parse_operation(f"kernel:file={big}")


def test_kernel_file_dev_zero_refused_in_bounded_memory():
    """/dev/zero ran out of memory before (#13): refused up front, under a 1 GiB address-space limit."""
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from cvtool.errors import UsageError\n"
            "from cvtool.filters.parse import parse_operation\n"
            "try:\n    parse_operation('kernel:file=/dev/zero')\n"
            "except UsageError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert "/dev/zero" in out.stdout and "character device" in out.stdout

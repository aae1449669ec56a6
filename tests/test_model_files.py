"""Model files are untrusted input: every setting they carry is checked before it is used (#13).

A HOG+SVM ``model.npz`` decides how many pyramid levels an image is scanned at; a
checkpoint's ``model_config`` decides how big a network is built.  Mutated files
must give either a clean :class:`BadInputError` or a working model, in bounded
memory and time: the fuzzing runs in a child process under ``RLIMIT_AS`` and a
timeout, so a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cvtool.errors import BadInputError, UsageError

GiB = 2**30


def squares(n: int, *, size: int = 64, seed: int = 0):
    """Grey canvases with 1-2 filled (class 0) or hollow (class 1) squares of 14-20 px."""
    rng = np.random.default_rng(seed)
    images, boxes, labels = [], [], []
    for _ in range(n):
        img = np.zeros((size, size), np.uint8)
        bs, ls = [], []
        for half in range(2):
            s = int(rng.integers(14, 21))
            x = int(rng.integers(half * size // 2, (half + 1) * size // 2 - s + 1))
            y = int(rng.integers(0, size - s + 1))
            k = int(rng.integers(0, 2))
            img[y:y + s, x:x + s] = 200
            if k:
                img[y + 4:y + s - 4, x + 4:x + s - 4] = 0
            bs.append([x, y, x + s, y + s])
            ls.append(k)
        images.append(img)
        boxes.append(np.array(bs, np.float64))
        labels.append(np.array(ls, np.int64))
    return images, boxes, labels


@pytest.fixture(scope="module")
def hog_model(tmp_path_factory):
    from cvtool.detectors.hog_svm import HogSvmDetector
    from cvtool.hog import HogParams

    images, boxes, labels = squares(16, seed=1)
    det = HogSvmDetector(hog=HogParams(cell=(4, 4)), mine_rounds=0, negatives_per_image=4, seed=0)
    det.fit(images, boxes, labels, classes=["filled", "hollow"])
    return det.save(tmp_path_factory.mktemp("hog") / "model.npz")


def _mutate_npz(src, dst, *, settings=None, hog=None, arrays=None):
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if settings:
        s = json.loads(str(data["settings"]))
        s.update(settings)
        data["settings"] = np.array(json.dumps(s))
    if hog:
        h = json.loads(str(data["hog_params"]))
        h.update(hog)
        data["hog_params"] = np.array(json.dumps(h))
    data.update(arrays or {})
    np.savez(dst, **data)
    return dst


# --------------------------------------------------------------------------- HOG+SVM: the reported cases


@pytest.mark.parametrize("setting", [{"scale_step": 1 + 1e-12}, {"min_size": 1e-9}, {"max_detections": 10**12},
                                     {"window": [100000, 100000]}, {"jobs": 10**6}, {"scale_step": float("nan")}])
def test_hog_settings_that_would_explode_are_refused_at_load(hog_model, tmp_path, setting):
    from cvtool.detectors.hog_svm import load

    bad = _mutate_npz(hog_model, tmp_path / "bad.npz", settings=setting)
    name = next(iter(setting))
    with pytest.raises(BadInputError, match=name):
        load(bad)


def test_hog_size_range_and_arrays_are_checked(hog_model, tmp_path):
    from cvtool.detectors.hog_svm import load

    for arrays, match in (({"size_range": np.array([1e-9, 1e-9])}, "size range"),
                          ({"calibration": np.array([[0.0, 0.0], [1.0, 0.0]])}, "calibration"),
                          ({"box_ratio": np.array([[1e9, 1.0], [1.0, 1.0]])}, "box ratio"),
                          ({"window": np.array([100000, 100000])}, "window")):
        with pytest.raises(BadInputError, match=match):
            load(_mutate_npz(hog_model, tmp_path / "bad.npz", arrays=arrays))


def test_hog_model_declaring_gigabytes_is_refused_before_decompressing(hog_model, tmp_path):
    """A small file whose coef array declares 2 GiB (zeros compress ~1000:1, so such a file is small)."""
    import zipfile

    from cvtool.detectors.hog_svm import load

    bad = tmp_path / "bomb.npz"
    with np.load(hog_model, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, v in data.items():
            if k == "coef":
                continue
            with zf.open(k + ".npy", "w") as fh:
                np.lib.format.write_array(fh, v)
        header = {"descr": "<f4", "fortran_order": False, "shape": (2, 2**28)}
        with zf.open("coef.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            fh.write(bytes(1 << 20))  # the data need not be there: only the header may be read
    assert bad.stat().st_size < 2**20
    with pytest.raises(BadInputError, match="declare more than"):
        load(bad)


def test_small_min_size_or_scale_is_a_usage_error_with_the_cost(hog_model):
    from cvtool.detectors.hog_svm import load

    det = load(hog_model)
    img = np.zeros((480, 640), np.uint8)
    with pytest.raises(UsageError, match=r"--min-size 0\.5 .*GiB of working memory.*at least \d+ px"):
        det.predict([img], min_size=0.5)
    with pytest.raises(UsageError, match=r"--scale 1\.0001 .*pyramid levels"):
        det.predict([img], scale_step=1.0001)
    assert len(det.predict([img])) == 1


def test_detect_min_size_1_on_a_vga_image_exits_2(cli, hog_model, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "vga.png"), np.zeros((480, 640), np.uint8))
    r = cli(["detect", tmp_path / "vga.png", "--model", hog_model, "--out", tmp_path / "d", "--min-size", "1"])
    assert r.exit_code == 2, r.output
    assert "--min-size 1" in r.output and "GiB" in r.output
    assert not (tmp_path / "d" / "detections.jsonl").exists()


def test_banded_window_scores_equal_the_one_shot_product(hog_model, monkeypatch):
    """Scoring in row bands (bounded memory) gives the same scores as the whole level at once."""
    import cvtool.detectors.hog_svm as hs
    from cvtool.hog import dense_blocks

    det = hs.load(hog_model)
    img = (np.random.default_rng(0).random((120, 160)) * 255).astype(np.uint8)
    blocks = dense_blocks(img, det.hog)
    whole = det._score_blocks(blocks)
    monkeypatch.setattr(hs, "_BAND_BYTES", 1)  # one output row per band
    banded = det._score_blocks(blocks)
    np.testing.assert_allclose(banded, whole, rtol=1e-5, atol=1e-5)
    # and both equal the plain per-window dot products
    from cvtool.hog import gather_windows

    wins = gather_windows(blocks, det.grid_)
    ref = wins.reshape(-1, det.n_features_) @ det.coef_.T + det.intercept_
    np.testing.assert_allclose(whole.reshape(-1, ref.shape[1]), ref, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- torch checkpoints


def _checkpoints(folder):
    """Tiny untrained checkpoints of the three CNN kinds (what `train` writes, minus training)."""
    import torch

    from cvtool.detectors import localizer as loc
    from cvtool.detectors import rcnn, single_shot
    from cvtool.runner.checkpoint import save_checkpoint

    torch.manual_seed(0)
    out = {}
    ss = single_shot.SingleShotConfig(num_classes=2, width=4)
    out["single-shot"] = save_checkpoint(folder / "ss.pt", {
        "kind": "single-shot", "classes": ["a", "b"], "category_ids": [1, 2],
        "model": single_shot.SingleShotNet(ss).state_dict(), "model_config": single_shot.config_dict(ss)})
    rc = rcnn.RCNNConfig(num_classes=2, width=4, warp_size=16, context_pad=2)
    props = rcnn.ProposalSettings(mode="single", min_size=4, max_proposals=20)
    from dataclasses import asdict

    out["rcnn"] = save_checkpoint(folder / "rcnn.pt", {
        "kind": "rcnn", "classes": ["a", "b"], "category_ids": [1, 2], "model": rcnn.RCNNNet(rc).state_dict(),
        "model_config": {"model": asdict(rc), "proposals": asdict(props)}})
    lc = loc.LocalizerConfig(num_classes=2, canvas=(32, 32), width=4).validate()
    out["localizer"] = save_checkpoint(folder / "loc.pt", {
        "kind": "localizer", "classes": ["a", "b"], "category_ids": [1, 2],
        "model": loc.build_model(lc).state_dict(), "model_config": lc.to_dict()})
    return out


@pytest.mark.parametrize("kind,config,match", [
    ("single-shot", {"width": 200000}, "width"),
    ("single-shot", {"num_classes": 10**9}, "num_classes"),
    ("single-shot", {"width": 192}, "parameters"),
    ("rcnn", {"model": {"num_classes": 2, "in_channels": 1, "warp_size": 100000, "context_pad": 2, "width": 4}},
     "warp_size"),
    ("rcnn", {"model": {"num_classes": 2, "in_channels": 1, "warp_size": 256, "context_pad": 2, "width": 256}},
     "parameters"),
    ("localizer", {"canvas": [100000, 100000]}, "canvas"),
    ("localizer", {"arch": "seed", "canvas": [1024, 1024]}, "parameters"),
])
def test_checkpoint_model_config_is_checked_before_building(tmp_path, kind, config, match):
    """Refused by the ranges and the meta-device parameter count, before any weight is allocated."""
    import resource

    import torch

    from cvtool.detectors import load_detector
    from cvtool.runner.checkpoint import load_checkpoint, save_checkpoint

    src = _checkpoints(tmp_path)[kind]
    st = load_checkpoint(src)
    st["model_config"] = {**st["model_config"], **config}
    bad = save_checkpoint(tmp_path / "bad.pt", {k: v for k, v in st.items() if k not in ("format", "format_version")})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadInputError, match=match) as err:
        load_detector(bad, device="cpu")
    assert str(err.value).startswith(f"{bad}: ")  # names the file
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200
    assert torch.get_num_threads() >= 1


FUZZ_CHILD = textwrap.dedent("""
    import json, math, resource, sys, time, warnings
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
    import numpy as np, torch
    torch.set_num_threads(1)
    from hypothesis import HealthCheck, given, settings, strategies as st
    from cvtool.detectors import load_detector
    from cvtool.errors import BadInputError
    from cvtool.runner.checkpoint import load_checkpoint, save_checkpoint
    hog_path, folder = sys.argv[2], sys.argv[3]
    ckpts = json.loads(sys.argv[4])
    warnings.simplefilter("ignore")

    NASTY = st.sampled_from([0, 1, -1, 2, 3, 4, 8, 16, 1e-12, 1 + 1e-12, 0.5, 1.05, 1e9, 2**63, 1e300,
                             float("nan"), float("inf"), -float("inf"), True, "x", None, [], [1e9, 1e9],
                             [4, 4], [64, 64], {"a": 1}])
    img = (np.random.default_rng(0).random((96, 128)) * 255).astype(np.uint8)
    with np.load(hog_path, allow_pickle=False) as z:
        hog_arrays = {k: z[k] for k in z.files}
    hog_settings = json.loads(str(hog_arrays["settings"]))
    hog_params = json.loads(str(hog_arrays["hog_params"]))
    outcomes = {"refused": 0, "works": 0}

    def check(path):
        t0 = time.perf_counter()
        try:
            det = load_detector(path, device="cpu")
        except BadInputError:
            outcomes["refused"] += 1
            return
        try:
            out = det.predict([img])
        except BadInputError:  # refused at detection (e.g. a pyramid too large for this image)
            outcomes["refused"] += 1
            return
        assert len(out) == 1 and out[0].boxes.shape[1:] == (4,)
        assert time.perf_counter() - t0 < 60, "a mutated model took more than a minute on a 128x96 image"
        outcomes["works"] += 1

    @settings(max_examples=int(sys.argv[5]), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(where=st.sampled_from(["settings", "hog", "array"]), key_index=st.integers(0, 100), value=NASTY)
    def fuzz_hog(where, key_index, value):
        data = dict(hog_arrays)
        if where == "settings":
            keys = sorted(hog_settings)
            s = dict(hog_settings)
            s[keys[key_index % len(keys)]] = value
            data["settings"] = np.array(json.dumps(s))
        elif where == "hog":
            keys = sorted(hog_params)
            h = dict(hog_params)
            h[keys[key_index % len(keys)]] = value
            data["hog_params"] = np.array(json.dumps(h))
        else:
            keys = sorted(k for k in hog_arrays if hog_arrays[k].dtype.kind in "fiu")
            k = keys[key_index % len(keys)]
            try:
                data[k] = np.full_like(hog_arrays[k], value) if not isinstance(value, (list, dict, str)) \\
                    and value is not None else np.asarray(value if value is not None else [], dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                return
        path = f"{folder}/fuzz.npz"
        np.savez(path, **data)
        check(path)

    @settings(max_examples=int(sys.argv[5]), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(sorted(ckpts)), key_index=st.integers(0, 100), value=NASTY)
    def fuzz_torch(kind, key_index, value):
        state = load_checkpoint(ckpts[kind])
        cfg = dict(state["model_config"])
        if kind == "rcnn":
            part = "model" if key_index % 2 else "proposals"
            sub = dict(cfg[part])
            keys = sorted(sub)
            sub[keys[key_index % len(keys)]] = value
            cfg[part] = sub
        else:
            keys = sorted(cfg)
            cfg[keys[key_index % len(keys)]] = value
        state["model_config"] = cfg
        path = f"{folder}/fuzz.pt"
        try:
            save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "format_version")})
        except TypeError:  # not a plain value: such a file cannot be written by cvtool at all
            return
        check(path)

    fuzz_hog()
    fuzz_torch()
    print(json.dumps(outcomes))
""")


def test_fuzzed_model_files_fail_cleanly_in_bounded_memory(tmp_path, hog_model):
    """Hypothesis mutates one setting of a valid HOG+SVM model and of tiny torch checkpoints at a time
    (0, 1e-12, 1 + 1e-12, 1e9, 2**63, NaN, inf, strings, lists, ...): each file is refused with
    BadInputError or detects on a 128x96 image, the whole run under a 3 GiB address-space limit."""
    ckpts = {k: str(v) for k, v in _checkpoints(tmp_path).items()}
    p = subprocess.run([sys.executable, "-c", FUZZ_CHILD, str(3 * GiB), str(hog_model), str(tmp_path),
                        json.dumps(ckpts), "20"], capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    outcomes = json.loads(p.stdout.strip().splitlines()[-1])
    assert outcomes["refused"] >= 5 and outcomes["works"] >= 5, outcomes

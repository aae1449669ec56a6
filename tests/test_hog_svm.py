"""The HOG+SVM detector: scores equal OpenCV's, it finds digits, mining adds negatives, models round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from cvtool.detectors.hog_svm import HogSvmDetector, NotFittedError, load
from cvtool.hog import HogParams


def make_scenes(n: int, seed: int, digits=(0, 1), size: int = 72):
    """Canvases with two 24x24 scikit-learn digits each (left and right half), tight ink boxes."""
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    pool = {k: np.flatnonzero(d.target == k) for k in digits}
    images, boxes, labels = [], [], []
    for _ in range(n):
        canvas = np.zeros((size, size), np.uint8)
        bs, ls = [], []
        for half in range(2):
            k = int(rng.integers(len(digits)))
            idx = int(rng.choice(pool[digits[k]]))
            glyph = cv2.resize((d.images[idx] * 255 / 16).astype(np.uint8), (24, 24),
                               interpolation=cv2.INTER_LINEAR)
            x = int(rng.integers(half * size // 2, (half + 1) * size // 2 - 24 + 1))
            y = int(rng.integers(0, size - 24 + 1))
            canvas[y:y + 24, x:x + 24] = np.maximum(canvas[y:y + 24, x:x + 24], glyph)
            ys, xs = np.nonzero(glyph > 40)
            bs.append([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1])
            ls.append(k)
        images.append(canvas)
        boxes.append(np.array(bs, np.float64))
        labels.append(np.array(ls, np.int64))
    return images, boxes, labels


def box_iou(a, b):
    """Plain IoU of two xyxy boxes (independent of cvtool.boxes)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def fitted():
    images, boxes, labels = make_scenes(40, seed=1)
    log: list[str] = []
    det = HogSvmDetector(context=0.125, hog=HogParams(cell=(4, 4)), mine_rounds=1, negatives_per_image=6,
                         seed=0).fit(images, boxes, labels, classes=["zero", "one"], category_ids=[5, 9],
                                     log=log.append)
    return det, log


def test_window_scores_equal_opencv_detect_with_the_same_svm(real_gray):
    import cv2

    svm = cv2.HOGDescriptor_getDefaultPeopleDetector().ravel()
    det = HogSvmDetector.from_weights(svm[:-1], float(svm[-1]), window=(64, 128),
                                      hog=HogParams(cell=(8, 8), sqrt=True), classes=["person"])
    img = real_gray[100:260, 150:350]
    ours = det.score_level(img)[:, :, 0]
    hog = cv2.HOGDescriptor((64, 128), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, cv2.HOGDescriptor_L2Hys, 0.2,
                            True, 64, False)
    hog.setSVMDetector(svm)
    locs, weights = hog.detect(img, hitThreshold=-100.0, winStride=(8, 8), padding=(0, 0))
    locs = np.asarray(locs).reshape(-1, 2)
    assert len(locs) == ours.size
    np.testing.assert_allclose(ours[locs[:, 1] // 8, locs[:, 0] // 8], np.asarray(weights).ravel(), atol=1e-4)


def test_fit_sets_attributes_and_reports_rounds(fitted):
    det, log = fitted
    assert det.classes == ["zero", "one"] and det.category_ids == [5, 9]
    assert det.coef_.shape == (2, det.n_features_) and det.calibration_.shape == (2, 2)
    assert len(det.rounds_) == 2 and len(det.round_weights_) == 2
    r0, r1 = det.rounds_
    assert r0.positives == 80 and r0.negatives == 40 * 6 and r0.hard_negatives_added == 0
    assert r1.hard_negatives_added > 0 and r1.negatives == r0.negatives + r1.hard_negatives_added
    assert 0.9 <= r1.train_accuracy <= 1.0
    assert any(line.startswith("round 1:") for line in log)


def test_finds_and_labels_digits_on_new_images(fitted):
    det, _ = fitted
    images, boxes, labels = make_scenes(12, seed=99)
    found = correct = 0
    dets = det.predict(images, score_threshold=0.3)
    for d, gt_b, gt_l in zip(dets, boxes, labels):
        assert d.boxes.shape[1] == 4 and np.all(d.scores >= 0.3) and np.all(d.scores <= 1)
        for b, lab in zip(gt_b, gt_l):
            ious = [box_iou(b, p) for p in d.boxes]
            if ious and max(ious) >= 0.5:
                found += 1
                correct += int(d.labels[int(np.argmax(ious))] == lab)
    assert found >= 0.9 * 24
    assert correct >= 0.9 * found
    n_dets = sum(len(d.scores) for d in dets)
    assert n_dets <= 24 * 1.5  # few false positives


def test_mining_round_changes_the_weights(fitted):
    det, _ = fitted
    w0, w1 = det.round_weights_[0][0], det.round_weights_[1][0]
    assert not np.allclose(w0, w1)
    assert np.array_equal(det.with_round(0).coef_, w0) and np.array_equal(det.coef_, w1)


def test_save_load_round_trip_without_pickle(fitted, tmp_path):
    from cvtool.detectors import load_detector, read_model_kind

    det, _ = fitted
    path = det.save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as z:
        assert str(z["kind"]) == "hog-svm" and all(z[k].dtype != object for k in z.files)
        assert str(z["cvtool_version"])
    assert read_model_kind(tmp_path) == "hog-svm"
    again = load_detector(tmp_path)
    assert isinstance(again, HogSvmDetector) and again.classes == det.classes
    img = make_scenes(1, seed=5)[0]
    a, b = det.predict(img), again.predict(img)
    np.testing.assert_allclose(a[0].boxes, b[0].boxes)
    np.testing.assert_allclose(a[0].scores, b[0].scores)
    with pytest.raises(FileExistsError):
        det.save(path)


def test_bad_model_files_are_refused(tmp_path, fitted):
    from cvtool.errors import BadInputError

    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(BadInputError, match="cannot read model"):
        load(tmp_path / "junk.npz")
    det, _ = fitted
    path = det.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef"] = arrays["coef"][:, :10]
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(BadInputError, match="shapes"):
        load(tmp_path / "cut.npz")
    arrays["kind"] = np.array("rcnn")
    np.savez(tmp_path / "kind.npz", **arrays)
    with pytest.raises(BadInputError, match="not 'hog-svm'"):
        load(tmp_path / "kind.npz")


def test_unfitted_and_bad_settings():
    det = HogSvmDetector()
    with pytest.raises(NotFittedError, match="not fitted"):
        det.predict([np.zeros((64, 64), np.uint8)])
    images, boxes, labels = make_scenes(2, seed=0)
    with pytest.raises(ValueError, match="solver 'svm'"):
        HogSvmDetector(solver="svm").fit(images, boxes, labels, classes=["a", "b"])
    with pytest.raises(ValueError, match="label 2 is outside"):
        HogSvmDetector().fit(images, boxes, [lab + 1 for lab in labels], classes=["a", "b"])
    with pytest.raises(ValueError, match="without any training box: c"):
        HogSvmDetector().fit(images, boxes, labels, classes=["a", "b", "c"])


def test_lfw_faces_cross_validated_accuracy():
    """HOG + linear SVM on scikit-image's lfw_subset (100 faces, 100 non-faces): >= 95% (5-fold)."""
    from skimage import data
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import LinearSVC

    from cvtool.hog import compute_hog

    faces = (data.lfw_subset() * 255).round().astype(np.uint8)
    y = np.r_[np.ones(100), np.zeros(100)]
    X = np.stack([compute_hog(im, params=HogParams(cell=(4, 4))).features[0] for im in faces])
    acc = cross_val_score(LinearSVC(C=0.1), X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    assert acc.mean() >= 0.95


def test_stopped_training_restarts_from_scratch_to_the_same_model(cli, tmp_path, monkeypatch):
    """HOG+SVM training keeps no checkpoint: a run stopped in a mining round writes nothing (no model,
    no lock left), says so, and the same command run again gives the model an uninterrupted run gives."""
    import cvtool.detectors.hog_svm as hs

    data = tmp_path / "data"
    r = cli(["prepare", "detection", "--out", data, "--count", "30", "--canvas", "64", "--objects", "1-2",
             "--jobs", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    args = ["--data", data, "--mine-rounds", "1", "--negatives", "2", "--hard-per-image", "4", "--eval-split", "none",
            "--jobs", "1"]
    real_mine = hs.HogSvmDetector._mine

    def stop(self, images, boxes):  # SIGTERM arrives as KeyboardInterrupt (cli.common.handle_errors)
        raise KeyboardInterrupt

    monkeypatch.setattr(hs.HogSvmDetector, "_mine", stop)
    run = tmp_path / "run"
    r = cli(["train", "hog-svm", "--out", run, *args])
    assert r.exit_code == 130
    assert "does not resume" in r.output and "same --seed" in r.output
    assert not (run / "model.npz").exists() and not any(run.glob(".cvtool-run.lock"))
    monkeypatch.setattr(hs.HogSvmDetector, "_mine", real_mine)
    assert cli(["train", "hog-svm", "--out", run, *args, "--quiet"]).exit_code == 0
    assert cli(["train", "hog-svm", "--out", tmp_path / "ref", *args, "--quiet"]).exit_code == 0
    with np.load(run / "model.npz") as a, np.load(tmp_path / "ref" / "model.npz") as b:
        for k in a.files:
            if k != "rounds":  # per-round timings
                assert np.array_equal(a[k], b[k]), k

"""HOG and HOG+SVM: speed against OpenCV in the same run, and detection quality.

Parts (``--part``, default all):

``detect``   cvtool's HOG+SVM detector vs ``cv2.HOGDescriptor.detectMultiScale`` with the
             same SVM (OpenCV's default people detector), 64x128 window, scale 1.05,
             on 640x480 images: interleaved repeats, medians, ratio, pyramid levels.
``folder``   ``cvtool hog FOLDER`` (the CLI, subprocess) vs a bare loop of
             ``cv2.imread`` + ``HOGDescriptor.compute`` over the same PNGs: images/s.
``quality``  ``prepare detection`` digit scenes (3-5 per 128x128 canvas, scale 0.8-1.2,
             train/test from disjoint digit images); train with 2 mining rounds and
             score every round on the test split (cvtool.eval, pycocotools checked).
``lfw``      5-fold cross-validated accuracy of HOG + LinearSVC on skimage's lfw_subset.

Usage::

    python benchmarks/bench_hog.py                 # everything (~5-10 min on 2 busy cores)
    python benchmarks/bench_hog.py --part detect --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def test_images(n: int = 5) -> list[np.ndarray]:
    """640x480 BGR pictures from scikit-image and scikit-learn."""
    import cv2
    from skimage import data
    from sklearn.datasets import load_sample_image

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), load_sample_image("china.jpg"),
            load_sample_image("flower.jpg"), np.dstack([data.camera()] * 3)]
    return [cv2.resize(np.ascontiguousarray(s[:, :, ::-1]), (640, 480), interpolation=cv2.INTER_AREA)
            for s in srcs[:n]]


def bench_detect(repeats: int, threads: int) -> dict:
    """Per-image time; ``threads``: OpenCV's thread pool (levels in parallel) and cvtool's jobs (images)."""
    import cv2

    from cvtool.detectors.hog_svm import HogSvmDetector
    from cvtool.hog import HogParams

    svm = cv2.HOGDescriptor_getDefaultPeopleDetector().ravel()
    params = HogParams(cell=(8, 8), block=(2, 2), bins=9, sqrt=True)  # OpenCV's default descriptor
    det = HogSvmDetector.from_weights(svm[:-1], float(svm[-1]), window=(64, 128), hog=params,
                                      classes=["person"], scale_step=1.05, score_threshold=0.5, iou_threshold=0.5,
                                      jobs=threads)
    cv2.setNumThreads(threads)
    hog = cv2.HOGDescriptor((64, 128), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, cv2.HOGDescriptor_L2Hys, 0.2, True,
                            64, False)
    hog.setSVMDetector(svm)
    images = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in test_images()]
    ours_levels = len(det._scales((640, 480), None, None))
    cv_levels, s = 0, 1.0
    while round(640 / s) >= 64 and round(480 / s) >= 128:
        cv_levels += 1
        s *= 1.05

    def run_cv():
        for im in images:
            hog.detectMultiScale(im, hitThreshold=0.0, winStride=(8, 8), padding=(0, 0), scale=1.05)

    def run_ours():
        det.predict(images, score_threshold=0.5)  # sigmoid(margin) >= 0.5 <=> margin >= 0 (hitThreshold 0)

    run_cv(), run_ours()  # warm up
    t_cv, t_ours = [], []
    for _ in range(repeats):
        for fn, acc in ((run_cv, t_cv), (run_ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t0) / len(images))
    m_cv, m_ours = statistics.median(t_cv), statistics.median(t_ours)
    return {"images": len(images), "size": "640x480", "levels_cvtool": ours_levels, "levels_opencv": cv_levels,
            "opencv_ms": 1000 * m_cv, "cvtool_ms": 1000 * m_ours, "ratio_cvtool_over_opencv": m_ours / m_cv,
            "cv2_threads": cv2.getNumThreads()}


def bench_folder(repeats: int, count: int) -> dict:
    import cv2

    base = test_images()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        for i in range(count):
            cv2.imwrite(str(folder / f"{i:04d}.png"), base[i % len(base)], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        files = sorted(folder.glob("*.png"))

        def bare():
            hog = cv2.HOGDescriptor((640, 480), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, cv2.HOGDescriptor_L2Hys, 0.2,
                                    False, 64, False)
            feats = [hog.compute(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)) for f in files]
            return np.stack(feats)

        bare_script = ("import cv2, glob, sys\n"
                       "hog = cv2.HOGDescriptor((640, 480), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, "
                       "cv2.HOGDescriptor_L2Hys, 0.2, False, 64, False)\n"
                       "[hog.compute(cv2.imread(f, cv2.IMREAD_UNCHANGED)) for f in sorted(glob.glob(sys.argv[1]))]\n")

        def bare_process():  # the same loop as a script: interpreter start-up and cv2 import included
            subprocess.run([sys.executable, "-c", bare_script, str(folder / "*.png")], check=True)

        def inprocess():  # the command's per-image job, without process start-up
            from pathlib import PurePosixPath

            from cvtool.batch import Task
            from cvtool.cli.hog import HogConfig, hog_one
            from cvtool.hog import HogParams
            from cvtool.io.paths import InputFile

            cfg = HogConfig(params=HogParams())
            return [hog_one(Task(InputFile(PurePosixPath(f.name), f)), cfg) for f in files]

        def cli():
            subprocess.run([sys.executable, "-m", "cvtool", "hog", str(folder), "--out", str(Path(tmp) / "out"),
                            "--overwrite", "-q"], check=True, cwd=REPO)

        bare(), inprocess()
        t_bare, t_proc, t_cli, t_in = [], [], [], []
        for _ in range(repeats):
            for fn, acc in ((bare, t_bare), (bare_process, t_proc), (cli, t_cli), (inprocess, t_in)):
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
    m_bare, m_proc = statistics.median(t_bare), statistics.median(t_proc)
    m_cli, m_in = statistics.median(t_cli), statistics.median(t_in)
    return {"images": count, "size": "640x480 BGR PNG",
            "bare_loop_images_per_s": count / m_bare, "bare_script_images_per_s": count / m_proc,
            "cli_images_per_s": count / m_cli,
            "cli_vs_bare_script": m_proc / m_cli, "cli_vs_bare_loop_in_process": m_bare / m_cli,
            "per_image_job_vs_bare_loop": m_bare / m_in,
            "note": "cli: the whole command (process start, imports, workers, npz, run.json); bare script: "
                    "the compute loop run as `python -c` (start-up and cv2 import included); per-image job: "
                    "cvtool's read + HOG function in this process"}


def bench_quality(train_count: int, mine_rounds: int, jobs: int) -> dict:
    import contextlib
    import io

    from cvtool.detectors.hog_svm import HogSvmDetector, evaluate_split, read_split

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits"
        subprocess.run([sys.executable, "-m", "cvtool", "prepare", "detection", "--out", str(data), "--count",
                        str(train_count), "--objects", "3-5", "--scale", "0.8-1.2", "--seed", "0", "-q"],
                       check=True, cwd=REPO)
        train, test = read_split(data, split="train"), read_split(data, split="test")
        t0 = time.perf_counter()
        det = HogSvmDetector(mine_rounds=mine_rounds, jobs=jobs, seed=0).fit(
            train.images, train.boxes, train.labels, classes=train.classes, category_ids=train.category_ids,
            log=lambda m: print("  " + m, file=sys.stderr))
        train_s = time.perf_counter() - t0
        rows = []
        for r, rep in enumerate(det.rounds_):
            scores = evaluate_split(det.with_round(r), test)
            rows.append({"round": r, "positives": rep.positives, "negatives": rep.negatives,
                         "hard_negatives_added": rep.hard_negatives_added,
                         "train_accuracy": rep.train_accuracy, **scores})
        # cross-check the final round with pycocotools
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        dets = det.predict(test.images, score_threshold=0.05)
        ids = [im.id for im in sorted(test.dataset.images, key=lambda im: im.id)]
        res = [{"image_id": i, "category_id": int(det.category_ids[k]), "score": float(s),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for i, d in zip(ids, dets) for b, s, k in zip(d.boxes, d.scores, d.labels)]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(data / "test" / "annotations.json"))
            ev = COCOeval(gt, gt.loadRes(res), "bbox")
            ev.evaluate(), ev.accumulate(), ev.summarize()
    return {"train_images": len(train.images), "test_images": len(test.images),
            "window": list(det.window_), "features": det.n_features_, "train_seconds": train_s,
            "rounds": rows, "pycocotools_AP": float(ev.stats[0]), "pycocotools_AP50": float(ev.stats[1])}


def bench_lfw() -> dict:
    from skimage import data
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import LinearSVC

    from cvtool.hog import HogParams, compute_hog

    faces = (data.lfw_subset() * 255).round().astype(np.uint8)
    y = np.r_[np.ones(100), np.zeros(100)]
    out = {}
    for engine, p in (("opencv", HogParams(cell=(4, 4))), ("skimage", HogParams(cell=(4, 4), win_sigma=0))):
        X = np.stack([compute_hog(im, params=p, engine=engine).features[0] for im in faces])
        acc = cross_val_score(LinearSVC(C=0.1), X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
        out[engine] = {"features": X.shape[1], "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "detect", "folder", "quality", "lfw"], default="all")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--folder-images", type=int, default=200)
    ap.add_argument("--train-count", type=int, default=1000)
    ap.add_argument("--mine-rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("NO_COLOR", "1")
    report = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if args.part in ("all", "lfw"):
        report["lfw"] = bench_lfw()
        print("lfw:", json.dumps(report["lfw"]), file=sys.stderr)
    if args.part in ("all", "detect"):
        report["detect"] = {f"threads_{t}": bench_detect(args.repeats, t) for t in (1, 2)}
        print("detect:", json.dumps(report["detect"]), file=sys.stderr)
    if args.part in ("all", "folder"):
        report["folder"] = bench_folder(args.repeats, args.folder_images)
        print("folder:", json.dumps(report["folder"]), file=sys.stderr)
    if args.part in ("all", "quality"):
        report["quality"] = bench_quality(args.train_count, args.mine_rounds, args.jobs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

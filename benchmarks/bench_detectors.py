"""Every cvtool detector on the same test set: one table (AP, AP50, AP75, worst class, train time, img/s).

Data: ``cvtool prepare detection`` scenes, 3-5 objects per 128x128 canvas,
scale 0.7-1.5, box IoU <= 0.3, from scikit-learn's digits (train, val and test
scenes are built from disjoint object images) and, when the Debian package
``dataset-fashion-mnist`` is installed (``--fashion``), from Fashion-MNIST.  The
localiser, a one-object model, is scored on one-object 128x128 canvases of the
same source (``prepare localization``).

Each detector is trained with the plain ``cvtool train KIND`` command (a
subprocess, wall time measured), loaded with ``cvtool.detectors.load_detector``
and run over the test split in batches of 64 (median of ``--repeats`` passes,
``--threads`` torch threads).  Scores come from cvtool's COCO evaluation
(:func:`cvtool.detectors.training.coco_scores`).  R-CNN's cost per image is
split into selective search and classification.

Usage::

    python benchmarks/bench_detectors.py                       # digits, every detector (~30 min, 2 busy cores)
    python benchmarks/bench_detectors.py --only single-shot --work /tmp/bench-det   # reuses finished runs
    python benchmarks/bench_detectors.py --fashion              # also Fashion-MNIST scenes

Timings on shared cores are noisy: run on a quiet machine for figures to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
KINDS = ("hog-svm", "rcnn", "single-shot", "localizer")
SCENES = ["--scale", "0.7-1.5", "--max-iou", "0.3", "--objects", "3-5", "--canvas", "128"]


def cvtool(*args: str, log: Path | None = None) -> float:
    """Run ``cvtool ARGS`` (this interpreter), return its wall time; raise with its stderr on failure."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cvtool", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if log is not None:
        log.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"cvtool {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return seconds


def prepare(work: Path, name: str, source: list[str], count: int, *, localization: bool = False) -> Path:
    out = work / name
    if not (out / "test.npz").is_file():
        kind = "localization" if localization else "detection"
        extra = ["--canvas", "128", "--scale", "0.7-1.5"] if localization else SCENES
        cvtool("prepare", kind, "--out", str(out), "--count", str(count), "--npz", "--no-png", "--seed", "0",
               *source, *extra, "--overwrite", "--quiet")
    return out


def train(kind: str, data: Path, run: Path, settings: list[str], threads: int) -> float:
    """Train (or reuse a finished run: its recorded wall time); return training seconds."""
    stamp = run / "bench_train_seconds.txt"
    if stamp.is_file():
        return float(stamp.read_text())
    args = ["train", kind, "--data", str(data), "--out", str(run), "--overwrite", *settings]
    if kind != "hog-svm":
        args += ["--threads", str(threads), "--quiet"]
    seconds = cvtool(*args, log=run.parent / f"{run.name}.log")
    stamp.write_text(f"{seconds:.1f}\n")
    return seconds


def throughput(det, images: list[np.ndarray], repeats: int, batch: int = 64) -> tuple[float, float, list]:
    """Median images per wall second and per CPU second (this process) of ``det.predict`` over
    ``images`` in batches, and the detections of the last pass.

    On shared cores the wall figure mostly measures the other tenants; the CPU
    figure (``time.process_time``) is what the detector itself costs."""
    times, cpu, dets = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        dets = []
        for s in range(0, len(images), batch):
            dets += det.predict(images[s:s + batch])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return len(images) / statistics.median(times), len(images) / statistics.median(cpu), dets


def score(kind: str, model: Path, data: Path, *, repeats: int, max_test: int) -> dict:
    import torch  # noqa: F401  (thread count set by the caller)

    from cvtool.datasets.arrays import load_arrays
    from cvtool.detectors import load_detector
    from cvtool.detectors.training import split_from_arrays, coco_scores

    test = split_from_arrays(load_arrays(data, split="test"))
    test = test.subset(np.arange(min(len(test), max_test)))
    images = list(test.images)
    det = load_detector(model, device="cpu")
    row: dict = {}
    if kind == "rcnn":  # split the cost: proposals, then classification of the warped regions
        from cvtool.detectors.rcnn import propose

        t0, c0 = time.perf_counter(), time.process_time()
        props = [propose(im, det.proposal_settings) for im in images]
        t_prop, c_prop = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        dets = det.classify(images, props)
        t_cls, c_cls = time.perf_counter() - t0, time.process_time() - c0
        row.update(ms_proposals=1000 * t_prop / len(images), ms_classify=1000 * t_cls / len(images),
                   cpu_ms_proposals=1000 * c_prop / len(images), cpu_ms_classify=1000 * c_cls / len(images),
                   proposals_per_image=float(np.mean([len(p) for p in props])))
        ips, ipc = len(images) / (t_prop + t_cls), len(images) / (c_prop + c_cls)
    else:
        ips, ipc, dets = throughput(det, images, repeats)
    row.update(coco_scores(dets, test, num_classes=len(det.classes), class_names=det.classes))
    row.update(img_per_s=ips, img_per_cpu_s=ipc, test_images=len(images))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-detectors"), help="Data and run folders (reused).")
    ap.add_argument("--only", nargs="*", default=list(KINDS), choices=KINDS)
    ap.add_argument("--count", type=int, default=3000, help="Training scenes.")
    ap.add_argument("--fashion", action="store_true", help="Also Fashion-MNIST scenes (needs dataset-fashion-mnist).")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training and inference.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-test", type=int, default=400)
    ap.add_argument("--ss-epochs", type=int, default=8)
    ap.add_argument("--rcnn-epochs", type=int, default=4)
    ap.add_argument("--hog-max-train", type=int, help="Train HOG+SVM on the first N scenes only (its hard-negative "
                    "mining over 3,000 scenes took over 15 minutes on the busy cores).")
    ap.add_argument("--json", type=Path, help="Also write the rows here.")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    a.work.mkdir(parents=True, exist_ok=True)
    sources = [("digits", [])]
    if a.fashion:
        if not FASHION.is_dir():
            print(f"skipping Fashion-MNIST: {FASHION} missing (apt-get install dataset-fashion-mnist)",
                  file=sys.stderr)
        else:
            sources.append(("fashion", ["--fashion-mnist", str(FASHION)]))
    settings = {
        "single-shot": ["--epochs", str(a.ss_epochs)],
        "rcnn": ["--epochs", str(a.rcnn_epochs), "--jobs", "2"],
        "hog-svm": ["--max-train", str(a.hog_max_train)] if a.hog_max_train else [],
        "localizer": ["--epochs", "8"],
    }
    rows = []
    for name, source in sources:
        for kind in a.only:
            data = prepare(a.work, f"{name}-{'loc' if kind == 'localizer' else 'det'}", source, a.count,
                           localization=kind == "localizer")
            run = a.work / f"{name}-{kind}"
            print(f"[{name}] training {kind} ...", file=sys.stderr, flush=True)
            try:
                seconds = train(kind, data, run, settings[kind], a.threads)
                row = score(kind, run, data, repeats=a.repeats, max_test=a.max_test)
            except Exception as exc:  # one detector failing must not lose the others' rows
                print(f"[{name}] {kind}: {exc}", file=sys.stderr)
                continue
            row.update(data=name, kind=kind, train_s=seconds)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"\n{os.cpu_count()} cores (shared), torch threads {a.threads}, {time.strftime('%Y-%m-%d')}\n")
    print("| data | detector | AP | AP50 | AP75 | worst class AP | train s | img/s (wall) | img per CPU-s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        scene = " (1-object canvases)" if r["kind"] == "localizer" else ""
        print(f"| {r['data']}{scene} | {r['kind']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | "
              f"{r['worst_class_AP']:.3f} | {r['train_s']:.0f} | {r['img_per_s']:.0f} | {r['img_per_cpu_s']:.0f} |")
    for r in rows:
        if r["kind"] == "rcnn":
            print(f"\nR-CNN cost per image ({r['data']}): selective search {r['ms_proposals']:.1f} ms "
                  f"({r['proposals_per_image']:.0f} proposals; CPU {r['cpu_ms_proposals']:.1f} ms) + classification "
                  f"{r['ms_classify']:.1f} ms (CPU {r['cpu_ms_classify']:.1f} ms)")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

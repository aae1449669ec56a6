"""Localiser benchmark: the default architecture against the seed study's network, on the same data.

Both are trained in this one run on the same ``prepare localization`` canvases
and scored on the same held-out test split:

* seed: ``--arch seed`` with its recipe (Adam 1e-3 constant, batch 64, CE + MSE,
  offsets redrawn every epoch) for ``--seed-epochs`` epochs;
* default: the default architecture and recipe with at most a third of the
  seed's training presentations (epochs x canvases).

Reported: test accuracy, mean IoU, IoU >= 0.6 share, training wall time and
img/s, inference img/s (median of interleaved repeats), and the ratios.

Data: scikit-learn's digits (always available), and with ``--fashion`` also
Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (installed with
apt-get when missing and permitted).  The seed study's full recipe (60,000
canvases x 10 epochs) does not fit a 10-minute CPU budget here; ``--count``
scales the training set and the figures say which scale was run.

Usage::

    python benchmarks/bench_localizer.py                 # digits, 3000 canvases, ~6 min on 2 busy cores
    python benchmarks/bench_localizer.py --fashion --count 3000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FASHION_DIRS = ("/usr/share/dataset-fashion-mnist", "/usr/share/fashion-mnist", "/usr/share/datasets/fashion-mnist")


def find_fashion() -> Path | None:
    for d in FASHION_DIRS:
        p = Path(d)
        if p.is_dir() and any(p.rglob("*idx3-ubyte*")):
            return next(p.rglob("*idx3-ubyte*")).parent
    out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if "idx3-ubyte" in line:
            return Path(line).parent
    return None


def ensure_fashion(allow_install: bool) -> Path | None:
    found = find_fashion()
    if found is None and allow_install:
        subprocess.run(["apt-get", "install", "-y", "dataset-fashion-mnist"], capture_output=True, text=True)
        found = find_fashion()
    return found


def prepare(out: Path, *, count: int, fashion: Path | None, seed: int) -> None:
    cmd = [sys.executable, "-m", "cvtool", "prepare", "localization", "--out", str(out), "--npz", "--no-png",
           "--count", str(count), "--seed", str(seed), "--quiet"]
    if fashion is not None:
        cmd += ["--fashion-mnist", str(fashion)]
    subprocess.run(cmd, check=True)


def train(data: Path, out: Path, *, arch: str, epochs: int, threads: int, extra: list[str]) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "cvtool", "train", "localizer", "--data", str(data), "--out", str(out),
           "--arch", arch, "--epochs", str(epochs), "--device", "cpu", "--threads", str(threads), "--json", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sys.stderr.write(res.stderr)
    return wall, json.loads(res.stdout.strip().splitlines()[-1])


def evaluate(run: Path, test, *, repeats: int) -> tuple[dict, list[float]]:
    import numpy as np
    import torch

    from cvtool.detectors.localizer import load, loc_metrics

    # last.pt: the end of each recipe (the seed study reported its final model)
    det = load(run / "weights" / "last.pt", device="cpu")
    images = [test.images[i] for i in range(len(test))]
    boxes, labels = test.single_boxes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dets = det.predict(images)
        times.append(len(images) / (time.perf_counter() - t0))
    pb = np.stack([d.boxes[0] if len(d) else np.zeros(4) for d in dets])
    pl = np.array([d.labels[0] if len(d) else -1 for d in dets])
    m = loc_metrics(torch.from_numpy(pl), torch.from_numpy(pb), torch.from_numpy(test.class_index),
                    torch.from_numpy(boxes.astype(np.float64)))
    return m, times


def bench(name: str, data: Path, work: Path, *, seed_epochs: int, default_epochs: int, threads: int,
          repeats: int) -> dict:
    import numpy as np
    import torch

    from cvtool.datasets.arrays import load_arrays

    torch.set_num_threads(threads)
    train_set = load_arrays(data, split="train")
    test = load_arrays(data, split="test")
    n = len(train_set)
    seed_pres = seed_epochs * n
    default_pres = default_epochs * n
    print(f"\n== {name}: {n} train canvases {train_set.images.shape[1:]}, {len(test)} test; "
          f"seed {seed_epochs} epochs = {seed_pres} presentations, default {default_epochs} epochs = "
          f"{default_pres} ({default_pres / seed_pres:.2f} of the seed's)", flush=True)
    results = {}
    for arch, epochs in (("seed", seed_epochs), ("default", default_epochs)):
        wall, summary = train(data, work / f"{name}-{arch}", arch=arch, epochs=epochs, threads=threads, extra=[])
        results[arch] = {"train_wall_s": wall, "epochs": epochs, "presentations": epochs * n,
                         "train_img_per_s": epochs * n / wall,
                         "best_epoch": summary["best_epoch"]}
    # inference: interleaved repeats, medians
    metrics, speeds = {}, {"seed": [], "default": []}
    for _ in range(repeats):
        for arch in ("seed", "default"):
            m, t = evaluate(work / f"{name}-{arch}", test, repeats=1)
            metrics[arch] = m
            speeds[arch] += t
    for arch in ("seed", "default"):
        results[arch].update(metrics[arch])
        results[arch]["infer_img_per_s"] = statistics.median(speeds[arch])
    print(f"{'arch':8} {'accuracy':>9} {'mean IoU':>9} {'IoU>=0.6':>9} {'presentations':>14} "
          f"{'train s':>8} {'train img/s':>11} {'infer img/s':>11}")
    for arch in ("seed", "default"):
        r = results[arch]
        print(f"{arch:8} {r['accuracy']:9.4f} {r['mean_iou']:9.4f} {r['iou0.6']:9.4f} {r['presentations']:14d} "
              f"{r['train_wall_s']:8.1f} {r['train_img_per_s']:11.1f} {r['infer_img_per_s']:11.1f}")
    s, d = results["seed"], results["default"]
    print(f"default/seed: accuracy {d['accuracy'] - s['accuracy']:+.4f}, IoU>=0.6 {d['iou0.6'] - s['iou0.6']:+.4f}, "
          f"train wall time x{d['train_wall_s'] / s['train_wall_s']:.2f}, presentations "
          f"x{d['presentations'] / s['presentations']:.2f}, train img/s x{d['train_img_per_s'] / s['train_img_per_s']:.2f}, "
          f"inference img/s x{d['infer_img_per_s'] / s['infer_img_per_s']:.2f}")
    goal = d["accuracy"] > s["accuracy"] and d["iou0.6"] > s["iou0.6"] and d["presentations"] * 3 <= s["presentations"]
    print("goal (higher accuracy and IoU>=0.6 share with <= 1/3 of the presentations):", "met" if goal else "NOT met")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=3000, help="training canvases (val/test in proportion)")
    ap.add_argument("--seed-epochs", type=int, default=10)
    ap.add_argument("--default-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on busy shared cores)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved inference repeats")
    ap.add_argument("--fashion", action="store_true", help="also Fashion-MNIST (apt-get install when missing)")
    ap.add_argument("--no-digits", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    if args.default_epochs * 3 > args.seed_epochs:
        print(f"note: {args.default_epochs} default epochs is more than a third of {args.seed_epochs}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench_localizer_"))
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} shared cores", "count": args.count}
    try:
        sets = []
        if not args.no_digits:
            sets.append(("digits", None))
        if args.fashion:
            folder = ensure_fashion(not args.no_install)
            if folder is None:
                print("Fashion-MNIST not available (dataset-fashion-mnist not installed); skipped")
            else:
                sets.append(("fashion-mnist", folder))
        for name, src in sets:
            data = work / f"data-{name}"
            t0 = time.perf_counter()
            prepare(data, count=args.count, fashion=src, seed=0)
            print(f"prepared {name} in {time.perf_counter() - t0:.1f} s", flush=True)
            out[name] = bench(name, data, work, seed_epochs=args.seed_epochs, default_epochs=args.default_epochs,
                              threads=args.threads, repeats=args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

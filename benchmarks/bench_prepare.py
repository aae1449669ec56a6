"""Time `cvtool prepare localization` on MNIST-sized input (70,000 canvases of 75x75).

No MNIST download: a stand-in MNIST folder (four IDX files, 60,000 + 10,000
28x28 digits) is built from scikit-learn's digits, upsampled and randomly
shifted.  The peer is the straightforward single-process script most people
write (paste, ``cv2.imwrite`` each PNG at OpenCV's default level, one json.dump);
both run in the same process tree, interleaved, repeated; medians and ratios printed.

    python benchmarks/bench_prepare.py [--n 70000] [--repeat 2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def fake_mnist(folder: Path, n_train: int, n_test: int) -> None:
    from cvtool.prepare.sources import load_sklearn_digits, write_idx

    pool = load_sklearn_digits()
    rng = np.random.default_rng(0)
    n = n_train + n_test
    idx = rng.integers(len(pool), size=n)
    imgs = pool.alpha[idx]
    shifts = rng.integers(-2, 3, size=(n, 2))
    for i in range(n):
        imgs[i] = np.roll(imgs[i], tuple(shifts[i]), axis=(0, 1))
    labels = pool.labels[idx].astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", imgs[:n_train])
    write_idx(folder / "train-labels-idx1-ubyte", labels[:n_train])
    write_idx(folder / "t10k-images-idx3-ubyte", imgs[n_train:])
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[n_train:])


def peer(mnist: Path, out: Path) -> None:
    """The naive script: one process, cv2.imwrite per canvas, one json.dump per split."""
    import cv2

    from cvtool.prepare.sources import read_idx

    rng = np.random.default_rng(0)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(mnist / f"{prefix}-images-idx3-ubyte")
        labels = read_idx(mnist / f"{prefix}-labels-idx1-ubyte")
        (out / split / "images").mkdir(parents=True)
        coco_images, anns = [], []
        for i in range(len(images)):
            canvas = np.zeros((75, 75), np.uint8)
            y, x = rng.integers(0, 48, size=2)
            canvas[y:y + 28, x:x + 28] = images[i]
            name = f"images/{i:06d}.png"
            cv2.imwrite(str(out / split / name), canvas)
            coco_images.append({"id": i + 1, "file_name": name, "width": 75, "height": 75})
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": int(labels[i]) + 1,
                         "bbox": [int(x), int(y), 28, 28], "area": 784, "iscrowd": 0})
        with open(out / split / "annotations.json", "w") as fh:
            json.dump({"images": coco_images, "annotations": anns,
                       "categories": [{"id": c + 1, "name": str(c)} for c in range(10)]}, fh)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys of the process tree) of a command."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def run_cvtool(mnist: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    return timed([sys.executable, "-m", "cvtool", "prepare", "localization", "--mnist", str(mnist),
                  "--out", str(out), "--quiet", *extra])


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--levels", default="1,6")
    ap.add_argument("--peer", nargs=2, metavar=("MNIST", "OUT"), help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.peer:
        peer(Path(ns.peer[0]), Path(ns.peer[1]))
        return
    n_test = max(1, ns.n // 7)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fake_mnist(tmp / "mnist", ns.n - n_test, n_test)
        variants = {f"cvtool png level {lv}": ["--jobs", str(ns.jobs), "--png-level", lv]
                    for lv in ns.levels.split(",")}
        variants["cvtool --npz --no-png"] = ["--jobs", str(ns.jobs), "--npz", "--no-png"]
        variants["cvtool png level 1 --jobs 1"] = ["--jobs", "1", "--png-level", "1"]
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in [*variants, "peer (naive script)"]}
        sizes: dict[str, int] = {}
        for r in range(ns.repeat):
            for name, extra in variants.items():
                out = tmp / f"out-{r}-{abs(hash(name))}"
                times[name].append(run_cvtool(tmp / "mnist", out, extra))
                sizes[name] = du(out)
                shutil.rmtree(out)
            out = tmp / f"peer-{r}"
            times["peer (naive script)"].append(timed([sys.executable, __file__, "--peer", str(tmp / "mnist"),
                                                       str(out)]))
            sizes["peer (naive script)"] = du(out)
            shutil.rmtree(out)
        ref = statistics.median(t[0] for t in times["peer (naive script)"])
        print(f"{ns.n} MNIST-75 localisation canvases, {os.cpu_count()} cores visible, "
              f"median of {ns.repeat} runs (wall s, CPU s of the process tree)")
        for name, ts in times.items():
            med = statistics.median(t[0] for t in ts)
            cpu = statistics.median(t[1] for t in ts)
            print(f"  {name:30s} wall {med:7.2f} s  cpu {cpu:7.2f} s  {ns.n / med:7.0f} canvases/s  "
                  f"{sizes[name] / 1e6:7.1f} MB  peer/this {ref / med:5.2f}x")


if __name__ == "__main__":
    main()

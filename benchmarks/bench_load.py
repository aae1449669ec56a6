"""Load: folders of 2,000 and 20,000 small images through `filter` and `detect`.

Prints throughput (images/s) and peak RSS of the whole process tree (parent
and workers, sampled with psutil) for each size, and the ratio of peak memory
20k/2k, which should stay near 1 (memory must not grow with folder size).

    python benchmarks/bench_load.py [--sizes 2000,20000] [--jobs 2] [--detect-model RUN_DIR ...]

Images are 64x64 grey PNG noise patterns written once into benchmarks/out/load/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "load"


def make_images(folder: Path, n: int, size: int = 64) -> None:
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size), dtype=np.uint8)
    for i in range(n):
        img = np.roll(base, i % size, axis=i % 2)
        cv2.imwrite(str(folder / f"{i:06d}.png"), img)


def run_measured(cmd: list[str]) -> tuple[float, float, int]:
    """Run ``cmd``; return (seconds, peak RSS of the process tree in MiB, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            p = psutil.Process(proc.pid)
            while not stop.is_set():
                try:
                    rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
                time.sleep(0.05)
        except psutil.Error:
            pass

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-2000:])
    return time.perf_counter() - t0, peak / 2**20, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--detect-model", action="append", default=[],
                    help="run folder or model file of a trained detector (repeatable)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cvtool = [sys.executable, "-m", "cvtool"]
    rows = []
    for n in sizes:
        folder = OUT / f"images_{n}"
        make_images(folder, n)
        jobs = [("filter gaussian", ["filter", str(folder), "--out", str(OUT / f"filter_{n}"),
                                     "--overwrite", "--quiet", "--jobs", str(args.jobs), "gaussian:sigma=1.5"])]
        for model in args.detect_model:
            name = Path(model).name
            jobs.append((f"detect {name}", ["detect", str(folder), "--model", model, "--out",
                                            str(OUT / f"detect_{name}_{n}"), "--overwrite", "--quiet"]))
        for label, cmd in jobs:
            secs, peak, rc = run_measured(cvtool + cmd)
            rows.append((label, n, secs, n / secs, peak, rc))
            print(f"{label:28s} n={n:6d}  {secs:7.1f} s  {n / secs:8.1f} img/s  peak RSS {peak:7.1f} MiB  rc={rc}",
                  flush=True)
    print("\npeak-memory ratio (largest / smallest folder):")
    for label in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == label]
        print(f"  {label:28s} {mine[-1][4] / mine[0][4]:.2f}x  (throughput {mine[0][3]:.0f} -> {mine[-1][3]:.0f} img/s)")


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()

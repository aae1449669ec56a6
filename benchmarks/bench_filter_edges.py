"""Time `cvtool filter gaussian` and `cvtool edges canny` against a bare OpenCV loop.

Usage::

    python benchmarks/bench_filter_edges.py [--images 200] [--repeats 3] [--skimage-images 10]

What it does, in one run:

1. writes ``--images`` generated 1920x1080 JPEGs (bundled scikit-image /
   scikit-learn photos resized, shifted and with Gaussian noise) to a temp dir;
2. for each op, runs -- interleaved, ``--repeats`` times, order rotated --
   ``cvtool ... --jobs 1``, ``cvtool ... --jobs 2`` and a bare
   ``cv2.imread -> op -> cv2.imwrite`` loop, each as a fresh ``python``
   process (so both sides pay interpreter and import start-up);
3. prints medians and the ratios cvtool/bare (goal <= 1.15) and
   jobs1/jobs2 (goal >= 1.7);
4. times the same ops through scikit-image on ``--skimage-images`` images
   (op only, in-process) against OpenCV on the same images, for context;
5. times ``cvtool --help`` (goal < 0.3 s).

The machine's cores are shared, so only ratios measured in the same run mean
anything.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BARE = {
    "gaussian": """
import sys, cv2, pathlib
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for p in sorted(src.glob('*.jpg')):
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(out / p.name), cv2.GaussianBlur(img, (11, 11), 1.5))
""",
    "canny": """
import sys, cv2, pathlib, numpy as np
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for p in sorted(src.glob('*.jpg')):
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    m = float(np.median(g))
    e = cv2.Canny(g, max(0.0, 0.67 * m), min(255.0, 1.33 * m), L2gradient=True)
    cv2.imwrite(str(out / (p.stem + '.png')), e)
""",
}
CVTOOL = {
    "gaussian": ["filter", "{src}", "--out", "{out}", "gaussian:sigma=1.5"],
    "canny": ["edges", "{src}", "--out", "{out}", "canny"],
}


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    import cv2
    from skimage import data
    from sklearn.datasets import load_sample_image

    photos = [data.astronaut()[:, :, ::-1], data.coffee()[:, :, ::-1], data.chelsea()[:, :, ::-1],
              load_sample_image("china.jpg")[:, :, ::-1], load_sample_image("flower.jpg")[:, :, ::-1]]
    bases = [cv2.resize(np.ascontiguousarray(p), (1920, 1080), interpolation=cv2.INTER_CUBIC) for p in photos]
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 6, (1080, 1920, 3)).astype(np.float32)
    for i in range(n):
        base = np.roll(bases[i % len(bases)], shift=int(rng.integers(0, 1920)), axis=1)
        shift = int(rng.integers(0, 1080 * 1920 * 3 - 1))
        img = np.clip(base + np.roll(noise.ravel(), shift).reshape(noise.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def run_timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the child and its workers) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_op(op: str, src: Path, work: Path, repeats: int) -> dict[str, float]:
    cvtool = [sys.executable, "-m", "cvtool"]
    variants = {
        "bare": lambda out: [sys.executable, "-c", BARE[op], str(src), str(out)],
        "jobs1": lambda out: cvtool + [a.format(src=src, out=out) for a in CVTOOL[op]] + ["--jobs", "1", "-q"],
        "jobs2": lambda out: cvtool + [a.format(src=src, out=out) for a in CVTOOL[op]] + ["--jobs", "2", "-q"],
    }
    names = list(variants)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            out = work / f"{op}-{name}-{r}"
            w, c = run_timed(variants[name](out))
            wall[name].append(w)
            cpu[name].append(c)
            shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"\n{op}: median of {repeats} runs, wall s: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
          + "; CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in cmed.items()))
    print("  wall, all runs: " + "; ".join(f"{k} " + ",".join(f"{t:.2f}" for t in v) for k, v in wall.items()))
    print(f"  cvtool --jobs 1 / bare loop = {med['jobs1'] / med['bare']:.3f} wall, "
          f"{cmed['jobs1'] / cmed['bare']:.3f} CPU  (goal <= 1.15)")
    print(f"  --jobs 1 / --jobs 2 speed-up = {med['jobs1'] / med['jobs2']:.2f}x wall  (goal >= 1.7)")
    return med


def bench_in_process(src: Path, work: Path, n: int, repeats: int = 3) -> None:
    """Per-image CPU time (process_time) of cvtool's job vs the bare loop body, in one process.

    Start-up is excluded and CPU time is what the code costs whatever else the
    shared cores run, so this isolates cvtool's per-image overhead.
    """
    import functools
    from pathlib import PurePosixPath

    import cv2

    from cvtool.batch import Task
    from cvtool.filters.jobs import ImageJob, edges_transform, filter_transform
    from cvtool.filters.parse import parse_pipeline
    from cvtool.io.paths import InputFile

    paths = sorted(src.glob("*.jpg"))[:n]
    out = work / "inproc"
    out.mkdir(exist_ok=True)
    settings = tuple(sorted(dict(mode="magnitude", ksize=3, neighbours=4, sigma=None, low=None, high=None,
                                 spread=0.33, zc_threshold=0.1, scale="max", depth=8, binarize=None).items()))
    jobs = {
        "gaussian": (ImageJob(functools.partial(filter_transform, steps=parse_pipeline(["gaussian:sigma=1.5"])),
                              overwrite=True), ".jpg"),
        "canny": (ImageJob(functools.partial(edges_transform, method="canny", settings=settings), overwrite=True),
                  ".png"),
    }

    def bare_gaussian(p: Path) -> None:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / p.name), cv2.GaussianBlur(img, (11, 11), 1.5))

    def bare_canny(p: Path) -> None:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        m = float(np.median(g))
        cv2.imwrite(str(out / (p.stem + ".png")), cv2.Canny(g, max(0.0, 0.67 * m), min(255.0, 1.33 * m),
                                                             L2gradient=True))

    bare = {"gaussian": bare_gaussian, "canny": bare_canny}
    print(f"\nin-process CPU per image ({len(paths)} images, median of {repeats}, start-up excluded):")
    for op, (job, ext) in jobs.items():
        tb, tc = [], []
        for _ in range(repeats):
            t0 = time.process_time()
            for p in paths:
                bare[op](p)
            tb.append(time.process_time() - t0)
            t0 = time.process_time()
            for p in paths:
                job(Task(InputFile(PurePosixPath(p.name), p), out / (p.stem + ext)))
            tc.append(time.process_time() - t0)
        b, c = statistics.median(tb) / len(paths), statistics.median(tc) / len(paths)
        print(f"  {op}: bare {b * 1e3:.1f} ms, cvtool {c * 1e3:.1f} ms -> ratio {c / b:.3f}  (goal <= 1.15)")


def bench_skimage(src: Path, n: int) -> None:
    import cv2
    from skimage import feature, filters

    paths = sorted(src.glob("*.jpg"))[:n]
    images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths]

    def clock(fn) -> float:
        best = []
        for _ in range(3):
            t0 = time.perf_counter()
            for img in images:
                fn(img)
            best.append(time.perf_counter() - t0)
        return min(best) / len(images)

    cv_g = clock(lambda im: cv2.GaussianBlur(im, (11, 11), 1.5))
    sk_g = clock(lambda im: filters.gaussian(im, sigma=1.5, channel_axis=-1, preserve_range=True, truncate=10 / 3))
    grey = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in images]
    images[:] = grey
    cv_c = clock(lambda im: cv2.Canny(im, 50, 100, L2gradient=True))
    sk_c = clock(lambda im: feature.canny(im, sigma=1.0, low_threshold=50, high_threshold=100))
    print(f"\nscikit-image for context ({n} images, op only, best of 3, per image):")
    print(f"  gaussian: OpenCV {cv_g * 1e3:.1f} ms, scikit-image {sk_g * 1e3:.1f} ms -> {sk_g / cv_g:.0f}x slower")
    print(f"  canny:    OpenCV {cv_c * 1e3:.1f} ms, scikit-image {sk_c * 1e3:.1f} ms -> {sk_c / cv_c:.0f}x slower")


def bench_help(repeats: int = 10) -> None:
    exe = shutil.which("cvtool")
    argv = [exe, "--help"] if exe else [sys.executable, "-m", "cvtool", "--help"]
    times = sorted(run_timed(argv)[0] for _ in range(repeats))
    print(f"\ncvtool --help: median {statistics.median(times):.3f} s, min {times[0]:.3f} s  (goal < 0.3 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skimage-images", type=int, default=10)
    ap.add_argument("--ops", default="gaussian,canny")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        t0 = time.perf_counter()
        make_images(src, args.images)
        print(f"{args.images} images 1920x1080 JPEG written in {time.perf_counter() - t0:.1f} s")
        for op in args.ops.split(","):
            bench_op(op, src, root, args.repeats)
        bench_in_process(src, root, min(args.images, 50))
        bench_skimage(src, args.skimage_images)
    bench_help()


if __name__ == "__main__":
    main()

"""Selective search: cvtool against OpenCV (ximgproc) and the `selectivesearch` package.

Two measurements, all methods in the same run:

1. Wall time on real photographs bundled with scikit-image and scikit-learn,
   resized to 500x375; methods interleaved (order rotated each repeat), median
   per image over the repeats, then the mean over images.
2. Recall at IoU 0.5 / 0.7 with the first 100/500/1000/2000 proposals and ABO
   on synthetic scenes with ground truth (real photo patches pasted on textured
   backgrounds, 500x375, private generator below) and `prepare detection`
   scenes (cvtool.prepare: scikit-learn digits on the photographs).  The
   `selectivesearch` package does not rank its boxes, so it is compared with
   cvtool `single` at the same number of boxes per image.

Every method runs in this one process with OpenCV limited to one thread.

Usage: python benchmarks/bench_selective_search.py [--repeats 2] [--scenes 6] [--no-quality]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np

W, H = 500, 375


# ---------------------------------------------------------------- images


def photographs() -> dict[str, np.ndarray]:
    """Colour photographs bundled with scikit-image / scikit-learn as 500x375 BGR."""
    import cv2
    from skimage import data
    from sklearn.datasets import load_sample_image

    rgb = {name: getattr(data, name)() for name in
           ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")}
    rgb["china"] = load_sample_image("china.jpg")
    rgb["flower"] = load_sample_image("flower.jpg")
    return {name: np.ascontiguousarray(cv2.resize(im[:, :, ::-1], (W, H), interpolation=cv2.INTER_AREA))
            for name, im in rgb.items()}


def private_scenes(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Scenes of 3-8 photo patches (rectangles or ellipses, some half transparent) on photo or texture backgrounds."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = list(photographs().values())
    textures = [cv2.cvtColor(t, cv2.COLOR_GRAY2BGR) for t in (data.brick(), data.grass(), data.gravel())]
    images, boxes, labels = [], [], []
    for _ in range(n):
        if rng.random() < 0.5:
            tex = textures[rng.integers(len(textures))]
            y0, x0 = rng.integers(0, 512 - 300, 2)
            tint = rng.uniform(0.3, 1.0, 3)
            img = (cv2.resize(tex[y0:y0 + 300, x0:x0 + 400], (W, H)) * tint).astype(np.uint8)
        else:  # a photograph, flipped and blurred, as background
            img = cv2.GaussianBlur(sources[rng.integers(len(sources))][::-1, ::-1], (0, 0), 2.0)
        gt, lab = [], []
        for _ in range(rng.integers(3, 9)):
            w, h = int(rng.integers(24, 200)), int(rng.integers(24, 170))
            src = sources[rng.integers(len(sources))]
            sx, sy = rng.integers(0, W - w), rng.integers(0, H - h)
            patch = src[sy:sy + h, sx:sx + w].astype(np.float32)
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            ellipse = bool(rng.integers(2))
            mask = np.ones((h, w), np.uint8)
            if ellipse:
                mask[:] = 0
                cv2.ellipse(mask, (w // 2, h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1)
            alpha = 1.0 if rng.random() < 0.6 else rng.uniform(0.5, 0.8)
            region = img[y:y + h, x:x + w]
            blended = (alpha * patch + (1 - alpha) * region).astype(np.uint8)
            region[mask > 0] = blended[mask > 0]
            ys, xs = np.nonzero(mask)
            gt.append([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1])
            lab.append(2 if ellipse else 1)
        # later patches may hide earlier ones: keep boxes still mostly visible
        visible = np.zeros((len(gt), H, W), bool)
        for i, (bx1, by1, bx2, by2) in enumerate(gt):
            visible[i, by1:by2, bx1:bx2] = True
            visible[:i, by1:by2, bx1:bx2] = False
        keep = [i for i, (bx1, by1, bx2, by2) in enumerate(gt)
                if visible[i].sum() > 0.8 * (bx2 - bx1) * (by2 - by1)]
        images.append(np.ascontiguousarray(img))
        boxes.append(np.array([gt[i] for i in keep], np.float64).reshape(-1, 4))
        labels.append(np.array([lab[i] for i in keep], np.int64))
    return images, boxes, labels


def prepare_scenes(n: int, seed: int):
    """`prepare detection`-style scenes: scikit-learn digits (scale 1.5-5) on the photographs, with clutter."""
    from cvtool.prepare.scenes import SceneSettings, detection_scene, scene_rng
    from cvtool.prepare.sources import load_sklearn_digits

    pool = load_sklearn_digits(size=28)
    settings = SceneSettings(kind="detection", canvas=(H, W), channels=3, scale=(1.5, 5.0), objects=(3, 6),
                             noise=4.0, clutter=10, clutter_size=12).validate(pool)
    backgrounds = list(photographs().values())
    out = [detection_scene(pool, settings, scene_rng(seed, "test", i), backgrounds) for i in range(n)]
    return [o[0] for o in out], [o[1] for o in out], [o[2] + 1 for o in out]


def scenes(n: int, seed: int) -> dict[str, tuple]:
    """Scene sets with ground truth: cvtool.prepare digit scenes (when that module is there) and photo patches."""
    sets = {}
    try:
        sets["digits on photos (cvtool.prepare.detection_scene)"] = prepare_scenes(n, seed)
    except ImportError:
        pass
    sets["photo patches on photos/textures (private generator)"] = private_scenes(n, seed)
    return sets


# ---------------------------------------------------------------- methods


def run_cvtool(mode):
    from cvtool.proposals import selective_search

    def run(img):
        return selective_search(img, mode=mode, seed=0).boxes
    return run


def run_opencv(mode):
    import cv2

    def run(img):
        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(img)
        if mode == "fast":
            ss.switchToSelectiveSearchFast()
        else:
            ss.switchToSelectiveSearchQuality()
        rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)
        return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    return run


def run_package(img):
    import selectivesearch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, regions = selectivesearch.selective_search(img[:, :, ::-1], scale=500, sigma=0.9, min_size=10)
    seen, boxes = set(), []
    for r in regions:  # (x, y, w, h) with w = max_x - min_x: pixel edges are x .. x + w + 1
        x, y, w, h = r["rect"]
        if (x, y, w, h) not in seen:
            seen.add((x, y, w, h))
            boxes.append([x, y, x + w + 1, y + h + 1])
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def methods(quality: bool):
    out = {"cvtool single": run_cvtool("single"), "selectivesearch pkg": run_package,
           "cvtool fast": run_cvtool("fast"), "opencv fast": run_opencv("fast")}
    if quality:
        out.update({"cvtool quality": run_cvtool("quality"), "opencv quality": run_opencv("quality")})
    return out


# ---------------------------------------------------------------- measurement


def time_photos(ms, images, repeats):
    times = {m: {name: [] for name in images} for m in ms}
    counts = {m: [] for m in ms}
    names = list(ms)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name, img in images.items():
            for m in order:
                t0 = time.perf_counter()
                boxes = ms[m](img)
                times[m][name].append(time.perf_counter() - t0)
                if r == 0:
                    counts[m].append(len(boxes))
        print(f"  timing repeat {r + 1}/{repeats} done", file=sys.stderr)
    return ({m: float(np.mean([statistics.median(v) for v in per.values()])) for m, per in times.items()},
            {m: float(np.mean(c)) for m, c in counts.items()})


def recall_on_scenes(ms, imgs, gts, labels):
    from cvtool.datasets.core import Category, Dataset, ImageRecord
    from cvtool.eval.proposals import evaluate_proposals

    gt = Dataset(images=[ImageRecord(i, f"scene{i}.png", W, H) for i in range(len(imgs))],
                 categories=[Category(int(c), str(c)) for c in np.unique(np.concatenate(labels))],
                 ann_image_ids=np.concatenate([np.full(len(b), i) for i, b in enumerate(gts)]).astype(np.int64),
                 ann_boxes=np.concatenate(gts), ann_labels=np.concatenate(labels).astype(np.int64),
                 ann_iscrowd=np.zeros(sum(map(len, gts)), bool), ann_difficult=np.zeros(sum(map(len, gts)), bool))
    props = {m: {} for m in ms}
    seconds = {m: [] for m in ms}
    for i, img in enumerate(imgs):
        for m, fn in ms.items():
            t0 = time.perf_counter()
            props[m][i] = fn(img)
            seconds[m].append(time.perf_counter() - t0)
    reports = {m: evaluate_proposals(gt, p, counts=(100, 500, 1000, 2000)) for m, p in props.items()}
    # the package is unranked: compare with cvtool single at its number of boxes per image
    same_n = {i: props["cvtool single"][i][:len(props["selectivesearch pkg"][i])] for i in props["cvtool single"]}
    big = (10**7,)
    paired = {"selectivesearch pkg": evaluate_proposals(gt, props["selectivesearch pkg"], counts=big),
              "cvtool single (same N)": evaluate_proposals(gt, same_n, counts=big)}
    return gt, reports, paired, {m: float(np.mean(s)) for m, s in seconds.items()}


def main(argv=None) -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scenes", type=int, default=6, help="scenes per scene set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-quality", action="store_true", help="skip the quality modes (slow)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    ms = methods(not a.no_quality)
    photos = photographs()
    print(f"timing {len(ms)} methods on {len(photos)} photographs ({W}x{H}), {a.repeats} repeats",
          file=sys.stderr)
    secs, counts = time_photos(ms, photos, a.repeats)
    print("\n### Wall time per 500x375 photograph (mean over images of the median of repeats)\n")
    print("| method | s / image | boxes / image | OpenCV fast time / this | selectivesearch time / this |")
    print("|---|---:|---:|---:|---:|")
    for m in ms:
        print(f"| {m} | {secs[m]:.3f} | {counts[m]:.0f} | {secs['opencv fast'] / secs[m]:.2f} "
              f"| {secs['selectivesearch pkg'] / secs[m]:.2f} |")

    results = {}
    for source, (imgs, gts, labels) in scenes(a.scenes, a.seed).items():
        print(f"recall on {len(imgs)} scenes: {source}", file=sys.stderr)
        _, reports, paired, scene_secs = recall_on_scenes(ms, imgs, gts, labels)
        results[source] = (reports, paired)
        n_gt = reports["cvtool fast"].num_gt
        print(f"\n### Recall on {len(imgs)} scenes with {n_gt} ground-truth boxes: {source}\n")
        print("| method | boxes / image | R@0.5 100 | 500 | 1000 | 2000 | R@0.7 1000 | 2000 | ABO (all) | s / image |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m, rep in reports.items():
            r5, r7 = rep.recall[0.5], rep.recall[0.7]
            print(f"| {m} | {rep.mean_proposals:.0f} | {r5[100]:.3f} | {r5[500]:.3f} | {r5[1000]:.3f} | "
                  f"{r5[2000]:.3f} | {r7[1000]:.3f} | {r7[2000]:.3f} | {rep.abo_all:.3f} | {scene_secs[m]:.3f} |")
        print("\nSame number of boxes as the selectivesearch package (per image):\n")
        print("| method | boxes / image | R@0.5 | R@0.7 | ABO |")
        print("|---|---:|---:|---:|---:|")
        for m, rep in paired.items():
            print(f"| {m} | {rep.mean_proposals:.0f} | {rep.recall[0.5][10**7]:.3f} | "
                  f"{rep.recall[0.7][10**7]:.3f} | {rep.abo_all:.3f} |")
    if a.json:
        print(json.dumps({"seconds": secs, "boxes": counts,
                          "scenes": {src: {"recall": {m: r.to_dict() for m, r in reps.items()},
                                           "same_n": {m: r.to_dict() for m, r in pair.items()}}
                                     for src, (reps, pair) in results.items()}}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

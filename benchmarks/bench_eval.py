"""COCO box evaluation: cvtool vs pycocotools vs faster-coco-eval, same data, same run.

Generates a seeded set (default 5,000 images, 80 classes, about 7 ground-truth
boxes and 20 detections per image, crowd boxes included; cvtool.eval.synthetic),
writes it as COCO JSON, then runs each tool in its own subprocess, interleaved,
``--repeats`` times:

* load: reading the two JSON files into the tool's structures (not part of the goal);
* eval: evaluate + accumulate + summarize, wall and CPU time (the issue's goal:
  cvtool >= 5x faster than pycocotools; CPU time is steadier on a shared machine);
* peak RSS of the process (ru_maxrss, loading included) and the growth of the
  peak during eval above the RSS after loading.

Medians are printed with the ratios, and the 12 stats of the three tools are
compared (max abs difference).

    python benchmarks/bench_eval.py [--images 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = ("cvtool", "pycocotools", "faster-coco-eval")


def _rss_kib() -> int:
    import psutil

    return psutil.Process().memory_info().rss // 1024


def _cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def worker(tool: str, gt_path: str, dt_path: str) -> dict:
    """Run one tool once; return timings, memory and stats."""
    import numpy as np

    t0 = time.perf_counter()
    if tool == "cvtool":
        from cvtool.eval.coco import evaluate_coco
        from cvtool.eval.inputs import load_ground_truth, load_predictions

        gt = load_ground_truth(gt_path)
        pred = load_predictions(dt_path, gt)
        t1, c1 = time.perf_counter(), _cpu_s()
        base = _rss_kib()
        stats = evaluate_coco(gt, pred).stats_array
    else:
        if tool == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval as Eval
        else:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as Eval
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(gt_path)
            coco_dt = coco_gt.loadRes(dt_path)
            t1, c1 = time.perf_counter(), _cpu_s()
            base = _rss_kib()
            ev = Eval(coco_gt, coco_dt, "bbox") if tool == "pycocotools" else \
                Eval(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = np.asarray(ev.stats[:12], dtype=np.float64)
    t2, c2 = time.perf_counter(), _cpu_s()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"tool": tool, "load_s": t1 - t0, "eval_s": t2 - t1, "eval_cpu_s": c2 - c1, "peak_rss_mib": peak / 1024,
            "eval_growth_mib": max(0, peak - base) / 1024, "stats": stats.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "GT", "DT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    import numpy as np

    from cvtool.eval.synthetic import make_coco_set

    with tempfile.TemporaryDirectory() as tmp:
        gt, dt = make_coco_set(args.seed, num_images=args.images, num_classes=args.classes,
                               gt_per_image=7.0, dets_per_image=20.0, classes_without_gt=0)
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dt))
        n_gt, n_dt = len(gt["annotations"]), len(dt)
        print(f"set: {args.images} images, {args.classes} classes, {n_gt} ground-truth boxes "
              f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd), {n_dt} detections; "
              f"{os.cpu_count()} CPU(s); {args.repeats} interleaved repeats, each tool in its own process")
        del gt, dt
        runs: dict[str, list[dict]] = {t: [] for t in TOOLS}
        for r in range(args.repeats):
            for tool in TOOLS:
                out = subprocess.run([sys.executable, __file__, "--worker", tool, str(gt_path), str(dt_path)],
                                     check=True, capture_output=True, text=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                runs[tool].append(res)
                print(f"  repeat {r + 1} {tool:17s} load {res['load_s']:6.2f} s  eval {res['eval_s']:7.2f} s  "
                      f"(CPU {res['eval_cpu_s']:7.2f} s)  peak RSS {res['peak_rss_mib']:7.1f} MiB", flush=True)

    med = {t: {k: statistics.median(x[k] for x in runs[t]) for k in ("load_s", "eval_s", "eval_cpu_s",
                                                                       "peak_rss_mib", "eval_growth_mib")} for t in TOOLS}
    print("\nmedians (eval = evaluate + accumulate + summarize):")
    print(f"  {'tool':17s} {'eval s':>8s} {'eval CPU s':>11s} {'load s':>8s} {'peak RSS MiB':>13s} "
          f"{'eval growth MiB':>16s}")
    for t in TOOLS:
        m = med[t]
        print(f"  {t:17s} {m['eval_s']:8.2f} {m['eval_cpu_s']:11.2f} {m['load_s']:8.2f} {m['peak_rss_mib']:13.1f} "
              f"{m['eval_growth_mib']:16.1f}")
    c = med["cvtool"]
    for t in TOOLS[1:]:
        print(f"  {t} / cvtool: eval time x{med[t]['eval_s'] / c['eval_s']:.1f} "
              f"(CPU time x{med[t]['eval_cpu_s'] / c['eval_cpu_s']:.1f}), "
              f"peak RSS x{med[t]['peak_rss_mib'] / c['peak_rss_mib']:.2f}, "
              f"eval growth x{med[t]['eval_growth_mib'] / max(c['eval_growth_mib'], 1e-9):.2f}")
    ref = np.array(runs["pycocotools"][0]["stats"])
    for t in ("cvtool", "faster-coco-eval"):
        print(f"  max |{t} - pycocotools| over the 12 stats: {np.abs(np.array(runs[t][0]['stats']) - ref).max():.2e}")
    goal = med["pycocotools"]["eval_s"] / c["eval_s"]
    print(f"goal (>= 5x pycocotools, peak memory no higher): {'met' if goal >= 5 and c['peak_rss_mib'] <= med['pycocotools']['peak_rss_mib'] else 'NOT met'}"
          f" (x{goal:.1f})")


if __name__ == "__main__":
    main()

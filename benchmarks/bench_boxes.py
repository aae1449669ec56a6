"""Time cvtool.boxes against its peers in the same run and print the ratios.

* NMS of 10,000 random boxes: ``cvtool.boxes.nms`` (NumPy) vs ``cv2.dnn.NMSBoxes``
  on four box distributions (the kept sets are checked to be equal).
* Pairwise IoU 1000 x 1000 on the CPU: ``cvtool.boxes.iou`` on NumPy float32 and
  float64 arrays vs a plain torch float32 implementation (and cvtool on tensors).

Runs are interleaved and repeated; medians are reported.  ``ratio`` is
cvtool's time / peer's time (below 1: cvtool is faster).

    python benchmarks/bench_boxes.py [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def random_boxes(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "uniform":  # 10-200 px boxes anywhere in 1000x1000
        xy = rng.uniform(0, 1000, (n, 2))
        wh = rng.uniform(10, 200, (n, 2))
    elif kind == "clustered":  # detector-like: 100 objects, many boxes each
        centres = rng.uniform(0, 1000, (100, 2))
        xy = centres[rng.integers(0, 100, n)] + rng.normal(0, 8, (n, 2))
        wh = rng.uniform(30, 120, (n, 2))
    elif kind == "small":
        xy = rng.uniform(0, 1000, (n, 2))
        wh = rng.uniform(2, 20, (n, 2))
    else:  # mixed sizes, log-uniform 4..600 px
        xy = rng.uniform(0, 1000, (n, 2))
        wh = np.exp(rng.uniform(np.log(4), np.log(600), (n, 2)))
    return np.hstack([xy, xy + wh]), rng.random(n).astype(np.float32)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def torch_iou(a, b):
    """The plain torch float32 pairwise IoU (the peer)."""
    import torch

    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import cv2
    import torch

    from cvtool import boxes as B

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, cv2 {cv2.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print("\nNMS, 10,000 boxes, IoU threshold 0.5 (median seconds)")
    print(f"{'boxes':10s} {'kept':>6s} {'cvtool':>9s} {'cv2':>9s} {'ratio':>7s}")
    for kind in ("uniform", "clustered", "small", "mixed"):
        b, s = random_boxes(kind, 10_000, rng)
        xywh = B.convert(b, "xyxy", "xywh")
        ours, peer = [], []
        for _ in range(args.repeats):
            t, k1 = timed(lambda: B.nms(b, s, iou_threshold=0.5, score_threshold=0.0))
            ours.append(t)
            t, k2 = timed(lambda: np.asarray(cv2.dnn.NMSBoxes(xywh, s, 0.0, 0.5)).reshape(-1))
            peer.append(t)
        if not np.array_equal(k1, k2):
            raise SystemExit(f"kept sets differ on {kind} boxes")
        mo, mp = statistics.median(ours), statistics.median(peer)
        print(f"{kind:10s} {len(k1):6d} {mo:9.4f} {mp:9.4f} {mo / mp:7.2f}")

    print("\nPairwise IoU 1000 x 1000, CPU (median seconds)")
    a64, _ = random_boxes("uniform", 1000, rng)
    b64, _ = random_boxes("uniform", 1000, rng)
    a32, b32 = a64.astype(np.float32), b64.astype(np.float32)
    ta, tb = torch.from_numpy(a32), torch.from_numpy(b32)
    cases = {"cvtool numpy float32": lambda: B.iou(a32, b32), "cvtool numpy float64": lambda: B.iou(a64, b64),
             "cvtool torch float32": lambda: B.iou(ta, tb)}
    times = {k: [] for k in [*cases, "plain torch float32"]}
    for _ in range(args.repeats * 3):
        for name, fn in cases.items():
            times[name].append(timed(fn)[0])
        times["plain torch float32"].append(timed(torch_iou, ta, tb)[0])
    ref = torch_iou(ta, tb).numpy()
    np.testing.assert_allclose(B.iou(a32, b32), ref, atol=1e-5)
    peer = statistics.median(times["plain torch float32"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:22s} {m:9.5f}  ratio {m / peer:5.2f}")


if __name__ == "__main__":
    main()

"""`cvtool eval` on files other tools write: no silent wrong number (#12, #13).

* YOLO-order text (``class cx cy w h score``, relative) has its own format and
  is recognised in a ``labels/`` folder; columns that do not fit the chosen
  layout are refused, naming the file and the likely layout;
* COCO results whose image ids are not the ground truth's are matched by file
  name or refused; ids the ground truth lacks are an error with counts;
* ``--voc-pixels`` with VOC XML ground truth equals the VOC devkit's
  ``voc_eval`` (an independent transcription below);
* predictions of classes the ground truth lacks are ignored with one warning,
  as pycocotools does;
* deeply nested or absurd prediction files end in one-line errors.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
W, H = 640, 480
CLASSES = ["cell", "platelet"]


# --------------------------------------------------------------------------- data made here
def make_scene(rng: np.random.Generator, n_images: int = 4) -> tuple[list[dict], list[dict]]:
    """COCO images and annotations (continuous xywh boxes) of two classes on 640x480 images."""
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i * 10, "file_name": f"images/img_{i:03d}.jpg", "width": W, "height": H})
        for _ in range(int(rng.integers(2, 6))):
            w, h = (float(v) for v in rng.uniform(20, 150, size=2))
            x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h))
            anns.append({"id": len(anns) + 1, "image_id": i * 10, "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return images, anns


def write_gt(folder: Path, images: list[dict], anns: list[dict]) -> Path:
    path = folder / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}))
    return path


def perfect_predictions(folder: Path, images: list[dict], anns: list[dict]) -> dict[str, Path]:
    """The ground truth as predictions in four formats (scores distinct, in (0, 1))."""
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    yolo, text = folder / "ultra" / "labels", folder / "txt"
    yolo.mkdir(parents=True)
    text.mkdir()
    coco, jsonl = [], []
    for im in images:
        stem = Path(im["file_name"]).stem
        ylines, tlines, rec = [], [], {"file": im["file_name"], "boxes": [], "scores": [], "names": []}
        for j, a in enumerate(by_image.get(im["id"], [])):
            x, y, w, h = a["bbox"]
            s = 0.99 - 0.01 * j
            k = a["category_id"] - 1
            ylines.append(f"{k} {(x + w / 2) / W:.9f} {(y + h / 2) / H:.9f} {w / W:.9f} {h / H:.9f} {s}")
            tlines.append(f"{CLASSES[k]} {s} {x!r} {y!r} {x + w!r} {y + h!r}")
            coco.append({"image_id": im["id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": s})
            rec["boxes"].append([x, y, x + w, y + h])
            rec["scores"].append(s)
            rec["names"].append(CLASSES[k])
        (yolo / f"{stem}.txt").write_text("\n".join(ylines) + "\n")
        (text / f"{stem}.txt").write_text("\n".join(tlines) + "\n")
        jsonl.append(json.dumps(rec))
    (folder / "results.json").write_text(json.dumps(coco))
    (folder / "dets.jsonl").write_text("\n".join(jsonl) + "\n")
    return {"yolo": yolo, "text": text, "coco": folder / "results.json", "jsonl": folder / "dets.jsonl"}


def eval_json(cli, gt, pred, *extra) -> dict:
    res = cli(["eval", "--gt", gt, "--pred", pred, "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def pycocotools_stats(gt_path: Path, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


# --------------------------------------------------------------------------- 1. YOLO-order text
def test_perfect_predictions_score_one_in_every_format(cli, tmp_path):
    """Exact predictions written as YOLO, text, COCO JSON and JSONL: AP 1.0 each (YOLO failed before: 0.0)."""
    images, anns = make_scene(np.random.default_rng(1))
    gt = write_gt(tmp_path, images, anns)
    preds = perfect_predictions(tmp_path, images, anns)
    for fmt, path in preds.items():
        args = ["--pred-format", fmt] if fmt in ("yolo", "text") else []
        data = eval_json(cli, gt, path, *args)
        assert data["stats"]["AP"] == pytest.approx(1.0, abs=1e-9), fmt
        voc = eval_json(cli, gt, path, "--metric", "voc", "--iou", "0.9", *args)
        assert voc["mAP"]["0.9"] == pytest.approx(1.0, abs=1e-12), fmt
    # auto: an Ultralytics-style labels/ folder is YOLO
    assert eval_json(cli, gt, preds["yolo"])["stats"]["AP"] == pytest.approx(1.0, abs=1e-9)


def test_yolo_labels_of_a_detect_run_are_recognised(cli, tmp_path):
    """auto picks yolo for detect --format yolo's labels/ (its run.json says so) and maps indices by its classes."""
    images, anns = make_scene(np.random.default_rng(2))
    gt = write_gt(tmp_path, images, anns)
    preds = perfect_predictions(tmp_path, images, anns)
    run = tmp_path / "dets"
    run.mkdir()
    preds["yolo"].rename(run / "labels")
    # the detector's class order is the reverse of the ground truth's: indices go through run.json's names
    for f in (run / "labels").glob("*.txt"):
        f.write_text("".join(f"{1 - int(ln.split()[0])} {ln.split(' ', 1)[1]}\n" for ln in f.read_text().splitlines()))
    (run / "run.json").write_text(json.dumps({"command": "detect", "args": {"fmt": "yolo", "gt": None},
                                              "classes": CLASSES[::-1]}))
    assert eval_json(cli, gt, run / "labels")["stats"]["AP"] == pytest.approx(1.0, abs=1e-9)
    # a plain folder of text files: the layout cannot be told -> usage error naming both choices
    res = cli(["eval", "--gt", gt, "--pred", preds["text"]])
    assert res.exit_code == 2 and "--pred-format text" in res.stderr and "yolo" in res.stderr


def test_wrong_text_layout_is_refused_naming_file_and_layout(cli, tmp_path):
    """YOLO files read as text and text files read as YOLO end in exit 1 naming the file; never a score."""
    images, anns = make_scene(np.random.default_rng(3))
    gt = write_gt(tmp_path, images, anns)
    preds = perfect_predictions(tmp_path, images, anns)
    res = cli(["eval", "--gt", gt, "--pred", preds["yolo"], "--pred-format", "text"])
    assert res.exit_code == 1, res.output
    assert "img_" in res.stderr and "--pred-format yolo" in res.stderr and "Traceback" not in res.output
    res = cli(["eval", "--gt", gt, "--pred", preds["text"], "--pred-format", "yolo"])
    assert res.exit_code == 1 and "img_" in res.stderr and "--pred-format text" in res.stderr
    # a YOLO line whose columns happen to read as a valid (tiny) text box: caught over the whole set
    one = tmp_path / "one"
    one.mkdir()
    (one / "img_001.txt").write_text("0 0.3 0.4 0.2 0.5 0.9\n")
    res = cli(["eval", "--gt", gt, "--pred", one, "--pred-format", "text"])
    assert res.exit_code == 1 and "--pred-format yolo" in res.stderr
    # scores outside [0, 1], boxes outside the image, negative sizes: each names file and line
    for line, text in (("cell 1.5 10 10 50 50", "score 1.5"), ("cell 0.5 10 10 700 50", "outside the 640x480"),
                       ("cell 0.5 50 10 10 50", "negative")):
        (one / "img_001.txt").write_text("cell 0.5 1 1 20 20\n" + line + "\n")
        res = cli(["eval", "--gt", gt, "--pred", one, "--pred-format", "text"])
        assert res.exit_code == 1 and "img_001.txt:2" in res.stderr and text in res.stderr, res.stderr


# --------------------------------------------------------------------------- 2. untrustworthy image ids
def test_coco_results_matched_by_file_name_or_refused(cli, tmp_path):
    images, anns = make_scene(np.random.default_rng(4))
    gt = write_gt(tmp_path, images, anns)
    results = json.loads(perfect_predictions(tmp_path, images, anns)["coco"].read_text())
    # ids 1..N in input order (detect without --gt) plus file names: matched by name, AP 1.0
    order = {im["id"]: n for n, im in enumerate(images, start=1)}
    names = {im["id"]: im["file_name"].split("/")[-1] for im in images}
    renumbered = [{**r, "image_id": order[r["image_id"]], "file_name": names[r["image_id"]]} for r in results]
    run = tmp_path / "run"
    run.mkdir()
    (run / "detections.json").write_text(json.dumps(renumbered))
    (run / "run.json").write_text(json.dumps({"command": "detect", "args": {"gt": None}}))
    assert eval_json(cli, gt, run / "detections.json")["stats"]["AP"] == pytest.approx(1.0, abs=1e-9)
    # the same ids without file names from a detect run without --gt: refused with the reason
    (run / "detections.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "file_name"}
                                                     for r in renumbered]))
    res = cli(["eval", "--gt", gt, "--pred", run / "detections.json"])
    assert res.exit_code == 1 and "without --gt" in res.stderr and "detections.jsonl" in res.stderr
    # ids the ground truth does not have: an error with counts, not dropped
    stray = results + [{**results[0], "image_id": 7}, {**results[1], "image_id": 8}, {**results[2], "image_id": 7}]
    (tmp_path / "stray.json").write_text(json.dumps(stray))
    res = cli(["eval", "--gt", gt, "--pred", tmp_path / "stray.json"])
    assert res.exit_code == 1
    assert f"3 of {len(stray)} results refer to 2 image id(s)" in res.stderr


# --------------------------------------------------------------------------- 3. VOC pixel convention
def devkit_voc_eval(gt: dict, dets: list[tuple], cls: str, ovthresh: float, use_07: bool) -> float:
    """The VOC devkit's ``voc_eval`` for one class, transcribed from its documented behaviour.

    ``gt``: image -> list of (class, [xmin, ymin, xmax, ymax], difficult) in
    inclusive pixel indices; ``dets``: (image, class, score, xmin, ymin, xmax, ymax).
    """
    recs = {img: [(np.array(b, float), d) for c, b, d in objs if c == cls] for img, objs in gt.items()}
    claimed = {img: [False] * len(r) for img, r in recs.items()}
    npos = sum(not d for r in recs.values() for _, d in r)
    mine = [d for d in dets if d[1] == cls]
    mine.sort(key=lambda d: -d[2])
    tp, fp = np.zeros(len(mine)), np.zeros(len(mine))
    for i, (img, _, _, *bb) in enumerate(mine):
        ovmax, jmax = -np.inf, -1
        for j, (g, _) in enumerate(recs.get(img, [])):
            iw = max(min(bb[2], g[2]) - max(bb[0], g[0]) + 1.0, 0.0)
            ih = max(min(bb[3], g[3]) - max(bb[1], g[1]) + 1.0, 0.0)
            inter = iw * ih
            union = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) + (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - inter
            if inter / union > ovmax:
                ovmax, jmax = inter / union, j
        if ovmax >= ovthresh:        # VOCevaldet.m: ov >= minoverlap
            if not recs[img][jmax][1]:
                if not claimed[img][jmax]:
                    tp[i], claimed[img][jmax] = 1, True
                else:
                    fp[i] = 1
        else:
            fp[i] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return float(sum((prec[rec >= t].max() if (rec >= t).any() else 0.0) / 11 for t in np.arange(0, 1.1, 0.1)))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def write_voc(folder: Path, gt: dict, sizes: dict) -> Path:
    (folder / "Annotations").mkdir(parents=True)
    for img, objs in gt.items():
        w, h = sizes[img]
        body = "".join(f"<object><name>{c}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin>"
                       f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                       for c, b, d in objs)
        (folder / "Annotations" / f"{img}.xml").write_text(
            f"<annotation><filename>{img}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{body}</annotation>")
    return folder


def random_voc_set(rng: np.random.Generator, n_images: int = 6):
    """Ground truth in 1-based inclusive pixel indices (some difficult) and detections near and far from it."""
    gt, sizes, dets = {}, {}, []
    for i in range(n_images):
        img = f"{i:06d}"
        w, h = int(rng.integers(200, 500)), int(rng.integers(200, 400))
        sizes[img] = (w, h)
        objs = []
        for _ in range(int(rng.integers(1, 6))):
            bw, bh = int(rng.integers(8, w // 2)), int(rng.integers(8, h // 2))
            x1, y1 = int(rng.integers(1, w - bw)), int(rng.integers(1, h - bh))
            objs.append((CLASSES[int(rng.integers(0, 2))], [x1, y1, x1 + bw, y1 + bh], bool(rng.random() < 0.15)))
        gt[img] = objs
        for c, b, _ in objs:
            for _ in range(int(rng.integers(0, 3))):  # near hits (duplicates included), integer pixel indices
                j = rng.integers(-6, 7, size=4)
                x1, y1 = max(1, b[0] + j[0]), max(1, b[1] + j[1])
                x2, y2 = min(w, max(x1, b[2] + j[2])), min(h, max(y1, b[3] + j[3]))
                dets.append((img, c, float(rng.random()), x1, y1, x2, y2))
        for _ in range(int(rng.integers(0, 3))):      # false alarms
            x1, y1 = int(rng.integers(1, w - 20)), int(rng.integers(1, h - 20))
            dets.append((img, CLASSES[int(rng.integers(0, 2))], float(rng.random()), x1, y1,
                         x1 + int(rng.integers(5, 20)), y1 + int(rng.integers(5, 20))))
    return gt, sizes, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_pixels_with_voc_xml_equals_the_devkit(cli, tmp_path, seed):
    """VOC XML ground truth + devkit-convention text detections + --voc-pixels == voc_eval to 1e-6."""
    gt, sizes, dets = random_voc_set(np.random.default_rng(seed))
    root = write_voc(tmp_path / "voc", gt, sizes)
    det_dir = tmp_path / "dets"
    det_dir.mkdir()
    for img in gt:
        (det_dir / f"{img}.txt").write_text("".join(f"{c} {s!r} {x1} {y1} {x2} {y2}\n"
                                                    for i, c, s, x1, y1, x2, y2 in dets if i == img))
    for metric, use_07 in (("voc", False), ("voc11", True)):
        data = eval_json(cli, root, det_dir, "--gt-format", "voc", "--pred-format", "text", "--metric", metric,
                         "--voc-pixels", "--iou", "0.5", "--iou", "0.7")
        assert data["voc_pixels"] is True
        for block in data["thresholds"]:
            for row in block["per_class"]:
                want = devkit_voc_eval(gt, dets, row["name"], block["iou"], use_07)
                assert row["AP"] == pytest.approx(want, abs=1e-6), (metric, block["iou"], row["name"])
    # without the flag the detections are continuous boxes: a note says so, and the numbers differ
    res = cli(["eval", "--gt", root, "--pred", det_dir, "--gt-format", "voc", "--pred-format", "text",
               "--metric", "voc", "--json"])
    assert res.exit_code == 0 and "--voc-pixels" in res.stderr


@pytest.mark.parametrize("method,use_07", [("all-point", False), ("11-point", True)])
def test_voc_sample_text_files_equal_the_devkit(cli, method, use_07):
    """tests/data/voc_sample (`class left top width height`, right = left + width, as Padilla's tools) vs voc_eval."""
    gt, dets = {}, []
    for f in sorted((DATA / "voc_sample" / "ground_truth").glob("*.txt")):
        gt[f.stem] = [(c, [float(x), float(y), float(x) + float(w), float(y) + float(h)], False)
                      for c, x, y, w, h in (ln.split() for ln in f.read_text().splitlines() if ln.strip())]
        d = DATA / "voc_sample" / "detections" / f.name
        dets += [(f.stem, c, float(s), float(x), float(y), float(x) + float(w), float(y) + float(h))
                 for c, s, x, y, w, h in (ln.split() for ln in d.read_text().splitlines() if ln.strip())]
    metric = "voc11" if use_07 else "voc"
    for t in (0.1, 0.3, 0.5, 0.75):
        data = eval_json(cli, DATA / "voc_sample" / "ground_truth", DATA / "voc_sample" / "detections",
                         "--gt-format", "text", "--pred-format", "text", "--box-format", "xywh", "--metric", metric,
                         "--voc-pixels", "--iou", str(t))
        assert data["mAP"][f"{t:g}"] == pytest.approx(devkit_voc_eval(gt, dets, "object", t, use_07), abs=1e-6)


def test_voc_pixels_refused_where_boxes_are_relative(cli, tmp_path):
    images, anns = make_scene(np.random.default_rng(5))
    gt = write_gt(tmp_path, images, anns)
    preds = perfect_predictions(tmp_path, images, anns)
    res = cli(["eval", "--gt", gt, "--pred", preds["yolo"], "--metric", "voc", "--voc-pixels"])
    assert res.exit_code == 2 and "relative" in res.stderr


# --------------------------------------------------------------------------- 4. classes the ground truth lacks
def test_unknown_classes_ignored_with_one_warning_like_pycocotools(cli, tmp_path):
    rng = np.random.default_rng(6)
    images, anns = make_scene(rng, n_images=5)
    gt = write_gt(tmp_path, images, anns)
    results = []
    for a in anns:        # noisy hits and misses of the known classes
        x, y, w, h = (np.array(a["bbox"]) + rng.normal(0, 4, 4)).tolist()
        x, y = min(max(x, 0.0), W - 2.0), min(max(y, 0.0), H - 2.0)
        results.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "bbox": [x, y, min(abs(w), W - x), min(abs(h), H - y)], "score": float(rng.random())})
    extra = [{"image_id": images[k % 5]["id"], "category_id": 3 + k % 2, "bbox": list(anns[k]["bbox"]),
              "score": float(rng.random())} for k in range(7)]   # a detector with more classes
    mixed = results + extra
    rng.shuffle(mixed)
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    res = cli(["eval", "--gt", gt, "--pred", tmp_path / "mixed.json", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ref = pycocotools_stats(gt, results)
    assert np.allclose([data["stats"][k] for k in ("AP", "AP50", "AP75", "AR100")], ref[[0, 1, 2, 8]], atol=1e-6)
    assert data["ignored_predictions"] == {"total": 7, "by_class": {"category id 3": 4, "category id 4": 3}}
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning")]
    assert len(warnings) == 1 and "category id 3: 4" in warnings[0] and "7 prediction(s)" in warnings[0]
    # the same with names, in JSONL and text: ignored and counted by name
    names = {im["id"]: im["file_name"] for im in images}
    lines, text = [], tmp_path / "txt"
    text.mkdir()
    for im in images:
        mine = [r for r in mixed if r["image_id"] == im["id"]]
        cls = [CLASSES[r["category_id"] - 1] if r["category_id"] <= 2 else "zebra" for r in mine]
        lines.append(json.dumps({"file": names[im["id"]], "scores": [r["score"] for r in mine], "names": cls,
                                 "boxes": [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in mine)]}))
        (text / Path(names[im["id"]]).with_suffix(".txt").name).write_text("".join(
            f"{c} {r['score']!r} {x!r} {y!r} {x + w!r} {y + h!r}\n" for c, r in zip(cls, mine)
            for x, y, w, h in [r["bbox"]]))
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    for pred, fmt in ((tmp_path / "mixed.jsonl", "jsonl"), (text, "text")):
        data = eval_json(cli, gt, pred, "--pred-format", fmt)
        assert data["stats"]["AP"] == pytest.approx(ref[0], abs=1e-6), fmt
        assert data["ignored_predictions"] == {"total": 7, "by_class": {"zebra": 7}}, fmt


# --------------------------------------------------------------------------- 6. hostile files
def test_hostile_prediction_files_end_in_one_line_errors(cli, tmp_path, monkeypatch):
    images, anns = make_scene(np.random.default_rng(7))
    gt = write_gt(tmp_path, images, anns)
    good = {"image_id": images[0]["id"], "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}
    cases = {
        "deep.jsonl": '{"file": "a.jpg"}\n' + "[" * 100_000 + "]" * 100_000 + "\n",
        "nan.json": json.dumps([{**good, "score": float("nan")}]),
        "inf.json": json.dumps([{**good, "bbox": [1, 1, float("inf"), 5]}]),
        "huge.json": json.dumps([{**good, "bbox": [1e300, 1, 1e300, 5]}]),
        "bigid.json": json.dumps([{**good, "image_id": 2**70}]),
        "bigcat.json": json.dumps([{**good, "category_id": -(2**70)}]),
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "hugebox.jsonl": json.dumps({"file": images[0]["file_name"], "boxes": [[0, 0, 1e300, 5]], "scores": [0.5],
                                     "labels": [0]}) + "\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        res = cli(["eval", "--gt", gt, "--pred", tmp_path / name])
        assert res.exit_code == 1, (name, res.output)
        assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1, (name, res.stderr)
        assert name in res.stderr, (name, res.stderr)
    assert re.search(r"deep\.jsonl:2: JSON nested too deeply", cli(["eval", "--gt", gt, "--pred",
                                                                     tmp_path / "deep.jsonl"]).stderr)
    # a line longer than the limit is refused before parsing, naming file and line
    import cvtool.datasets.results as results

    monkeypatch.setattr(results, "MAX_LINE_CHARS", 1000)
    (tmp_path / "long.jsonl").write_text(json.dumps({"file": "x.jpg", "pad": "x" * 2000}) + "\n")
    res = cli(["eval", "--gt", gt, "--pred", tmp_path / "long.jsonl"])
    assert res.exit_code == 1 and "long.jsonl:1" in res.stderr and "1000 characters" in res.stderr


def test_deep_jsonl_in_a_real_process(tmp_path):
    """The CLI as a user runs it: one line, exit 1, no traceback, for a 100,000-deep JSONL line."""
    import subprocess
    import sys

    images, anns = make_scene(np.random.default_rng(8))
    gt = write_gt(tmp_path, images, anns)
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    res = subprocess.run([sys.executable, "-m", "cvtool", "eval", "--gt", str(gt), "--pred",
                          str(tmp_path / "deep.jsonl")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "deep.jsonl:1" in res.stderr, res.stderr


def test_class_names_win_over_another_dataset_s_category_ids(cli, tmp_path):
    """A model's category ids number the classes of the dataset it was trained on; its names hold across
    datasets.  detect writes both (JSONL names, COCO category_name): eval maps by name (before: by id,
    so a ground truth numbering the same classes differently scored the wrong classes, exit 0)."""
    images, anns = make_scene(np.random.default_rng(9))
    gt = write_gt(tmp_path, images, anns)
    preds = perfect_predictions(tmp_path, images, anns)
    swap = {1: 2, 2: 1}     # the training set numbered platelet 1 and cell 2
    recs = [json.loads(x) for x in preds["jsonl"].read_text().splitlines()]
    for r in recs:
        r["category_ids"] = [swap[CLASSES.index(n) + 1] for n in r["names"]]
    (tmp_path / "swapped.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert eval_json(cli, gt, tmp_path / "swapped.jsonl")["stats"]["AP"] == pytest.approx(1.0, abs=1e-9)
    results = json.loads(preds["coco"].read_text())
    named = [{**r, "category_id": swap[r["category_id"]], "category_name": CLASSES[r["category_id"] - 1]}
             for r in results]
    (tmp_path / "named.json").write_text(json.dumps(named))
    assert eval_json(cli, gt, tmp_path / "named.json")["stats"]["AP"] == pytest.approx(1.0, abs=1e-9)
    # without names the ids are all there is: the swap shows (no silent fix-up)
    (tmp_path / "ids.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "category_name"}
                                                   for r in named]))
    assert eval_json(cli, gt, tmp_path / "ids.json")["stats"]["AP"] < 0.5


def test_jsonl_record_of_another_image_size_is_refused(cli, tmp_path):
    """A detect record whose width/height differ from the ground truth's image (a phone photo
    read without its EXIF rotation on one side) holds boxes in another pixel frame: refused,
    naming both sizes, instead of scored (it scored without a word before)."""
    images, anns = make_scene(np.random.default_rng(3), n_images=2)
    gt = write_gt(tmp_path, images, anns)
    preds = perfect_predictions(tmp_path, images, anns)
    recs = [json.loads(ln) for ln in preds["jsonl"].read_text().splitlines()]
    for rec in recs:
        rec.update(width=W, height=H)
    preds["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert eval_json(cli, gt, preds["jsonl"])["stats"]["AP"] == pytest.approx(1.0, abs=1e-9)
    recs[1].update(width=H, height=W)
    preds["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = cli(["eval", "--gt", gt, "--pred", preds["jsonl"]])
    assert res.exit_code == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and f"{H}x{W}" in err[0] and f"{W}x{H}" in err[0] and "dets.jsonl:2" in err[0], err


@pytest.mark.parametrize("token", ["²", "٣"])
def test_non_ascii_digit_class_token_is_a_named_error(tmp_path, token):
    """'²'.isdigit() is true but int('²') fails: such a class token is an unknown class, never a bare ValueError."""
    from cvtool.datasets import load_dataset
    from cvtool.datasets.text import read_text_predictions
    from cvtool.errors import BadInputError

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40]}],
                              "categories": [{"id": 1, "name": "cat"}]}))
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.txt").write_text(f"{token} 0.9 10 10 50 50\n")
    with pytest.raises(BadInputError, match="a.txt"):
        read_text_predictions(preds, load_dataset(gt))
    unknown: dict[str, int] = {}
    read_text_predictions(preds, load_dataset(gt), unknown=unknown)
    assert unknown == {token: 1}

"""`cvtool train hog-svm` and `cvtool detect` end to end (outputs checked with pycocotools)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    base = tmp_path_factory.mktemp("detect")
    data, run = base / "data", base / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", "detection", "--out", str(data), "--count", "40", "--seed", "7",
                              "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "hog-svm", "--data", str(data), "--out", str(run), "--mine-rounds", "1",
                              "--negatives", "6", "--jobs", "1", "--json"])
    assert res.exit_code == 0, res.output
    return data, run, res


def test_train_writes_model_rounds_and_manifest(trained):
    data, run, res = trained
    summary = json.loads(res.stdout.splitlines()[-1])
    rounds = json.loads((run / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1] and rounds == summary["rounds"]
    assert rounds[1]["hard_negatives_added"] > 0
    assert rounds[1]["negatives"] == rounds[0]["negatives"] + rounds[1]["hard_negatives_added"]
    assert 0 <= rounds[1]["val_AP50"] <= 1 and "val_AP" in rounds[0]
    assert "round 1:" in res.stderr and "training accuracy" in res.stderr
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["kind"] == "hog-svm" and manifest["command"] == "train hog-svm"
    with np.load(run / "model.npz", allow_pickle=False) as z:
        assert str(z["kind"]) == "hog-svm"
        assert z["classes"].tolist() == [f"{d}" for d in range(10)]


def test_detect_outputs_feed_pycocotools(cli, trained, tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data, run, _ = trained
    images = tmp_path / "images"
    shutil.copytree(data / "test" / "images", images)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "dets"
    res = cli(["detect", images, "--model", run, "--out", out, "--gt", data, "--split", "test", "--draw",
               "--format", "yolo", "--conf", "0.2", "--json"])
    assert res.exit_code == 1  # the broken image
    assert "broken.png" in res.stderr
    n_images = len(list((data / "test" / "images").glob("*.png")))
    records = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert len(records) == n_images
    assert {"file", "width", "height", "boxes", "scores", "labels", "names", "category_ids"} <= set(records[0])
    stdout = [json.loads(x) for x in res.stdout.splitlines()]
    assert stdout[:-1] == records and stdout[-1]["summary"]["failed"] == 1
    # COCO results: image ids from --gt, loadable and scorable by pycocotools
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(data / "test" / "annotations.json"))
        dt = gt.loadRes(str(out / "detections.json"))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[1] > 0.5  # AP50 of a model trained on 40 canvases
    n_dets = sum(len(r["scores"]) for r in records)
    assert len(json.loads((out / "detections.json").read_text())) == n_dets
    # YOLO labels: one file per image, class cx cy w h score (normalised)
    first = records[0]
    lines = (out / "labels" / first["file"]).with_suffix(".txt").read_text().splitlines()
    assert len(lines) == len(first["scores"])
    if lines:
        k, cx, cy, w, h, s = (float(v) for v in lines[0].split())
        x1, y1, x2, y2 = first["boxes"][0]
        assert k == first["labels"][0] and abs(cx - (x1 + x2) / 2 / first["width"]) < 1e-5
        assert abs(s - first["scores"][0]) < 1e-5
    assert len(list((out / "drawn").glob("*.png"))) == n_images
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"]["failed"] == 1 and manifest["kind"] == "hog-svm"
    again = cli(["detect", images, "--model", run, "--out", out])
    assert again.exit_code == 2 and "exists" in again.stderr


def test_detect_without_gt_numbers_images_in_order(cli, trained, tmp_path):
    data, run, _ = trained
    files = sorted((data / "test" / "images").glob("*.png"))[:3]
    out = tmp_path / "d"
    res = cli(["detect", *files, "--model", run / "model.npz", "--out", out, "--conf", "0.01", "--max-det", "2",
               "--batch", "2", "--scale", "1.1", "--min-size", "20", "-q"])
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "detections.json").read_text())
    assert {r["image_id"] for r in results} <= {1, 2, 3}
    records = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [f.name for f in files]
    assert all(len(r["scores"]) <= 2 for r in records)


def test_detect_refuses_non_models(cli, tmp_path, real_gray):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), real_gray[:64, :64])
    np.savez(tmp_path / "m.npz", kind=np.array("nonsense"))
    res = cli(["detect", tmp_path / "a.png", "--model", tmp_path / "m.npz", "--out", tmp_path / "o"])
    assert res.exit_code == 1 and "unknown model kind 'nonsense'" in res.stderr
    res = cli(["detect", tmp_path / "a.png", "--model", tmp_path / "nothing", "--out", tmp_path / "o"])
    assert res.exit_code == 2 and "--model" in res.stderr and "does not exist" in res.stderr  # a usage error (#12)


def test_detect_outputs_evaluate_alike_without_gt(cli, trained, tmp_path):
    """detect without --gt on the last images of the test split: its ids (1..N) are not the ground truth's,
    yet detections.json, detections.jsonl and labels/ (yolo) all score what pycocotools gives with the right ids
    (before: detections.json scored other images' boxes, exit 0; labels/ was read as 'class score a b c d')."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data, run, _ = trained
    gt_path = data / "test" / "annotations.json"
    gt = json.loads(gt_path.read_text())
    files = sorted((data / "test" / "images").glob("*.png"))[-3:]
    out = tmp_path / "d"
    res = cli(["detect", *files, "--model", run, "--out", out, "--format", "yolo", "--conf", "0.05", "-q"])
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "detections.json").read_text())
    assert {r["file_name"] for r in results} <= {f.name for f in files}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    assert all(names[r["category_id"]] == r["category_name"] for r in results)
    by_name = {im["file_name"].split("/")[-1]: im["id"] for im in gt["images"]}
    assert any(r["image_id"] != by_name[r["file_name"]] for r in results)   # the ids really are not the GT's
    # the reference: pycocotools on the ground truth of those images, ids fixed by file name
    keep = {by_name[f.name] for f in files}
    sub = {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
           "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    (tmp_path / "gt.json").write_text(json.dumps(sub))
    fixed = [{**r, "image_id": by_name[r["file_name"]]} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco_gt, coco_gt.loadRes(fixed), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[1] > 0.3
    for pred in (out / "detections.json", out / "detections.jsonl", out):
        r = cli(["eval", "--gt", tmp_path / "gt.json", "--pred", pred, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["stats"]["AP"] == pytest.approx(ev.stats[0], abs=1e-6), pred
    # labels/ holds 6-decimal relative boxes: equal to within that rounding
    r = cli(["eval", "--gt", tmp_path / "gt.json", "--pred", out / "labels", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stats"]["AP"] == pytest.approx(ev.stats[0], abs=2e-3)
    # an older detections.json without file names, beside a run.json without --gt: refused, not scored
    (out / "detections.json").write_text(json.dumps([{k: v for k, v in x.items() if k != "file_name"}
                                                     for x in results]))
    r = cli(["eval", "--gt", tmp_path / "gt.json", "--pred", out / "detections.json"])
    assert r.exit_code == 1 and "without --gt" in r.stderr


def test_detect_with_gt_maps_classes_by_name(cli, trained, tmp_path):
    """--gt numbering the model's classes differently: detections.json takes the ground truth's ids by class
    name (before: the model's ids were kept whenever they existed in the ground truth, naming other classes)."""
    data, run, _ = trained
    gt = json.loads((data / "test" / "annotations.json").read_text())
    ids = sorted(c["id"] for c in gt["categories"])
    flip = dict(zip(ids, ids[::-1]))           # the same ids, in reverse order of the names
    gt["categories"] = [{**c, "id": flip[c["id"]]} for c in gt["categories"]]
    gt["annotations"] = [{**a, "category_id": flip[a["category_id"]]} for a in gt["annotations"]]
    (data / "test" / "renumbered.json").write_text(json.dumps(gt))
    out = tmp_path / "d"
    res = cli(["detect", data / "test" / "images", "--model", run, "--out", out, "--gt",
               data / "test" / "renumbered.json", "--conf", "0.2", "-q"])
    assert res.exit_code == 0, res.stderr
    names = {c["id"]: c["name"] for c in gt["categories"]}
    records = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    pairs = [(names[k], n) for r in records for k, n in zip(r["category_ids"], r["names"])]
    assert pairs and all(a == b for a, b in pairs)
    results = json.loads((out / "detections.json").read_text())
    assert len(results) == len(pairs) and all(names[r["category_id"]] == r["category_name"] for r in results)

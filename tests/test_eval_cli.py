"""`cvtool eval` end to end: formats, outputs (JSON, table, CSV, plots) and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
COCO_GT = DATA / "coco100" / "ground_truth.json"
COCO_DT = DATA / "coco100" / "detections.json"
COCO100_AP = 0.503647


def run_json(cli, args):
    result = cli(["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_coco_results_json(cli):
    result = cli(["eval", "--gt", COCO_GT, "--pred", COCO_DT, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)            # stdout holds exactly one JSON document
    assert data["metric"] == "coco"
    assert data["stats"]["AP"] == pytest.approx(COCO100_AP, abs=1e-6)
    assert set(data["stats"]) >= {"AP50", "AR100", "ARl", "AR50", "AR75"}
    assert len(data["per_class"]) == 80
    assert "person" not in result.stderr and "AP75" not in result.stderr   # --json replaces the table


def test_table_is_the_result_on_stdout(cli, tmp_path):
    """The table is data: on stdout (JSON replaces it); logs stay on stderr.  A real process, then CliRunner."""
    import subprocess
    import sys

    args = ["eval", "--gt", str(COCO_GT), "--pred", str(COCO_DT)]
    res = subprocess.run([sys.executable, "-m", "cvtool", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "person" in res.stdout and "AP75" in res.stdout and "0.5036" in res.stdout
    assert "person" not in res.stderr and "0.5036" not in res.stderr
    quiet = cli(args + ["--quiet"])
    assert quiet.stdout == res.stdout and quiet.stderr == ""      # --quiet silences logs, not the result
    assert json.loads(cli(args + ["--json"]).stdout)["stats"]["AP"] == pytest.approx(COCO100_AP, abs=1e-6)


def test_detect_jsonl_matched_by_base_name(cli, tmp_path):
    gt = json.loads(COCO_GT.read_text())
    dets = json.loads(COCO_DT.read_text())
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    cats = sorted(c["id"] for c in gt["categories"])
    lines = []
    for image_id in sorted(names):
        mine = [d for d in dets if d["image_id"] == image_id]
        if not mine and image_id % 2:
            continue                                   # some images without a record
        boxes = [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (d["bbox"] for d in mine)]
        lines.append(json.dumps({"file": f"somewhere/{names[image_id]}", "width": sizes[image_id][0],
                                 "height": sizes[image_id][1], "boxes": boxes,
                                 "scores": [d["score"] for d in mine],
                                 "labels": [cats.index(d["category_id"]) for d in mine]}))
    lines.append(json.dumps({"summary": {"ok": len(lines)}}))
    path = tmp_path / "detections.jsonl"
    path.write_text("\n".join(lines) + "\n")
    data = run_json(cli, ["--gt", COCO_GT, "--pred", tmp_path])   # the detect folder works too
    assert data["stats"]["AP"] == pytest.approx(COCO100_AP, abs=1e-6)


def voc_sample_files(tmp_path: Path) -> tuple[Path, Path]:
    """voc_sample as a COCO ground-truth JSON and a detect-style JSONL with class names."""
    images, anns, lines = [], [], []
    for i, f in enumerate(sorted((DATA / "voc_sample" / "ground_truth").glob("*.txt")), start=1):
        images.append({"id": i, "file_name": f"images/{f.stem}.png", "width": 200, "height": 200})
        for line in f.read_text().split("\n"):
            if line.strip():
                _, x, y, w, h = line.split()
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1,
                             "bbox": [float(x), float(y), float(w), float(h)], "iscrowd": 0})
        rows = [ln.split() for ln in (DATA / "voc_sample" / "detections" / f.name).read_text().split("\n") if ln.strip()]
        lines.append(json.dumps({"file": f"images/{f.stem}.png",
                                 "boxes": [[float(x), float(y), float(x) + float(w), float(y) + float(h)]
                                           for _, _, x, y, w, h in rows],
                                 "scores": [float(r[1]) for r in rows], "names": ["object"] * len(rows)}))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}))
    pred = tmp_path / "dets.jsonl"
    pred.write_text("\n".join(lines))
    return gt, pred


@pytest.mark.parametrize("metric,expected", [
    ("voc", {"0.1": 0.3371980676, "0.3": 0.2456866804, "0.5": 0.0222222222, "0.75": 0.0}),
    ("voc11", {"0.1": 0.3333333333, "0.3": 0.2683982683, "0.5": 0.0303030303, "0.75": 0.0}),
])
def test_voc_metrics_with_pixel_rule(cli, tmp_path, metric, expected):
    gt, pred = voc_sample_files(tmp_path)
    args = ["--gt", gt, "--pred", pred, "--metric", metric, "--voc-pixels",
            "--iou", "0.1", "--iou", "0.3", "--iou", "0.5", "--iou", "0.75", "--csv", tmp_path / "t.csv"]
    data = run_json(cli, args)
    for t, v in expected.items():
        assert data["mAP"][t] == pytest.approx(v, abs=1e-9)
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 4 and {r["iou"] for r in rows} == {"0.1", "0.3", "0.5", "0.75"}
    assert int(rows[1]["TP"]) + int(rows[1]["FP"]) == 24


def small_coco(tmp_path: Path, keep=(1, 3, 18, 89)) -> tuple[Path, Path]:
    """coco100 cut to a few categories (89 has no ground truth), so plotting stays quick."""
    gt = json.loads(COCO_GT.read_text())
    gt["categories"] = [c for c in gt["categories"] if c["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] in keep]
    dets = [d for d in json.loads(COCO_DT.read_text()) if d["category_id"] in keep]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    return tmp_path / "gt.json", tmp_path / "dt.json"


def test_plots_and_csv(cli, tmp_path):
    from cvtool.eval.coco import evaluate_coco
    from cvtool.eval.inputs import load_ground_truth, load_predictions

    gt, dt = small_coco(tmp_path)
    plots, table = tmp_path / "plots", tmp_path / "per_class.csv"
    result = cli(["eval", "--gt", gt, "--pred", dt, "--plots", plots, "--csv", table, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == ["overall.png", "pr_car.png", "pr_dog.png", "pr_person.png"]   # not hair drier: no ground truth
    with Image.open(plots / "overall.png") as im:
        assert im.size[0] > 500 and im.format == "PNG"
    assert json.loads((plots / "run.json").read_text())["command"] == "eval"
    rows = list(csv.DictReader(table.open()))
    assert [r["name"] for r in rows] == ["person", "car", "dog", "hair drier"] and rows[3]["AP"] == ""
    expected = evaluate_coco(load_ground_truth(gt), load_predictions(dt, load_ground_truth(gt)))
    for row, ref in zip(rows, expected.per_class):
        if ref["num_gt"]:
            assert float(row["AP"]) == ref["AP"] and float(row["AP50"]) == ref["AP50"]
    # outputs exist: refused without --overwrite (exit 2), replaced with it
    again = cli(["eval", "--gt", gt, "--pred", dt, "--plots", plots])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    again = cli(["eval", "--gt", gt, "--pred", dt, "--csv", table])
    assert again.exit_code == 2
    assert cli(["eval", "--gt", gt, "--pred", dt, "--csv", table, "--plots", plots,
                "--overwrite", "-q"]).exit_code == 0


def test_voc_plots(cli, tmp_path):
    gt, pred = voc_sample_files(tmp_path)
    result = cli(["eval", "--gt", gt, "--pred", pred, "--metric", "voc", "--iou", "0.3", "--iou", "0.5",
                  "--plots", tmp_path / "p", "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == ["overall.png", "pr_object.png"]


def test_localization_metric(cli, tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 50, "height": 50} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 4, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                  "categories": [{"id": 3, "name": "a"}, {"id": 4, "name": "b"}]}))
    res = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9},
           {"image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 5], "score": 0.9},
           {"image_id": 2, "category_id": 4, "bbox": [0, 0, 10, 10], "score": 0.1}]
    (tmp_path / "dt.json").write_text(json.dumps(res))
    data = run_json(cli, ["--gt", tmp_path / "gt.json", "--pred", tmp_path / "dt.json", "--metric", "loc"])
    assert data["accuracy"] == 0.5 and data["mean_iou"] == pytest.approx(0.75)
    assert data["iou_hit_rate"] == 0.5 and data["correct"] == 0.5
    data = run_json(cli, ["--gt", tmp_path / "gt.json", "--pred", tmp_path / "dt.json", "--metric", "loc",
                          "--iou", "0.5", "--plots", tmp_path / "p"])
    assert data["iou_hit_rate"] == 1.0
    assert [p.name for p in (tmp_path / "p").glob("*.png")] == ["overall.png"]


def test_bad_input_gives_one_line_errors(cli, tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([{"image_id": 999999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]))
    nan = tmp_path / "nan.json"
    nan.write_text('[{"image_id": 42, "category_id": 1, "bbox": [0, 0, NaN, 1], "score": 1}]')
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([{"image_id": 42, "bbox": [0, 0, 1, 1], "score": 1}]))
    stray = tmp_path / "stray.jsonl"
    stray.write_text(json.dumps({"file": "nope.png", "boxes": [], "scores": [], "labels": []}) + "\n")
    cases = [
        (["--pred", tmp_path / "absent.json"], 2, "absent.json"),  # missing input: usage error (#12)
        (["--pred", bad_json], 1, "not valid JSON"),
        (["--pred", unknown], 1, "image id 999999"),
        (["--pred", nan], 1, "finite"),
        (["--pred", missing], 1, "missing 'category_id'"),
        (["--pred", stray], 1, "nope.png"),
        (["--pred", COCO_DT, "--metric", "map"], 2, "map"),
        (["--pred", COCO_DT, "--metric", "voc", "--iou", "1.5"], 2, "1.5"),
        (["--pred", COCO_DT, "--voc-pixels"], 2, "--voc-pixels"),
    ]
    for args, code, text in cases:
        result = cli(["eval", "--gt", COCO_GT, *args])
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr or text in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_help_has_examples(cli):
    result = cli(["eval", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "--metric" in result.stdout and "stderr" in result.stdout


def test_proposals_metric(cli, tmp_path):
    gt, _ = voc_sample_files(tmp_path)
    # image 00001 has boxes (25,16)-(63,72) and (129,123)-(170,185); propose one exactly, one poorly
    lines = [{"file": "00001.png", "boxes": [[25, 16, 63, 72], [0, 0, 50, 50], [129, 123, 150, 150]]},
             {"summary": {"ok": 1}}]
    props = tmp_path / "proposals.jsonl"
    props.write_text("\n".join(json.dumps(x) for x in lines))
    data = run_json(cli, ["--gt", gt, "--pred", props, "--metric", "proposals", "--counts", "1", "--counts", "3",
                          "--iou", "0.5", "--plots", tmp_path / "p", "--csv", tmp_path / "p.csv"])
    assert data["num_gt"] == 15
    assert data["recall"]["0.5"]["1"] == pytest.approx(1 / 15)
    assert data["recall"]["0.5"]["3"] == pytest.approx(1 / 15)
    assert (tmp_path / "p" / "overall.png").is_file()
    assert next(csv.DictReader((tmp_path / "p.csv").open()))["name"] == "object"


def test_text_box_files(cli):
    voc = DATA / "voc_sample"
    data = run_json(cli, ["--gt", voc / "ground_truth", "--gt-format", "text", "--pred", voc / "detections",
                          "--pred-format", "text", "--box-format", "xywh", "--metric", "voc11", "--voc-pixels",
                          "--iou", "0.1"])
    assert data["mAP"]["0.1"] == pytest.approx(0.3333333333, abs=1e-9)
    bad = cli(["eval", "--gt", voc / "ground_truth", "--gt-format", "text", "--box-format", "xywhz",
               "--pred", voc / "detections"])
    assert bad.exit_code == 2 and "xywhz" in bad.output


def test_several_prediction_sets_compared(cli, tmp_path):
    """One row per --pred; the reference set scores its published AP, a worse copy scores less."""
    import json as _json

    dets = _json.loads(COCO_DT.read_text())
    half = tmp_path / "half" / "detections.json"
    half.parent.mkdir()
    half.write_text(_json.dumps(dets[::2]))
    res = cli(["eval", "--gt", COCO_GT, "--pred", COCO_DT, "--pred", half, "--json"])
    assert res.exit_code == 0, res.output
    data = _json.loads(res.stdout.strip().splitlines()[-1])
    [full, cut] = data["comparison"]
    assert full["name"] == "coco100" and cut["name"] == "half"  # folder names of detections.json
    assert abs(full["stats"]["AP"] - 0.503647) < 1e-6
    assert cut["stats"]["AP"] < full["stats"]["AP"]
    res = cli(["eval", "--gt", COCO_GT, "--pred", COCO_DT, "--pred", half])
    assert "half" in res.stdout and "AP50" in res.stdout and "half" not in res.stderr
    res = cli(["eval", "--gt", COCO_GT, "--pred", COCO_DT, "--pred", half, "--csv", tmp_path / "x.csv"])
    assert res.exit_code == 2

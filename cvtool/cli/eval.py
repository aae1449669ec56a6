"""`cvtool eval`: COCO, VOC, localisation and proposal metrics of predictions against ground truth.

The readable table is the result and goes to stdout (``--json`` prints one
JSON document with named keys there instead); logs and warnings go to stderr
(``--quiet`` silences the logs); ``--csv FILE`` writes the
per-class table; ``--plots DIR`` writes PR curves (one PNG per class and
``overall.png``) and ``DIR/run.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import JsonOpt, Log, OverwriteOpt, QuietOpt, command_args, emit_json, examples, handle_errors
from cvtool.cli.prepare_convert import BoxFormat  # the text-box conventions of prepare convert

EPILOG = examples(
    "cvtool eval --gt data/digits --split test --pred dets/detections.jsonl",
    "cvtool eval --gt annotations.json --pred results.json --json > metrics.json",
    "cvtool eval --gt data/voc --gt-format voc --pred dets/ --metric voc --iou 0.5 --iou 0.75",
    "cvtool eval --gt gt_txt/ --gt-format text --pred det_txt/ --pred-format text --box-format xywh --metric voc11 --voc-pixels",
    "cvtool eval --gt data/loc --split test --pred dets/detections.jsonl --metric loc --iou 0.6",
    "cvtool eval --gt data/test/annotations.json --pred props/proposals.jsonl --metric proposals",
    "cvtool eval --gt annotations.json --pred results.json --plots plots/ --csv per_class.csv --overwrite",
    "cvtool eval --gt data/digits --pred dets/hog-svm --pred dets/single-shot",
    "cvtool eval --gt data/voc --pred runs/detect/predict/labels --pred-format yolo --metric voc",
)


class Metric(str, Enum):
    coco = "coco"
    voc = "voc"
    voc11 = "voc11"
    loc = "loc"
    proposals = "proposals"


class GtFormat(str, Enum):
    auto = "auto"
    coco = "coco"
    yolo = "yolo"
    voc = "voc"
    text = "text"


class PredFormat(str, Enum):
    auto = "auto"
    coco = "coco"
    jsonl = "jsonl"
    text = "text"
    yolo = "yolo"


@dataclass(frozen=True)
class EvalConfig:
    """What the command line asked for."""

    gt: Path
    pred: Path
    metric: str
    iou: tuple[float, ...]
    gt_format: str
    pred_format: str
    split: str
    box_format: str
    relative: bool
    clip: bool
    voc_pixels: bool
    counts: tuple[int, ...]
    plots: Path | None
    csv: Path | None
    overwrite: bool
    image_dir: Path | None = None


def _check_outputs(config: EvalConfig) -> None:
    from cvtool.errors import UsageError

    if config.csv is not None and config.csv.exists() and not config.overwrite:
        raise UsageError(f"{config.csv} exists; pass --overwrite to replace it")
    if config.plots is not None and config.plots.exists():
        if not config.plots.is_dir():
            raise UsageError(f"--plots {config.plots} is a file, not a folder")
        if any(config.plots.glob("*.png")) and not config.overwrite:
            raise UsageError(f"{config.plots} already holds PNG files; pass --overwrite to replace them")
    for t in config.iou:
        if not 0 < t <= 1:
            raise UsageError(f"--iou {t:g} is outside (0, 1]")
    if config.iou and config.metric == "loc" and len(config.iou) > 1:
        raise UsageError("--metric loc takes one --iou threshold")
    if any(n < 1 for n in config.counts):
        raise UsageError(f"--counts must be positive, got {list(config.counts)}")


@dataclass
class EvalRun:
    """A report and what reading the inputs noticed."""

    report: object
    ignored_classes: dict[str, int]
    notes: list[str]

    def to_dict(self) -> dict:
        out = self.report.to_dict()
        if self.ignored_classes:
            out["ignored_predictions"] = {"total": sum(self.ignored_classes.values()),
                                          "by_class": dict(self.ignored_classes)}
        return out


def _pixel_sides(config: EvalConfig, gt_fmt: str, pred_fmt: str) -> tuple[bool, bool]:
    """``--voc-pixels``: which sides to convert from VOC pixel indices (VOC XML already is); refuse relative boxes."""
    from cvtool.errors import UsageError

    if gt_fmt == "yolo" or pred_fmt == "yolo" or config.relative:
        what = "YOLO ground truth" if gt_fmt == "yolo" else "YOLO predictions" if pred_fmt == "yolo" else "--relative"
        raise UsageError(f"--voc-pixels describes boxes given as pixel indices; {what} holds relative values")
    return gt_fmt != "voc", True


def run_eval(config: EvalConfig) -> EvalRun:
    """Load inputs, evaluate; return the report of the chosen metric and the readers' notes."""
    import dataclasses

    from cvtool.eval.inputs import (gt_format_of, load_ground_truth, load_predictions,
                                    load_proposals, pixels_to_continuous, prediction_format)

    gt = load_ground_truth(config.gt, split=config.split, format=config.gt_format, box_format=config.box_format,
                           relative=config.relative, clip=config.clip, images=config.image_dir)
    if config.metric == "proposals":
        from cvtool.eval.proposals import evaluate_proposals

        proposals = load_proposals(config.pred, gt)
        return EvalRun(evaluate_proposals(gt, proposals, counts=config.counts,
                                          iou_thresholds=config.iou or (0.5, 0.7)), {}, [])
    gt_fmt = gt_format_of(config.gt, split=config.split, format=config.gt_format)
    pred_fmt = prediction_format(config.pred, config.pred_format) if Path(config.pred).exists() else "coco"
    notes: list[str] = []
    unknown: dict[str, int] = {}
    covered: set[int] = set()  # ground-truth images with a JSONL record
    pred = load_predictions(config.pred, gt, format=pred_fmt, box_format=config.box_format,
                            relative=config.relative, unknown=unknown, covered=covered)
    if config.voc_pixels:
        gt_side, pred_side = _pixel_sides(config, gt_fmt, pred_fmt)
        if gt_side:
            gt = dataclasses.replace(gt, ann_boxes=pixels_to_continuous(gt.ann_boxes))
        if pred_side:
            pred = dataclasses.replace(pred, boxes=pixels_to_continuous(pred.boxes))
    elif gt_fmt == "voc" and pred_fmt == "text":
        notes.append("VOC XML boxes are pixel indices (read as x1-1, y1-1, x2, y2); the text detections are "
                     "taken as continuous xyxy; if they are pixel indices too (VOC devkit files), pass --voc-pixels")
    if pred_fmt == "jsonl":
        if len(covered) < len(gt.images):
            notes.append(f"the predictions have records for {len(covered)} of the ground truth's {len(gt.images)} "
                         f"images; the other {len(gt.images) - len(covered)} count as images where nothing was "
                         "detected (to score a subset, pass ground truth of those images only)")
    if unknown:
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0])))
        notes.append(f"{sum(unknown.values())} prediction(s) of classes the ground truth does not have were "
                     f"ignored ({listed})")
    if config.metric == "coco":
        from cvtool.eval.coco import CocoParams, evaluate_coco

        report = evaluate_coco(gt, pred, params=CocoParams(iou_thresholds=config.iou) if config.iou else None)
    elif config.metric in ("voc", "voc11"):
        from cvtool.eval.voc import evaluate_voc

        # --voc-pixels is applied above, by reading both sides as continuous boxes
        report = evaluate_voc(gt, pred, iou_thresholds=config.iou or (0.5,),
                              method="11-point" if config.metric == "voc11" else "all-point")
        report.pixel_rule = config.voc_pixels
    else:
        from cvtool.eval.loc import evaluate_localization

        report = evaluate_localization(gt, pred, iou_threshold=config.iou[0] if config.iou else 0.6)
    return EvalRun(report, unknown, notes)


def write_plots(report, out: Path, *, overwrite: bool) -> list[Path]:
    """PR curve per class plus ``overall.png`` (proposals: the recall curve; loc: IoU histogram)."""
    import numpy as np

    from cvtool.eval import plots
    from cvtool.eval.coco import CocoReport
    from cvtool.eval.loc import LocReport
    from cvtool.eval.voc import VocReport

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if isinstance(report, LocReport):
        title = (f"accuracy {report.accuracy:.3f}, mean IoU {report.mean_iou:.3f}, "
                 f"IoU >= {report.iou_threshold:g}: {report.iou_hit_rate:.3f} ({report.num_images} images)")
        return [plots.plot_localization(report.ious, report.per_class, report.iou_threshold,
                                        out / "overall.png", title=title, overwrite=overwrite)]
    if not isinstance(report, (CocoReport, VocReport)):
        from cvtool.eval.proposals import plot_recall

        path = out / "overall.png"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
        plot_recall(report, path)
        return [path]
    grid = np.linspace(0.0, 1.0, 101)
    per_class: dict[str, list] = {}
    if isinstance(report, CocoReport):
        p = report.accumulation.matches.params
        levels = [(f"IoU {t:g}", t) for t in (0.5, 0.75) if np.any(np.asarray(p.iou_thresholds) == t)]
        levels.append((f"IoU {p.iou_thresholds[0]:g}:{p.iou_thresholds[-1]:g}", None))
        for label, t in levels:
            for name, (rec, prec) in report.pr_curves(iou=t).items():
                per_class.setdefault(name, []).append((f"{label}  AP {prec.mean():.3f}", rec, prec))
        ap = {r["name"]: r["AP"] for r in report.per_class}
        title, ap_label = "COCO", "AP@[.5:.95]"
    else:
        for t in report.iou_thresholds:
            for c in report.per_class[t]:
                if c.num_gt:
                    per_class.setdefault(c.name, []).append((f"IoU {t:g}  AP {c.ap:.3f}", c.recall, c.precision))
        t0 = report.iou_thresholds[0]
        ap = {c.name: c.ap for c in report.per_class[t0]}
        title, ap_label = f"VOC {report.method}", f"AP@{t0:g}"
    stems: dict[str, int] = {}
    jobs = []
    for name, curves in per_class.items():
        stem = plots.safe_file_stem(name)
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}_{stems[stem]}"
        jobs.append((out / f"pr_{stem}.png", f"{title}: {name}", curves))
    written += plots.plot_pr_curves(jobs, overwrite=overwrite)
    # overall: per level, the mean over classes of the interpolated precision
    mean_curves = []
    labels = [lab for lab, *_ in next(iter(per_class.values()), [])]
    for i, label in enumerate(labels):
        stack = [plots.envelope_at(c[i][1], c[i][2], grid) for c in per_class.values() if len(c) > i]
        mean_curves.append((label.split("  ")[0], grid, np.mean(stack, axis=0)))
    written.append(plots.plot_overall(mean_curves, ap, out / "overall.png", title=title, ap_label=ap_label,
                                      overwrite=overwrite))
    return written


def prediction_name(path: Path) -> str:
    """A short name for a prediction set: its folder for detect/selective-search outputs, else its stem."""
    if path.is_dir():
        return path.name
    if path.name in ("detections.jsonl", "detections.json", "proposals.jsonl"):
        return path.parent.name or path.stem
    return path.stem


def _compare(preds: list[Path], *, json_out: bool, log: Log, **fields) -> None:
    """Evaluate several prediction sets against one ground truth; print one row each."""
    from cvtool.eval.report import format_table, json_safe, summary_lines

    names = [prediction_name(p) for p in preds]
    rows, records = [], []
    headers: list[str] = []
    for name, path in zip(names, preds):
        run = run_eval(EvalConfig(pred=path, plots=None, csv=None, overwrite=False, **fields))
        for note in run.notes:
            log.warn(f"{path}: {note}")
        lines = summary_lines(run.report)
        headers = ["predictions"] + [k for k, _ in lines]
        rows.append([name] + [None if isinstance(v, float) and v == -1 else v for _, v in lines])
        records.append({"name": name, "pred": str(path), **run.to_dict()})
    if json_out:
        emit_json(json_safe({"gt": str(fields["gt"]), "split": fields["split"], "comparison": records}))
    else:
        typer.echo(format_table(headers, rows))


@handle_errors
def eval_command(
    gt: Annotated[Path, typer.Option("--gt", exists=True, help="Ground truth: a prepare folder (with --split), a COCO JSON, a YOLO folder or data.yaml, a VOC folder, text box files.", show_default=False)],
    pred: Annotated[list[Path], typer.Option("--pred", exists=True, help="Predictions: COCO results JSON, detect's detections.jsonl (or its folder), text files (class score a b c d), YOLO labels/ (class cx cy w h score), selective-search proposals.jsonl. Repeat to compare several prediction sets in one table.", show_default=False)],
    metric: Annotated[Metric, typer.Option("--metric", "-m", help="coco: 12 COCO stats + AR50/AR75; voc: all-point AP; voc11: 11-point AP; loc: single-object accuracy/IoU; proposals: recall and ABO.")] = Metric.coco,
    iou: Annotated[list[float] | None, typer.Option("--iou", help="IoU threshold(s), repeatable. voc/voc11: default 0.5; loc: default 0.6; proposals: default 0.5 and 0.7; coco: replaces the 0.5:0.95 grid.", show_default=False)] = None,
    gt_format: Annotated[GtFormat, typer.Option("--gt-format", help="Ground-truth format (auto: from the path).")] = GtFormat.auto,
    pred_format: Annotated[PredFormat, typer.Option("--pred-format", help="Prediction format. text: 'class score a b c d' (--box-format, --relative); yolo: 'class cx cy w h score', relative (detect --format yolo, Ultralytics save_txt + save_conf); auto: .jsonl, .json, or yolo for a labels/ folder.")] = PredFormat.auto,
    split: Annotated[str, typer.Option("--split", help="Split of a prepare folder (or of a YOLO data.yaml).")] = "test",
    image_dir: Annotated[Path | None, typer.Option("--image-dir", exists=True, file_okay=False, help="Folder holding the ground truth's images when its annotations are kept apart (flat VOC XML folder, Darknet or YOLO labels without images, COCO JSON elsewhere); needed where sizes come from the images.", show_default=False)] = None,
    box_format: Annotated[BoxFormat, typer.Option("--box-format", help="Box values of text files (--gt-format/--pred-format text): lines 'class (score) a b c d'.")] = BoxFormat.xyxy,
    relative: Annotated[bool, typer.Option("--relative", help="Text box values are divided by the image size.")] = False,
    clip: Annotated[bool, typer.Option("--clip", help="Clip ground-truth boxes sticking out of their image instead of refusing them.")] = False,
    voc_pixels: Annotated[bool, typer.Option("--voc-pixels", help="Boxes are VOC pixel indices (inclusive, as the VOC devkit reads and writes them): widths are x2 - x1 + 1. VOC XML ground truth always is; with this flag every other pixel box source (text, COCO, JSONL) is read so too. voc/voc11 only.")] = False,
    counts: Annotated[list[int] | None, typer.Option("--counts", help="proposals: numbers of proposals to report recall at (default 100 500 1000 2000).", show_default=False)] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Folder for PR-curve PNGs (one per class, overall.png) and run.json.", show_default=False)] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the per-class table as CSV.", show_default=False)] = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score predictions against ground truth: COCO mAP, VOC AP, localisation, proposal recall.

    The table is printed on stdout (--json prints one JSON document instead);
    logs and warnings go to stderr.  COCO numbers equal pycocotools' (images
    and categories of the ground truth; -1 marks undefined values).
    Predictions of classes the ground truth lacks are ignored with a warning
    (counted in the JSON under ignored_predictions).  Detection JSONL records,
    and COCO results that carry a file_name (detect writes one), are matched
    to ground-truth images by file name (exact relative path, else unique
    base name); class names (JSONL names, COCO category_name) win over
    category ids.  Text predictions whose columns do not fit the chosen
    --pred-format are refused (exit 1).
    """
    from cvtool.errors import UsageError
    from cvtool.eval.report import format_table, json_safe, per_class_table, summary_lines, to_csv
    from cvtool.io.atomic import atomic_write_text
    from cvtool.io.manifest import now_iso, write_manifest

    started = now_iso()
    log = Log(quiet)
    if voc_pixels and metric not in (Metric.voc, Metric.voc11):
        raise UsageError("--voc-pixels applies to --metric voc or voc11 only")
    if counts and metric != Metric.proposals:
        raise UsageError("--counts applies to --metric proposals only")
    if len(pred) > 1:
        if plots is not None or csv is not None:
            raise UsageError("--plots and --csv take one --pred; run eval once per prediction set for them")
        _compare(pred, gt=gt, metric=metric.value, iou=tuple(iou or ()), gt_format=gt_format.value,
                 pred_format=pred_format.value, split=split, box_format=box_format.value, relative=relative,
                 clip=clip, voc_pixels=voc_pixels, counts=tuple(counts or (100, 500, 1000, 2000)),
                 image_dir=image_dir, json_out=json_out, log=log)
        return
    pred = pred[0]
    config = EvalConfig(gt=gt, pred=pred, metric=metric.value, iou=tuple(iou or ()), gt_format=gt_format.value,
                        pred_format=pred_format.value, split=split, box_format=box_format.value, relative=relative,
                        clip=clip, voc_pixels=voc_pixels,
                        counts=tuple(counts or (100, 500, 1000, 2000)), plots=plots, csv=csv, overwrite=overwrite,
                        image_dir=image_dir)
    _check_outputs(config)
    run = run_eval(config)
    report = run.report
    for note in run.notes:
        log.warn(note)
    headers, rows = per_class_table(report)
    if not json_out:
        width = max(len(k) for k, _ in summary_lines(report))
        summary = [f"{k.ljust(width)}  {v if isinstance(v, int) else 'n/a' if v is None or v != v or v == -1 else f'{v:.4f}'}"
                   for k, v in summary_lines(report)]
        typer.echo("\n".join([format_table(headers, rows), "", *summary]))
    if csv is not None:
        atomic_write_text(csv, to_csv(headers, rows), overwrite=overwrite)
        log.info(f"per-class table -> {csv}")
    if plots is not None:
        written = write_plots(report, plots, overwrite=overwrite)
        write_manifest(plots, command="eval", args=command_args(dict(config.__dict__)), seed=None,
                       started=started, finished=now_iso(), counts={"plots": len(written)})
        log.info(f"{len(written)} plot(s) -> {plots}")
    if json_out:
        data = {"gt": str(gt), "pred": str(pred), "split": split, **run.to_dict()}
        emit_json(json_safe(data))

"""`cvtool detect`: run any cvtool detector (HOG+SVM, localiser, R-CNN, single-shot) over images."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer

from cvtool.cli.common import (InputsArg, JsonOpt, MaxPixelsOpt, OverwriteOpt, QuietOpt, RecursiveOpt, command_args,
                               emit_json, examples, handle_errors)

EPILOG = examples(
    "cvtool detect data/digits/test/images --model runs/hog --out dets/",
    "cvtool detect data/digits/test/images --model runs/ss/weights/best.pt --out dets/ --draw --conf 0.3",
    "cvtool detect photos/ --model runs/hog/model.npz --out dets/ --format yolo --max-det 20",
    "cvtool detect data/digits/test/images --model runs/rcnn --out dets/ --gt data/digits --split test",
    "cvtool eval --gt data/digits --split test --pred dets/detections.json",
)

JSONL_NAME = "detections.jsonl"
COCO_NAME = "detections.json"
LABELS_DIR = "labels"
DRAWN_DIR = "drawn"


class DetectFormat(str, Enum):
    """Extra output format (JSONL and COCO results are always written)."""

    coco = "coco"
    jsonl = "jsonl"
    yolo = "yolo"


@dataclass(frozen=True)
class DetectConfig:
    """Settings of one detect run."""

    model: Path
    out: Path
    conf: float | None
    iou: float | None
    max_det: int
    draw: bool
    fmt: str
    gt: Path | None
    split: str
    batch: int
    device: str
    max_pixels: int
    overwrite: bool
    pyramid: tuple[tuple[str, float], ...] = ()


def yolo_lines(det: Any, width: int, height: int) -> str:
    """``class cx cy w h score`` per detection, box normalised to the image (YOLO's convention)."""
    import numpy as np

    from cvtool.boxes import convert

    if len(det.scores) == 0:
        return ""
    b = convert(np.asarray(det.boxes, np.float64), "xyxy", "cxcywhn", image_size=(width, height))
    return "".join(f"{int(k)} {x:.6f} {y:.6f} {w:.6f} {h:.6f} {float(s):.6f}\n"
                   for k, (x, y, w, h), s in zip(det.labels, b, det.scores))


class GtIds:
    """Image ids from ``--gt`` (matched by file name) or 1, 2, ... in input order."""

    def __init__(self, gt_path: Path | None, split: str, model: Any, log: Any) -> None:
        self.matcher = None
        self.next_id = 1
        self.log = log
        self.category_ids = [int(c) for c in model.category_ids]
        if gt_path is None:
            return
        from cvtool.datasets import load_dataset
        from cvtool.datasets.results import FileMatcher
        from cvtool.errors import UsageError

        gt = load_dataset(gt_path, split=split)
        self.matcher = FileMatcher(gt)
        known = {c.id: c.name for c in gt.categories}
        by_name = {c.name: c.id for c in gt.categories}
        if any(str(n) in by_name for n in model.classes):   # names hold across datasets, ids need not
            extra = [str(n) for n in model.classes if str(n) not in by_name]
            spare = iter(range(max(known, default=0) + 1, max(known, default=0) + 1 + len(extra)))
            ids = [by_name[str(n)] if str(n) in by_name else next(spare) for n in model.classes]
            if ids != self.category_ids:
                log.info("category ids taken from the ground truth by class name")
            if extra:
                log.warn(f"--gt {gt_path}: the model's classes {', '.join(extra)} are not categories of the "
                         "ground truth; their detections get ids the ground truth does not use")
            self.category_ids = ids
        elif all(c in known for c in self.category_ids):
            log.warn(f"--gt {gt_path}: the model's class names are not all categories of the ground truth; "
                     "its category ids are used as they are")
        else:
            missing = next(str(n) for n in model.classes if str(n) not in by_name)
            raise UsageError(f"--gt {gt_path}: the model's class {missing!r} is not a category of the "
                             "ground truth (by id or name)")

    def __call__(self, rel: str) -> int | None:
        if self.matcher is None:
            self.next_id += 1
            return self.next_id - 1
        from cvtool.errors import BadInputError

        try:
            return self.matcher(rel, where="--gt")
        except BadInputError as exc:
            self.log.warn(f"{exc}; left out of {COCO_NAME}")
            return None


def _read(item, max_pixels: int):
    from cvtool.io.images import read_image

    img = read_image(item.path, max_pixels=max_pixels)
    if img.dtype != "uint8":
        raise ValueError(f"{item.path}: detectors take 8-bit images, got {img.dtype}")
    return img


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run_detect(config: DetectConfig, items: list, *, log: Any, json_out: bool, quiet: bool) -> dict[str, Any]:
    """Detect over ``items`` (InputFile), writing every output; returns counts and failures."""
    import json

    import numpy as np

    from cvtool.cli.common import progress_bar
    from cvtool.datasets.core import Predictions
    from cvtool.datasets.results import coco_results, detection_record
    from cvtool.detectors import load_detector
    from cvtool.io.atomic import atomic_open, atomic_write_text

    model = load_detector(config.model, device=config.device)
    log.info(f"{model.kind} model {config.model}: {len(model.classes)} classes")
    if config.pyramid and model.kind != "hog-svm":
        from cvtool.errors import UsageError

        raise UsageError(f"--scale/--min-size/--max-size set the HOG+SVM pyramid; {config.model} is a "
                         f"{model.kind!r} model")
    ids = GtIds(config.gt, config.split, model, log)
    cat_ids = np.array(ids.category_ids, np.int64)
    kwargs: dict[str, Any] = {"max_detections": config.max_det, **dict(config.pyramid)}
    if config.conf is not None:
        kwargs["score_threshold"] = config.conf
    if config.iou is not None:
        kwargs["iou_threshold"] = config.iou
    failures: list[dict[str, str]] = []
    ok = 0
    n_dets = 0
    n_coco = 0
    # Both files stream (memory stays flat with the folder size) and appear atomically at the end.
    with atomic_open(config.out / JSONL_NAME, "w", overwrite=config.overwrite) as jsonl, \
            atomic_open(config.out / COCO_NAME, "w", overwrite=config.overwrite) as coco, \
            progress_bar(len(items), "detect", quiet=quiet) as advance:
        for batch in _batches(items, config.batch):
            images, good = [], []
            for item in batch:
                try:
                    images.append(_read(item, config.max_pixels))
                    good.append(item)
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                    failures.append({"path": str(item.path), "reason": str(exc)})
                    log.error(str(exc))
            advance(len(batch) - len(good))
            if not images:
                continue
            dets = model.predict(images, **kwargs)
            for item, img, det in zip(good, images, dets):
                h, w = img.shape[:2]
                rel = str(item.rel)
                rec = detection_record(rel, det, width=w, height=h, class_names=list(model.classes),
                                       category_ids=list(cat_ids))
                jsonl.write(json.dumps(rec, separators=(",", ":")) + "\n")
                jsonl.flush()
                if json_out:
                    emit_json(rec)
                image_id = ids(rel)
                if image_id is not None and len(det.scores):
                    k = len(det.scores)
                    part = Predictions(image_ids=np.full(k, image_id, np.int64), boxes=np.asarray(det.boxes),
                                       scores=np.asarray(det.scores),
                                       labels=cat_ids[np.asarray(det.labels, np.int64)])
                    for entry, k in zip(coco_results(part), np.asarray(det.labels, np.int64)):
                        # eval matches by these names when the ids are not the ground truth's
                        entry["file_name"] = rel
                        entry["category_name"] = str(model.classes[int(k)])
                        coco.write(("[" if n_coco == 0 else ",") + json.dumps(entry, separators=(",", ":")))
                        n_coco += 1
                if config.fmt == "yolo":
                    atomic_write_text(config.out / LABELS_DIR / Path(*PurePosixPath(rel).with_suffix(".txt").parts),
                                      yolo_lines(det, w, h), overwrite=config.overwrite)
                if config.draw:
                    from cvtool.draw import draw_boxes
                    from cvtool.io.images import write_image

                    pic = draw_boxes(img if img.ndim == 2 or img.shape[2] != 4 else img[:, :, :3], det.boxes,
                                     labels=det.labels, scores=det.scores, names=list(model.classes),
                                     thickness=1 if max(w, h) < 400 else 2)
                    write_image(config.out / DRAWN_DIR / Path(*PurePosixPath(rel).parts), pic,
                                overwrite=config.overwrite)
                ok += 1
                n_dets += len(det.scores)
            advance(len(good))
        coco.write(("[" if n_coco == 0 else "") + "]\n")
    return {"kind": model.kind, "ok": ok, "failed": len(failures), "detections": n_dets, "failures": failures,
            "classes": list(model.classes)}


@handle_errors
def detect_command(
    inputs: InputsArg,
    model: Annotated[Path, typer.Option("--model", "-m", exists=True, help="Model file or run folder of any detector kind (read from the file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help=f"Output folder: {JSONL_NAME}, {COCO_NAME}, {LABELS_DIR}/, {DRAWN_DIR}/, run.json.")],
    conf: Annotated[float | None, typer.Option("--conf", help="Score threshold (default: the model's).", min=0.0, max=1.0)] = None,
    iou: Annotated[float | None, typer.Option("--iou", help="NMS IoU threshold (default: the model's).", min=0.0, max=1.0)] = None,
    max_det: Annotated[int, typer.Option("--max-det", help="Most detections kept per image.", min=1)] = 100,
    draw: Annotated[bool, typer.Option("--draw", help=f"Write pictures with the boxes under {DRAWN_DIR}/.")] = False,
    fmt: Annotated[DetectFormat, typer.Option("--format", help=f"yolo: also write {LABELS_DIR}/*.txt (class cx cy w h score, normalised). {JSONL_NAME} and {COCO_NAME} are always written.")] = DetectFormat.coco,
    gt: Annotated[Path | None, typer.Option("--gt", exists=True, help=f"Ground truth whose image ids {COCO_NAME} uses (matched by file name; default ids 1..N in input order).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split of a prepare folder given as --gt.")] = "test",
    batch: Annotated[int, typer.Option("--batch", help="Images per predict call (on the device for CNN models).", min=1)] = 16,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (HOG+SVM always runs on the CPU).")] = "auto",
    scale: Annotated[float | None, typer.Option("--scale", help="HOG+SVM: pyramid step (default: the model's, 1.05).", min=1.001)] = None,
    min_size: Annotated[float | None, typer.Option("--min-size", help="HOG+SVM: smallest object height searched, px (default: 0.9x the smallest training box).", min=1.0)] = None,
    max_size: Annotated[float | None, typer.Option("--max-size", help="HOG+SVM: largest object height searched, px (default: 1.1x the largest training box).", min=1.0)] = None,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = 200_000_000,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Detect objects with a trained cvtool model; results stream to JSONL as images are done.

    Writes OUT/detections.jsonl (one record per image: file, width, height,
    boxes xyxy, scores, labels, names, category_ids), OUT/detections.json (COCO
    results with each input's file_name and category_name, for `cvtool eval`,
    which matches them to the ground truth by those names), with --format yolo
    OUT/labels/*.txt, with
    --draw OUT/drawn/*, and OUT/run.json.  Unreadable images are reported and
    skipped; the exit code is then 1.
    """
    from cvtool.cli.common import Log
    from cvtool.errors import UsageError
    from cvtool.io.manifest import now_iso, write_manifest
    from cvtool.io.paths import expand_inputs

    args = command_args(locals())
    started = now_iso()
    log = Log(quiet)
    if min_size is not None and max_size is not None and min_size > max_size:
        raise UsageError(f"--min-size {min_size:g} must not exceed --max-size {max_size:g}")
    problems: list = []  # unreadable folders, broken links: named and counted as failures
    items = expand_inputs(inputs, recursive=recursive, problems=problems)
    for problem in problems:
        log.error(str(problem))
    for name in (JSONL_NAME, COCO_NAME):
        if (out / name).exists() and not overwrite:
            raise UsageError(f"{out / name} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    config = DetectConfig(model=model, out=out, conf=conf, iou=iou, max_det=max_det, draw=draw, fmt=fmt.value,
                          gt=gt, split=split, batch=batch, device=device, max_pixels=max_pixels,
                          overwrite=overwrite,
                          pyramid=tuple((k, v) for k, v in (("scale_step", scale), ("min_size", min_size),
                                                            ("max_size", max_size)) if v is not None))
    result = run_detect(config, items, log=log, json_out=json_out, quiet=quiet)
    if problems:
        result["failures"] = [{"path": str(p.path), "reason": str(p)} for p in problems] + result["failures"]
        result["failed"] += len(problems)
    write_manifest(out, command="detect", args=args, device=device, started=started,
                   counts={"total": len(items) + len(problems), "ok": result["ok"], "failed": result["failed"],
                           "detections": result["detections"]},
                   extra={"kind": result["kind"], "classes": result["classes"]})
    log.info(f"detect: {result['ok']} image(s), {result['detections']} detections, {result['failed']} failed -> {out}")
    if json_out:
        emit_json({"summary": {k: result[k] for k in ("ok", "failed", "detections")}, "out": str(out),
                   "failures": result["failures"]})
    raise typer.Exit(1 if result["failed"] else 0)

"""`cvtool train hog-svm`: HOG + linear SVMs with hard-negative mining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import JsonOpt, QuietOpt, SeedOpt, command_args, emit_json, examples, handle_errors

EPILOG = examples(
    "cvtool prepare detection --out data/digits --seed 0",
    "cvtool train hog-svm --data data/digits --out runs/hog",
    "cvtool train hog-svm --data data/digits --out runs/hog0 --mine-rounds 0 --max-train 300   # quick look",
    "cvtool train hog-svm --data people/ --out runs/ped --window 64x128 --cell 8x8 --context 0.125 --flip",
    "cvtool detect data/digits/test/images --model runs/hog --out dets/ --draw",
)

MODEL_NAME = "model.npz"
ROUNDS_NAME = "rounds.json"


@handle_errors
def train_command(
    data: Annotated[Path, typer.Option("--data", exists=True, help="Dataset: a `prepare detection` folder, COCO JSON, YOLO or VOC folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help=f"Run folder: {MODEL_NAME}, {ROUNDS_NAME}, run.json.")],
    split: Annotated[str, typer.Option("--split", help="Split to train on.")] = "train",
    image_dir: Annotated[Path | None, typer.Option("--image-dir", exists=True, file_okay=False, help="Folder holding the images when the annotations are kept apart (flat VOC XML folder, Darknet or YOLO labels without images, COCO JSON elsewhere).", show_default=False)] = None,
    eval_split: Annotated[str | None, typer.Option("--eval-split", help="Split scored (COCO AP) after each mining round, when present; 'none' to skip.")] = "val",
    window: Annotated[str, typer.Option("--window", help="Window WxH in pixels, or 'auto' (median box plus context, whole block strides).")] = "auto",
    context: Annotated[float, typer.Option("--context", help="Margin around the object on each side, as a fraction of its box.", min=0.0, max=1.0)] = 0.125,
    cell: Annotated[str, typer.Option("--cell", help="HOG cell WxH in pixels.")] = "4x4",
    block: Annotated[str, typer.Option("--block", help="HOG block WxH in cells.")] = "2x2",
    block_stride: Annotated[str, typer.Option("--block-stride", help="HOG block stride WxH in cells (also the window stride).")] = "1x1",
    bins: Annotated[int, typer.Option("--bins", help="Orientation bins.", min=2, max=360)] = 9,
    signed: Annotated[bool, typer.Option("--signed/--unsigned", help="Signed gradients (360 degrees).")] = False,
    sqrt: Annotated[bool, typer.Option("--sqrt/--no-sqrt", help="Gamma compression (square root of intensities).")] = False,
    c: Annotated[float, typer.Option("--C", help="SVM regularisation (smaller: wider margin).", min=1e-9)] = 0.01,
    negatives: Annotated[int, typer.Option("--negatives", help="Random negative windows per training image.", min=0)] = 10,
    neg_iou: Annotated[float, typer.Option("--neg-iou", help="Random negatives overlap every box by less than this IoU.", min=0.0, max=1.0)] = 0.3,
    mine_rounds: Annotated[int, typer.Option("--mine-rounds", help="Hard-negative mining rounds.", min=0)] = 2,
    mine_iou: Annotated[float, typer.Option("--mine-iou", help="False positive: IoU with every box below this.", min=0.0, max=1.0)] = 0.3,
    hard_per_image: Annotated[int, typer.Option("--hard-per-image", help="Hard negatives added per image and round (after NMS).", min=0)] = 20,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Also train on mirrored positives (not for digits or text).")] = False,
    solver: Annotated[str, typer.Option("--solver", help="auto (LinearSVC; SGD above 60000 windows), liblinear or sgd.")] = "auto",
    scale: Annotated[float, typer.Option("--scale", help="Default pyramid step stored for detect.", min=1.001)] = 1.05,
    conf: Annotated[float, typer.Option("--conf", help="Default score threshold stored for detect (calibrated probability).", min=0.0, max=1.0)] = 0.5,
    iou: Annotated[float, typer.Option("--iou", help="Default NMS IoU stored for detect.", min=0.0, max=1.0)] = 0.3,
    max_train: Annotated[int | None, typer.Option("--max-train", help="Train on the first N images only.", min=1)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Threads for the per-class SVMs and scanning.", min=1)] = 2,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=f"Replace an existing {MODEL_NAME}.")] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train one-vs-rest linear SVMs over a shared HOG, with hard-negative mining rounds.

    Positives are the ground-truth boxes cut as fixed-size windows (`prepare
    windows` geometry), negatives random background windows; after each round
    the detector scans the training images and adds its false positives (IoU <
    --mine-iou with every box) as negatives.  Each round's positives, negatives,
    hard negatives added, training accuracy (and COCO AP on --eval-split) go to
    stderr and to rounds.json.
    """
    import json
    from dataclasses import asdict

    from cvtool.cli.common import Log
    from cvtool.cli.hog import parse_size
    from cvtool.errors import UsageError
    from cvtool.io.atomic import atomic_write_text
    from cvtool.io.manifest import now_iso, write_manifest

    args = command_args(locals())
    started = now_iso()
    log = Log(quiet)
    from cvtool.runner.lock import run_folder_lock

    # one run per folder: a second `train` into the same --out is refused with the holder's PID
    with run_folder_lock(out, command="train hog-svm"):
        model_path = out / MODEL_NAME
        if model_path.exists() and not overwrite:
            raise UsageError(f"{model_path} exists; pass --overwrite to replace it")
        from cvtool.detectors.hog_svm import MAX_WINDOW, SOLVERS, HogSvmDetector, evaluate_split, read_split
        from cvtool.hog import HogParams

        if solver not in SOLVERS:
            raise UsageError(f"--solver {solver!r} is not one of {', '.join(SOLVERS)}")
        try:
            params = HogParams(cell=parse_size(cell, "--cell"), block=parse_size(block, "--block"),
                               block_stride=parse_size(block_stride, "--block-stride"), bins=bins, signed=signed,
                               sqrt=sqrt)
            win = None if window.lower() == "auto" else parse_size(window, "--window", MAX_WINDOW)
            if win is not None:
                from cvtool.hog import check_window

                check_window(win, params)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        log.info(f"reading {data} ({split})")
        train = read_split(data, split=split, max_images=max_train, images=image_dir)
        if not train.images:
            raise UsageError(f"{data}: split {split!r} has no images")
        val = None
        if eval_split and eval_split.lower() != "none":
            try:
                val = read_split(data, split=eval_split, images=image_dir)
            except Exception:  # no such split: train without the per-round scores
                log.info(f"no {eval_split!r} split in {data}: rounds are not scored")
        if val is not None:  # one-split layouts (a COCO JSON, a flat VOC folder) read the same files for any split
            trained = {(train.dataset.root / im.file_name) for im in train.dataset.images}
            shared = sum((val.dataset.root / im.file_name) in trained for im in val.dataset.images)
            if shared:
                log.warn(f"--eval-split {eval_split}: {shared} of its {len(val.images)} images are training images "
                         f"of --split {split} (a layout with one split reads the same files for every split name); "
                         "its AP is not a held-out score")
        det = HogSvmDetector(window=win, context=context, hog=params, C=c, negatives_per_image=negatives,
                             neg_iou=neg_iou, mine_rounds=mine_rounds, mine_iou=mine_iou,
                             hard_per_image=hard_per_image, flip=flip, solver=solver, scale_step=scale,
                             score_threshold=conf, iou_threshold=iou, seed=seed, jobs=jobs)
        try:
            det.fit(train.images, train.boxes, train.labels, classes=train.classes, category_ids=train.category_ids,
                    log=log.info)
        except ValueError as exc:
            raise UsageError(f"{data}: {exc}") from None
        except KeyboardInterrupt:
            # HOG+SVM training keeps no checkpoint: it restarts from scratch, and deterministically
            log.warn(f"HOG+SVM training does not resume: nothing was written to {out}; the same command "
                     "starts again from scratch and, with the same --seed, gives the same model")
            raise
        rounds = [asdict(r) for r in det.rounds_]
        if val is not None:
            for r in range(len(det.round_weights_)):
                scores = evaluate_split(det.with_round(r), val)
                rounds[r].update({f"{eval_split}_{k}": v for k, v in scores.items()})
                log.info(f"round {r}: {eval_split} AP {scores['AP']:.3f}, AP50 {scores['AP50']:.3f}, "
                         f"AP75 {scores['AP75']:.3f}")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / ROUNDS_NAME, json.dumps(rounds, indent=2) + "\n", overwrite=True)
        write_manifest(out, command="train hog-svm", args=args, seed=seed, started=started,
                       counts={"images": len(train.images), "boxes": int(sum(len(b) for b in train.boxes)),
                               "classes": len(train.classes)},
                       extra={"kind": "hog-svm", "model": str(model_path), "window": list(det.window_),
                              "rounds": rounds})
        det.save(model_path, overwrite=overwrite)  # last: a model.npz in the folder means a finished run
        log.info(f"model -> {model_path}")
        if json_out:
            emit_json({"out": str(out), "model": str(model_path), "window": list(det.window_), "rounds": rounds})

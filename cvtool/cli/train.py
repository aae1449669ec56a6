"""`cvtool train KIND --data DATASET --out RUN_DIR` (one module per detector kind)."""

from __future__ import annotations

import typer

from cvtool.cli import train_hog_svm, train_localizer, train_rcnn, train_single_shot

app = typer.Typer(
    help="Train a detector: hog-svm, localizer, rcnn or single-shot. "
    "Every kind reads a dataset made by `cvtool prepare` (or COCO/YOLO/VOC) and writes a run folder.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

app.command("hog-svm", epilog=train_hog_svm.EPILOG)(train_hog_svm.train_command)
app.command("localizer", epilog=train_localizer.EPILOG)(train_localizer.train_command)
app.command("rcnn", epilog=train_rcnn.EPILOG)(train_rcnn.train_command)
app.command("single-shot", epilog=train_single_shot.EPILOG)(train_single_shot.train_command)

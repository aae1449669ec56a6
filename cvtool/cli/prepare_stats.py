"""`cvtool prepare stats`: summary of a dataset split (counts, classes, box size and aspect histograms)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import JsonOpt, emit_json, examples, handle_errors

EPILOG = examples(
    "cvtool prepare stats data/digits",
    "cvtool prepare stats data/digits --split test --json",
    "cvtool prepare stats coco/annotations.json --clip",
    "cvtool prepare stats data/voc --format voc",
    "cvtool prepare stats labelimg_xml/ --image-dir photos/",
)


@handle_errors
def stats_command(
    dataset: Annotated[Path, typer.Argument(metavar="DATASET", exists=True, help="Dataset: a prepare folder, a COCO JSON, a YOLO or VOC folder.")],
    split: Annotated[str, typer.Option("--split", help="Split to summarise (folder datasets; a folder "
                                       "without split lists, such as a flat VOC XML folder, is one split: "
                                       "every name reads all of it).")] = "train",
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="coco, yolo, voc or text "
                                            "[default: from the path].")] = None,
    clip: Annotated[bool, typer.Option("--clip", help="Clip boxes sticking out of their image instead of "
                                       "refusing the file.")] = False,
    image_dir: Annotated[Path | None, typer.Option(
        "--image-dir", help="Folder holding the images when the annotations are kept apart (flat VOC XML "
        "folder, Darknet export without images, COCO JSON elsewhere).", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Summarise a dataset: images, images without boxes, boxes per class, box size and aspect histograms.

    Box size is sqrt(width x height) in pixels, aspect is width / height; the
    histograms use fixed bin edges (given in the JSON) so datasets compare bin
    by bin.  The report (or with --json one JSON document) goes to stdout.
    """
    from cvtool.datasets import DATASET_FORMATS, load_dataset
    from cvtool.errors import UsageError
    from cvtool.prepare.stats import dataset_stats, format_stats

    if fmt is not None and fmt not in DATASET_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(DATASET_FORMATS)}")
    ds = load_dataset(dataset, split=split, format=fmt, clip=clip, images=image_dir)
    stats = dataset_stats(ds)
    if json_out:
        emit_json({"dataset": str(dataset), "split": split, **stats})
    else:
        typer.echo(format_stats(stats, title=f"{dataset} ({split})"))

"""`cvtool prepare convert`: rewrite a dataset in another annotation format."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import JsonOpt, OverwriteOpt, QuietOpt, Log, command_args, emit_json, examples, handle_errors

EPILOG = examples(
    "cvtool prepare convert data/digits --to yolo --out data/digits-yolo",
    "cvtool prepare convert data/digits-yolo/data.yaml --to voc --out data/digits-voc --images copy",
    "cvtool prepare convert VOCdevkit/VOC2007 --from voc --to coco --out voc-coco --clip",
    "cvtool prepare convert gt_txt/ --from text --box-format xywh --image-size 200x200 --to coco --out gt-coco",
)


class To(str, Enum):
    coco = "coco"
    yolo = "yolo"
    voc = "voc"
    text = "text"


class From(str, Enum):
    auto = "auto"
    coco = "coco"
    yolo = "yolo"
    voc = "voc"
    text = "text"


class Images(str, Enum):
    link = "link"
    copy = "copy"
    none = "none"


class BoxFormat(str, Enum):
    xyxy = "xyxy"
    xywh = "xywh"
    cxcywh = "cxcywh"


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not WIDTHxHEIGHT (e.g. 640x480)", param_hint="--image-size") \
            from None
    if w <= 0 or h <= 0:
        raise typer.BadParameter(f"{text!r}: width and height must be positive", param_hint="--image-size")
    return w, h


@handle_errors
def convert_command(
    src: Annotated[Path, typer.Argument(exists=True, help="Dataset: prepare folder, COCO JSON, YOLO folder or data.yaml, "
                                        "VOC folder, or text box files.", show_default=False,
                                        metavar="SRC")],
    to: Annotated[To, typer.Option("--to", help="Target format.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (split folders mirror the source).",
                                      show_default=False)],
    source_format: Annotated[From, typer.Option("--from", help="Source format (auto: from the path).")] = From.auto,
    images: Annotated[Images, typer.Option(
        "--images", help="link: hard-link images (copy where links fail); copy; none: annotations only.")
    ] = Images.link,
    clip: Annotated[bool, typer.Option("--clip", help="Clip boxes sticking out of their image instead of "
                                       "refusing the dataset.")] = False,
    box_format: Annotated[BoxFormat, typer.Option(
        "--box-format", help="Box values of text files (read with --from text, written with --to text).")
    ] = BoxFormat.xyxy,
    relative: Annotated[bool, typer.Option(
        "--relative", help="Text box values are divided by the image width/height.")] = False,
    image_size: Annotated[str | None, typer.Option(
        "--image-size", help="WIDTHxHEIGHT of text-file images that cannot be found.")] = None,
    image_dir: Annotated[Path | None, typer.Option(
        "--image-dir", help="Folder holding the source images when the annotations are kept apart (flat VOC "
        "XML folder, Darknet export without images, COCO JSON elsewhere).", show_default=False)] = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convert a dataset between COCO, YOLO, Pascal VOC and text box files.

    Every split folder of SRC (train/val/test) goes to OUT/{split}; a single
    dataset goes to OUT.  Everything is read and validated first, so a bad
    source writes nothing.  VOC stores whole 1-based pixels: boxes written to
    VOC are rounded to the nearest pixel (at most 0.5 px per side); the other
    formats keep full float precision.  Category ids are renumbered 1.. in id
    order by YOLO and VOC (names are kept).  Writes run.json.
    """
    args = command_args(locals())
    from cvtool.datasets.convert import ConvertConfig, convert_dataset
    from cvtool.io.manifest import now_iso, write_manifest

    started = now_iso()
    cfg = ConvertConfig(to=to.value, source_format=None if source_format is From.auto else source_format.value,
                        images=images.value, overwrite=overwrite, clip=clip, box_format=box_format.value,
                        relative=relative, image_size=_parse_size(image_size), image_dir=image_dir)
    summary = convert_dataset(src, out, cfg)
    counts = {"images": sum(s["images"] for s in summary.values()),
              "annotations": sum(s["annotations"] for s in summary.values())}
    write_manifest(out, command="prepare convert", args=args, started=started, counts=counts,
                   extra={"splits": summary})
    log = Log(quiet)
    for name, s in summary.items():
        log.info(f"{name}: {s['images']} images, {s['annotations']} boxes -> {s['written']}")
    if json_out:
        emit_json({"out": str(out), "to": cfg.to, "images_mode": cfg.images, "splits": summary, **counts})

"""`cvtool prepare augment`: N box-aware augmented copies of every image of a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import (JobsOpt, JsonOpt, MaxPixelsOpt, OverwriteOpt, QuietOpt, SeedOpt, Log, command_args,
                               emit_json, examples, handle_errors, progress_bar)
from cvtool.cli.prepare_localization import Format, FormatOpt

EPILOG = examples(
    "cvtool prepare augment data/digits --out data/aug --copies 4",
    "cvtool prepare augment data/digits --split val --out data/aug --rotate 15 --shear 5 --scale 0.8-1.2",
    "cvtool prepare augment coco/annotations.json --out aug/ --crop 0.6 --brightness 0.2 --contrast 0.2 --blur 1.5",
    "cvtool prepare augment data/voc --out aug/ --flip-v 0.5 --translate 0.1 --min-visible 0.3 --keep-original",
)


@handle_errors
def augment_command(
    dataset: Annotated[Path, typer.Argument(metavar="DATASET", exists=True, help="Dataset: a prepare folder, a COCO JSON, a YOLO or VOC folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder (OUT/{split}/...).")],
    split: Annotated[str, typer.Option("--split", help="Split to augment (folder datasets).")] = "train",
    copies: Annotated[int, typer.Option("--copies", "-n", help="Augmented copies per image.", min=0, max=1000)] = 1,
    keep_original: Annotated[bool, typer.Option("--keep-original", help="Also copy each original image.")] = False,
    flip_h: Annotated[float, typer.Option("--flip-h", help="Probability of a horizontal flip.", min=0, max=1)] = 0.5,
    flip_v: Annotated[float, typer.Option("--flip-v", help="Probability of a vertical flip.", min=0, max=1)] = 0.0,
    rotate: Annotated[float, typer.Option("--rotate", help="Rotation in [-R, R] degrees.", min=0, max=180)] = 0.0,
    shear: Annotated[float, typer.Option("--shear", help="Shear angles in [-S, S] degrees.", min=0, max=79)] = 0.0,
    scale: Annotated[str, typer.Option("--scale", help="Zoom range LOW-HIGH about the centre.")] = "1",
    translate: Annotated[float, typer.Option("--translate", help="Shift in [-T, T] x image size.", min=0, max=1)] = 0.0,
    crop: Annotated[float, typer.Option(
        "--crop", help="Random crop with sides in [C, 1] x the image's, resized back (1: off).")] = 1.0,
    colour: Annotated[float, typer.Option("--colour", help="Per-channel shift in [-C, C] grey levels.", min=0, max=255)] = 0.0,
    brightness: Annotated[float, typer.Option("--brightness", help="Add [-B, B] x 255.", min=0, max=1)] = 0.0,
    contrast: Annotated[float, typer.Option("--contrast", help="Scale contrast by 1 + [-C, C].", min=0, max=1)] = 0.0,
    blur: Annotated[float, typer.Option("--blur", help="Gaussian blur sigma in [0, S] pixels.", min=0, max=50)] = 0.0,
    noise: Annotated[float, typer.Option("--noise", help="Gaussian noise sigma (grey levels).", min=0, max=255)] = 0.0,
    min_visible: Annotated[float, typer.Option(
        "--min-visible", help="Drop a box when less than this fraction of its transformed area stays in the image.",
        min=0, max=1)] = 0.5,
    border: Annotated[str, typer.Option("--border", help="Fill outside the source: constant (black), reflect, "
                                        "replicate.")] = "constant",
    fmt: FormatOpt = Format.coco,
    seed: SeedOpt = 0,
    jobs: JobsOpt = 0,
    max_pixels: MaxPixelsOpt = 200_000_000,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Box-aware augmentation: flips, rotation, shear, scale, shift, crop, colour, blur, noise.

    One affine matrix moves each image and its boxes; a box becomes the hull of
    its four moved corners, clipped to the image, and is dropped when less than
    --min-visible of it stays inside.  Writes OUT/{split}/images/*.png,
    OUT/{split}/annotations.json, OUT/classes.txt and OUT/run.json; the same
    --seed gives the same files whatever --jobs.
    """
    args = command_args()
    from cvtool.datasets import load_dataset
    from cvtool.io.manifest import now_iso, write_manifest
    from cvtool.prepare.augment import AugmentSettings, augment_dataset
    from cvtool.prepare.parse import parse_range
    from cvtool.prepare.writer import write_classes

    log = Log(quiet)
    started = now_iso()
    settings = AugmentSettings(flip_h=flip_h, flip_v=flip_v, rotate=rotate, shear=shear,
                               scale=parse_range(scale, option="--scale"), translate=translate, crop=crop,
                               colour=colour, brightness=brightness, contrast=contrast, blur=blur, noise=noise,
                               min_visible=min_visible, border=border).validate()
    ds = load_dataset(dataset, split=split)
    per = copies + int(keep_original)
    with progress_bar(len(ds.images) * per, "augment", quiet=quiet) as advance:
        summary = augment_dataset(ds, settings, out_dir=out / split, copies=copies, keep_original=keep_original,
                                  seed=seed, jobs=jobs, fmt=fmt.value, overwrite=overwrite, max_pixels=max_pixels,
                                  advance=advance, on_failure=lambda path, reason: log.error(reason))
    cats = sorted(ds.categories, key=lambda c: c.id)
    write_classes(out, tuple(c.name for c in cats))
    failed = summary.pop("failed")
    summary["failed"] = len(failed)
    write_manifest(out, command="prepare augment", args=args, seed=seed, started=started, finished=now_iso(),
                   counts=summary, extra={"failures": failed})
    log.info(f"augment: {summary['images']} images, {summary['boxes']} boxes "
             f"({summary['dropped']} dropped as < {min_visible:g} visible), {len(failed)} image(s) failed "
             f"-> {out / split}")
    if json_out:
        emit_json({"out": str(out), "split": split, **summary})
    if failed:
        raise typer.Exit(1)

"""`cvtool prepare detection`: several objects per canvas with bounded overlap and occlusion."""

from __future__ import annotations

from typing import Annotated

import typer

from cvtool.cli.common import JobsOpt, JsonOpt, OverwriteOpt, QuietOpt, SeedOpt, command_args, examples, handle_errors
from cvtool.cli.prepare_localization import (BackgroundsOpt, ChunkOpt, ClutterOpt, ClutterSizeOpt, CropsOpt,
                                             FashionOpt, Format, FormatOpt, InkOpt, MnistOpt, NoiseOpt, NoPngOpt,
                                             NpzOpt, OutReq, PngLevelOpt, ScaleOpt, SplitOpt, ThresholdOpt,
                                             MAX_COUNT, run_synthetic)

EPILOG = examples(
    "cvtool prepare detection --out data/digits",
    "cvtool prepare detection --mnist ~/mnist --out data/mnist-det --count 20000 --objects 2-6 --npz",
    "cvtool prepare detection --out data/det --canvas 256x192 --scale 0.6-2 --max-iou 0 --min-visible 1",
    "cvtool prepare detection --crops crops/ --backgrounds bg/ --out data/det --format yolo",
)


@handle_errors
def detection_command(
    out: OutReq,
    mnist: MnistOpt = None,
    fashion_mnist: FashionOpt = None,
    crops: CropsOpt = None,
    threshold: ThresholdOpt = 16.0,
    backgrounds: BackgroundsOpt = None,
    canvas: Annotated[str, typer.Option("--canvas", help="Canvas SIZE or WIDTHxHEIGHT.")] = "128",
    objects: Annotated[str, typer.Option("--objects", help="Objects per canvas, LOW-HIGH (uniform).")] = "3-5",
    scale: ScaleOpt = "0.8-1.2",
    max_iou: Annotated[float, typer.Option("--max-iou", help="Largest IoU allowed between two boxes.", min=0, max=1)] = 0.2,
    min_visible: Annotated[float, typer.Option(
        "--min-visible", help="Smallest fraction of an object's ink left uncovered by later objects.", min=0, max=1)] = 0.75,
    tries: Annotated[int, typer.Option("--tries", help="Positions tried per object before the canvas restarts.", min=1,
                                          max=100_000)] = 100,
    restarts: Annotated[int, typer.Option(
        "--restarts", help="Canvas restarts before giving up with an error (constraints too tight).", min=1,
        max=10_000)] = 20,
    ink_threshold: InkOpt = 0,
    noise: NoiseOpt = 0.0,
    clutter: ClutterOpt = 0,
    clutter_size: ClutterSizeOpt = 8,
    count: Annotated[int | None, typer.Option(
        "--count", help="Train canvases (val/test in proportion to their objects) [default: 1000].", min=1,
        max=MAX_COUNT)] = None,
    split: SplitOpt = None,
    fmt: FormatOpt = Format.coco,
    npz: NpzOpt = False,
    no_png: NoPngOpt = False,
    png_level: PngLevelOpt = 1,
    chunk: ChunkOpt = 250,
    seed: SeedOpt = 0,
    jobs: JobsOpt = 0,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Synthetic detection data: several objects per canvas, tight (ink) boxes.

    Objects are drawn from their split's own objects, scaled, and placed one
    after another (later on top) where the new box overlaps every earlier box
    by IoU <= --max-iou and every earlier object keeps >= --min-visible of its
    ink.  Impossible constraints stop with an error after --restarts x --tries
    attempts.  Output layout as for `prepare localization`.
    """
    args = command_args()
    from cvtool.prepare.parse import parse_range

    lo, hi = parse_range(objects, option="--objects", integer=True)
    run_synthetic(kind="detection", args=args, out=out, mnist=mnist, fashion_mnist=fashion_mnist,
                  crops=crops, threshold=threshold, backgrounds=backgrounds, canvas=canvas, scale=scale,
                  count=count, split=split, fmt=fmt, npz=npz, no_png=no_png, png_level=png_level,
                  chunk=chunk, seed=seed, jobs=jobs, overwrite=overwrite, json_out=json_out, quiet=quiet,
                  objects=(int(lo), int(hi)), max_iou=max_iou, min_visible=min_visible, tries=tries,
                  restarts=restarts, ink_threshold=ink_threshold, noise=noise, clutter=clutter,
                  clutter_size=clutter_size, tight=True)

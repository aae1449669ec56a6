"""`cvtool prepare localization`: one object per canvas (the MNIST-75 seed study).

Also holds the options and the driver shared with ``prepare detection``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cvtool.cli.common import (JobsOpt, JsonOpt, OverwriteOpt, QuietOpt, SeedOpt, Log, command_args,
                               emit_json, examples, handle_errors, progress_bar)

EPILOG = examples(
    "cvtool prepare localization --out data/loc",
    "cvtool prepare localization --mnist ~/mnist --out data/mnist75 --npz --no-png",
    "cvtool prepare localization --mnist ~/mnist --out data/mnist75 --tight --scale 0.8-1.2 --noise 8",
    "cvtool prepare localization --crops crops/ --backgrounds bg/ --canvas 128 --out data/loc --format yolo",
    "cvtool prepare localization --out data/loc --clutter 8 --split 0.7,0.15,0.15 --seed 3",
)


class Format(str, Enum):
    coco = "coco"
    yolo = "yolo"
    voc = "voc"


OutReq = Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")]
MnistOpt = Annotated[Path | None, typer.Option(
    "--mnist", exists=True, help="MNIST folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-*; "
    "its own train/test split is kept.  Default source: scikit-learn's bundled digits.")]
FashionOpt = Annotated[Path | None, typer.Option(
    "--fashion-mnist", exists=True, help="Fashion-MNIST folder (same IDX files; class names T-shirt/top ... Ankle boot).")]
CropsOpt = Annotated[Path | None, typer.Option(
    "--crops", exists=True, help="Folder of object crops CLASS_NAME/*.png; mask from alpha, else from --threshold.")]
ThresholdOpt = Annotated[float, typer.Option(
    "--threshold", help="Crops without alpha: a pixel is object when its grey differs from the median "
    "border grey by more than this.", min=0, max=255)]
BackgroundsOpt = Annotated[Path | None, typer.Option(
    "--backgrounds", exists=True, help="Folder of background pictures: random crops replace the black canvas.")]
ScaleOpt = Annotated[str, typer.Option("--scale", help="Object scale range LOW-HIGH (uniform), or one value.")]
InkOpt = Annotated[int, typer.Option("--ink-threshold", help="Alpha above this counts as ink for tight boxes.",
                                     min=0, max=254)]
NoiseOpt = Annotated[float, typer.Option("--noise", help="Gaussian pixel noise standard deviation (grey levels).",
                                         min=0, max=255)]
ClutterOpt = Annotated[int, typer.Option("--clutter", help="Random object fragments pasted as clutter per canvas.",
                                         min=0, max=1000)]
ClutterSizeOpt = Annotated[int, typer.Option("--clutter-size", help="Side of each clutter fragment (pixels).",
                                             min=1, max=8192)]
SplitOpt = Annotated[str | None, typer.Option(
    "--split", help="TRAIN,VAL,TEST fractions of the objects [default: 0.8,0.1,0.1; with --mnist: MNIST's "
    "train/test, and --split divides MNIST-train into train/val by TRAIN:VAL].")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Annotation format of the split folders.")]
NpzOpt = Annotated[bool, typer.Option("--npz", help="Also write OUT/{split}.npz (compressed arrays for training).")]
NoPngOpt = Annotated[bool, typer.Option("--no-png", help="With --npz: write only the .npz files, no PNGs.")]
PngLevelOpt = Annotated[int, typer.Option("--png-level", help="PNG zlib compression level 0-9 (1: fast, "
                                          "files ~15% larger than 9).", min=0, max=9)]
MAX_SCALE = 100.0
"""Largest object scale (--scale): a 28-pixel digit becomes at most 2,800 pixels wide."""
MAX_OBJECTS = 1000
"""Most objects per canvas (--objects)."""
MAX_COUNT = 10_000_000
"""Most train canvases one prepare run makes (--count)."""
ChunkOpt = Annotated[int, typer.Option("--chunk", help="Scenes per parallel task.", min=1, max=100_000)]


def run_synthetic(*, kind: str, args: dict[str, Any], out: Path, mnist, fashion_mnist, crops, threshold,
                  backgrounds, canvas: str, scale: str, count: int | None, split: str | None,
                  fmt: Format, npz: bool, no_png: bool, png_level: int, chunk: int, seed: int,
                  jobs: int, overwrite: bool, json_out: bool, quiet: bool, **scene: Any) -> None:
    """Parse the shared options, build the dataset, write run.json, report."""
    from cvtool.io.manifest import now_iso, write_manifest
    from cvtool.prepare.parse import parse_range, parse_size
    from cvtool.prepare.scenes import SceneSettings
    from cvtool.prepare.sources import parse_split
    from cvtool.prepare.synthetic import SourceOptions, canvas_channels, load_source, make_dataset
    from cvtool.errors import UsageError
    from cvtool.prepare.writer import OutputOptions

    log = Log(quiet)
    started = now_iso()
    size = parse_size(canvas)
    scale_range = parse_range(scale, option="--scale")
    if scale_range[1] > MAX_SCALE:
        raise UsageError(f"--scale {scale!r}: objects are scaled at most {MAX_SCALE:g} times")
    objects = scene.get("objects")
    if objects is not None and objects[1] > MAX_OBJECTS:
        raise UsageError(f"--objects {objects[0]}-{objects[1]}: at most {MAX_OBJECTS} objects per canvas")
    fractions = parse_split(split) if split is not None else None
    opts = OutputOptions(out=out, format=fmt.value, png=not no_png, npz=npz, png_level=png_level,
                         jobs=jobs, chunk=chunk, overwrite=overwrite).validate()
    pool, bgs = load_source(SourceOptions(mnist=mnist, fashion_mnist=fashion_mnist, crops=crops,
                                          threshold=threshold, backgrounds=backgrounds))
    settings = SceneSettings(kind=kind, canvas=size, channels=canvas_channels(pool, bgs), scale=scale_range,
                             **scene)
    log.info(f"{kind}: {len(pool)} objects from {pool.name}, {len(pool.class_names)} classes, "
             f"canvas {size[1]}x{size[0]}")

    def progress(total, description):
        return progress_bar(total, description, quiet=quiet)

    summary = make_dataset(pool, bgs, settings, fractions=fractions, count=count, seed=seed, opts=opts,
                           progress=progress)
    write_manifest(out, command=f"prepare {kind}", args=args, seed=seed, started=started,
                   finished=now_iso(), counts=summary,
                   extra={"source": pool.name, "classes": list(pool.class_names)})
    for name, s in summary.items():
        log.info(f"{name}: {s['images']} images, {s['boxes']} boxes from {s['objects']} objects")
    log.info(f"-> {out}")
    if json_out:
        emit_json({"out": str(out), "splits": summary, "classes": list(pool.class_names)})


@handle_errors
def localization_command(
    out: OutReq,
    mnist: MnistOpt = None,
    fashion_mnist: FashionOpt = None,
    crops: CropsOpt = None,
    threshold: ThresholdOpt = 16.0,
    backgrounds: BackgroundsOpt = None,
    canvas: Annotated[str, typer.Option("--canvas", help="Canvas SIZE or WIDTHxHEIGHT.")] = "75",
    scale: ScaleOpt = "1",
    tight: Annotated[bool, typer.Option(
        "--tight", help="Box = the ink's extent (alpha > --ink-threshold) instead of the object's full "
        "frame (28x28 for a digit at scale 1).")] = False,
    ink_threshold: InkOpt = 0,
    noise: NoiseOpt = 0.0,
    clutter: ClutterOpt = 0,
    clutter_size: ClutterSizeOpt = 8,
    count: Annotated[int | None, typer.Option(
        "--count", help="Train canvases (val/test in proportion) [default: one per object].", min=1,
        max=MAX_COUNT)] = None,
    split: SplitOpt = None,
    fmt: FormatOpt = Format.coco,
    npz: NpzOpt = False,
    no_png: NoPngOpt = False,
    png_level: PngLevelOpt = 1,
    chunk: ChunkOpt = 1000,
    seed: SeedOpt = 0,
    jobs: JobsOpt = 0,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Synthetic localisation data: one object per canvas at a uniform random position.

    Default: each digit of the source once, 28x28 on a black 75x75 canvas,
    box = the 28x28 frame (--tight: the ink's extent).  Objects are split into
    train/val/test before canvases are made.  Writes OUT/{split}/annotations.json
    (COCO) + OUT/{split}/images/*.png, OUT/classes.txt, OUT/run.json and, with
    --npz, OUT/{split}.npz.  The same --seed gives byte-identical files whatever --jobs.
    """
    args = command_args()
    run_synthetic(kind="localization", args=args, out=out, mnist=mnist, fashion_mnist=fashion_mnist,
                  crops=crops, threshold=threshold, backgrounds=backgrounds, canvas=canvas, scale=scale,
                  count=count, split=split, fmt=fmt, npz=npz, no_png=no_png, png_level=png_level,
                  chunk=chunk, seed=seed, jobs=jobs, overwrite=overwrite, json_out=json_out, quiet=quiet,
                  tight=tight, ink_threshold=ink_threshold, noise=noise, clutter=clutter,
                  clutter_size=clutter_size)

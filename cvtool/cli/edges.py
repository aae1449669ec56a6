"""`cvtool edges`: edge maps of files and folders."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import (BackendOpt, InPlaceOpt, JobsOpt, JsonOpt, MaxPixelsOpt, OverwriteOpt, QuietOpt, RecursiveOpt,
                               SchedulerOpt, SkipExistingOpt, Backend, command_args, examples, handle_errors,
                               run_folder_job)

EPILOG = examples(
    "cvtool edges photos/ --out edges/ canny",
    "cvtool edges photos/ --out edges/ canny --low 50 --high 150 --sigma 1",
    "cvtool edges photos/ --out gx/ sobel --mode x --scale clip",
    "cvtool edges photos/ --out mh/ marr-hildreth --sigma 3 --zc-threshold 0.05",
    "cvtool edges scans/ --out bin/ prewitt --binarize 64 --jobs 2",
)

MIN_LOG_SIGMA = 0.5
"""Smallest LoG sigma: below it the truncated kernel degenerates (and sigma**4 underflows)."""
MAX_SIGMA = 100.0
"""Largest --sigma: a 601-pixel Gaussian (Canny) or 801-pixel LoG kernel, wider than most images."""

METHODS = ("sobel", "prewitt", "scharr", "roberts", "laplacian", "log", "marr-hildreth", "canny")


class Mode(str, Enum):
    """Gradient output."""

    magnitude = "magnitude"
    x = "x"
    y = "y"
    direction = "direction"


class Scale(str, Enum):
    """How responses become pixel values."""

    max = "max"
    clip = "clip"


class EdgeFormat(str, Enum):
    """Output file format."""

    png = "png"
    tif = "tif"


@handle_errors
def edges_command(
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="INPUTS... METHOD", show_default=False,
                       help=f"Images (files, folders, quoted globs, @list.txt, -) then the method: {', '.join(METHODS)}."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (outputs mirror input paths, as .png).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", help="Gradient methods: magnitude, |x|, |y| or direction (0..360 deg -> 0..max).")] = Mode.magnitude,
    ksize: Annotated[int, typer.Option("--ksize", help="Sobel aperture: 1, 3, 5 or 7.")] = 3,
    neighbours: Annotated[int, typer.Option("--neighbours", help="Laplacian kernel: 4 or 8 neighbours.")] = 4,
    sigma: Annotated[float | None, typer.Option("--sigma", help="LoG/marr-hildreth Gaussian sigma (default 2); Canny pre-blur (default 0: none).", min=0, max=MAX_SIGMA)] = None,
    low: Annotated[float | None, typer.Option("--low", help="Canny low threshold (with --high; omit both for automatic).", min=0, max=1e6)] = None,
    high: Annotated[float | None, typer.Option("--high", help="Canny high threshold.", min=0, max=1e6)] = None,
    spread: Annotated[float, typer.Option("--spread", help="Automatic Canny thresholds: (1 -/+ spread) x median.", min=0, max=1)] = 0.33,
    zc_threshold: Annotated[float, typer.Option("--zc-threshold", help="marr-hildreth: keep zero crossings whose slope is at least this fraction of the largest.", min=0, max=1)] = 0.1,
    scale: Annotated[Scale, typer.Option("--scale", help="max: strongest response -> full scale; clip: 8-bit-scale values saturated at 255.")] = Scale.max,
    depth: Annotated[int, typer.Option("--depth", help="Output bits per pixel: 8 or 16.")] = 8,
    binarize: Annotated[float | None, typer.Option("--binarize", help="After scaling, >= this (0..255) -> white, else black.", min=0, max=255)] = None,
    out_format: Annotated[EdgeFormat, typer.Option("--format", help="Output format.")] = EdgeFormat.png,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    in_place: InPlaceOpt = False,
    jobs: JobsOpt = 0,
    backend: BackendOpt = Backend.loky,
    scheduler: SchedulerOpt = None,
    max_pixels: MaxPixelsOpt = 200_000_000,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Compute edge maps: Sobel, Prewitt, Scharr, Roberts, Laplacian, LoG, Marr-Hildreth, Canny.

    Colour is converted to grey first.  Outputs are single-channel uint8 PNGs by
    default (see --scale, --depth, --binarize).
    """
    import functools

    from cvtool.errors import UsageError
    from cvtool.filters.jobs import ImageJob, edges_transform, ok_record

    values = list(args or [])
    if not values or values[-1] not in METHODS:
        got = repr(values[-1]) if values else "nothing"
        raise UsageError(f"the last argument must be the method, got {got}; choose one of {', '.join(METHODS)}")
    method, inputs = values[-1], values[:-1]
    if not inputs:
        raise UsageError("no inputs given; usage: cvtool edges INPUTS... --out DIR METHOD")
    if out is None:
        raise UsageError("--out DIR is required")
    if ksize not in (1, 3, 5, 7):
        raise UsageError(f"--ksize {ksize} is not valid; choose one of 1, 3, 5, 7")
    if neighbours not in (4, 8):
        raise UsageError(f"--neighbours {neighbours} is not valid; choose 4 or 8")
    if depth not in (8, 16):
        raise UsageError(f"--depth {depth} is not valid; choose 8 or 16")
    if (low is None) != (high is None):
        raise UsageError("give both --low and --high, or neither for automatic Canny thresholds")
    if low is not None and high is not None and low > high:
        raise UsageError(f"--low {low} must not exceed --high {high}")
    if method in ("log", "marr-hildreth") and sigma is not None and sigma < MIN_LOG_SIGMA:
        raise UsageError(f"--sigma {sigma} must be at least {MIN_LOG_SIGMA} for {method} (a 5-pixel kernel)")
    settings = dict(mode=mode.value, ksize=ksize, neighbours=neighbours, sigma=sigma, low=low, high=high,
                    spread=spread, zc_threshold=zc_threshold, scale=scale.value, depth=depth, binarize=binarize)
    job = ImageJob(functools.partial(edges_transform, method=method, settings=tuple(sorted(settings.items()))),
                   max_pixels=max_pixels, overwrite=overwrite)
    ext = "." + out_format.value
    code = run_folder_job(
        command="edges", inputs=inputs, out=out, func=job,
        out_name=lambda item: item.rel.with_suffix(ext), recursive=recursive, overwrite=overwrite,
        skip_existing=skip_existing, in_place=in_place, jobs=jobs, backend=backend.value, scheduler=scheduler, quiet=quiet,
        json_out=json_out,
        args=command_args(),
        record=ok_record,
    )
    raise typer.Exit(code)

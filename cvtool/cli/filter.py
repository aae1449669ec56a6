"""`cvtool filter`: chain image operations over files and folders."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import (BackendOpt, InPlaceOpt, JobsOpt, JsonOpt, MaxPixelsOpt, OverwriteOpt, QuietOpt, RecursiveOpt,
                               SchedulerOpt, SeedOpt, SkipExistingOpt, Backend, command_args, examples,
                               handle_errors, run_folder_job)

EPILOG = examples(
    "cvtool filter photos/ --out smooth/ gaussian:sigma=1.5 median:k=5 equalize",
    "cvtool filter scan.png --out sharp/ kernel:'0,-1,0;-1,5,-1;0,-1,0'",
    "cvtool filter 'raw/**/*.tif' --out clean/ wiener:k=5 clahe:clip=3 --jobs 2",
    "cvtool filter photos/ --out noisy/ noise:gaussian:sigma=12 noise:salt-pepper:amount=0.01 --seed 7",
    "cvtool filter photos/ --out masks/ gray threshold:otsu --format png",
    "cvtool filter --list",
)

_GLOB = set("*?[")


class AlphaMode(str, Enum):
    """What happens to an alpha channel."""

    keep = "keep"
    drop = "drop"


class OutFormat(str, Enum):
    """Output file format."""

    same = "same"
    png = "png"
    tif = "tif"
    jpg = "jpg"
    bmp = "bmp"
    webp = "webp"


def split_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``INPUTS... OP...``: operations start at the first argument that is not an input.

    An argument is an input when it is ``-``, an ``@list`` file, an existing
    path, a glob, or does not look like an operation (has a ``.`` or ``/`` in
    its first field).
    """
    from cvtool.filters.parse import looks_like_operation

    def is_input(a: str) -> bool:
        return (a == "-" or a.startswith("@") or bool(_GLOB & set(a)) or os.path.exists(a)
                or not looks_like_operation(a))

    n = 0
    while n < len(args) and is_input(args[n]):
        n += 1
    return args[:n], args[n:]


@handle_errors
def filter_command(
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="INPUTS... OP", show_default=False,
                       help="Images (files, folders, quoted globs, @list.txt, -) followed by operations "
                            "NAME[:key=value...] applied in order; see --list."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (outputs mirror input paths).")] = None,
    list_ops: Annotated[bool, typer.Option("--list", help="Print every operation with its parameters and exit.")] = False,
    seed: SeedOpt = 0,
    alpha: Annotated[AlphaMode, typer.Option("--alpha", help="Keep an alpha channel unchanged, or drop it.")] = AlphaMode.keep,
    out_format: Annotated[OutFormat, typer.Option("--format", help="Output format ('same': the input's extension).")] = OutFormat.same,
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
    """Apply a chain of filters (smoothing, denoising, sharpening, noise, pointwise, colour) to images.

    Operations run in the order given.  Every operation string is checked before
    any image is read; outputs keep the input's dtype (uint8, uint16 or float),
    rounded and saturated, never wrapped around.
    """
    import functools

    from cvtool.errors import UsageError
    from cvtool.filters.jobs import ImageJob, filter_transform, ok_record
    from cvtool.filters.parse import OPERATION_ALIASES, OPERATION_NAMES, describe_operations, parse_pipeline

    if list_ops:
        typer.echo(describe_operations())
        return
    inputs, op_texts = split_arguments(list(args or []))
    if op_texts and not inputs:
        first = op_texts[0]
        if first.split(":", 1)[0].lower() not in OPERATION_ALIASES:
            raise UsageError(f"{first!r} is neither an existing file or folder nor an operation "
                             f"(valid operations: {', '.join(OPERATION_NAMES)}); inputs come first")
    if not inputs:
        raise UsageError("no inputs given; usage: cvtool filter INPUTS... --out DIR OP [OP...]")
    steps = parse_pipeline(op_texts)
    if out is None:
        raise UsageError("--out DIR is required")
    job = ImageJob(functools.partial(filter_transform, steps=steps, seed=seed, alpha=alpha.value),
                   max_pixels=max_pixels, overwrite=overwrite)
    out_name = None
    if out_format is not OutFormat.same:
        ext = "." + out_format.value

        def out_name(item):  # noqa: F811 - a small closure, run in the main process only
            return item.rel.with_suffix(ext)

    code = run_folder_job(
        command="filter", inputs=inputs, out=out, func=job,
        out_name=out_name, recursive=recursive, overwrite=overwrite, skip_existing=skip_existing, in_place=in_place, jobs=jobs,
        backend=backend.value, scheduler=scheduler, quiet=quiet, json_out=json_out,
        args=command_args(),
        seed=seed,
        record=ok_record,
    )
    raise typer.Exit(code)

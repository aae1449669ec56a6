"""`cvtool prepare windows`: fixed-size positive and negative windows for sliding-window training."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cvtool.cli.common import JsonOpt, QuietOpt, SeedOpt, command_args, emit_json, examples, handle_errors

EPILOG = examples(
    "cvtool prepare windows data/digits --out data/windows                 # windows.npz",
    "cvtool prepare windows data/digits --out crops/ --format png --window 32x40 --negatives 20",
    "cvtool prepare windows people/annotations.json --out ped/ --window 64x128 --context 0.125 --flip",
)

NPZ_NAME = "windows.npz"


class WindowsFormat(str, Enum):
    """How windows are stored."""

    npz = "npz"
    png = "png"


def folder_name(name: str) -> str:
    """A class name made safe as one folder name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"
    return safe


@handle_errors
def windows_command(
    dataset: Annotated[Path, typer.Argument(metavar="DATASET", exists=True, help="Dataset: a `prepare detection` folder, COCO JSON, YOLO or VOC folder.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help=f"Output folder: {NPZ_NAME} or CLASS/*.png + background/*.png, run.json.")],
    split: Annotated[str, typer.Option("--split", help="Split of a prepare folder.")] = "train",
    window: Annotated[str, typer.Option("--window", help="Window WxH in pixels, or 'auto' (median box plus context, multiples of 4).")] = "auto",
    context: Annotated[float, typer.Option("--context", help="Margin around the object on each side, as a fraction of its box.", min=0.0, max=1.0)] = 0.125,
    negatives: Annotated[int, typer.Option("--negatives", help="Random background windows per image.", min=0)] = 10,
    neg_iou: Annotated[float, typer.Option("--neg-iou", help="Negatives overlap every box by less than this IoU.", min=0.0, max=1.0)] = 0.3,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Add a left-right mirrored copy of each positive.")] = False,
    fmt: Annotated[WindowsFormat, typer.Option("--format", help="npz: one archive; png: one folder per class.")] = WindowsFormat.npz,
    max_images: Annotated[int | None, typer.Option("--max-images", help="Use the first N images only.", min=1)] = None,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Cut ground-truth boxes (made to the window's aspect with real context, plus a margin)
    and random background windows (IoU below --neg-iou with every box) to one size.

    The npz holds `images` (N, h, w[, C]) uint8, `labels` (N,) (class index,
    -1 background), `regions` (N, 4) xyxy source regions, `source` (N,) image
    index, `flipped`, `files`, `classes`, `category_ids`, `window`, `context`.
    """
    import numpy as np

    from cvtool.cli.common import Log
    from cvtool.cli.hog import parse_size
    from cvtool.detectors.hog_svm import read_split
    from cvtool.errors import UsageError
    from cvtool.io.atomic import atomic_open
    from cvtool.io.images import write_image
    from cvtool.io.manifest import now_iso, write_manifest
    from cvtool.prepare.windows import WindowSpec, auto_window, extract_windows

    args = command_args()
    started = now_iso()
    log = Log(quiet)
    target = out / NPZ_NAME
    if fmt is WindowsFormat.npz and target.exists() and not overwrite:
        raise UsageError(f"{target} exists; pass --overwrite to replace it")
    data = read_split(dataset, split=split, max_images=max_images)
    if not data.images or not sum(len(b) for b in data.boxes):
        raise UsageError(f"{dataset}: split {split!r} has no boxes to cut")
    all_boxes = np.concatenate(data.boxes)
    try:
        size = auto_window(all_boxes, context=context) if window.lower() == "auto" else parse_size(window, "--window")
        spec = WindowSpec(size, context)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ws = extract_windows(data.images, data.boxes, data.labels, spec=spec, negatives_per_image=negatives,
                         max_iou=neg_iou, flip=flip, rng=np.random.default_rng(seed))
    counts = ws.counts(data.classes)
    files = [im.file_name for im in sorted(data.dataset.images, key=lambda im: im.id)]
    out.mkdir(parents=True, exist_ok=True)
    if fmt is WindowsFormat.npz:
        with atomic_open(target, "wb", overwrite=overwrite) as fh:
            np.savez_compressed(fh, images=ws.images, labels=ws.labels, regions=ws.regions, source=ws.source,
                                flipped=ws.flipped, files=np.array(files, dtype=str),
                                classes=np.array(data.classes, dtype=str),
                                category_ids=np.array(data.category_ids, np.int64),
                                window=np.array(size, np.int64), context=np.float64(context))
    else:
        names = [folder_name(c) for c in data.classes]
        if len(set(names)) != len(names) or "background" in names:
            names = [f"{k:03d}_{n}" for k, n in enumerate(names)]
        for i, (img, lab) in enumerate(zip(ws.images, ws.labels)):
            sub = "background" if lab < 0 else names[lab]
            write_image(out / sub / f"{i:06d}.png", img, overwrite=overwrite)
    write_manifest(out, command="prepare windows", args=args, seed=seed, started=started, counts=counts,
                   extra={"window": list(size), "context": context})
    log.info(f"windows {size[0]}x{size[1]}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {out}")
    if json_out:
        emit_json({"out": str(out), "window": list(size), "counts": counts})

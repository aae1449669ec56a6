"""`cvtool selective-search`: region proposals by selective search (Uijlings et al. 2013).

Writes ``OUT/proposals.jsonl`` (one record per image, boxes in rank order, see
CONTRIBUTING.md), optionally the top boxes drawn on each image
(``OUT/draw/<input path>``) and the initial segmentations
(``OUT/segments/<input path>/<space>_k<k>.png`` as 16-bit label maps plus a
``_colour.png`` picture), and ``OUT/run.json``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer

from cvtool.cli.common import (BackendOpt, InPlaceOpt, Backend, InputsArg, JobsOpt, JsonOpt, MaxPixelsOpt,
                               OverwriteOpt, QuietOpt, RecursiveOpt, SchedulerOpt, SeedOpt,
                               SkipExistingOpt, Log, command_args, examples, handle_errors,
                               run_folder_job)

EPILOG = examples(
    "cvtool selective-search photos/ --out props/ --mode fast --max 2000",
    "cvtool selective-search cat.jpg --out props/ --mode single --colour-space lab --k 150 --similarity tsf",
    "cvtool selective-search photos/ --out props/ --draw 20 --segments --seed 1",
    "cvtool selective-search big.tif --out props/ --resize 1000 --min-size 20 --max-aspect 4",
    "cvtool eval --metric proposals --gt data/test/annotations.json --pred props/proposals.jsonl",
)

PROPOSALS_FILE = "proposals.jsonl"


class Mode(str, Enum):
    single = "single"
    fast = "fast"
    quality = "quality"


class ColourSpace(str, Enum):
    rgb = "rgb"
    hsv = "hsv"
    lab = "lab"
    rgi = "rgi"
    i = "i"
    h = "h"


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one selective-search run (what the command line asked for)."""

    mode: str
    colour_space: str
    k: float
    similarities: str
    sigma: float
    segment_min_size: int | None
    seed: int
    max_proposals: int | None
    min_size: float
    max_aspect: float | None
    resize: int | None
    max_pixels: int
    draw: int
    segments: bool
    out: Path
    workers: int = 1
    done: frozenset[str] = frozenset()

    def strategies(self):
        from cvtool.proposals import mode_strategies

        return mode_strategies(self.mode, colour_space=self.colour_space, k=self.k,
                               similarities=self.similarities)


def _round(values) -> list:
    return [[round(float(v), 2) for v in row] for row in values]


def search_one(task, *, config: SearchConfig) -> dict[str, Any] | None:
    """Selective search on one input file (runs in a worker)."""
    import numpy as np

    from cvtool.io.images import read_image, write_image
    from cvtool.proposals import selective_search

    rel = str(task.item.rel)
    if rel in config.done:
        return None
    image = read_image(task.item.path, max_pixels=config.max_pixels)
    notes = []
    if image.ndim == 2 or image.shape[2] == 1:
        notes.append("grey image: channels replicated to colour for the colour spaces")
    if image.dtype != np.uint8:
        notes.append(f"{image.dtype} image: scaled to 8 bits")
    result = selective_search(
        image, strategies=config.strategies(), sigma=config.sigma, segment_min_size=config.segment_min_size,
        seed=config.seed, max_proposals=config.max_proposals, min_size=config.min_size,
        max_aspect=config.max_aspect, resize=config.resize, keep_segmentations=config.segments,
        workers=config.workers)
    if result.scale != 1.0:
        notes.append(f"searched a copy resized by {result.scale:.3g} (--resize {config.resize})")
    h, w = image.shape[:2]
    if config.draw:
        from cvtool.draw import draw_boxes

        top = result.boxes[:config.draw]
        picture = image if image.dtype == np.uint8 else (image // 257).astype(np.uint8)
        write_image(config.out / "draw" / Path(*task.item.rel.parts), draw_boxes(picture, top, thickness=2),
                    overwrite=True)
    if config.segments:
        _write_segments(config.out / "segments" / Path(*task.item.rel.parts), result.segmentations, config.seed)
    return {"record": {"file": rel, "width": int(w), "height": int(h), "boxes": _round(result.boxes)},
            "notes": notes, "num_strategies": result.num_strategies,
            "initial_regions": result.num_initial_regions, "candidates": result.num_candidates}


def _write_segments(folder: Path, segmentations: dict, seed: int) -> None:
    import numpy as np

    from cvtool.errors import BadInputError
    from cvtool.io.images import write_image
    from cvtool.proposals.segmentation import colour_labels

    for name, labels in segmentations.items():
        stem = name.replace("/k=", "_k")
        if labels.max() > np.iinfo(np.uint16).max:
            raise BadInputError(f"{name} has {labels.max() + 1} regions, too many for a 16-bit label PNG")
        write_image(folder / f"{stem}.png", labels.astype(np.uint16), overwrite=True)
        write_image(folder / f"{stem}_colour.png", colour_labels(labels, seed=seed), overwrite=True)


def _previous_records(path: Path) -> list[dict]:
    from cvtool.errors import UsageError

    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                str(rec["file"])
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path}:{n} is not a proposals record; pass --overwrite to replace the file") from None
            records.append(rec)
    return records


@handle_errors
def selective_search_command(
    inputs: InputsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: proposals.jsonl, draw/, segments/, "
                                      "run.json.")],
    mode: Annotated[Mode, typer.Option("--mode", "-m", help="single: one strategy; fast: 8 strategies "
                                       "(HSV, Lab x k 50, 100 x ctsf, tsf); quality: 80 strategies.")] = Mode.fast,
    colour_space: Annotated[ColourSpace | None, typer.Option(
        "--colour-space", help="Colour space of --mode single (default hsv).")] = None,
    k: Annotated[float | None, typer.Option("--k", help="Felzenszwalb scale k of --mode single (default 100).", min=0.001, max=1e5)] = None,
    similarity: Annotated[str | None, typer.Option(
        "--similarity", help="Similarity set of --mode single: letters of c (colour), t (texture), s (size), "
        "f (fill) (default ctsf).")] = None,
    sigma: Annotated[float, typer.Option("--sigma", help="Gaussian smoothing of the segmentation.", min=0, max=10)] = 0.8,
    segment_min_size: Annotated[int | None, typer.Option(
        "--segment-min-size", help="Felzenszwalb minimum region size in pixels (default: k).", min=0, max=10**7)] = None,
    max_proposals: Annotated[int | None, typer.Option("--max", help="Keep the N best-ranked boxes per image.", min=1, max=10**7)] = None,
    min_size: Annotated[float, typer.Option("--min-size", help="Drop boxes with a side shorter than this (pixels).", min=0, max=1e5)] = 0.0,
    max_aspect: Annotated[float | None, typer.Option(
        "--max-aspect", help="Drop boxes whose long side is over this many times the short side.", min=1, max=1e4)] = None,
    resize: Annotated[int | None, typer.Option(
        "--resize", help="Search a copy whose longer side is at most this (boxes are given in the original).",
        min=4, max=16384)] = None,
    draw: Annotated[int, typer.Option("--draw", help="Draw the N best-ranked boxes to OUT/draw/.", min=0, max=10**5)] = 0,
    segments: Annotated[bool, typer.Option("--segments", help="Write the initial segmentations to OUT/segments/.")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", help="Processes for the strategies of one image (for many images use --jobs).", min=1, max=256)] = 1,
    seed: SeedOpt = 0,
    max_pixels: MaxPixelsOpt = 200_000_000,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    in_place: InPlaceOpt = False,
    jobs: JobsOpt = 0,
    backend: BackendOpt = Backend.loky,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Propose object regions by selective search (Uijlings et al. 2013).

    Regions of a Felzenszwalb segmentation are merged greedily by colour,
    texture, size and fill similarity; every region formed is a proposal.  The
    boxes of all strategies are ranked (seeded), de-duplicated and written to
    OUT/proposals.jsonl, one record per image.
    """
    args = command_args()
    from cvtool.errors import UsageError
    from cvtool.io.atomic import atomic_open
    from cvtool.proposals.selective_search import mode_strategies, validate_settings

    single_only = {"--colour-space": colour_space, "--k": k, "--similarity": similarity}
    given = [name for name, value in single_only.items() if value is not None]
    if mode is not Mode.single and given:
        raise UsageError(f"{', '.join(given)} set(s) the strategy of --mode single; --mode {mode.value} "
                         "uses its own strategies")
    config = SearchConfig(
        mode=mode.value, colour_space=(colour_space or ColourSpace.hsv).value, k=100.0 if k is None else k,
        similarities=similarity or "ctsf", sigma=sigma, segment_min_size=segment_min_size, seed=seed,
        max_proposals=max_proposals, min_size=min_size, max_aspect=max_aspect, resize=resize,
        max_pixels=max_pixels, draw=draw, segments=segments, out=out, workers=workers)
    try:
        validate_settings(mode_strategies(config.mode, colour_space=config.colour_space, k=config.k,
                                          similarities=config.similarities),
                          sigma, segment_min_size, max_proposals, min_size, max_aspect, resize)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    log = Log(quiet)
    target = out / PROPOSALS_FILE
    previous: list[dict] = []
    if target.exists():
        if skip_existing:
            previous = _previous_records(target)
            config = SearchConfig(**{**config.__dict__, "done": frozenset(r["file"] for r in previous)})
            log.info(f"keeping {len(previous)} record(s) of {target}; searching only the other inputs")
        elif not overwrite:
            raise UsageError(f"{target} exists; pass --overwrite to replace it or --skip-existing to keep it")

    def out_name(item) -> PurePosixPath:
        return PurePosixPath("draw") / item.rel

    with atomic_open(target, "w", overwrite=True) as fh:
        for rec in previous:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")

        def on_result(outcome) -> None:
            result = outcome.result
            if result is None:
                return
            fh.write(json.dumps(result["record"], separators=(",", ":")) + "\n")
            fh.flush()
            for note in result["notes"]:
                log.info(f"{outcome.path}: {note}")

        def record(outcome) -> dict | None:
            result = outcome.result
            if result is None:
                return None
            rec = result["record"]
            return {"file": rec["file"], "width": rec["width"], "height": rec["height"],
                    "num_boxes": len(rec["boxes"]), "num_strategies": result["num_strategies"],
                    "initial_regions": result["initial_regions"], "candidates": result["candidates"],
                    "seconds": round(outcome.seconds, 3)}

        code = run_folder_job(
            command="selective-search", inputs=inputs, out=out, out_name=out_name, recursive=recursive,
            overwrite=overwrite or not draw, skip_existing=skip_existing and bool(draw), in_place=in_place, jobs=jobs,
            backend=backend.value, scheduler=scheduler, quiet=quiet, json_out=json_out, args=args, seed=seed,
            func=functools.partial(search_one, config=config), on_result=on_result, record=record)
    raise typer.Exit(code)

"""`cvtool hog`: HOG descriptors of images or of their sliding windows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer

from cvtool.cli.common import (BackendOpt, InPlaceOpt, Backend, InputsArg, JobsOpt, JsonOpt, MaxPixelsOpt, OverwriteOpt,
                               QuietOpt, RecursiveOpt, SchedulerOpt, SkipExistingOpt, command_args, examples,
                               handle_errors, run_folder_job)
from cvtool.errors import UsageError

EPILOG = examples(
    "cvtool hog photos/ --out feats/                      # one feats/hog.npz: features, files, parameters",
    "cvtool hog crops/ --out feats/ --format npy          # one .npy per image",
    "cvtool hog street.jpg --out feats/ --window 64x128 --stride 8x8",
    "cvtool hog photo.png --out vis/ --visualize --engine skimage --cell 16x16",
    "cvtool hog digits/ --out feats/ --cell 4x4 --block 2x2 --bins 12 --signed --block-norm L1-sqrt --json",
)

NPZ_NAME = "hog.npz"
VIS_DIR = "vis"


class Engine(str, Enum):
    """HOG implementation."""

    opencv = "opencv"
    skimage = "skimage"


class BlockNorm(str, Enum):
    """Block normalisation."""

    l2hys = "L2-Hys"
    l2 = "L2"
    l1 = "L1"
    l1sqrt = "L1-sqrt"


class HogFormat(str, Enum):
    """Output layout."""

    npz = "npz"
    npy = "npy"


MAX_WINDOW = 4096
"""Largest --window / --stride side in pixels."""
MAX_CELL = 256
"""Largest --cell side in pixels."""
MAX_BLOCK = 16
"""Largest --block / --block-stride side in cells."""


def parse_size(text: str | None, name: str, limit: int = MAX_WINDOW) -> tuple[int, int] | None:
    """Parse ``'64x128'`` (or ``'8'`` for a square) into ``(w, h)``, each side 1..limit; ``UsageError`` naming ``name``."""
    if text is None:
        return None
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        if len(parts) == 1:
            w = h = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise UsageError(f"{name} {text!r} is not a size such as 64x128 or 8") from None
    if w <= 0 or h <= 0:
        raise UsageError(f"{name} {text!r} must be positive")
    if max(w, h) > limit:
        raise UsageError(f"{name} {text!r}: sides are limited to {limit}")
    return w, h


@dataclass(frozen=True)
class HogConfig:
    """Settings of one hog job (picklable, sent to workers)."""

    params: Any  # cvtool.hog.HogParams
    engine: str = "opencv"
    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    fmt: str = "npz"
    visualize: bool = False
    gray: bool = False
    out_dir: str = "."
    max_pixels: int = 200_000_000
    overwrite: bool = False


def vis_path(out_dir: Path | str, rel: PurePosixPath) -> Path:
    return Path(out_dir) / VIS_DIR / Path(*rel.with_suffix(".png").parts)


def hog_one(task, config: HogConfig) -> dict[str, Any]:
    """Read one image, compute its HOG, write .npy / picture as asked (a batch job)."""
    import numpy as np

    from cvtool.hog import as_hog_input, compute_hog, visualize_hog
    from cvtool.io.atomic import atomic_open
    from cvtool.io.images import read_image, write_image

    image = as_hog_input(read_image(task.item.path, max_pixels=config.max_pixels), gray=config.gray)
    res = compute_hog(image, params=config.params, engine=config.engine, window=config.window,
                      stride=config.stride)
    out: dict[str, Any] = {"file": str(task.item.rel), "shape": list(res.features.shape),
                           "window": list(res.window), "grid": list(res.grid),
                           "image_size": [int(image.shape[1]), int(image.shape[0])]}
    if config.fmt == "npy":
        arr = res.features[0] if config.window is None else res.features
        with atomic_open(task.out, "wb", overwrite=config.overwrite) as fh:
            np.save(fh, arr, allow_pickle=False)
        out["out"] = str(task.out)
    else:
        out["features"] = res.features
        out["positions"] = res.positions
    if config.visualize:
        vp = vis_path(config.out_dir, task.item.rel)
        write_image(vp, visualize_hog(image, params=config.params, engine=config.engine),
                    overwrite=config.overwrite)
        out["vis"] = str(vp)
    return out


class NpzCollector:
    """Gathers per-image results in input order and writes one ``hog.npz``.

    When every descriptor has the same length (sliding windows, or whole images
    of one size) the npz holds one ``features`` (N, D) matrix.  Whole images of
    different sizes give descriptors of different lengths: then each image's
    rows are stored under their own key ``features_00000``, ``features_00001``,
    ... (named by ``feature_keys``, in ``files`` order) and ``ragged`` is True.
    """

    def __init__(self, path: Path, config: HogConfig, log) -> None:
        self.path, self.config, self.log = path, config, log
        self.files: list[str] = []
        self.feats: list[Any] = []
        self.pos: list[Any] = []
        self.sizes: list[list[int]] = []
        self.layout_info: dict[str, Any] | None = None

    def add(self, outcome) -> None:
        r = outcome.result
        f = r.pop("features")
        p = r.pop("positions")
        if self.layout_info is None:
            self.layout_info = {"window": r["window"], "grid": r["grid"]}
        self.files.append(r["file"])
        self.feats.append(f)
        self.pos.append(p)
        self.sizes.append(r["image_size"])

    @property
    def ragged(self) -> bool:
        """True when the descriptors differ in length (whole images of different sizes)."""
        return len({f.shape[1] for f in self.feats}) > 1

    def describe(self) -> str:
        """What the npz holds, for the log line."""
        if self.ragged:
            lengths = sorted({f.shape[1] for f in self.feats})
            return (f"{len(self.files)} image(s) of different sizes, descriptor lengths {lengths[0]}.."
                    f"{lengths[-1]}: one array per image (feature_keys)")
        return (f"{len(self.files)} image(s), features "
                f"{sum(len(f) for f in self.feats)}x{self.feats[0].shape[1]}")

    def write(self) -> None:
        import numpy as np

        from cvtool import __version__
        from cvtool.hog import HogParams
        from cvtool.io.atomic import atomic_open

        params: HogParams = self.config.params
        d = params.block_dim
        counts = [len(f) for f in self.feats]
        arrays: dict[str, Any] = {}
        if self.ragged:
            keys = [f"features_{i:05d}" for i in range(len(self.feats))]
            arrays.update({k: f.astype(np.float32, copy=False) for k, f in zip(keys, self.feats)})
            arrays["feature_keys"] = np.array(keys, dtype=str)
        else:
            feats = np.concatenate(self.feats) if self.feats else np.zeros((0, 0), np.float32)
            arrays["features"] = feats.astype(np.float32, copy=False)
        arrays.update({
            "ragged": np.array(self.ragged),
            "files": np.array(self.files, dtype=str),
            "image_index": np.repeat(np.arange(len(counts), dtype=np.int64), counts),
            "positions": np.concatenate(self.pos) if self.pos else np.zeros((0, 2), np.int64),
            "image_sizes": np.array(self.sizes, dtype=np.int64).reshape(-1, 2),
            "window": np.array((self.layout_info or {}).get("window", [0, 0]), dtype=np.int64),
            "grid": np.array((self.layout_info or {}).get("grid", [0, 0]), dtype=np.int64),
            "block_dim": np.int64(d),
            "engine": np.array(self.config.engine),
            "layout": np.array(self.config.engine),
            "whole_image": np.array(self.config.window is None),
            "params": np.array(params.to_json()),
            "cvtool_version": np.array(__version__),
        })
        with atomic_open(self.path, "wb", overwrite=self.config.overwrite) as fh:
            np.savez(fh, **arrays)


@handle_errors
def hog_command(
    inputs: InputsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help=f"Output folder: {NPZ_NAME} (or .npy files), {VIS_DIR}/, run.json.")],
    window: Annotated[str | None, typer.Option("--window", help="Describe sliding windows of this size WxH (e.g. 64x128) instead of the whole image.")] = None,
    stride: Annotated[str | None, typer.Option("--stride", help="Window stride WxH in pixels, a multiple of the block stride (default: the block stride).")] = None,
    cell: Annotated[str, typer.Option("--cell", help="Cell size WxH in pixels.")] = "8x8",
    block: Annotated[str, typer.Option("--block", help="Block size WxH in cells.")] = "2x2",
    block_stride: Annotated[str, typer.Option("--block-stride", help="Block stride WxH in cells (skimage: 1x1 only).")] = "1x1",
    bins: Annotated[int, typer.Option("--bins", help="Orientation bins (over 180 degrees, or 360 with --signed).", min=2, max=360)] = 9,
    signed: Annotated[bool, typer.Option("--signed/--unsigned", help="Signed gradients over 360 degrees (opencv only).")] = False,
    block_norm: Annotated[BlockNorm, typer.Option("--block-norm", help="Block normalisation (opencv: L2-Hys only).")] = BlockNorm.l2hys,
    sqrt: Annotated[bool, typer.Option("--sqrt/--no-sqrt", help="Gamma compression: square root of intensities first.")] = False,
    win_sigma: Annotated[float | None, typer.Option("--win-sigma", help="opencv: Gaussian block weighting sigma in px (0 = off; default (block_w+block_h)/8).", min=0, max=1000)] = None,
    engine: Annotated[Engine, typer.Option("--engine", help="opencv (fast, trilinear votes) or skimage (scikit-image's hog, every parameter).")] = Engine.opencv,
    fmt: Annotated[HogFormat, typer.Option("--format", help=f"npz: one {NPZ_NAME} for all inputs; npy: one file per image.")] = HogFormat.npz,
    visualize: Annotated[bool, typer.Option("--visualize", help=f"Also write a HOG picture per image under {VIS_DIR}/.")] = False,
    gray: Annotated[bool, typer.Option("--gray", help="Convert colour images to grey first (default: strongest channel's gradient).")] = False,
    recursive: RecursiveOpt = False,
    jobs: JobsOpt = 0,
    backend: BackendOpt = Backend.threading,  # OpenCV releases the GIL: threads, no worker start, no copies
    scheduler: SchedulerOpt = None,
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    in_place: InPlaceOpt = False,
    max_pixels: MaxPixelsOpt = 200_000_000,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Compute HOG descriptors of images (whole, or sliding windows) with OpenCV or scikit-image.

    The npz holds `features` (N, D) float32, `files`, `image_index` (N,) and
    `positions` (N, 2) (window top-left x, y), `params` (JSON), `engine`/`layout`,
    `window` and `grid`.  Whole images of different sizes give descriptors of
    different lengths: then each image has its own array `features_00000`, ...
    (listed in `feature_keys`, in `files` order) and `ragged` is true.  Layouts: opencv orders blocks (and cells within a
    block) column by column, skimage row by row; see the README's hog section.
    """
    import functools

    from cvtool.cli.common import Log
    from cvtool.hog import HogParams, check_engine, check_window

    args = command_args()
    log = Log(quiet)
    try:
        params = HogParams(cell=parse_size(cell, "--cell", MAX_CELL), block=parse_size(block, "--block", MAX_BLOCK),
                           block_stride=parse_size(block_stride, "--block-stride", MAX_BLOCK), bins=bins, signed=signed,
                           block_norm=block_norm.value, sqrt=sqrt, win_sigma=win_sigma)
        win = parse_size(window, "--window")
        step = parse_size(stride, "--stride")
        if step is not None and win is None:
            raise UsageError("--stride needs --window")
        check_engine(engine.value, params)
        if win is not None:
            check_window(win, params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = HogConfig(params=params, engine=engine.value, window=win, stride=step, fmt=fmt.value,
                       visualize=visualize, gray=gray, out_dir=str(out), max_pixels=max_pixels,
                       overwrite=overwrite)
    npz_path = out / NPZ_NAME
    collector = None
    if fmt is HogFormat.npy:
        def out_name(item):
            return item.rel.with_suffix(".npy")
    else:
        if npz_path.exists() and not overwrite:
            raise UsageError(f"{npz_path} exists; pass --overwrite to replace it")
        if skip_existing:
            raise UsageError("--skip-existing applies to --format npy (the npz is written in one piece)")
        collector = NpzCollector(npz_path, config, log)

        def out_name(item):
            # The pictures are the per-image outputs; without them nothing per image is written
            # (this name is only checked for existence, never created).
            return PurePosixPath(VIS_DIR) / item.rel.with_suffix(".png") if visualize else \
                PurePosixPath(".hog-npz-pending") / item.rel

    def record(outcome):
        return {k: v for k, v in outcome.result.items() if k not in ("features", "positions")}

    code = run_folder_job(
        command="hog", inputs=inputs, out=out, func=functools.partial(hog_one, config=config),
        out_name=out_name, recursive=recursive, overwrite=overwrite, skip_existing=skip_existing, in_place=in_place,
        jobs=jobs, backend=backend.value, scheduler=scheduler, quiet=quiet, json_out=json_out,
        args=args, on_result=collector.add if collector else None, record=record)
    if collector is not None:
        if collector.files:
            collector.write()
            log.info(f"hog: {collector.describe()} -> {npz_path}")
    raise typer.Exit(code)

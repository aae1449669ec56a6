"""`cvtool train single-shot`: the anchor-free one-stage CNN detector on the shared runner.

The runner options every CNN kind shares live in :mod:`cvtool.cli.train_common`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cvtool.cli.common import JsonOpt, QuietOpt, command_args, examples, handle_errors
from cvtool.cli.train_common import (
    AmpOpt, BatchOpt, ChannelsLastOpt, CompileOpt, DataOpt, DeterministicOpt, DeviceOpt, EpochsOpt,
    LrOpt, MaxTrainOpt, MaxValOpt, OverwriteRunOpt, ResumeOpt, RunnerOptions, RunOutOpt,
    ThreadsOpt, TrainSeedOpt, ValSplitOpt, WdOpt, prepare_run, report_result,
)
from cvtool.detectors.limits import MAX_WIDTH

EPILOG = examples(
    "cvtool prepare detection --out data/scenes --npz",
    "cvtool train single-shot --data data/scenes --out runs/ss",
    "cvtool train single-shot --data data/scenes --out runs/quick --epochs 4 --max-train 1000 --batch-size 16 "
    "--lr 4e-3 --threads 1   # ~1.5 min",
    "cvtool train single-shot --resume runs/ss --epochs 20   # continue a run, raising its epochs",
    "cvtool detect data/scenes/test/images --model runs/ss --out dets",
    "cvtool eval --gt data/scenes --pred dets",
)


# --------------------------------------------------------------------------- the command
@dataclass(frozen=True)
class SingleShotOptions:
    width: int
    center_fraction: float
    box_weight: float
    max_shift: int
    val_split: str
    max_val: int
    max_train: int | None


@handle_errors
def train_command(
    data: DataOpt = None,
    out: RunOutOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 32,
    lr: LrOpt = 3e-3,
    weight_decay: WdOpt = 1e-4,
    width: Annotated[int, typer.Option("--width", help="Channels of the first stage (then 2x, 4x, 8x).", min=4,
                                       max=MAX_WIDTH)] = 16,
    center_fraction: Annotated[float, typer.Option(
        "--center-fraction", help="Central part of each box whose locations are positives.", min=0.05, max=1.0)] = 0.5,
    box_weight: Annotated[float, typer.Option("--box-weight", help="Weight of the GIoU loss.", min=0.0)] = 1.0,
    max_shift: Annotated[int, typer.Option("--max-shift", help="Random translation augmentation in pixels "
                                           "(objects stay whole; 0: off).", min=0)] = 16,
    val_split: ValSplitOpt = "val",
    max_val: MaxValOpt = 500,
    max_train: MaxTrainOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = None,
    seed: TrainSeedOpt = 0,
    deterministic: DeterministicOpt = None,
    threads: ThreadsOpt = 0,
    resume: ResumeOpt = None,
    overwrite: OverwriteRunOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the single-shot detector (anchor-free, centre-based, stride 4) on a detection dataset.

    Losses: sigmoid focal (classes) + GIoU (boxes, centre-ness weighted) +
    BCE (centre-ness).  Writes RUN/weights/{last,best}.pt, metrics.csv,
    metrics.jsonl and run.json; val COCO AP after every epoch picks best.pt.
    """
    args = command_args(locals())
    runner = RunnerOptions(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
                           amp=amp, channels_last=channels_last, compile=compile, seed=seed,
                           deterministic=deterministic, quiet=quiet, threads=threads)
    opts = SingleShotOptions(width=width, center_fraction=center_fraction, box_weight=box_weight,
                             max_shift=max_shift, val_split=val_split, max_val=max_val, max_train=max_train)
    run(runner, opts, data=data, out=out, resume=resume, overwrite=overwrite, json_out=json_out, args=args)


def run(runner: RunnerOptions, opts: SingleShotOptions, *, data: Path | None, out: Path | None,
        resume: Path | None, overwrite: bool, json_out: bool, args: dict[str, Any]) -> None:
    """Hold the run folder's lock (one run per folder), then :func:`_run`."""
    from cvtool.cli.train_common import run_lock

    with run_lock(out, resume, "train single-shot"):
        _run(runner, opts, data=data, out=out, resume=resume, overwrite=overwrite, json_out=json_out, args=args)


def _run(runner: RunnerOptions, opts: SingleShotOptions, *, data: Path | None, out: Path | None,
        resume: Path | None, overwrite: bool, json_out: bool, args: dict[str, Any]) -> None:
    """Resolve the run, build the task and fit it (the command's body, callable from Python)."""
    import numpy as np

    from cvtool.detectors.single_shot import KIND, SingleShotTask
    from cvtool.detectors.training import load_detection_data
    from cvtool.runner.loop import fit

    out_dir, data_path, config, state = prepare_run(KIND, data=data, out=out, resume=resume, overwrite=overwrite,
                                                    opts=runner)
    settings = dict(width=opts.width, center_fraction=opts.center_fraction, box_weight=opts.box_weight,
                    max_shift=opts.max_shift, in_channels=None)
    if state is not None:  # the architecture and loss settings come from the run
        mc, tc = state.get("model_config", {}), state.get("task_config", {})
        settings.update(width=mc.get("width", opts.width), center_fraction=mc.get("center_fraction", 0.5),
                        in_channels=mc.get("in_channels"), box_weight=tc.get("box_weight", opts.box_weight),
                        max_shift=tc.get("max_shift", opts.max_shift))
    val_split, max_val = opts.val_split, opts.max_val
    if state is not None:  # score the images the run scored before (its best.pt was picked on them)
        tc = state.get("task_config") or {}
        val_split, max_val = str(tc.get("val_split") or val_split), int(tc.get("max_val") or max_val)
    dd = load_detection_data(data_path, val_split=val_split, max_val=max_val, seed=config.seed)
    max_train = opts.max_train
    if state is not None and max_train is None:
        max_train = (state.get("task_config") or {}).get("max_train")
    if max_train is not None and max_train < len(dd.train):
        dd.train = dd.train.subset(np.arange(max_train))
    try:
        task = SingleShotTask(dd, data_path=str(data_path), max_train=max_train, val_split=val_split,
                              max_val=max_val, **settings)
    except ValueError as exc:  # e.g. a --width whose network is too large
        from cvtool.errors import BadInputError, UsageError

        if state is not None:
            raise BadInputError(f"--resume {resume}: the run's settings are refused: {exc}") from None
        raise UsageError(str(exc)) from None  # the message names the setting (width, classes...)
    result = fit(task, config, out_dir, resume_state=state, command="train single-shot", args=args)
    report_result(result, out_dir, quiet=config.quiet, json_out=json_out)

"""`cvtool train rcnn`: R-CNN (Girshick et al. 2014) over cvtool's selective-search proposals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cvtool.cli.common import JobsOpt, JsonOpt, QuietOpt, command_args, examples, handle_errors
from cvtool.cli.train_common import (AmpOpt, BatchOpt, ChannelsLastOpt, CompileOpt, DataOpt, DeterministicOpt,
                                          DeviceOpt, EpochsOpt, LrOpt, MaxTrainOpt, MaxValOpt, OverwriteRunOpt,
                                          ResumeOpt, RunnerOptions, RunOutOpt, ThreadsOpt, TrainSeedOpt,
                                          ValSplitOpt, WdOpt, prepare_run, report_result)
from cvtool.detectors.limits import MAX_WARP, MAX_WIDTH

EPILOG = examples(
    "cvtool prepare detection --out data/scenes --npz",
    "cvtool train rcnn --data data/scenes --out runs/rcnn",
    "cvtool train rcnn --data data/scenes --out runs/rcnn --proposals quality --max-proposals 500 --fg-fraction 0.25",
    "cvtool train rcnn --resume runs/rcnn --epochs 8",
    "cvtool detect test/images --model runs/rcnn --out dets --iou 0.3",
)



@dataclass(frozen=True)
class RCNNOptions:
    proposals: str
    max_proposals: int
    min_proposal_size: float
    width: int
    warp_size: int
    context_pad: int
    rois_per_image: int
    fg_fraction: float
    box_weight: float
    val_split: str
    max_val: int
    max_train: int | None
    jobs: int


@handle_errors
def train_command(
    data: DataOpt = None,
    out: RunOutOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 8,
    lr: LrOpt = 2e-3,
    weight_decay: WdOpt = 1e-4,
    proposals: Annotated[str, typer.Option("--proposals", help="Selective-search mode: single, fast or quality.")]
    = "fast",
    max_proposals: Annotated[int, typer.Option("--max-proposals", help="Best-ranked proposals kept per image.",
                                               min=1)] = 300,
    min_proposal_size: Annotated[float, typer.Option("--min-proposal-size",
                                                     help="Drop proposals narrower or shorter than this (pixels).",
                                                     min=0.0)] = 6.0,
    width: Annotated[int, typer.Option("--width", help="Channels of the first conv stage (then 2x, 4x).", min=4,
                                       max=MAX_WIDTH)]
    = 16,
    warp_size: Annotated[int, typer.Option("--warp-size", help="Side of the warped region (multiple of 8).",
                                           min=16, max=MAX_WARP)] = 32,
    context_pad: Annotated[int, typer.Option("--context-pad", help="Context pixels on each side of the warped "
                                             "region (the paper's 16 at 227).", min=0)] = 4,
    rois_per_image: Annotated[int, typer.Option("--rois-per-image", help="Regions sampled per image per step.",
                                                min=1)] = 16,
    fg_fraction: Annotated[float, typer.Option("--fg-fraction", help="Largest share of foreground regions "
                                               "(IoU >= 0.5) per batch; the rest background (IoU 0.1-0.5).",
                                               min=0.01, max=1.0)] = 0.25,
    box_weight: Annotated[float, typer.Option("--box-weight", help="Weight of the box-regression loss.", min=0.0)]
    = 1.0,
    svm: Annotated[bool, typer.Option("--svm", help="The paper's per-class linear SVMs (not implemented; the "
                                      "softmax scores are used).")] = False,
    val_split: ValSplitOpt = "val",
    max_val: MaxValOpt = 200,
    max_train: MaxTrainOpt = None,
    jobs: JobsOpt = 0,
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
    """Train R-CNN: selective-search proposals (cached in RUN/proposals), warped with context,
    a CNN over N+1 classes with class-specific (dx, dy, dw, dh) box regression.

    Sampling: foreground IoU >= 0.5, background IoU in [0.1, 0.5), at most
    --fg-fraction foreground per batch.  Detection: every class's softmax
    score and regressed box, class-wise NMS.  Val COCO AP picks best.pt.
    """
    from cvtool.errors import UsageError

    args = command_args(locals())
    if svm:
        raise UsageError("--svm: the per-class SVMs are not implemented; train without --svm (softmax scores)")
    if proposals not in ("single", "fast", "quality"):
        raise UsageError(f"--proposals {proposals!r}: choose one of single, fast, quality")
    runner = RunnerOptions(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
                           amp=amp, channels_last=channels_last, compile=compile, seed=seed,
                           deterministic=deterministic, quiet=quiet, threads=threads)
    opts = RCNNOptions(proposals=proposals, max_proposals=max_proposals, min_proposal_size=min_proposal_size,
                       width=width, warp_size=warp_size, context_pad=context_pad, rois_per_image=rois_per_image,
                       fg_fraction=fg_fraction, box_weight=box_weight, val_split=val_split, max_val=max_val,
                       max_train=max_train, jobs=jobs)
    run(runner, opts, data=data, out=out, resume=resume, overwrite=overwrite, json_out=json_out, args=args)


def run(runner: RunnerOptions, opts: RCNNOptions, *, data: Path | None, out: Path | None, resume: Path | None,
        overwrite: bool, json_out: bool, args: dict[str, Any]) -> None:
    """Hold the run folder's lock (one run per folder), then :func:`_run`."""
    from cvtool.cli.train_common import run_lock

    with run_lock(out, resume, "train rcnn"):
        _run(runner, opts, data=data, out=out, resume=resume, overwrite=overwrite, json_out=json_out, args=args)


def _run(runner: RunnerOptions, opts: RCNNOptions, *, data: Path | None, out: Path | None, resume: Path | None,
        overwrite: bool, json_out: bool, args: dict[str, Any]) -> None:
    """Resolve the run, compute (or reuse) proposals, build the task and fit it."""
    import os

    import numpy as np

    from cvtool.cli.common import Log
    from cvtool.detectors.rcnn import KIND, ProposalSettings, RCNNTask
    from cvtool.detectors.training import load_detection_data
    from cvtool.errors import UsageError
    from cvtool.runner.loop import fit

    out_dir, data_path, config, state = prepare_run(KIND, data=data, out=out, resume=resume, overwrite=overwrite,
                                                    opts=runner)
    settings: dict[str, Any] = dict(width=opts.width, warp_size=opts.warp_size, context_pad=opts.context_pad,
                                    rois_per_image=opts.rois_per_image, fg_fraction=opts.fg_fraction,
                                    box_weight=opts.box_weight, in_channels=None)
    try:
        prop = ProposalSettings(mode=opts.proposals, min_size=opts.min_proposal_size,
                                max_proposals=opts.max_proposals, seed=config.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if state is not None:  # architecture, proposals and sampling come from the run
        mc, tc = state.get("model_config", {}), state.get("task_config", {})
        model = mc.get("model", {})
        settings.update(width=model.get("width", opts.width), warp_size=model.get("warp_size", opts.warp_size),
                        context_pad=model.get("context_pad", opts.context_pad), in_channels=model.get("in_channels"),
                        rois_per_image=tc.get("rois_per_image", opts.rois_per_image),
                        fg_fraction=tc.get("fg_fraction", opts.fg_fraction),
                        box_weight=tc.get("box_weight", opts.box_weight))
        try:
            prop = ProposalSettings(**mc.get("proposals", {}))
        except (TypeError, ValueError) as exc:
            from cvtool.errors import BadInputError

            raise BadInputError(f"--resume {resume}: the run's proposal settings are refused "
                                f"({type(exc).__name__}: {str(exc)[:200]})") from None
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
    jobs = opts.jobs or os.cpu_count() or 1
    try:
        task = RCNNTask(dd, cache_dir=out_dir / "proposals", proposals=prop, jobs=jobs, data_path=str(data_path), max_train=max_train,
                        val_split=val_split, max_val=max_val, log=Log(config.quiet).info, **settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = fit(task, config, out_dir, resume_state=state, command="train rcnn", args=args)
    report_result(result, out_dir, quiet=config.quiet, json_out=json_out)

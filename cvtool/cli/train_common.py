"""Options and helpers every CNN `train` command shares (single-shot, R-CNN, localiser)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cvtool.cli.common import emit_json

DataOpt = Annotated[Path | None, typer.Option("--data", exists=True, help="Dataset folder from `cvtool prepare detection` "
                                              "(.npz or COCO + PNG); a val split is used when present.")]
RunOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (weights/, metrics.csv, run.json).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Total epochs (default 10 for a new run; "
                                               "with --resume: raise the run's total).", min=1)]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per batch.", min=1)]
LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, one-cycle schedule).", min=0.0)]
WdOpt = Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.", min=0.0)]
ValSplitOpt = Annotated[str, typer.Option("--val-split", help="Split scored after every epoch (picks best.pt); "
                                          "when missing, 10% of train is held out.")]
MaxValOpt = Annotated[int, typer.Option("--max-val", help="Score at most this many validation images.", min=1)]
MaxTrainOpt = Annotated[int | None, typer.Option("--max-train", help="Train on the first N training images only.",
                                                 min=1)]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (a missing GPU is an error).")]
AmpOpt = Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (bf16 where supported).")]
ChannelsLastOpt = Annotated[bool | None, typer.Option("--channels-last/--no-channels-last",
                                                      help="NHWC memory format (default: on).")]
CompileOpt = Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the training model.")]
DeterministicOpt = Annotated[bool | None, typer.Option("--deterministic/--no-deterministic",
                                                       help="Deterministic kernels (slower).")]
ResumeOpt = Annotated[Path | None, typer.Option("--resume", exists=True, help="Continue the run in this folder from weights/last.pt.")]
OverwriteRunOpt = Annotated[bool, typer.Option("--overwrite", help="Start a new run in a folder that holds one.")]
MAX_THREADS = 256
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for torch (0: torch's default). "
                                         "On shared cores 1 is often fastest.", min=0, max=MAX_THREADS)]
TrainSeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (initialisation, shuffling, augmentation).")]


@dataclass(frozen=True)
class RunnerOptions:
    """The runner settings both CNN detector commands take."""

    epochs: int | None
    batch_size: int
    lr: float
    weight_decay: float
    device: str | None
    amp: bool | None
    channels_last: bool | None
    compile: bool | None
    seed: int
    deterministic: bool | None
    quiet: bool
    threads: int = 0


def prepare_run(kind: str, *, data: Path | None, out: Path | None, resume: Path | None, overwrite: bool,
                opts: RunnerOptions) -> tuple[Path, Path, Any, dict[str, Any] | None]:
    """Resolve a new or resumed run: ``(out, data, TrainConfig, resume_state)``.

    A new run needs ``--data`` and ``--out`` (a folder without a run unless
    ``--overwrite``); ``--resume RUN`` takes both from the run's checkpoint
    (``--data`` may point the run at moved data).
    """
    import torch

    from cvtool.errors import UsageError
    from cvtool.runner.loop import TrainConfig, check_out_dir, read_run_checkpoint, resumed_config

    # --threads is part of the run (the thread count changes float reductions, so a
    # resumed run keeps the recorded one unless given again)
    runtime = dict(device=opts.device, amp=opts.amp, channels_last=opts.channels_last, compile=opts.compile,
                   deterministic=opts.deterministic, quiet=opts.quiet or None, threads=opts.threads or None)
    if resume is not None:
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise UsageError(f"--out {out}: a resumed run stays in its folder {resume}; drop --out")
        state = read_run_checkpoint(resume)
        if state.get("kind") != kind:
            raise UsageError(f"--resume {resume}: that run trained a {state.get('kind')!r} model, not {kind!r}")
        config = resumed_config(state, epochs=opts.epochs, **runtime)
        if config.threads:
            torch.set_num_threads(config.threads)
        saved_data = (state.get("task_config") or {}).get("data")
        data_path = Path(data) if data is not None else saved_data_path(saved_data, Path(resume))
        return Path(resume), data_path.absolute(), config, state
    if data is None:
        raise UsageError("--data is required (a dataset folder from `cvtool prepare detection`)")
    if out is None:
        raise UsageError("--out is required (the run folder to create)")
    check_out_dir(Path(out), overwrite=overwrite)
    data = Path(data).absolute()  # recorded absolute, so --resume works from any directory
    config = TrainConfig(epochs=opts.epochs or 10, batch_size=opts.batch_size, lr=opts.lr,
                         weight_decay=opts.weight_decay, optimizer="adamw", scheduler="onecycle", warmup=0.1,
                         device=opts.device or "auto", amp=bool(opts.amp),
                         channels_last=True if opts.channels_last is None else opts.channels_last,
                         compile=bool(opts.compile), seed=opts.seed, deterministic=bool(opts.deterministic),
                         quiet=opts.quiet, threads=opts.threads).validate()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    return Path(out), Path(data), config, None


def saved_data_path(saved: Any, run: Path) -> Path:
    """The dataset a run recorded: absolute since #13; older runs recorded it relative to
    the directory they were started from, tried here against the current directory and then
    beside the run folder."""
    from cvtool.errors import UsageError

    if not saved or not isinstance(saved, str):
        raise UsageError(f"--resume {run}: the run does not record its data; pass --data")
    p = Path(saved)
    if p.is_absolute():
        return p
    for base in (Path.cwd(), run.absolute().parent):
        if (base / p).exists():
            return base / p
    raise UsageError(f"--resume {run}: the run recorded its data as the relative path {saved!r}, which is not "
                     f"under the current directory or beside the run; pass --data")


def run_lock(out: Path | None, resume: Path | None, command: str):
    """The run-folder lock of a train command (a no-op when no folder was given: that is a usage
    error reported later).  Under ``torchrun`` only rank 0 locks (the other ranks write nothing)."""
    import contextlib
    import os

    from cvtool.runner.lock import run_folder_lock

    folder = resume if resume is not None else out
    if folder is None or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    if resume is not None and not Path(resume).is_dir():
        return contextlib.nullcontext()  # "no weights/last.pt there" is reported by prepare_run
    return run_folder_lock(folder, command=command)


def report_result(result: dict[str, Any], out: Path, *, quiet: bool, json_out: bool) -> None:
    """Log where the weights are and, with ``--json``, print the fit summary."""
    from cvtool.cli.common import Log

    m = result.get("best_metrics") or {}  # the metrics of the epoch best.pt holds, not the last epoch's
    ap = m.get("val_AP")
    Log(quiet).info(f"trained {result['epochs']} epochs -> {out}/weights/best.pt (epoch {result['best_epoch']}"
                    + (f", val AP {ap:.3f}, AP50 {m.get('val_AP50', 0):.3f}" if ap is not None else "") + ")")
    if json_out:
        emit_json({"out": str(out), **result})

"""`cvtool train localizer`: one network, a class head and a box head, on one-object canvases."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cvtool.cli.common import JsonOpt, QuietOpt, command_args, emit_json, examples, handle_errors
from cvtool.cli.train_common import (AmpOpt, ChannelsLastOpt, CompileOpt, DeterministicOpt, DeviceOpt,
                                          EpochsOpt, MaxTrainOpt, OverwriteRunOpt, ResumeOpt, RunnerOptions,
                                          MAX_THREADS, RunOutOpt, TrainSeedOpt)
from cvtool.detectors.limits import MAX_WIDTH

EPILOG = examples(
    "cvtool prepare localization --out data/loc --npz",
    "cvtool train localizer --data data/loc --out runs/loc --threads 1   # default arch, 3 epochs",
    "cvtool train localizer --data data/loc --out runs/gpu --device cuda --amp --compile",
    "cvtool train localizer --data data/loc --out runs/seed --arch seed   # the seed study's recipe",
    "cvtool train localizer --resume runs/loc --epochs 16   # continue, raising the total",
    "torchrun --nproc_per_node 2 -m cvtool train localizer --data data/loc --out runs/ddp --device cpu",
    "cvtool detect data/loc/test/images --model runs/loc/weights/best.pt --out dets/",
    "cvtool eval --metric loc --gt data/loc/test/annotations.json --pred dets/detections.jsonl",
)


class Arch(str, Enum):
    default = "default"
    seed = "seed"


class BoxLoss(str, Enum):
    smooth_l1 = "smooth-l1"
    l1 = "l1"
    mse = "mse"


class Augment(str, Enum):
    shift = "shift"
    none = "none"


ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    # the seed study: Adam 1e-3, constant rate, batch 64, CE + MSE with equal weights, 10 epochs
    "seed": dict(epochs=10, batch_size=64, lr=1e-3, weight_decay=0.0, optimizer="adam", scheduler="constant",
                 cls=1.0, box=1.0, box_loss="mse", giou=0.0, center=0.0),
    "default": dict(epochs=3, batch_size=32, lr=4e-3, weight_decay=1e-4, optimizer="adamw", scheduler="onecycle",
                    cls=1.0, box=5.0, box_loss="smooth-l1", giou=2.0, center=0.5),
}


@dataclass(frozen=True)
class LocalizerOptions:
    """The localiser's own settings (None: the architecture's default)."""

    arch: str
    width: int
    cls_weight: float | None
    box_weight: float | None
    box_loss: str | None
    giou_weight: float | None
    center_weight: float | None
    augment: str
    val_split: str
    max_train: int | None
    threads: int = 0


WeightOpt = float | None


@handle_errors
def train_command(
    data: Annotated[Path | None, typer.Option("--data", exists=True, help="Dataset from `cvtool prepare localization` "
                                              "(.npz or COCO + PNG, one object per canvas).")] = None,
    out: RunOutOpt = None,
    arch: Annotated[Arch, typer.Option("--arch", help="default: conv-BN net with an attention box head; "
                                       "seed: the seed study's network and recipe.")] = Arch.default,
    epochs: EpochsOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch size "
                                                   "[default: seed 64, default 32].", min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate [default: seed 1e-3 (Adam, constant); "
                                             "default 4e-3 (AdamW, one-cycle peak)].", min=0.0)] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="[default: seed 0, default 1e-4].",
                                                       min=0.0)] = None,
    width: Annotated[int, typer.Option("--width", help="default arch: channels of the first stage "
                                       "(then 2x, 4x, 8x).", min=1, max=MAX_WIDTH)] = 8,
    cls_weight: Annotated[WeightOpt, typer.Option("--cls-weight", help="Cross-entropy weight [1].", min=0.0)] = None,
    box_weight: Annotated[WeightOpt, typer.Option("--box-weight", help="Box regression weight "
                                                  "[seed 1, default 5].", min=0.0)] = None,
    box_loss: Annotated[BoxLoss | None, typer.Option("--box-loss", help="Box regression on normalised xyxy "
                                                     "[seed mse, default smooth-l1].")] = None,
    giou_weight: Annotated[WeightOpt, typer.Option("--giou-weight", help="1 - GIoU weight [seed 0, default 2].",
                                                   min=0.0)] = None,
    center_weight: Annotated[WeightOpt, typer.Option("--center-weight", help="default arch: attention "
                                                     "centre-cell weight [0.5].", min=0.0)] = None,
    augment: Annotated[Augment, typer.Option("--augment", help="shift: redraw each object's position every "
                                             "epoch (on the device); none: canvases as they are.")] = Augment.shift,
    val_split: Annotated[str, typer.Option("--val-split", help="Split scored after every epoch (picks best.pt); "
                                           "when 'val' is missing, 10% of train is held out.")] = "val",
    max_train: MaxTrainOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = None,
    seed: TrainSeedOpt = 0,
    deterministic: DeterministicOpt = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch (0: torch's default; 1 is "
                                         "often fastest on a busy shared machine).", min=0, max=MAX_THREADS)] = 0,
    resume: ResumeOpt = None,
    overwrite: OverwriteRunOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the single-object localiser: class softmax + one normalised xyxy box per canvas.

    Loss: cross-entropy + box regression (smooth L1 / L1 / MSE) + 1 - GIoU
    (+ the default arch's attention centre term); weights are options.  Writes
    RUN/weights/{last,best}.pt, metrics.csv, metrics.jsonl and run.json; the
    validation score (mean of accuracy and the IoU >= 0.6 share) picks best.pt.
    SIGTERM / Ctrl-C save weights/last.pt and exit 130; --resume continues.
    """
    args = command_args(locals())
    runner = RunnerOptions(epochs=epochs, batch_size=batch_size or 0, lr=lr or 0.0, weight_decay=weight_decay or 0.0,
                           device=device, amp=amp, channels_last=channels_last, compile=compile, seed=seed,
                           deterministic=deterministic, quiet=quiet)
    opts = LocalizerOptions(arch=arch.value, width=width, cls_weight=cls_weight, box_weight=box_weight,
                            box_loss=box_loss.value if box_loss else None, giou_weight=giou_weight,
                            center_weight=center_weight, augment=augment.value, val_split=val_split,
                            max_train=max_train, threads=threads)
    result = run(runner, opts, data=data, out=out, resume=resume, overwrite=overwrite, args=args,
                 explicit={"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay})
    if result.get("rank", 0) != 0:  # under torchrun only rank 0 reports
        return
    m = result.get("best_metrics") or {}  # the metrics of the epoch best.pt holds, not the last epoch's
    from cvtool.cli.common import Log

    summary = ""
    if "val_accuracy" in m:
        summary = (f", val accuracy {m['val_accuracy']:.4f}, mean IoU {m['val_mean_iou']:.4f}, "
                   f"IoU>=0.6 {m['val_iou0.6']:.4f}")
    Log(quiet).info(f"trained {result['epochs']} epochs -> {result['best']} (best epoch {result['best_epoch']}"
                    f"{summary})")
    if json_out:
        emit_json(result)


def run(runner: RunnerOptions, opts: LocalizerOptions, *, data: Path | None, out: Path | None,
        resume: Path | None, overwrite: bool, args: dict[str, Any],
        explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hold the run folder's lock (one run per folder), then :func:`_run`."""
    from cvtool.cli.train_common import run_lock

    with run_lock(out, resume, "train localizer"):
        return _run(runner, opts, data=data, out=out, resume=resume, overwrite=overwrite, args=args, explicit=explicit)


def _run(runner: RunnerOptions, opts: LocalizerOptions, *, data: Path | None, out: Path | None,
        resume: Path | None, overwrite: bool, args: dict[str, Any],
        explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolve a new or resumed run, build the task and fit it (the command's body)."""
    from dataclasses import replace

    from cvtool.cli.train_common import prepare_run
    from cvtool.detectors.localizer import KIND, LocalizerTask, LossWeights
    from cvtool.runner.loop import fit

    defaults = ARCH_DEFAULTS[opts.arch]
    explicit = explicit or {}
    runner = replace(runner, epochs=runner.epochs if runner.epochs or resume else defaults["epochs"],
                     batch_size=explicit.get("batch_size") or defaults["batch_size"],
                     lr=explicit.get("lr") or defaults["lr"],
                     weight_decay=(explicit["weight_decay"] if explicit.get("weight_decay") is not None
                                   else defaults["weight_decay"]))
    out_dir, data_path, config, state = prepare_run(KIND, data=data, out=out, resume=resume, overwrite=overwrite,
                                                    opts=runner)
    config = replace(config, threads=opts.threads)
    if state is None:
        config = replace(config, optimizer=defaults["optimizer"], scheduler=defaults["scheduler"],
                         channels_last=runner.channels_last).validate()
        loss = LossWeights(cls=_pick(opts.cls_weight, defaults["cls"]), box=_pick(opts.box_weight, defaults["box"]),
                           box_loss=opts.box_loss or defaults["box_loss"],
                           giou=_pick(opts.giou_weight, defaults["giou"]),
                           center=_pick(opts.center_weight, defaults["center"]))
        arch, width, augment = opts.arch, opts.width, opts.augment
        val_split, max_train = opts.val_split, opts.max_train
    else:  # architecture, loss and data choices come from the run
        tc, mc = state.get("task_config") or {}, state.get("model_config") or {}
        try:
            loss = LossWeights(**tc["loss"])
            arch, width, augment = str(mc["arch"]), int(mc.get("width", 8)), str(tc.get("augment", "shift"))
            val_split, max_train = str(tc.get("val_split", "val")), tc.get("max_train")
        except (KeyError, TypeError, ValueError) as exc:
            from cvtool.errors import BadInputError

            raise BadInputError(f"--resume {resume}: checkpoint lacks the localizer settings ({exc})") from None
    train, val = load_localization_data(data_path, val_split=val_split, max_train=max_train, seed=config.seed)
    settings = {"data": str(data_path), "val_split": val_split, "max_train": max_train}
    try:
        task = LocalizerTask(train, val, arch=arch, width=width, loss=loss, augment=augment, settings=settings)
    except ValueError as exc:
        from cvtool.errors import UsageError

        raise UsageError(str(exc)) from None
    return fit(task, config, out_dir, resume_state=state, command="train localizer", args=args)


def _pick(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def load_localization_data(path: Path, *, val_split: str = "val", max_train: int | None = None, seed: int = 0):
    """``(train, val)`` ArrayDatasets; 10% of train is held out (seeded) when ``val`` is missing."""
    import numpy as np

    from cvtool.datasets.arrays import load_arrays
    from cvtool.errors import BadInputError, UsageError

    train = load_arrays(path, split="train")
    try:
        val = load_arrays(path, split=val_split)
    except BadInputError:
        if val_split != "val":
            raise UsageError(f"--val-split {val_split}: no such split in {path}") from None
        if len(train) < 10:
            raise BadInputError(f"{path}: no val split and only {len(train)} training canvases to hold out from")
        order = np.random.default_rng(seed).permutation(len(train))
        k = max(1, len(train) // 10)
        val, train = take_images(train, np.sort(order[:k])), take_images(train, np.sort(order[k:]))
    if max_train is not None and max_train < len(train):
        train = take_images(train, np.arange(max_train))
    return train, val


def take_images(ds, index):
    """The images ``index`` (ascending) of an ArrayDataset with their boxes."""
    import numpy as np

    from cvtool.datasets.arrays import ArrayDataset

    index = np.asarray(index, dtype=np.int64)
    keep = np.isin(ds.box_image, index)
    remap = np.full(len(ds), -1, dtype=np.int64)
    remap[index] = np.arange(len(index))
    return ArrayDataset(images=ds.images[index], boxes=ds.boxes[keep], labels=ds.labels[keep],
                        box_image=remap[ds.box_image[keep]], category_ids=ds.category_ids,
                        category_names=ds.category_names)

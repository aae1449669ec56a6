"""The fit loop every CNN kind trains with, and the small interface a kind implements.

A model kind supplies a :class:`Task`; :func:`fit` does the rest: device and
process group, seeding, mixed precision, channels-last, ``torch.compile``,
DistributedDataParallel, the optimiser and LR schedule, the run folder
(``run.json``, ``metrics.csv``, ``metrics.jsonl``, ``weights/last.pt``,
``weights/best.pt``), resuming, and a clean stop on SIGTERM or Ctrl-C.

Example
-------
A task that fits ``y = 2x`` (the shape of every real task: build, batches, loss, evaluate)::

    import torch
    from cvtool.runner.data import TensorBatches
    from cvtool.runner.loop import TrainConfig, fit

    class Line:
        kind, classes, category_ids = "line", [], []
        x = torch.linspace(-1, 1, 256)[:, None]

        def model_config(self):              # stored in the checkpoint to rebuild the model
            return {"features": 1}

        def build_model(self):
            return torch.nn.Linear(1, 1)

        def train_batches(self, env, *, batch_size, seed):
            return TensorBatches({"x": self.x, "y": 2 * self.x}, batch_size=batch_size,
                                 seed=seed, ctx=env.dist, device=env.device)

        def loss(self, model, batch, env):   # -> (scalar loss, {part name: value})
            err = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
            return err, {"mse": err}

        def evaluate(self, model, env):      # -> metrics with a "score" (higher is better)
            err = torch.nn.functional.mse_loss(model(self.x.to(env.device)), 2 * self.x.to(env.device))
            return {"mse": float(err), "score": -float(err)}

    fit(Line(), TrainConfig(epochs=5, batch_size=32, lr=0.1, device="cpu"), "runs/line")

Under ``torchrun --nproc_per_node N`` the same call trains with DDP: the global
``batch_size`` is split across the processes and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from cvtool.errors import BadInputError, CvtoolError, UsageError
from cvtool.runner import device as devmod
from cvtool.runner import distributed as distmod
from cvtool.runner.checkpoint import load_checkpoint, save_checkpoint
from cvtool.runner.data import BatchSource
from cvtool.runner.distributed import DistContext
from cvtool.runner.lock import run_folder_lock

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("onecycle", "cosine", "constant")
LAST = Path("weights") / "last.pt"
BEST = Path("weights") / "best.pt"
MAX_THREADS = 256
"""Most torch threads a run may ask for (each is an OS thread with its own stack)."""
RUNTIME_FIELDS = ("device", "amp", "channels_last", "compile", "quiet", "deterministic", "threads")
"""Settings a resumed run may change (with ``epochs``); the rest come from the checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    """Training settings shared by every kind (the kind's own settings live in its task).

    Attributes
    ----------
    epochs : int
        Total epochs (a resumed run may raise it).
    batch_size : int
        Global batch size, split evenly across DDP processes.
    lr : float
        Learning rate (the peak rate for ``onecycle``).
    weight_decay : float
    optimizer : {'adam', 'adamw', 'sgd'}
    scheduler : {'onecycle', 'cosine', 'constant'}
        Stepped once per batch (``onecycle`` with fewer than 4 steps in all: constant).
    warmup : float
        ``onecycle``: fraction of the steps spent rising to ``lr``.
    grad_clip : float
        Clip the gradient norm to this (0: off).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    amp : bool
        Autocast (bf16 where supported, else fp16 with a GradScaler).
    channels_last : bool or None
        NHWC memory format for model and images; None: on for CUDA only.
    compile : bool
        ``torch.compile`` the training model.
    seed : int
    deterministic : bool
        Deterministic kernels (slower; ops without one raise).
    quiet : bool
        No progress and no per-epoch lines.
    threads : int
        CPU threads for torch's intra-op pool (0: torch's default).  On a busy
        shared machine 1 can be many times faster than oversubscribed threads.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    scheduler: str = "onecycle"
    warmup: float = 0.25
    grad_clip: float = 0.0
    device: str = "auto"
    amp: bool = False
    channels_last: bool | None = None
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    quiet: bool = False
    threads: int = 0

    def validate(self) -> TrainConfig:
        """Raise :class:`UsageError` naming the first bad setting; return self."""
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs}: must be >= 1")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr {self.lr}: must be a positive number")
        if self.weight_decay < 0:
            raise UsageError(f"--weight-decay {self.weight_decay}: must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise UsageError(f"--scheduler {self.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        if not 0 < self.warmup < 1:
            raise UsageError(f"--warmup {self.warmup}: must be between 0 and 1")
        if not 0 <= self.threads <= MAX_THREADS:
            raise UsageError(f"--threads {self.threads}: must be in [0, {MAX_THREADS}] (0: torch's default)")
        if self.grad_clip < 0:
            raise UsageError(f"--grad-clip {self.grad_clip}: must be >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class FitEnv:
    """What a task's methods get to know about the run."""

    device: torch.device
    dist: DistContext
    memory_format: torch.memory_format
    amp_dtype: torch.dtype | None

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the run's memory format (channels-last for 4-D tensors when on)."""
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x


class Task(Protocol):
    """What a model kind supplies to :func:`fit`.

    Attributes ``kind`` (str), ``classes`` (list of str) and ``category_ids``
    (list of int) go into every checkpoint.  ``task_config()`` may be defined
    too: a plain dict also stored (``task_config`` key), e.g. the data path.
    """

    kind: str
    classes: list[str]
    category_ids: list[int]

    def model_config(self) -> dict[str, Any]:
        """Plain values the kind's ``load()`` needs to rebuild the network."""

    def build_model(self) -> torch.nn.Module:
        """A freshly initialised network (seeded by the runner before the call)."""

    def train_batches(self, env: FitEnv, *, batch_size: int, seed: int) -> BatchSource:
        """This process's training batches (``batch_size`` is per process)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
             env: FitEnv) -> tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]:
        """The scalar loss of one batch and its named parts (for the logs)."""

    def evaluate(self, model: torch.nn.Module, env: FitEnv) -> dict[str, float]:
        """Validation metrics (called in eval mode under ``no_grad``, rank 0 only);
        must hold ``score`` (higher is better; it picks ``best.pt``)."""


# ---------------------------------------------------------------------------
# Optimiser, schedule
# ---------------------------------------------------------------------------


def build_optimizer(model: torch.nn.Module, config: TrainConfig, total_steps: int):
    """``(optimizer, scheduler)`` for ``config``; the scheduler steps once per batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    total_steps = max(1, total_steps)
    if config.scheduler == "onecycle" and total_steps >= 4:
        # at least two steps in the rising phase (OneCycleLR divides by its length)
        pct = min(max(config.warmup, 2.0 / total_steps), 0.5)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total_steps, pct_start=pct)
    elif config.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)
    return opt, sched


_LENGTH_KEYS = ("total_steps", "_schedule_phases", "T_max")


def _load_scheduler(sched, saved: Mapping[str, Any]) -> None:
    """Load ``saved`` but keep the fresh schedule's length (a resumed run may raise --epochs)."""
    fresh = sched.state_dict()
    merged = dict(saved)
    for k in _LENGTH_KEYS:
        if k in fresh:
            merged[k] = fresh[k]
    sched.load_state_dict(merged)


# ---------------------------------------------------------------------------
# Run folder: metrics and checkpoints
# ---------------------------------------------------------------------------


class MetricsLog:
    """Per-epoch rows in ``metrics.jsonl`` and ``metrics.csv`` (both rewritten atomically)."""

    def __init__(self, out_dir: Path, rows: list[dict[str, Any]] | None = None) -> None:
        self.out_dir = out_dir
        self.rows = list(rows or [])

    @classmethod
    def read(cls, out_dir: Path, *, upto_epoch: int) -> MetricsLog:
        rows = []
        path = out_dir / "metrics.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and int(row.get("epoch", 0)) <= upto_epoch:
                    rows.append(row)
        return cls(out_dir, rows)

    def append(self, row: dict[str, Any]) -> None:
        from cvtool.io.atomic import atomic_write_text

        self.rows.append(row)
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        files = {"metrics.jsonl": "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in self.rows),
                 "metrics.csv": buf.getvalue()}
        for name, text in files.items():
            try:
                atomic_write_text(self.out_dir / name, text, overwrite=True)
            except OSError as exc:
                raise CvtoolError(f"{self.out_dir / name}: cannot write: {exc.strerror or exc}") from None


def read_run_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The ``weights/last.pt`` of a run folder, for ``--resume``.

    Raises
    ------
    UsageError
        ``run_dir`` is not a run folder with ``weights/last.pt``.
    BadInputError
        The checkpoint is corrupt or foreign.
    """
    p = Path(run_dir) / LAST
    if not p.is_file():
        raise UsageError(f"--resume {run_dir}: no {LAST} there (is it a training run folder?)")
    return load_checkpoint(p)


def resumed_config(saved: Mapping[str, Any], *, epochs: int | None = None, **runtime: Any) -> TrainConfig:
    """The saved :class:`TrainConfig` with a new ``epochs`` and runtime settings applied.

    ``runtime`` may set only :data:`RUNTIME_FIELDS`; ``None`` values keep the saved ones.
    """
    try:
        cfg = TrainConfig.from_dict(saved["config"])
    except (KeyError, TypeError) as exc:
        raise BadInputError(f"checkpoint has no usable training config ({exc})") from None
    bad = set(runtime) - set(RUNTIME_FIELDS)
    if bad:
        raise UsageError(f"a resumed run keeps its {', '.join(sorted(bad))}; only --epochs and "
                         f"{', '.join('--' + f.replace('_', '-') for f in RUNTIME_FIELDS)} may change")
    changes = {k: v for k, v in runtime.items() if v is not None}
    if epochs is not None:
        if epochs < int(saved.get("epoch", 0)):
            raise UsageError(f"--epochs {epochs}: the run already finished {saved.get('epoch')} epochs")
        changes["epochs"] = epochs
    try:  # the options given now are checked already; what fails here came from the checkpoint
        return replace(cfg, **changes).validate()
    except UsageError as exc:
        raise BadInputError(f"checkpoint holds a bad training setting ({exc})") from None


def check_out_dir(out_dir: Path, *, overwrite: bool) -> None:
    """A new run may not write into an earlier run's folder unless ``overwrite``."""
    if overwrite:
        return
    for name in (LAST, BEST, Path("metrics.jsonl")):
        if (out_dir / name).exists():
            raise FileExistsError(f"{out_dir} already holds a run ({name}); pass --resume {out_dir} to "
                                  "continue it or --overwrite to start again")


# ---------------------------------------------------------------------------
# Progress and stop signals
# ---------------------------------------------------------------------------


class _Progress:
    """A rich bar per epoch on a TTY; one plain line per epoch otherwise; nothing when quiet."""

    def __init__(self, *, quiet: bool, enabled: bool) -> None:
        self.quiet = quiet or not enabled
        self.tty = not self.quiet and sys.stderr.isatty()
        self._prog = None
        self._task = None

    def start(self, epoch: int, epochs: int, total: int, done: int) -> None:
        if not self.tty:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from cvtool.cli.common import err_console

        self._prog = Progress(TextColumn(f"epoch {epoch + 1}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[loss]}"), TimeRemainingColumn(),
                              console=err_console(), transient=True)
        self._prog.start()
        self._task = self._prog.add_task("train", total=total, completed=done, loss="")

    def advance(self, loss: float | None = None) -> None:
        if self._prog is not None:
            self._prog.update(self._task, advance=1, loss="" if loss is None else f"loss {loss:.4f}")

    def stop(self) -> None:
        if self._prog is not None:
            self._prog.stop()
            self._prog = None

    def line(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


class _StopFlag:
    """SIGTERM / first Ctrl-C set a flag checked between batches; a second Ctrl-C raises at once."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):  # pragma: no cover - exercised via subprocess tests
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals stay as they were
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """The one plain line logged per epoch."""
    skip = {"epoch", "device", "seconds", "img_per_s", "lr", "batches"}
    parts = [f"epoch {row['epoch']}/{epochs}"]
    parts += [f"{k} {_fmt(v)}" for k, v in row.items() if k not in skip]
    parts += [f"lr {row['lr']:.3g}", f"{row['img_per_s']:.0f} img/s", f"{row['seconds']:.1f} s"]
    return "  ".join(parts)


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics row with only str/int/float/bool values (what a checkpoint may hold)."""
    return {str(k): v for k, v in row.items() if isinstance(v, (str, int, float, bool))}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    if isinstance(state.get("cpu"), torch.Tensor):
        torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and isinstance(state.get("cuda"), torch.Tensor):
        torch.cuda.set_rng_state(state["cuda"], device)


def fit(task: Task, config: TrainConfig, out_dir: str | Path, *, resume_state: Mapping[str, Any] | None = None,
        command: str = "train", args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``task`` under ``config`` into the run folder ``out_dir``.

    Parameters
    ----------
    task : Task
        The model kind (see :class:`Task`).
    config : TrainConfig
    out_dir : path-like
        Run folder: ``run.json``, ``metrics.csv``, ``metrics.jsonl``,
        ``weights/last.pt`` (every epoch) and ``weights/best.pt`` (best ``score``).
    resume_state : dict, optional
        A checkpoint (:func:`read_run_checkpoint`) to continue from: model,
        optimiser, scheduler, scaler, RNG, epoch and batch are restored, and
        ``metrics`` rows after that epoch are dropped.
    command, args : str, mapping
        For ``run.json``.

    Returns
    -------
    dict
        ``epochs`` (completed), ``best_score``, ``best_epoch``, ``best_metrics``
        (the metrics row of ``best_epoch``, the epoch ``best.pt`` holds), ``last``,
        ``best`` (paths), ``metrics`` (the final row; empty when no epoch ran and
        on ranks other than 0), ``rank`` and ``world_size``.

    Raises
    ------
    UsageError
        Bad settings, a missing GPU, a batch size that does not split across processes,
        or another process training into ``out_dir`` (:mod:`cvtool.runner.lock`).
    CvtoolError
        The loss became NaN or infinite; a checkpoint or metrics file could not be
        written (full disk: one line naming the file).
    KeyboardInterrupt
        After SIGTERM or Ctrl-C, once ``weights/last.pt`` holds the state at the
        last finished batch (``--resume`` continues from there).
    """
    from cvtool import __version__
    from cvtool.io.manifest import now_iso, write_manifest

    config.validate()
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    if config.threads:
        torch.set_num_threads(config.threads)
    started = now_iso()
    out = Path(out_dir)
    device = devmod.resolve_device(config.device)
    dctx = distmod.setup(device)
    device = dctx.device
    held = contextlib.ExitStack()
    try:
        if dctx.is_main:  # one run per folder (re-entrant: the CLI may hold it already)
            held.enter_context(run_folder_lock(out, command=command))
        if config.batch_size % dctx.world_size:
            raise UsageError(f"--batch-size {config.batch_size} does not split evenly across "
                             f"{dctx.world_size} processes")
        per_process = config.batch_size // dctx.world_size
        devmod.seed_everything(config.seed, deterministic=config.deterministic, device=device)
        channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
        env = FitEnv(device=device, dist=dctx,
                     memory_format=torch.channels_last if channels_last else torch.contiguous_format,
                     amp_dtype=devmod.amp_dtype(device, config.amp))

        raw = task.build_model().to(device)
        if channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        start_epoch, start_batch, best_score, best_epoch = 0, 0, -math.inf, 0
        best_row: dict[str, Any] = {}
        if resume_state is not None:
            if resume_state.get("kind") != task.kind:
                raise BadInputError(f"cannot resume: the checkpoint is a {resume_state.get('kind')!r} model, "
                                    f"not {task.kind!r}")
            try:
                raw.load_state_dict(resume_state["model"])
            except (KeyError, RuntimeError) as exc:
                raise BadInputError(f"cannot resume: model weights do not fit ({str(exc)[:200]})") from None
            start_epoch = int(resume_state.get("epoch", 0))
            start_batch = int(resume_state.get("batch", 0))
            best_score = float(resume_state.get("best_score", -math.inf))
            best_epoch = int(resume_state.get("best_epoch", 0))
            best_row = dict(resume_state.get("best_metrics") or {})
        train_model = distmod.wrap_model(raw, dctx)
        if config.compile:
            train_model = torch.compile(train_model)

        batches = task.train_batches(env, batch_size=per_process, seed=config.seed)
        steps = len(batches)
        if steps == 0:
            raise BadInputError("no training samples")
        optimizer, scheduler = build_optimizer(raw, config, steps * config.epochs)
        scaler = devmod.grad_scaler(device, env.amp_dtype)
        if resume_state is not None:
            try:
                fresh_groups = [dict(g) for g in optimizer.param_groups]
                optimizer.load_state_dict(resume_state["optimizer"])
                # A schedule that changed kind on resume (a first run too short for one-cycle, then
                # raised --epochs) needs the keys the new schedule put into the param groups.
                for group, fresh in zip(optimizer.param_groups, fresh_groups):
                    for key, value in fresh.items():
                        group.setdefault(key, value)
                _load_scheduler(scheduler, resume_state["scheduler"])
                if resume_state.get("scaler"):
                    scaler.load_state_dict(resume_state["scaler"])
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                raise BadInputError(f"cannot resume: optimiser state does not fit ({str(exc)[:200]})") from None
            _set_rng_state(resume_state.get("rng", {}), device)

        main = dctx.is_main
        if main:
            out.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog.read(out, upto_epoch=start_epoch) if resume_state is not None else MetricsLog(out)
        if best_epoch and not best_row:  # checkpoints from before best_metrics was stored
            best_row = next((r for r in metrics.rows if int(r.get("epoch", 0)) == best_epoch), {})
        manifest = dict(command=command, args=dict(args or {}), seed=config.seed,
                        device=devmod.describe_device(device), started=started)
        if main:
            write_manifest(out, finished=None, counts={"epochs_done": start_epoch, "world_size": dctx.world_size},
                           extra={"kind": task.kind, "config": config.to_dict()}, **manifest)

        def state(epoch: int, batch: int, partial: Mapping[str, float] | None = None) -> dict[str, Any]:
            st = {
                "kind": task.kind, "classes": list(task.classes),
                "category_ids": [int(c) for c in task.category_ids],
                "model": {k: v.detach().to("cpu") for k, v in raw.state_dict().items()},
                "model_config": task.model_config(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch, "batch": batch,
                "best_score": best_score, "best_epoch": best_epoch, "best_metrics": _plain_row(best_row),
                "config": config.to_dict(), "cvtool_version": __version__,
                "rng": _rng_state(device), "world_size": dctx.world_size,
            }
            if hasattr(task, "task_config"):
                st["task_config"] = task.task_config()
            if partial:  # the loss sums of the batches done in this epoch (all processes)
                st["epoch_sums"] = dict(partial)
            return st

        progress = _Progress(quiet=config.quiet, enabled=main)
        last_row: dict[str, Any] = {}
        with _StopFlag() as stop:
            for epoch in range(start_epoch, config.epochs):
                raw.train()
                first = start_batch if epoch == start_epoch else 0
                sums: dict[str, torch.Tensor] = {}
                seen = 0
                if epoch == start_epoch and first and main and resume_state is not None:
                    # a run stopped mid-epoch: its batches so far count towards this epoch's train loss
                    saved = dict(resume_state.get("epoch_sums") or {})
                    seen = int(saved.pop("__seen__", 0))
                    sums = {k: torch.tensor(float(v), dtype=torch.float64, device=device) for k, v in saved.items()}
                progress.start(epoch, config.epochs, steps, first)
                devmod.synchronize(device)
                t0 = time.perf_counter()
                lr_now = optimizer.param_groups[0]["lr"]
                for i, batch in enumerate(batches.epoch_batches(epoch, start=first), start=first):
                    with devmod.autocast(device, env.amp_dtype):
                        loss, parts = task.loss(train_model, batch, env)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if config.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(raw.parameters(), config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    lr_now = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    n = int(batch["index"].shape[0])
                    seen += n
                    for k, v in {"loss": loss, **parts}.items():
                        v = torch.as_tensor(v, dtype=torch.float64, device=device).detach() * n
                        sums[k] = sums[k] + v if k in sums else v
                    progress.advance(float(loss.detach()) if progress.tty else None)
                    if i + 1 < steps and distmod.any_flag(stop.set, dctx):
                        # (a stop during the last batch finishes the epoch: validation and
                        # best.pt, then the epoch-end stop below)
                        progress.stop()
                        keys = sorted(sums)
                        done = distmod.all_reduce_sum(torch.stack(
                            [sums[k] for k in keys] + [torch.tensor(float(seen), dtype=torch.float64,
                                                                    device=device)]), dctx).tolist()
                        partial = {**dict(zip(keys, done[:-1])), "__seen__": done[-1]}
                        if main:
                            save_checkpoint(out / LAST, state(epoch, i + 1, partial))
                            progress.line(f"stopped in epoch {epoch + 1} after batch {i + 1}; "
                                          f"saved {out / LAST} (continue with --resume {out})")
                        raise KeyboardInterrupt
                devmod.synchronize(device)
                seconds = time.perf_counter() - t0
                progress.stop()
                keys = sorted(sums)
                totals = distmod.all_reduce_sum(
                    torch.stack([sums[k] for k in keys] + [torch.tensor(float(seen), dtype=torch.float64,
                                                                        device=device)]), dctx).tolist()
                count = max(totals[-1], 1.0)
                train_parts = {f"train_{k}": totals[j] / count for j, k in enumerate(keys)}
                if not all(math.isfinite(v) for v in train_parts.values()):
                    raise CvtoolError(f"the training loss became {train_parts} in epoch {epoch + 1}; "
                                      "lower --lr or check the data")
                row: dict[str, Any] = {"epoch": epoch + 1, **train_parts}
                if main:
                    raw.eval()
                    with torch.no_grad(), devmod.autocast(device, env.amp_dtype):
                        val = task.evaluate(raw, env)
                    raw.train()
                    if "score" not in val:
                        raise CvtoolError(f"task {task.kind!r} evaluate() returned no 'score'")
                    row.update({f"val_{k}": float(v) for k, v in val.items()})
                    row.update({"lr": float(lr_now), "img_per_s": totals[-1] / max(seconds, 1e-9),
                                "seconds": seconds, "batches": steps - first,
                                "device": devmod.describe_device(device)})
                    score = float(val["score"])
                    if score > best_score:
                        best_score, best_epoch, best_row = score, epoch + 1, row
                        save_checkpoint(out / BEST, state(epoch + 1, 0))
                    save_checkpoint(out / LAST, state(epoch + 1, 0))
                    metrics.append(row)
                    progress.line(epoch_line(row, config.epochs))
                    last_row = row
                distmod.barrier(dctx)
                if distmod.any_flag(stop.set, dctx):
                    if main:
                        progress.line(f"stopped after epoch {epoch + 1}; {out / LAST} saved "
                                      f"(continue with --resume {out})")
                    raise KeyboardInterrupt
        done = max(config.epochs, start_epoch)
        if main:
            write_manifest(out, counts={"epochs_done": done, "world_size": dctx.world_size,
                                        "best_epoch": best_epoch},
                           extra={"kind": task.kind, "config": config.to_dict(),
                                  "best_score": best_score if math.isfinite(best_score) else None},
                           **manifest)
        distmod.barrier(dctx)  # every rank is done with the group before any rank leaves it
        return {"epochs": done, "best_score": best_score, "best_epoch": best_epoch,
                "best_metrics": best_row if main else {},
                "last": str(out / LAST), "best": str(out / BEST), "metrics": last_row,
                "rank": dctx.rank, "world_size": dctx.world_size}
    finally:
        held.close()
        distmod.teardown(dctx)
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)

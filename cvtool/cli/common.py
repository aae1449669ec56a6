"""Pieces every command shares: options, console, progress, error handling, folder jobs.

Commands import from here only the standard library, typer and rich; the
core modules they call are imported inside the command functions so that
``cvtool --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------
# Shared option types (use as ``name: InputsArg = ...`` in command signatures)
# ---------------------------------------------------------------------------

InputsArg = Annotated[
    list[str],
    typer.Argument(
        help="Image files, folders, quoted globs ('imgs/**/*.png'), @list.txt files, or - to read paths from stdin.",
        show_default=False,
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; outputs mirror input paths).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")]
SkipExistingOpt = Annotated[bool, typer.Option("--skip-existing", help="Keep outputs that exist (restart a killed job).")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers (0: all cores).", min=0)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary (or JSONL records) on stdout.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same output.")]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", help="Refuse images larger than this many pixels (decompression bombs).", min=1)
]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="dask.distributed scheduler address for --backend dask.")
]


class Backend(str, Enum):
    """joblib backends for folder jobs."""

    loky = "loky"
    threading = "threading"
    dask = "dask"


BackendOpt = Annotated[Backend, typer.Option("--backend", help="Parallel backend for folder jobs.")]


def examples(*lines: str) -> str:
    """Format an Examples section for a command's docstring/epilog."""
    body = "\n\n".join(f"  $ {line}" for line in lines)
    return f"Examples:\n\n{body}"


# ---------------------------------------------------------------------------
# Console and messages (stderr only; stdout carries data)
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def err_console():
    """A rich console on stderr; honours NO_COLOR and non-TTY output."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class Log:
    """Info/warning/error messages on stderr, silenced by ``--quiet`` (errors never are)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, msg: str) -> None:
        if not self.quiet:
            err_console().print(msg, markup=False)

    def warn(self, msg: str) -> None:
        err_console().print(f"warning: {msg}", markup=False, style="yellow")

    def error(self, msg: str) -> None:
        err_console().print(f"error: {msg}", markup=False, style="red")


def emit_json(data: Any) -> None:
    """Write one JSON document (or JSONL record) to stdout."""
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only when stderr is a terminal and ``--quiet`` is off."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(total: int | None, description: str, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a rich bar on stderr when enabled, else does nothing."""
    if not progress_enabled(quiet):
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(),
                  transient=False) as prog:
        tid = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(tid, n)


# ---------------------------------------------------------------------------
# Error handling: core exceptions -> one line on stderr and an exit code
# ---------------------------------------------------------------------------


def _sigterm_to_interrupt(signum, frame):  # pragma: no cover - exercised via subprocess
    raise KeyboardInterrupt


def handle_errors(func: F) -> F:
    """Decorate a command: turn cvtool errors into one-line messages and exit codes.

    * :class:`~cvtool.errors.UsageError`, ``typer.BadParameter`` -> exit 2
    * :class:`~cvtool.errors.CvtoolError`, ``OSError``, ``ValueError``, ``MemoryError`` -> exit 1
    * Ctrl-C / SIGTERM -> "interrupted", exit 130 (atomic writes leave no partial files)
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cvtool.errors import CvtoolError

        try:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        except ValueError:  # not the main thread (tests calling in threads)
            pass
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except (typer.BadParameter, typer.Abort):
            raise
        except CvtoolError as exc:
            Log().error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except FileExistsError as exc:
            Log().error(str(exc))
            raise typer.Exit(2) from None
        except (OSError, ValueError) as exc:
            Log().error(str(exc))
            raise typer.Exit(1) from None
        except MemoryError as exc:
            Log().error(f"out of memory: {exc or 'an allocation failed'}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            Log().error("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def usage_error(msg: str) -> typer.Exit:
    """Print ``msg`` as an error and return an Exit(2) for the caller to raise."""
    Log().error(msg)
    return typer.Exit(2)


def command_args(local_vars: dict[str, Any]) -> dict[str, Any]:
    """The command's arguments as a JSON-friendly dict for ``run.json``."""
    out = {}
    for k, v in local_vars.items():
        if k.startswith("_"):
            continue
        if isinstance(v, Enum):
            v = v.value
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, (list, tuple)):
            v = [x.value if isinstance(x, Enum) else str(x) if isinstance(x, Path) else x for x in v]
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# Folder jobs
# ---------------------------------------------------------------------------


def run_folder_job(
    *,
    command: str,
    inputs: Sequence[str],
    out: Path | None,
    func: Callable[..., Any],
    out_name: Callable[..., Any] | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    jobs: int = 0,
    backend: str = "loky",
    scheduler: str | None = None,
    quiet: bool = False,
    json_out: bool = False,
    args: dict[str, Any] | None = None,
    seed: int | None = None,
    on_result: Callable[[Any], None] | None = None,
    record: Callable[[Any], dict[str, Any] | None] | None = None,
) -> int:
    """Expand inputs, plan outputs, run ``func`` over them, report, write run.json.

    Returns the exit code (0, or 1 when any input failed).  ``on_result`` is
    called in the main process with each ok outcome, in input order (use it to
    stream aggregated outputs); ``record`` maps an ok outcome to the JSONL record
    printed with ``--json`` (default: path and output).
    """
    from cvtool.batch import BatchReport, plan_tasks, run_batch
    from cvtool.io.manifest import now_iso, write_manifest
    from cvtool.io.paths import expand_inputs

    log = Log(quiet)
    started = now_iso()
    items = expand_inputs(inputs, recursive=recursive)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        from cvtool.io.atomic import remove_stale_temp_files

        stale = remove_stale_temp_files(out)
        if stale:
            log.info(f"removed {len(stale)} temporary file(s) left by a killed run")
    tasks, skipped = plan_tasks(items, out, out_name, overwrite=overwrite, skip_existing=skip_existing)
    report = BatchReport()
    for s in skipped:
        report.add(s)
    if skipped:
        log.info(f"skipping {len(skipped)} input(s) whose output exists")
    with progress_bar(len(tasks), command, quiet=quiet) as advance:
        for outcome in run_batch(func, tasks, jobs=jobs, backend=backend, scheduler=scheduler):
            report.add(outcome)
            advance(1)
            if outcome.status == "failed":
                log.error(outcome.reason or outcome.path)
            elif on_result is not None:
                on_result(outcome)
            if json_out and outcome.status == "ok":
                rec = record(outcome) if record else {"path": outcome.path, "rel": outcome.rel, "status": "ok"}
                if rec is not None:
                    emit_json(rec)
    finished = now_iso()
    if out is not None:
        write_manifest(out, command=command, args=args or {}, seed=seed, started=started,
                       finished=finished, counts=report.counts())
    summary = report.counts()
    log.info(
        f"{command}: {summary['ok']} ok, {summary['skipped']} skipped, {summary['failed']} failed"
        + (f" -> {out}" if out is not None else "")
    )
    if json_out:
        emit_json({"summary": summary, "out": str(out) if out else None,
                   "failures": [{"path": f.path, "reason": f.reason} for f in report.failures]})
    return report.exit_code


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to a non-empty, non-'0' value."""
    return os.environ.get(name, "") not in ("", "0")

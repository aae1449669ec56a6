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
from contextlib import closing, contextmanager
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
        show_default=False, metavar="INPUTS",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; outputs mirror input paths).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")]
SkipExistingOpt = Annotated[bool, typer.Option("--skip-existing", help="Keep outputs that exist (restart a killed job).")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")]
MAX_JOBS = 256
"""Most parallel workers a folder job starts (each is a process or thread with its own buffers)."""
MAX_SEED = 2**32 - 1
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Parallel workers (0: all cores).", min=0, max=MAX_JOBS)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or info messages.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary (or JSONL records) on stdout.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same output.", min=0,
                                      max=MAX_SEED)]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", help="Refuse images larger than this many pixels (decompression bombs).", min=1,
                      max=2**31)
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
InPlaceOpt = Annotated[bool, typer.Option(
    "--in-place", help="Allow outputs to replace their own inputs (--out at the inputs' folder; with --overwrite).")]


EXAMPLE_WIDTH = 76  # help is indented by 4 columns: the examples fit an 80-column terminal


def _wrap_example(line: str, width: int = EXAMPLE_WIDTH) -> list[str]:
    """Break a long shell command at spaces with ``\\`` continuations (never inside a word)."""
    words = line.split()
    rows: list[str] = []
    current = "$"
    for i, word in enumerate(words):
        room = 0 if i == len(words) - 1 else 2  # a continued line ends in " \\"
        if len(current) + 1 + len(word) + room > width and current not in ("$", "   "):
            rows.append(current + " \\")
            current = "   "
        current += " " + word
    rows.append(current)
    return rows


def examples(*lines: str) -> str:
    """Format an Examples section for a command's epilog (long commands continued with ``\\``)."""
    rows = []
    for line in lines:
        command, sep, comment = line.partition("  #")  # an aligned comment goes on its own line above
        if sep:
            rows.append("  # " + comment.strip().removeprefix("#").strip())
        rows.extend("  " + row for row in _wrap_example(command))
    body = "\n".join(rows)
    return f"Examples:\n\n\b\n{body}"  # \b: click keeps these lines as they are (no re-wrapping)


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


_CURRENT_ARGS: dict[str, Any] | None = None  # the running command's parameters (set by handle_errors)


def _current_params() -> dict[str, Any]:
    """Parameter name -> click parameter of the command being run (empty outside a click context)."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return {}
    return {p.name: p for p in ctx.command.params}


def option_label(name: str, param: Any = None) -> str:
    """How the user spells parameter ``name`` on the command line (``--max-size``, ``INPUTS``)."""
    if param is None:
        param = _current_params().get(name)
    if param is None:
        return "--" + name.replace("_", "-")
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.metavar or param.name or name).upper()
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs or list(param.opts) or ["--" + name.replace("_", "-")])[0]


def _check_finite_options(kwargs: dict[str, Any]) -> None:
    """NaN and infinity are refused for every float option, before the command runs."""
    import math

    from cvtool.errors import UsageError

    for name, value in kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{option_label(name)} {value} is not a finite number")


def handle_errors(func: F) -> F:
    """Decorate a command: turn cvtool errors into one-line messages and exit codes.

    * :class:`~cvtool.errors.UsageError`, ``typer.BadParameter`` -> exit 2
    * :class:`~cvtool.errors.CvtoolError`, ``OSError``, ``ValueError``, ``MemoryError`` -> exit 1
    * Ctrl-C / SIGTERM -> "interrupted", exit 130 (atomic writes leave no partial files)

    It also records the command's parameters for :func:`command_args` and
    refuses NaN/infinite values of float options (exit 2).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cvtool.errors import CvtoolError

        global _CURRENT_ARGS
        _CURRENT_ARGS = dict(kwargs)
        try:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        except ValueError:  # not the main thread (tests calling in threads)
            pass
        try:
            _check_finite_options(kwargs)
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
            batch = sys.modules.get("cvtool.batch")
            if batch is not None:  # a worker thread still inside a long C call: do not wait for it
                batch.exit_if_abandoned(130)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def usage_error(msg: str) -> typer.Exit:
    """Print ``msg`` as an error and return an Exit(2) for the caller to raise."""
    Log().error(msg)
    return typer.Exit(2)


def command_args(local_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """The command's arguments as a JSON-friendly dict for ``run.json``.

    Without ``local_vars``: exactly the parameters the running command was
    called with (recorded by :func:`handle_errors`).  With a dict (such as
    ``locals()`` at the top of a command), modules, classes and functions that
    imports put there are left out.
    """
    import inspect

    if local_vars is None:
        local_vars = dict(_CURRENT_ARGS or {})
    out = {}
    for k, v in local_vars.items():
        if k.startswith("_") or inspect.ismodule(v) or inspect.isclass(v) or callable(v):
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
    in_place: bool = False,
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
    printed with ``--json`` (default: path and output).  An output that would
    replace one of the inputs is refused (exit 2) unless ``in_place`` is set.
    """
    from cvtool.batch import BatchReport, Outcome, plan_tasks, run_batch
    from cvtool.io.manifest import now_iso, write_manifest
    from cvtool.io.paths import expand_inputs

    log = Log(quiet)
    started = now_iso()
    problems: list[Any] = []  # unreadable folders, broken links: named and counted as failures
    items = expand_inputs(inputs, recursive=recursive, problems=problems)
    if out is not None and not in_place:
        refuse_replacing_inputs(items, out, out_name)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        from cvtool.io.atomic import remove_stale_temp_files

        stale = remove_stale_temp_files(out)
        if stale:
            log.info(f"removed {len(stale)} temporary file(s) left by a killed run")
    tasks, skipped = plan_tasks(items, out, out_name, overwrite=overwrite, skip_existing=skip_existing)
    report = BatchReport()
    for problem in problems:
        log.error(str(problem))
        report.add(Outcome(str(problem.path), str(problem.path), "failed", str(problem)))
    for s in skipped:
        report.add(s)
    if skipped:
        log.info(f"skipping {len(skipped)} input(s) whose output exists")
    # closing(): an interruption stops the workers and removes their temp files before exiting
    with progress_bar(len(tasks), command, quiet=quiet) as advance, closing(
            run_batch(func, tasks, jobs=jobs, backend=backend, scheduler=scheduler, temp_root=out)) as outcomes:
        for outcome in outcomes:
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
        write_manifest(out, command=command, args=command_args() if args is None else args, seed=seed,
                       started=started, finished=finished, counts=report.counts(),
                       extra={"parallel": _parallel_settings(jobs, backend, len(tasks))})
    summary = report.counts()
    log.info(
        f"{command}: {summary['ok']} ok, {summary['skipped']} skipped, {summary['failed']} failed"
        + (f" -> {out}" if out is not None else "")
    )
    if json_out:
        emit_json({"summary": summary, "out": str(out) if out else None,
                   "failures": [{"path": f.path, "reason": f.reason} for f in report.failures]})
    return report.exit_code


def refuse_replacing_inputs(items: Sequence[Any], out: Path, out_name: Callable[..., Any] | None) -> None:
    """Raise a usage error when an output path of a folder job is one of its input files.

    Outputs mirror input paths under ``--out``, so ``--out`` equal to an input
    folder (or a folder that contains the inputs at their mirrored place) would
    replace the originals.  Links are resolved, so a link to the input folder counts.
    """
    from cvtool.errors import UsageError

    sources = {os.path.realpath(item.path): item for item in items}
    for item in items:
        rel = out_name(item) if out_name else item.rel
        target = os.path.realpath(out / Path(*rel.parts))
        if target in sources:
            raise UsageError(f"--out {out} would replace the input {sources[target].path} with its output; "
                             "choose an output folder outside the inputs, or pass --in-place (with --overwrite) "
                             "to replace the originals")


def _parallel_settings(jobs: int, backend: str, n_tasks: int) -> dict[str, Any]:
    """Workers and OpenCV threads per worker as :func:`cvtool.batch.run_batch` sets them.

    Imports cv2 here so that ``run.json`` names the OpenCV version even when
    only worker processes used it.
    """
    import cv2

    from cvtool.batch import default_jobs

    if backend == "dask":
        return {"backend": backend, "workers": None, "threads_per_worker": None}
    cores = default_jobs()
    workers = max(1, min(jobs if jobs > 0 else cores, n_tasks))
    threads = cv2.getNumThreads() if workers == 1 else max(1, cores // workers)
    return {"backend": backend, "workers": workers, "threads_per_worker": threads}


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to a non-empty, non-'0' value."""
    return os.environ.get(name, "") not in ("", "0")


# ---------------------------------------------------------------------------
# Command-line parsing errors -> one line, exit 2
# ---------------------------------------------------------------------------

_PYDANTIC_BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
                    "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def _shown(value: Any) -> str:
    """A value as the user typed it: numbers bare, other text quoted."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    text = str(value)
    try:
        float(text)
        return text
    except ValueError:
        return repr(text)


def _bad_value_reason(exc: Any) -> tuple[Any, str]:
    """(bad value or None, why) of a click ``BadParameter``, from its pydantic cause when there is one."""
    import math

    cause = exc.__cause__
    errors = cause.errors(include_url=False) if hasattr(cause, "errors") else []
    if not errors:
        return None, str(exc.message).rstrip(".")
    err = errors[0]
    value, kind, ctx = err.get("input"), err.get("type", ""), err.get("ctx") or {}
    try:
        if not math.isfinite(float(str(value))):
            return value, "is not a finite number"
    except ValueError:
        pass
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return value, "is not an integer"
    if kind in ("float_parsing", "float_type"):
        return value, "is not a number"
    if kind in ("bool_parsing", "bool_type"):
        return value, "is not true or false"
    if kind in _PYDANTIC_BOUNDS:
        key, op = _PYDANTIC_BOUNDS[kind]
        bound = ctx.get(key, "?")
        if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e15:
            bound = int(bound)
        return value, f"is out of range: must be {op} {bound}"
    bare = getattr(getattr(exc.param, "type_descriptor", None), "annotation", None)
    if isinstance(bare, type) and issubclass(bare, Enum):
        return value, "is not valid; choose one of " + ", ".join(str(m.value) for m in bare)
    msg = str(err.get("msg", exc.message))
    msg = msg.removeprefix("Value error, ").rstrip(".")
    return value, msg[:1].lower() + msg[1:]


def click_error_message(exc: Any) -> str:
    """One line for a click usage error: the option, the bad value and what is valid."""
    from typer._click import exceptions as cx

    where = ""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        where = f" (see: {ctx.command_path} --help)"
    if isinstance(exc, cx.MissingParameter):
        param = exc.param
        if param is not None and getattr(param, "param_type_name", "") == "argument":
            return f"missing argument {option_label(param.name or '', param)}{where}"
        if param is not None:
            return f"missing option {option_label(param.name or '', param)}{where}"
    if isinstance(exc, cx.BadParameter) and not isinstance(exc, cx.MissingParameter) and exc.param is not None:
        label = option_label(exc.param.name or "", exc.param)
        value, why = _bad_value_reason(exc)
        if value is None:
            return f"{label}: {why}"
        return f"{label} {_shown(value)} {why}"
    msg = " ".join(exc.format_message().split()).rstrip(".")
    return msg[:1].lower() + msg[1:] + where


def run_app_main(super_main: Callable[..., Any], *, standalone_mode: bool = True, **kwargs: Any) -> Any:
    """Run a click ``main`` non-standalone and print parsing errors as one ``error:`` line (exit 2).

    ``--help`` still prints help (exit 0); a group called with nothing prints
    its help (exit 2).
    """
    from typer._click import exceptions as cx

    try:
        rv = super_main(standalone_mode=False, **kwargs)
    except cx.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help())
        code = 2
    except cx.UsageError as exc:
        Log().error(click_error_message(exc))
        code = 2
    except cx.ClickException as exc:  # e.g. a file option that cannot be opened
        Log().error(" ".join(exc.format_message().split()))
        code = exc.exit_code
    except typer.Abort:
        Log().error("aborted")
        code = 1
    else:
        if not standalone_mode:
            return rv
        code = rv if isinstance(rv, int) else 0
    if not standalone_mode:
        return code
    sys.exit(code)


class CvtoolGroup(typer.core.TyperGroup):
    """The root command group: every parsing error becomes one ``error:`` line and exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        return run_app_main(super().main, standalone_mode=standalone_mode, args=args, prog_name=prog_name,
                            complete_var=complete_var, **extra)

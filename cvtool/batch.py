"""The batch runner shared by every folder command.

A folder job is a pure per-image function mapped over :class:`Task` objects.
:func:`plan_tasks` decides each input's output path and applies the
``--overwrite`` / ``--skip-existing`` rules up front; :func:`run_batch` maps the
function over the tasks with joblib (``loky`` processes by default, ``threading``,
or a ``dask.distributed`` cluster) and yields one :class:`Outcome` per task, in
input order, as results arrive.  Nothing but paths and small results cross
process boundaries, so memory stays bounded whatever the folder size.

Per-file failures never stop the job: they become ``failed`` outcomes and the
:class:`BatchReport` turns them into exit code 1 at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cvtool.errors import UsageError
from cvtool.io.paths import InputFile

BACKENDS = ("loky", "threading", "dask")


@dataclass(frozen=True)
class Task:
    """One unit of a folder job: an input file and where its output goes (or None)."""

    item: InputFile
    out: Path | None = None


@dataclass
class Outcome:
    """What happened to one task."""

    rel: str
    path: str
    status: str  # 'ok' | 'skipped' | 'failed'
    reason: str | None = None
    result: Any = None
    seconds: float = 0.0


@dataclass
class BatchReport:
    """Counts and failures of a folder job; decides the exit code."""

    total: int = 0
    ok: int = 0
    skipped: int = 0
    failures: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.total += 1
        if outcome.status == "ok":
            self.ok += 1
        elif outcome.status == "skipped":
            self.skipped += 1
        else:
            self.failures.append(outcome)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def counts(self) -> dict[str, int]:
        return {"total": self.total, "ok": self.ok, "skipped": self.skipped, "failed": self.failed}


def default_jobs() -> int:
    """Number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def plan_tasks(
    items: Sequence[InputFile],
    out_dir: Path | None,
    out_name: Callable[[InputFile], PurePosixPath] | None = None,
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
) -> tuple[list[Task], list[Outcome]]:
    """Decide output paths and apply the overwrite rules before any work starts.

    Parameters
    ----------
    items : sequence of InputFile
        Inputs from :func:`cvtool.io.paths.expand_inputs`.
    out_dir : Path or None
        Output root; ``None`` for jobs that write no per-image file.
    out_name : callable, optional
        Maps an input to its relative output path (default: the input's own
        relative path, i.e. a mirror of the input tree).
    overwrite, skip_existing : bool
        What to do with outputs that exist already.

    Returns
    -------
    tasks : list of Task
        Work to do.
    skipped : list of Outcome
        Inputs whose output exists and ``skip_existing`` is set.

    Raises
    ------
    UsageError
        An output exists and neither flag is set, or two inputs map to the
        same output path.
    """
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other")
    tasks: list[Task] = []
    skipped: list[Outcome] = []
    existing: list[Path] = []
    taken: dict[Path, InputFile] = {}
    for item in items:
        if out_dir is None:
            tasks.append(Task(item, None))
            continue
        rel = out_name(item) if out_name else item.rel
        out = out_dir / Path(*rel.parts)
        if out in taken:
            raise UsageError(f"{item.path} and {taken[out].path} would both write {out}")
        taken[out] = item
        if out.exists():
            if skip_existing:
                skipped.append(Outcome(str(item.rel), str(item.path), "skipped", "output exists"))
                continue
            if not overwrite:
                existing.append(out)
                continue
        tasks.append(Task(item, out))
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(
            f"{existing[0]} exists{more}; pass --overwrite to replace or --skip-existing to keep"
        )
    return tasks, skipped


def _limit_cv2_threads(threads: int) -> None:
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # pragma: no cover - cv2 always present
        pass


def _run_one(func: Callable[[Task], Any], task: Task, cv2_threads: int | None) -> Outcome:
    if cv2_threads is not None:
        _limit_cv2_threads(cv2_threads)
    t0 = time.perf_counter()
    try:
        result = func(task)
    except MemoryError:
        return Outcome(str(task.item.rel), str(task.item.path), "failed", "out of memory")
    except Exception as exc:  # a bad file must not stop the job
        reason = str(exc) or type(exc).__name__
        prefix = str(task.item.path)
        if not reason.startswith(prefix):
            reason = f"{prefix}: {reason}"
        return Outcome(str(task.item.rel), str(task.item.path), "failed", reason)
    return Outcome(str(task.item.rel), str(task.item.path), "ok", None, result,
                   time.perf_counter() - t0)


def run_batch(
    func: Callable[[Task], Any],
    tasks: Sequence[Task],
    *,
    jobs: int | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
) -> Iterator[Outcome]:
    """Map ``func`` over ``tasks`` and yield outcomes in task order as they finish.

    Parameters
    ----------
    func : callable
        ``func(task) -> result``; must be picklable (a module-level function or a
        ``functools.partial`` of one) for process and dask backends.  Any
        exception it raises becomes a ``failed`` outcome naming the file.
    tasks : sequence of Task
        From :func:`plan_tasks`.
    jobs : int, optional
        Parallel workers (default: all cores).  ``1`` runs in this process.
    backend : {'loky', 'threading', 'dask'}
        joblib backend.  ``dask`` needs ``scheduler`` (a ``dask.distributed``
        address such as ``tcp://127.0.0.1:8786``) and the ``cvtool[dask]`` extra.
    scheduler : str, optional
        Dask scheduler address.

    Yields
    ------
    Outcome
        One per task, in the order of ``tasks``.

    Notes
    -----
    OpenCV's own thread pool is limited to ``cores // jobs`` threads per worker
    so jobs x threads does not oversubscribe the machine.  With ``jobs=1`` the
    function runs in-process with OpenCV's default threading.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "dask" and not scheduler:
        raise UsageError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    if not tasks:
        return
    cores = default_jobs()
    n = jobs if jobs and jobs > 0 else cores
    n = min(n, len(tasks)) if backend != "dask" else n
    if n == 1 and backend != "dask":
        for task in tasks:
            yield _run_one(func, task, None)
        return
    threads = max(1, cores // n)
    from joblib import Parallel, delayed, parallel_config

    calls: Iterable = (delayed(_run_one)(func, t, threads) for t in tasks)
    if backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError:
            raise UsageError("--backend dask needs the dask extra: pip install 'cvtool[dask]'") from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise UsageError(f"cannot reach dask scheduler {scheduler}: {exc}") from None
        try:
            with parallel_config(backend="dask"):
                yield from Parallel(n_jobs=-1, return_as="generator")(calls)
        finally:
            client.close()
        return
    with parallel_config(backend=backend, n_jobs=n):
        yield from Parallel(return_as="generator", pre_dispatch="2*n_jobs", batch_size=1)(calls)

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

Interruption: in-process work (``jobs=1`` and the ``threading`` backend) runs
on daemon threads while the main thread waits in short timed waits, so Ctrl-C
and SIGTERM are handled at once even while a worker sits in a long OpenCV or
NumPy call.  Interrupted, the job stops the writes of its threads (their temp
files are deleted, nothing new appears), kills ``loky`` workers, removes their
temp files, and the CLI exits 130 without waiting for the abandoned call
(:func:`exit_if_abandoned`).  A ``loky`` worker whose parent died (SIGKILL)
notices within half a second, deletes its temp files and exits.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cvtool.errors import UsageError
from cvtool.io.paths import InputFile
from cvtool.workers import watch_parent

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


def _run_one(func: Callable[[Task], Any], task: Task, cv2_threads: int | None,
             parent_pid: int | None = None) -> Outcome:
    if parent_pid is not None:
        watch_parent(parent_pid)
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


# ---------------------------------------------------------------------------
# In-process work on daemon threads, interruptible while a C call runs
# ---------------------------------------------------------------------------

WAIT_SECONDS = 0.25
_abandoned: list[threading.Thread] = []


def _thread_worker(func: Callable[[Task], Any], requests: queue.SimpleQueue, results: queue.SimpleQueue,
                   cancelled: threading.Event, cv2_threads: int | None) -> None:
    while True:
        request = requests.get()
        if request is None or cancelled.is_set():
            return
        index, task = request
        try:
            results.put((index, True, _run_one(func, task, cv2_threads)))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            results.put((index, False, exc))


def _next_result(results: queue.SimpleQueue) -> tuple[int, bool, Any]:
    # Short timed waits keep the main thread responsive to signals on every platform.
    while True:
        try:
            return results.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            continue


def _run_in_threads(func: Callable[[Task], Any], tasks: Sequence[Task], n: int,
                    cv2_threads: int | None) -> Iterator[Outcome]:
    requests: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    cancelled = threading.Event()
    threads = [threading.Thread(target=_thread_worker, args=(func, requests, results, cancelled, cv2_threads),
                                name=f"cvtool-batch-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    # Up to 2n tasks queued or running (like joblib's pre_dispatch); a new one is queued as soon as
    # any finishes.  Results wait for in-order delivery, at most max(64, 4n) of them (bounded memory).
    in_flight, ahead = 2 * n, max(64, 4 * n)
    pending: dict[int, tuple[bool, Any]] = {}
    submitted = finished = done = 0
    try:
        while done < len(tasks):
            while done not in pending:
                while (submitted < len(tasks) and submitted - finished < in_flight
                       and submitted - done < ahead):
                    requests.put((submitted, tasks[submitted]))
                    submitted += 1
                index, ok, value = _next_result(results)
                pending[index] = (ok, value)
                finished += 1
            ok, value = pending.pop(done)
            done += 1
            if not ok:
                raise value
            yield value
    except BaseException:
        cancelled.set()
        _abandon(threads)
        raise
    finally:
        for _ in threads:
            requests.put(None)


def _abandon(threads: Sequence[threading.Thread]) -> None:
    """Stop the writes of worker threads that may still be in a call; remember them."""
    from cvtool.io.atomic import stop_writes

    for t in threads:
        stop_writes(t)
        if t.is_alive():
            _abandoned.append(t)


def abandoned_work() -> bool:
    """True when an interrupted job left a worker thread still inside a call."""
    return any(t.is_alive() for t in _abandoned)


def exit_if_abandoned(code: int) -> None:
    """Exit the process now with ``code`` if an interrupted job left a thread in a long call.

    Python would otherwise wait at exit for nothing useful, or tear the
    interpreter down under a thread that is still inside OpenCV.  The
    thread's writes are already stopped and its temp files deleted.
    """
    if not abandoned_work():
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _remove_temp_files_of_dead_workers(root: Path | None) -> None:
    if root is None:
        return
    from cvtool.io.atomic import remove_stale_temp_files

    with contextlib.suppress(OSError):
        remove_stale_temp_files(root)


def _temp_root(tasks: Sequence[Task]) -> Path | None:
    outs = [str(t.out.parent) for t in tasks if t.out is not None]
    if not outs:
        return None
    try:
        return Path(os.path.commonpath(outs))
    except ValueError:  # mixed absolute and relative paths
        return None


def run_batch(
    func: Callable[[Task], Any],
    tasks: Sequence[Task],
    *,
    jobs: int | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
    temp_root: str | os.PathLike[str] | None = None,
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
    temp_root : path-like, optional
        Folder (searched recursively) where an interrupted job deletes the
        temp files of killed ``loky`` workers (default: the common folder of
        the tasks' outputs).

    Yields
    ------
    Outcome
        One per task, in the order of ``tasks``.

    Notes
    -----
    OpenCV's own thread pool is limited to ``cores // jobs`` threads per worker
    so jobs x threads does not oversubscribe the machine.  With ``jobs=1`` the
    function runs in-process (on one worker thread) with OpenCV's default
    threading.  See the module docstring for what an interruption does.
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
        yield from _run_in_threads(func, tasks, 1, None)
        return
    threads = max(1, cores // n)
    if backend == "threading":
        yield from _run_in_threads(func, tasks, n, threads)
        return
    from joblib import Parallel, delayed, parallel_config

    if backend == "dask":
        calls: Iterable = (delayed(_run_one)(func, t, threads) for t in tasks)
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
    parent = os.getpid()
    calls = (delayed(_run_one)(func, t, threads, parent) for t in tasks)
    root = Path(temp_root) if temp_root is not None else _temp_root(tasks)
    try:
        with parallel_config(backend=backend, n_jobs=n):
            yield from Parallel(return_as="generator", pre_dispatch="2*n_jobs", batch_size=1)(calls)
    except BaseException:
        # joblib has killed the workers (SIGKILL, reaped): their temp files are stale now.
        _remove_temp_files_of_dead_workers(root)
        raise

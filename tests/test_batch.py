"""The batch runner: planning rules, ordering, failures, backends."""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath

import pytest

from cvtool.batch import BatchReport, Task, plan_tasks, run_batch
from cvtool.errors import UsageError
from cvtool.io.paths import InputFile


def _items(tmp_path: Path, n: int) -> list[InputFile]:
    out = []
    for i in range(n):
        p = tmp_path / f"in{i:02d}.txt"
        p.write_text(str(i))
        out.append(InputFile(PurePosixPath(p.name), p))
    return out


def _square(task: Task) -> int:
    v = int(task.item.path.read_text())
    if v == 3:
        raise ValueError("three is bad")
    return v * v


def test_plan_rules(tmp_path):
    items = _items(tmp_path, 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "in01.txt").write_text("old")
    with pytest.raises(UsageError, match="in01.txt exists"):
        plan_tasks(items, out)
    tasks, skipped = plan_tasks(items, out, skip_existing=True)
    assert [t.item.rel.name for t in tasks] == ["in00.txt", "in02.txt"]
    assert [s.rel for s in skipped] == ["in01.txt"]
    tasks, skipped = plan_tasks(items, out, overwrite=True)
    assert len(tasks) == 3 and not skipped
    with pytest.raises(UsageError, match="exclude"):
        plan_tasks(items, out, overwrite=True, skip_existing=True)
    with pytest.raises(UsageError, match="both write"):
        plan_tasks(items, out, lambda it: PurePosixPath("same.txt"), overwrite=True)


@pytest.mark.parametrize("jobs,backend", [(1, "loky"), (2, "threading"), (2, "loky")])
def test_run_batch_order_and_failures(tmp_path, jobs, backend):
    items = _items(tmp_path, 6)
    tasks, _ = plan_tasks(items, None)
    report = BatchReport()
    outcomes = list(run_batch(functools.partial(_square), tasks, jobs=jobs, backend=backend))
    for o in outcomes:
        report.add(o)
    assert [o.rel for o in outcomes] == [f"in{i:02d}.txt" for i in range(6)]
    assert [o.result for o in outcomes if o.status == "ok"] == [0, 1, 4, 16, 25]
    [bad] = report.failures
    assert "in03.txt" in bad.reason and "three is bad" in bad.reason
    assert report.exit_code == 1 and report.counts() == {"total": 6, "ok": 5, "skipped": 0, "failed": 1}


def test_unknown_backend_and_dask_without_scheduler(tmp_path):
    tasks, _ = plan_tasks(_items(tmp_path, 1), None)
    with pytest.raises(UsageError, match="unknown backend"):
        list(run_batch(_square, tasks, backend="mpi"))
    with pytest.raises(UsageError, match="--scheduler"):
        list(run_batch(_square, tasks, backend="dask"))


def _sleepy(task: Task) -> int:
    import time

    v = int(task.item.path.read_text())
    time.sleep(0.002 * ((7 * v) % 5))  # finish out of order
    return v


@pytest.mark.parametrize("jobs", [1, 3])
def test_thread_runner_yields_in_order_when_tasks_finish_out_of_order(tmp_path, jobs):
    tasks, _ = plan_tasks(_items(tmp_path, 40), None)
    outcomes = run_batch(_sleepy, tasks, jobs=jobs, backend="threading")
    assert [o.result for o in outcomes] == list(range(40))


def test_closing_the_generator_early_stops_the_thread_runner(tmp_path):
    import threading

    tasks, _ = plan_tasks(_items(tmp_path, 20), None)
    gen = run_batch(_sleepy, tasks, jobs=2, backend="threading")
    assert next(gen).result == 0
    gen.close()
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.name.startswith("cvtool-batch") for t in threading.enumerate()):
        time.sleep(0.01)
    assert not any(t.name.startswith("cvtool-batch") for t in threading.enumerate())

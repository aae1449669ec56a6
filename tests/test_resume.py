"""Stopping and resuming training (#13), the best-epoch summary (#12), one run per folder,
failing checkpoint writes and resuming from another directory.

A stop is simulated the way SIGTERM arrives in real life: the task sends the signal
to its own process during a chosen batch (mid-epoch) or during validation (the
epoch boundary), ``fit`` saves ``weights/last.pt`` and raises KeyboardInterrupt, and
a fresh task resumes from the checkpoint.  The resumed run's final weights must be
bit-equal to those of the uninterrupted run (one CPU thread, deterministic kernels).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cvtool.datasets.arrays import ArrayDataset
from cvtool.detectors.training import DetectionData, Split
from cvtool.errors import CvtoolError, UsageError
from cvtool.runner import checkpoint as ckpt
from cvtool.runner.loop import BEST, LAST, TrainConfig, fit, read_run_checkpoint, resumed_config


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------------- tiny data


def squares(n: int, *, size: int = 32, seed: int = 0, max_objects: int = 2):
    """Grey canvases with filled (class 0) and hollow (class 1) squares: images, boxes, labels."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.uint8)
    boxes, labels = [], []
    for i in range(n):
        bs, ls = [], []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            s = int(rng.integers(8, 13))
            x, y = (int(v) for v in rng.integers(0, size - s, 2))
            if any(not (x + s <= o[0] or o[2] <= x or y + s <= o[1] or o[3] <= y) for o in bs):
                continue
            k = int(rng.integers(0, 2))
            images[i, y:y + s, x:x + s] = 220
            if k:
                images[i, y + 3:y + s - 3, x + 3:x + s - 3] = 0
            bs.append([x, y, x + s, y + s])
            ls.append(k)
        boxes.append(np.array(bs, np.float32).reshape(-1, 4))
        labels.append(np.array(ls, np.int64))
    return images, boxes, labels


def detection_data(n_train: int = 12, n_val: int = 4) -> DetectionData:
    tr, va = squares(n_train, seed=1), squares(n_val, seed=2)
    return DetectionData(train=Split(*tr), val=Split(*va), classes=["filled", "hollow"], category_ids=[1, 2])


def localization_split(n: int, seed: int) -> ArrayDataset:
    images, boxes, labels = squares(n, seed=seed, max_objects=1)
    return ArrayDataset(images=images, boxes=np.concatenate(boxes), labels=np.concatenate(labels) + 1,
                        box_image=np.arange(n, dtype=np.int64), category_ids=np.array([1, 2]),
                        category_names=np.array(["filled", "hollow"]))


def make_task(kind: str, tmp: Path):
    if kind == "single-shot":
        from cvtool.detectors.single_shot import SingleShotTask

        return SingleShotTask(detection_data(), width=4, max_shift=8, data_path="x")
    if kind == "rcnn":
        from cvtool.detectors.rcnn import ProposalSettings, RCNNTask

        return RCNNTask(detection_data(), cache_dir=tmp / "proposal-cache", width=4, warp_size=16, context_pad=2,
                        rois_per_image=8, proposals=ProposalSettings(mode="single", min_size=4, max_proposals=40))
    if kind == "localizer":
        from cvtool.detectors.localizer import LocalizerTask

        return LocalizerTask(localization_split(12, 1), localization_split(4, 2), width=4)
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def det_data(tmp_path_factory):
    """A tiny `prepare detection` set (digits on 64x64 canvases, arrays only)."""
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    out = tmp_path_factory.mktemp("det") / "data"
    r = CliRunner().invoke(app, ["prepare", "detection", "--out", str(out), "--count", "8", "--canvas", "64",
                                 "--objects", "1", "--npz", "--no-png", "--jobs", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    return out


CONFIG = TrainConfig(epochs=2, batch_size=4, lr=3e-3, optimizer="adamw", scheduler="onecycle", warmup=0.25,
                     device="cpu", quiet=True, seed=5, deterministic=True, threads=1)


class StopAt:
    """Wraps a task; sends SIGTERM to this process during loss call ``batch`` or evaluate call ``evaluation``."""

    def __init__(self, task, *, batch: int | None = None, evaluation: int | None = None) -> None:
        self.task, self.batch, self.evaluation = task, batch, evaluation
        self.calls = {"loss": 0, "evaluate": 0}

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch, env):
        self.calls["loss"] += 1
        if self.calls["loss"] == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.task.loss(model, batch, env)

    def evaluate(self, model, env):
        self.calls["evaluate"] += 1
        if self.calls["evaluate"] == self.evaluation:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.task.evaluate(model, env)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted 2-epoch run per kind (shared by the stop cases)."""
    root = tmp_path_factory.mktemp("full")
    runs = {}
    for kind in ("localizer", "single-shot", "rcnn"):
        fit(make_task(kind, root), CONFIG, root / kind)
        runs[kind] = root / kind
    return runs


# 12 training images, batch 4: three batches per epoch.  Loss call 5 is batch 2 of epoch 2;
# evaluate call 1 is the end of epoch 1; loss call 3 is the last batch of epoch 1 (the epoch
# is finished, validated and saved before the stop).
STOPS = {"mid-epoch": (dict(batch=5), (1, 2)), "epoch-boundary": (dict(evaluation=1), (1, 0)),
         "last-batch": (dict(batch=3), (1, 0))}


# the last-batch case is a runner property: one kind shows it
@pytest.mark.parametrize("kind,stop", [(k, s) for s in STOPS for k in ("localizer", "single-shot", "rcnn")
                                       if s != "last-batch" or k == "single-shot"])
def test_resume_after_sigterm_is_bit_equal_to_the_uninterrupted_run(tmp_path, uninterrupted, kind, stop):
    how, saved_at = STOPS[stop]
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(StopAt(make_task(kind, tmp_path), **how), CONFIG, run)
    st = read_run_checkpoint(run)
    assert (st["epoch"], st["batch"]) == saved_at
    fit(make_task(kind, tmp_path), resumed_config(st), run, resume_state=st)
    full = uninterrupted[kind]
    a, b = _weights(full / LAST), _weights(run / LAST)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{kind}: {k} differs after a {stop} stop"
    rows_a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_b] == [1, 2]
    assert [r["val_score"] for r in rows_b] == [r["val_score"] for r in rows_a]
    assert [r["train_loss"] for r in rows_b] == [r["train_loss"] for r in rows_a]


def test_augmentation_draws_come_from_seed_epoch_and_sample_only():
    """A sample's draws do not depend on the batch size, on the batch it lands in or on where a
    resumed epoch starts; they do change with the epoch and the seed."""
    from cvtool.runner.data import SampleDraws, TensorBatches

    def draws(bs, *, epoch=1, seed=2, start=0):
        src = SampleDraws(TensorBatches({"x": torch.arange(10.0)}, batch_size=bs, seed=seed), n=10, k=2, seed=seed)
        return {int(i): u for b in src.epoch_batches(epoch, start=start) for i, u in zip(b["index"], b["u"])}

    ref = draws(3)
    assert sorted(ref) == list(range(10))
    for other in (draws(4), draws(3, start=2)):
        assert other and all(torch.equal(u, ref[i]) for i, u in other.items())
    assert len(draws(3, start=2)) == 4  # batches 2 and 3 of 3-3-3-1
    assert not torch.equal(torch.stack([draws(3, epoch=2)[i] for i in range(10)]),
                           torch.stack([ref[i] for i in range(10)]))
    assert not torch.equal(draws(3, seed=3)[0], ref[0])


# --------------------------------------------------------------------------- best epoch (#12)


class ScriptedScores:
    """A task whose validation score follows a script (best in the middle)."""

    kind, classes, category_ids = "single-shot", ["a"], [1]

    def __init__(self, scores):
        self.scores = list(scores)
        self.x = torch.linspace(-1, 1, 16)[:, None]

    def model_config(self):
        return {}

    def build_model(self):
        return torch.nn.Linear(1, 1)

    def train_batches(self, env, *, batch_size, seed):
        from cvtool.runner.data import TensorBatches

        return TensorBatches({"x": self.x}, batch_size=batch_size, seed=seed)

    def loss(self, model, batch, env):
        err = (model(batch["x"]) - 2 * batch["x"]).pow(2).mean()
        return err, {}

    def evaluate(self, model, env):
        ap = self.scores.pop(0)
        return {"AP": ap, "AP50": ap + 0.2, "score": ap}


def test_fit_reports_the_best_epochs_own_metrics(tmp_path):
    cfg = replace(CONFIG, epochs=4, batch_size=8, deterministic=False)
    res = fit(ScriptedScores([0.2, 0.401, 0.35, 0.337]), cfg, tmp_path / "r")
    assert res["best_epoch"] == 2
    assert res["best_metrics"]["epoch"] == 2 and res["best_metrics"]["val_AP"] == 0.401
    assert res["metrics"]["val_AP"] == 0.337  # the last epoch, still there for the last-epoch view
    assert ckpt.load_checkpoint(tmp_path / "r" / BEST)["best_metrics"]["val_AP"] == 0.401
    # stopped after epoch 3 and resumed: the best epoch's metrics come back from the checkpoint
    run = tmp_path / "s"
    task = ScriptedScores([0.2, 0.401, 0.35])
    with pytest.raises(KeyboardInterrupt):
        fit(StopAt(task, evaluation=3), cfg, run)
    st = read_run_checkpoint(run)
    res = fit(ScriptedScores([0.337]), resumed_config(st), run, resume_state=st)
    assert res["best_epoch"] == 2 and res["best_metrics"]["val_AP"] == 0.401


@pytest.mark.parametrize("kind", ["single-shot", "localizer"])
def test_cli_summary_line_shows_the_best_epochs_metrics(cli, tmp_path, monkeypatch, kind, det_data):
    """`trained N epochs -> ... (epoch E, val AP x)`: x is epoch E's AP, not the last epoch's."""
    if kind == "single-shot":
        from cvtool.detectors.single_shot import SingleShotTask as Task

        data = det_data
        script = iter([{"AP": 0.2, "AP50": 0.3}, {"AP": 0.401, "AP50": 0.6}, {"AP": 0.337, "AP50": 0.5}])
        extra = ["--width", "4", "--max-val", "2"]
    else:
        from cvtool.detectors.localizer import LocalizerTask as Task

        data = tmp_path / "loc"
        data.mkdir()
        for split, n, seed in (("train", 12, 1), ("val", 4, 2)):
            ds = localization_split(n, seed)
            np.savez_compressed(data / f"{split}.npz", images=ds.images, boxes=ds.boxes, labels=ds.labels,
                                box_image=ds.box_image, category_ids=ds.category_ids,
                                category_names=ds.category_names)
        script = iter([{"accuracy": 0.5, "mean_iou": 0.3, "iou0.6": 0.1},
                       {"accuracy": 0.75, "mean_iou": 0.61, "iou0.6": 0.5},
                       {"accuracy": 0.7, "mean_iou": 0.55, "iou0.6": 0.25}])
        extra = ["--width", "4"]

    def scripted(self, model, env, **kw):
        m = dict(next(script))
        m["score"] = m.get("AP", 0.5 * (m.get("accuracy", 0) + m.get("iou0.6", 0)))
        return m

    monkeypatch.setattr(Task, "evaluate", scripted)
    r = cli(["train", kind, "--data", data, "--out", tmp_path / "run", "--epochs", "3", "--batch-size", "4",
             "--threads", "1", *extra])
    assert r.exit_code == 0, r.output
    line = [x for x in r.output.splitlines() if x.startswith("trained 3 epochs")][-1]
    if kind == "single-shot":
        assert "(epoch 2, val AP 0.401, AP50 0.600)" in line, line
    else:
        assert "best epoch 2" in line and "val accuracy 0.7500" in line and "IoU>=0.6 0.5000" in line, line


# --------------------------------------------------------------------------- one run per folder


HOLDER = textwrap.dedent("""
    import sys, time
    from cvtool.runner.lock import run_folder_lock
    with run_folder_lock(sys.argv[1], command="train single-shot"):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def held_folder(tmp_path):
    folder = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc.pid
    proc.kill()
    proc.wait()


def test_second_run_into_a_busy_folder_is_refused_with_the_holders_pid(cli, tmp_path, held_folder, det_data):
    folder, pid = held_folder
    data = det_data
    for kind, extra in (("single-shot", ["--width", "4"]), ("rcnn", ["--width", "4", "--jobs", "1"]),
                        ("localizer", ["--width", "4"])):
        r = cli(["train", kind, "--data", data, "--out", folder, "--epochs", "1", "--quiet", *extra])
        assert r.exit_code == 2, (kind, r.output)
        assert f"PID {pid}" in r.output and "in use" in r.output
    r = cli(["train", "hog-svm", "--data", data, "--out", folder, "--mine-rounds", "0", "--quiet"])
    assert r.exit_code == 2 and f"PID {pid}" in r.output, r.output
    assert not (folder / "weights").exists() and not (folder / "model.npz").exists()
    with pytest.raises(UsageError, match=f"PID {pid}"):  # the Python API refuses too
        fit(ScriptedScores([0.1]), replace(CONFIG, epochs=1, batch_size=8), folder)


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    from cvtool.runner.lock import LOCK_NAME, read_lock, run_folder_lock

    folder = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    dead = proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_lock(folder)["pid"] == dead  # the file is still there, its process is not
    with run_folder_lock(folder) as path:
        assert read_lock(folder)["pid"] == os.getpid()
        with run_folder_lock(folder):  # re-entrant in one process (CLI, then fit)
            pass
        assert path.exists()
    assert not (folder / LOCK_NAME).exists()


# --------------------------------------------------------------------------- failing checkpoint writes


def test_disk_full_while_saving_a_checkpoint_is_one_line_naming_the_file(tmp_path, monkeypatch):
    import contextlib
    import errno

    import cvtool.io.atomic as atomic

    real = atomic.atomic_open

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    @contextlib.contextmanager
    def full_for_checkpoints(path, mode="wb", **kw):
        with real(path, mode, **kw) as fh:
            yield FullDisk() if str(path).endswith(".pt") else fh

    monkeypatch.setattr(atomic, "atomic_open", full_for_checkpoints)
    with pytest.raises(CvtoolError) as info:
        fit(ScriptedScores([0.1, 0.2]), replace(CONFIG, epochs=2, batch_size=8, deterministic=False), tmp_path / "r")
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "r" / "weights") in msg and "No space left on device" in msg
    assert not (tmp_path / "r" / LAST).exists() and not (tmp_path / "r" / BEST).exists()
    assert not [p for p in (tmp_path / "r").rglob("*") if atomic.TMP_MARKER in p.name]


FSIZE_CHILD = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
    from cvtool.cli.app import app
    sys.argv = ["cvtool", *sys.argv[2:]]
    app()
""")


def test_file_size_limit_during_a_checkpoint_exits_1_with_one_line(tmp_path, det_data):
    data = det_data
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, "-c", FSIZE_CHILD, "20000", "train", "single-shot", "--data", str(data),
                        "--out", str(run), "--epochs", "1", "--width", "4", "--batch-size", "4", "--threads", "1",
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert re.search(r"weights/(best|last)\.pt", lines[0]) and "File too large" in lines[0], lines[0]
    assert not (run / BEST).exists() and not (run / LAST).exists()
    assert not [q for q in run.rglob("*") if "cvtool-tmp" in q.name]


# --------------------------------------------------------------------------- data recorded absolute


def test_resume_from_another_directory_finds_the_data(cli, tmp_path, monkeypatch, det_data):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(det_data, work / "data")
    monkeypatch.chdir(work)
    r = cli(["train", "single-shot", "--data", "data", "--out", "run", "--epochs", "1", "--width", "4",
             "--batch-size", "4", "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    st = read_run_checkpoint(work / "run")
    assert Path(st["task_config"]["data"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data").mkdir()  # a same-named folder here must not be picked up
    monkeypatch.chdir(elsewhere)
    r = cli(["train", "single-shot", "--resume", work / "run", "--epochs", "2", "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert read_run_checkpoint(work / "run")["epoch"] == 2


def test_resume_keeps_the_runs_thread_count(cli, tmp_path, monkeypatch, det_data):
    """``--threads`` is recorded and a plain ``--resume RUN`` uses it again: the thread count
    changes torch's float reductions, so a resume under torch's default count was not
    bit-equal (single-shot, 600 canvases, stopped mid-epoch 2: 65 of 76 tensors differed)."""
    r = cli(["train", "single-shot", "--data", det_data, "--out", tmp_path / "run", "--epochs", "1",
             "--width", "4", "--batch-size", "4", "--threads", "3", "--quiet"])
    assert r.exit_code == 0, r.output
    assert read_run_checkpoint(tmp_path / "run")["config"]["threads"] == 3
    calls: list[int] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n))[1])
    r = cli(["train", "single-shot", "--resume", tmp_path / "run", "--epochs", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert calls and calls[0] == 3, calls
    assert read_run_checkpoint(tmp_path / "run")["config"]["threads"] == 3
    calls.clear()
    r = cli(["train", "single-shot", "--resume", tmp_path / "run", "--epochs", "3", "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert calls and calls[0] == 1, calls

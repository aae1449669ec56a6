"""The training runner: device resolution, checkpoints, fit loop, resume, signals, DDP (gloo)."""

from __future__ import annotations

import os
import pickle
import signal
import shutil
import socket
from dataclasses import replace

import pytest
import torch

from cvtool.errors import BadInputError, UsageError
from cvtool.runner import checkpoint as ckpt
from cvtool.runner.data import TensorBatches, epoch_indices
from cvtool.runner.device import resolve_device
from cvtool.runner.distributed import DistContext
from cvtool.runner.loop import (LAST, BEST, TrainConfig, fit, read_run_checkpoint, resumed_config)



class MLPTask:
    """y = sin(3x) regression with a tiny MLP (no batch norm, so DDP == 1 process exactly)."""

    kind, classes, category_ids = "localizer", ["a"], [1]

    def __init__(self, n: int = 128) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 2, generator=g) * 2 - 1
        self.y = torch.sin(3 * self.x[:, :1]) + self.x[:, 1:] ** 2

    def model_config(self):
        return {"hidden": 16}

    def task_config(self):
        return {"n": int(self.x.shape[0])}

    def build_model(self):
        return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def train_batches(self, env, *, batch_size, seed):
        return TensorBatches({"x": self.x, "y": self.y}, batch_size=batch_size, seed=seed, ctx=env.dist,
                             device=env.device)

    def loss(self, model, batch, env):
        err = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return err, {"mse": err.detach()}

    def evaluate(self, model, env):
        err = float(torch.nn.functional.mse_loss(model(self.x), self.y))
        return {"mse": err, "score": -err}


def _cfg(**kw):
    base = dict(epochs=3, batch_size=16, lr=0.01, optimizer="adam", scheduler="constant", device="cpu",
                quiet=True, seed=3)
    base.update(kw)
    return TrainConfig(**base)


# -- device ---------------------------------------------------------------------------------------

def test_device_cpu_and_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="not valid"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        for spec in ("cuda", "cuda:1"):
            with pytest.raises(UsageError, match="no CUDA GPU"):
                resolve_device(spec)


def test_cpu_run_never_touches_cuda(tmp_path, monkeypatch):
    def boom_for(name):
        def boom(*a, **k):
            raise AssertionError(f"torch.cuda.{name} was called on a CPU run")
        return boom

    for name in ("is_available", "device_count", "init", "synchronize", "get_rng_state", "current_device"):
        monkeypatch.setattr(torch.cuda, name, boom_for(name))
    fit(MLPTask(), _cfg(epochs=1), tmp_path / "run")
    ckpt.load_checkpoint(tmp_path / "run" / LAST)
    assert not torch.cuda.is_initialized()


# -- checkpoints ----------------------------------------------------------------------------------

def test_checkpoint_roundtrip_and_plain_only(tmp_path):
    p = ckpt.save_checkpoint(tmp_path / "w" / "a.pt", {"kind": "localizer", "t": torch.ones(2), "l": [1, "x"]})
    st = ckpt.load_checkpoint(p)
    assert st["kind"] == "localizer" and st["format"] == ckpt.FORMAT and torch.equal(st["t"], torch.ones(2))
    # torch's own safe loader agrees
    assert torch.load(p, weights_only=True)["l"] == [1, "x"]
    with pytest.raises(TypeError, match="Path"):
        ckpt.save_checkpoint(tmp_path / "b.pt", {"kind": "x", "p": tmp_path})
    assert not (tmp_path / "b.pt").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "foreign_dict", "foreign_tensor",
                                  "pickle_payload", "torch_pickle_payload", "newer"])
def test_corrupt_or_foreign_checkpoint_refused(tmp_path, case):
    p = tmp_path / "bad.pt"
    marker = tmp_path / "PWNED"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        good = ckpt.save_checkpoint(tmp_path / "good.pt", {"kind": "localizer", "w": torch.zeros(100)})
        p.write_bytes(good.read_bytes()[:200])
    elif case == "text":
        p.write_text("hello")
    elif case == "foreign_dict":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, p)
    elif case == "foreign_tensor":
        torch.save(torch.zeros(3), p)
    elif case == "pickle_payload":
        p.write_bytes(pickle.dumps(_Evil(marker)))
    elif case == "torch_pickle_payload":
        torch.save({"format": ckpt.FORMAT, "kind": "localizer", "x": _Evil(marker)}, p)
    elif case == "newer":
        torch.save({"format": ckpt.FORMAT, "format_version": 99, "kind": "localizer"}, p)
    with pytest.raises(BadInputError, match="bad.pt"):
        ckpt.load_checkpoint(p)
    assert not marker.exists()


def test_detectors_read_kind_refuses_payload(tmp_path):
    from cvtool.detectors import read_model_kind

    marker = tmp_path / "PWNED"
    p = tmp_path / "m.pt"
    torch.save({"format": ckpt.FORMAT, "kind": "localizer", "x": _Evil(marker)}, p)
    with pytest.raises(BadInputError):
        read_model_kind(p)
    assert not marker.exists()


# -- data -----------------------------------------------------------------------------------------

def test_sharding_matches_one_process():
    one = epoch_indices(64, epoch=2, seed=5, shuffle=True)
    r0 = epoch_indices(64, epoch=2, seed=5, shuffle=True, ctx=DistContext(rank=0, world_size=2))
    r1 = epoch_indices(64, epoch=2, seed=5, shuffle=True, ctx=DistContext(rank=1, world_size=2))
    assert sorted(r0 + r1) == list(range(64)) and r0 == one[0::2] and r1 == one[1::2]
    assert one != epoch_indices(64, epoch=3, seed=5, shuffle=True)
    src = TensorBatches({"x": torch.arange(10.0)}, batch_size=4, shuffle=False)
    got = [b["x"].tolist() for b in src.epoch_batches(0, start=1)]
    assert got == [[4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]


def test_loader_batches_follow_the_same_order_as_tensor_batches():
    from torch.utils.data import Dataset

    from cvtool.runner.data import LoaderBatches

    class Items(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"x": torch.tensor([float(i)])}

    for ctx in (DistContext(), DistContext(rank=1, world_size=2)):
        t = TensorBatches({"x": torch.arange(10.0)[:, None]}, batch_size=3, seed=4, ctx=ctx)
        d = LoaderBatches(Items(), batch_size=3, seed=4, ctx=ctx, workers=0)
        for epoch in (0, 1):
            a = [b["x"].flatten().tolist() for b in t.epoch_batches(epoch)]
            b = [b["x"].flatten().tolist() for b in d.epoch_batches(epoch)]
            assert a == b and len(a) == len(t) == len(d)
            assert [b["index"].tolist() for b in d.epoch_batches(epoch, start=1)] == \
                [[int(v) for v in x] for x in a[1:]]


# -- fit, resume, signals -------------------------------------------------------------------------

def test_deterministic_runs_repeat_and_leave_global_state_alone(tmp_path):
    fit(MLPTask(), _cfg(epochs=1, deterministic=True), tmp_path / "a")
    fit(MLPTask(), _cfg(epochs=1, deterministic=True), tmp_path / "b")
    assert not torch.are_deterministic_algorithms_enabled()
    a, b = ckpt.load_checkpoint(tmp_path / "a" / LAST), ckpt.load_checkpoint(tmp_path / "b" / LAST)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    c = fit(MLPTask(), _cfg(epochs=1, seed=4), tmp_path / "c")
    assert c["epochs"] == 1
    assert not torch.equal(ckpt.load_checkpoint(tmp_path / "c" / LAST)["model"]["0.weight"], a["model"]["0.weight"])


def test_fit_writes_run_folder_and_learns(tmp_path):
    out = tmp_path / "run"
    res = fit(MLPTask(), _cfg(epochs=4), out, command="test", args={"a": 1})
    import json

    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    for r in rows:
        assert {"lr", "img_per_s", "device", "val_score"} <= set(r)
    last = ckpt.load_checkpoint(out / LAST)
    best = ckpt.load_checkpoint(out / BEST)
    assert last["epoch"] == 4 and last["classes"] == ["a"] and last["category_ids"] == [1]
    assert last["task_config"] == {"n": 128} and last["model_config"] == {"hidden": 16}
    assert best["epoch"] == res["best_epoch"]
    assert {"optimizer", "scheduler", "scaler", "config", "cvtool_version"} <= set(last)
    assert json.loads((out / "run.json").read_text())["counts"]["epochs_done"] == 4


@pytest.mark.parametrize("scheduler", ["constant", "onecycle"])
def test_resume_equals_uninterrupted(tmp_path, scheduler):
    full = tmp_path / "full"
    fit(MLPTask(), _cfg(epochs=3, scheduler=scheduler), full)
    cfg = _cfg(epochs=3, scheduler=scheduler)
    run = tmp_path / "resumed"
    fit(MLPTask(), replace(cfg, epochs=2), run)
    st2 = read_run_checkpoint(run)
    assert st2["epoch"] == 2
    saved_steps = [float(v["step"]) for v in st2["optimizer"]["state"].values()]
    cfg2 = resumed_config(st2, epochs=3)
    assert cfg2.epochs == 3 and cfg2.lr == cfg.lr
    fit(MLPTask(), cfg2, run, resume_state=st2)
    a = ckpt.load_checkpoint(full / LAST)
    b = ckpt.load_checkpoint(run / LAST)
    assert b["epoch"] == 3
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3
    if scheduler == "constant":  # same schedule, same data order -> same weights as one 3-epoch run
        for k in a["model"]:
            torch.testing.assert_close(a["model"][k], b["model"][k])
    # the optimiser continued from the saved moments (step counts add up)
    steps = [v["step"] for v in b["optimizer"]["state"].values()]
    assert len(steps) == len(saved_steps) == 4
    assert all(float(s) == t + 8 for s, t in zip(steps, saved_steps))


def test_resume_restores_optimizer_state_exactly(tmp_path, monkeypatch):
    run = tmp_path / "r"
    fit(MLPTask(), _cfg(epochs=1), run)
    st = read_run_checkpoint(run)
    captured = {}
    import cvtool.runner.loop as loop

    real = loop.build_optimizer

    def spy(model, config, total):
        opt, sch = real(model, config, total)
        captured["opt"] = opt
        return opt, sch

    monkeypatch.setattr(loop, "build_optimizer", spy)
    # epochs == saved epoch: nothing to train, state is restored and left as it was
    fit(MLPTask(), resumed_config(st, epochs=1), run, resume_state=st)
    restored = captured["opt"].state_dict()
    for k, v in st["optimizer"]["state"].items():
        for name, t in v.items():
            torch.testing.assert_close(restored["state"][k][name], t)


def test_resume_rejects_bad_changes(tmp_path):
    run = tmp_path / "r"
    fit(MLPTask(), _cfg(epochs=2), run)
    st = read_run_checkpoint(run)
    with pytest.raises(UsageError, match="already finished"):
        resumed_config(st, epochs=1)
    with pytest.raises(UsageError, match="keeps its lr"):
        resumed_config(st, lr=1.0)
    with pytest.raises(UsageError, match="no weights/last.pt"):
        read_run_checkpoint(tmp_path / "nothing")


@pytest.mark.parametrize("key,value", [("threads", 10**6), ("threads", -3), ("batch_size", 0)])
def test_resume_checks_the_settings_a_checkpoint_carries(tmp_path, key, value):
    """A crafted last.pt must not reach torch.set_num_threads (or the loop) unchecked (#13)."""
    from cvtool.errors import BadInputError

    run = tmp_path / "r"
    fit(MLPTask(), _cfg(epochs=1), run)
    st = read_run_checkpoint(run)
    st["config"] = {**st["config"], key: value}
    with pytest.raises(BadInputError, match=f"checkpoint holds a bad training setting .*{key.split('_')[0]}"):
        resumed_config(st, epochs=2)


class SelfTerminating(MLPTask):
    """Sends itself SIGTERM (or SIGINT) during batch ``at`` of the first epoch it runs."""

    def __init__(self, at: int, sig: int = signal.SIGTERM) -> None:
        super().__init__()
        self.at, self.sig, self.calls = at, sig, 0

    def loss(self, model, batch, env):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.sig)
        return super().loss(model, batch, env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_mid_epoch_and_resume_matches_uninterrupted(tmp_path, sig):
    full = tmp_path / "full"
    fit(MLPTask(), _cfg(epochs=2), full)
    run = tmp_path / "run"
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt):
        fit(SelfTerminating(at=11, sig=sig), _cfg(epochs=2), run)   # 8 batches per epoch: stops in epoch 2
    assert signal.getsignal(sig) is before                          # handlers restored
    st = read_run_checkpoint(run)
    assert (st["epoch"], st["batch"]) == (1, 3)
    fit(MLPTask(), resumed_config(st), run, resume_state=st)
    a, b = ckpt.load_checkpoint(full / LAST), ckpt.load_checkpoint(run / LAST)
    assert b["epoch"] == 2 and b["batch"] == 0
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])


# -- DDP with gloo on two CPU processes -----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    fit(MLPTask(), _cfg(epochs=2, batch_size=16), out)


def test_ddp_gloo_two_processes_equals_one(tmp_path):
    import torch.multiprocessing as mp

    one = tmp_path / "one"
    fit(MLPTask(), _cfg(epochs=2, batch_size=16), one)
    two = tmp_path / "two"
    for attempt in range(3):
        # _free_port's port may be taken by another test process (a dask scheduler under
        # xdist) before gloo binds it; rank 1 then aborts.  A new port is a fair retry.
        try:
            mp.spawn(_ddp_worker, args=(2, _free_port(), str(two)), nprocs=2, join=True)
            break
        except mp.ProcessExitedException:
            if attempt == 2:
                raise
            shutil.rmtree(two, ignore_errors=True)
    a = ckpt.load_checkpoint(one / LAST)
    b = ckpt.load_checkpoint(two / LAST)
    assert b["world_size"] == 2 and a["world_size"] == 1
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)


def test_amp_and_channels_last_run_the_same_code_path_on_cpu(tmp_path):
    from cvtool.detectors.localizer import LocalizerTask
    from test_localizer import digit_canvases

    data = digit_canvases(32)
    res = fit(LocalizerTask(data, data, width=4), _cfg(epochs=2, amp=True, channels_last=True, threads=1,
                                                       optimizer="adamw", scheduler="onecycle", lr=3e-3),
              tmp_path / "amp")
    st = ckpt.load_checkpoint(tmp_path / "amp" / LAST)
    assert st["config"]["amp"] is True and st["scaler"] == {}           # bf16 autocast needs no scaler
    assert all(v.dtype == torch.float32 for v in st["model"].values() if v.is_floating_point())
    assert res["metrics"]["train_loss"] == res["metrics"]["train_loss"]  # finite, not NaN


def test_resume_from_a_run_too_short_for_one_cycle(tmp_path):
    """1 step (constant schedule in effect), then resumed to 6 epochs of one-cycle: no crash."""
    run = tmp_path / "short"
    fit(MLPTask(), _cfg(epochs=1, batch_size=128, scheduler="onecycle"), run)
    st = read_run_checkpoint(run)
    cfg = resumed_config(st, epochs=6)
    fit(MLPTask(), cfg, run, resume_state=st)
    assert ckpt.load_checkpoint(run / LAST)["epoch"] == 6

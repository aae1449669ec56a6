"""The localiser: networks, loss, device-side shift, overfitting, detector protocol, CLI (train/detect/eval)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvtool.datasets.arrays import ArrayDataset
from cvtool.detectors import load_detector, read_model_kind
from cvtool.detectors import localizer as loc
from cvtool.errors import BadInputError
from cvtool.runner import checkpoint as ckpt
from cvtool.runner.loop import LAST, TrainConfig, fit


def digit_canvases(n: int, *, size: int = 40, digit: int = 16, seed: int = 0, classes: int = 10) -> ArrayDataset:
    """``n`` canvases, each one scikit-learn digit (scaled to ``digit`` px) at a random place."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.flatnonzero(d.target < classes)
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        k = int(rng.choice(keep))
        g = cv2.resize((d.images[k] * 16).clip(0, 255).astype(np.uint8), (digit, digit))
        x, y = (int(v) for v in rng.integers(0, size - digit + 1, 2))
        imgs[i, y:y + digit, x:x + digit] = g
        boxes[i] = (x, y, x + digit, y + digit)
        labels[i] = d.target[k] + 1
    return ArrayDataset(images=imgs, boxes=boxes, labels=labels, box_image=np.arange(n),
                        category_ids=np.arange(1, classes + 1),
                        category_names=np.array([f"d{c}" for c in range(classes)]))


def write_npz(folder: Path, split: str, ds: ArrayDataset) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{split}.npz", images=ds.images, boxes=ds.boxes, labels=ds.labels,
                        box_image=ds.box_image, category_ids=ds.category_ids, category_names=ds.category_names)


TINY = dict(optimizer="adamw", scheduler="onecycle", device="cpu", threads=1, quiet=True, seed=0)


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    """The default localiser trained to overfit 64 canvases (a few seconds on one CPU thread)."""
    data = digit_canvases(64)
    task = loc.LocalizerTask(data, data, arch="default", width=4, augment="none")
    out = tmp_path_factory.mktemp("overfit") / "run"
    fit(task, TrainConfig(epochs=40, batch_size=16, lr=1e-2, **TINY), out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return data, out, rows


# -- networks and loss ------------------------------------------------------------------------------

def test_seed_network_is_the_seed_study_layout():
    net = loc.build_model(loc.LocalizerConfig(arch="seed", num_classes=10, canvas=(75, 75)))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64] and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in net.modules()) == 3
    # 'valid' 3x3 then 2x2 pooling: 75 -> 73 -> 36 -> 34 -> 17 -> 15 -> 7, so Dense(7*7*64 -> 128)
    dense = net.dense[1]
    assert (dense.in_features, dense.out_features) == (7 * 7 * 64, 128)
    assert (net.cls.out_features, net.box.out_features) == (10, 4)
    by_hand = (9 * 16 + 16) + (9 * 16 * 32 + 32) + (9 * 32 * 64 + 64) + (3136 * 128 + 128) + (1290 + 516)
    assert sum(p.numel() for p in net.parameters()) == by_hand
    out = net(torch.rand(2, 1, 75, 75))
    assert out["logits"].shape == (2, 10) and out["boxes"].shape == (2, 4)
    # Keras' initialisation: zero biases, Glorot-uniform bound sqrt(6 / (fan_in + fan_out))
    assert all(float(m.bias.abs().max()) == 0 for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    bound = (6 / (3136 + 128)) ** 0.5
    assert 0.9 * bound < float(dense.weight.abs().max()) <= bound


def test_default_network_is_fully_convolutional_and_boxes_are_normalised():
    net = loc.build_model(loc.LocalizerConfig(arch="default", num_classes=3, width=4, canvas=(75, 75))).eval()
    for size in (40, 75, 96):
        out = net(torch.rand(2, 1, size, size))
        assert out["logits"].shape == (2, 3) and out["boxes"].shape == (2, 4)
        assert out["attn"].shape[1] == int(out["grid"][0]) * int(out["grid"][1])


def test_loss_terms_match_references():
    pred = {"logits": torch.tensor([[2.0, 0.0], [0.0, 1.0]]),
            "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.4, 0.6]])}
    true = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.5, 0.6]])
    labels = torch.tensor([0, 0])
    w = loc.LossWeights(cls=1.0, box=2.0, box_loss="mse", giou=3.0, center=0.0)
    total, parts = loc.localizer_loss(pred, labels, true, weights=w, canvas=(75, 75))
    ce = -(np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(1 / (1 + np.e))) / 2
    mse = ((0.1 ** 2) + (0.1 ** 2)) / 8
    # box 2: intersection 0.2x0.3=0.06, union 0.08+0.09-0.06=0.11, hull 0.3x0.4=0.12
    giou2 = 0.06 / 0.11 - (0.12 - 0.11) / 0.12
    assert float(parts["cls"]) == pytest.approx(ce, rel=1e-5)
    assert float(parts["box"]) == pytest.approx(mse, rel=1e-5)
    assert float(parts["giou"]) == pytest.approx((0 + 1 - giou2) / 2, rel=1e-5)
    assert float(total) == pytest.approx(ce + 2 * mse + 3 * (1 - giou2) / 2, rel=1e-5)
    # smooth L1 is quadratic below one pixel (1/75) and linear above
    w = loc.LossWeights(box_loss="smooth-l1", giou=0.0, center=0.0)
    _, p = loc.localizer_loss({"logits": pred["logits"], "boxes": true + 0.5 / 75}, labels, true, weights=w,
                              canvas=(75, 75))
    assert float(p["box"]) == pytest.approx(0.5 * (0.5 / 75) ** 2 / (1 / 75), rel=1e-4)


def test_shift_canvases_replaces_the_object_like_a_fresh_paste():
    data = digit_canvases(8, size=40, digit=16, seed=1)
    images = torch.from_numpy(data.images)[:, None]
    boxes = torch.from_numpy(data.boxes)
    u = torch.tensor([[0.0, 0.0], [0.999, 0.999], [0.5, 0.25]] + [[0.3, 0.7]] * 5)
    moved, nb = loc.shift_canvases(images, boxes, u)
    for i in range(8):
        x1, y1, x2, y2 = (int(v) for v in nb[i])
        ox1, oy1, ox2, oy2 = (int(v) for v in boxes[i])
        expect = np.zeros((40, 40), np.uint8)
        expect[y1:y2, x1:x2] = data.images[i, oy1:oy2, ox1:ox2]
        np.testing.assert_array_equal(moved[i, 0].numpy(), expect)
        assert 0 <= x1 and x2 <= 40 and 0 <= y1 and y2 <= 40 and x2 - x1 == 16
    assert tuple(nb[0, :2].tolist()) == (0.0, 0.0)          # u = 0: top-left corner
    assert tuple(nb[1, 2:].tolist()) == (40.0, 40.0)        # u -> 1: bottom-right corner


def test_crop_objects_samples_the_box_on_a_regular_grid():
    # image value = x pixel index: a bilinear crop of columns x1..x2 at 32 samples reads pixel-centre positions
    h, w = 50, 80
    ramp = torch.arange(w, dtype=torch.float32).repeat(h, 1)[None, None]
    x1, y1, x2, y2 = 20.0, 10.0, 52.0, 42.0
    crop = loc.crop_objects(ramp, torch.tensor([[x1 / w, y1 / h, x2 / w, y2 / h]]), size=32, margin=0.0)
    expect = x1 + (np.arange(32) + 0.5) * (x2 - x1) / 32 - 0.5
    np.testing.assert_allclose(crop[0, 0, 16].numpy(), expect, atol=1e-4)
    np.testing.assert_allclose(crop[0, 0, :, 5].numpy(), np.full(32, expect[5]), atol=1e-4)
    # a margin widens the window symmetrically about the centre
    wide = loc.crop_objects(ramp, torch.tensor([[x1 / w, y1 / h, x2 / w, y2 / h]]), size=32, margin=0.25)
    assert float(wide[0, 0, 16, 0]) == pytest.approx(x1 - 8 + 0.5 * 48 / 32 - 0.5, abs=1e-4)


# -- training -------------------------------------------------------------------------------------

def test_localizer_overfits_64_canvases(overfit_run):
    _, out, rows = overfit_run
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] / 5
    assert rows[0]["val_mean_iou"] < 0.5 < 0.85 < rows[-1]["val_mean_iou"]
    assert rows[-1]["val_accuracy"] >= 0.9 and rows[-1]["val_iou0.6"] >= 0.95
    st = ckpt.load_checkpoint(out / "weights" / "best.pt")
    assert st["kind"] == "localizer" and st["classes"] == [f"d{c}" for c in range(10)]
    assert st["category_ids"] == list(range(1, 11)) and st["model_config"]["arch"] == "default"


def test_detector_protocol_predicts_one_box_in_image_pixels(overfit_run):
    data, out, _ = overfit_run
    assert read_model_kind(out) == "localizer"
    det = load_detector(out, device="cpu")
    assert det.kind == "localizer" and det.category_ids == list(range(1, 11))
    images = [data.images[i] for i in range(6)]
    res = det.predict(images)
    assert len(res) == 6
    from cvtool import boxes as box_ops

    for i, d in enumerate(res):
        assert d.boxes.shape == (1, 4) and 0 < d.scores[0] <= 1
        assert box_ops.iou(d.boxes, data.boxes[i:i + 1])[0, 0] > 0.6
    # a BGR image twice the size: same class, box in the big image's pixels
    big = cv2.resize(cv2.cvtColor(data.images[0], cv2.COLOR_GRAY2BGR), (80, 80), interpolation=cv2.INTER_NEAREST)
    d2 = det.predict([big])[0]
    assert d2.labels[0] == res[0].labels[0]
    assert box_ops.iou(d2.boxes, data.boxes[:1] * 2)[0, 0] > 0.6
    assert all(len(d) == 0 for d in det.predict(images[:2], score_threshold=1.0))


def test_load_refuses_other_kinds_and_broken_files(tmp_path, overfit_run):
    _, out, _ = overfit_run
    st = ckpt.load_checkpoint(out / LAST)
    ckpt.save_checkpoint(tmp_path / "ss.pt", {**{k: v for k, v in st.items() if k not in ("format", "format_version")},
                                             "kind": "single-shot"})
    with pytest.raises(BadInputError, match="not 'localizer'"):
        loc.load(tmp_path / "ss.pt", device="cpu")
    bad = {k: v for k, v in st.items() if k not in ("format", "format_version")}
    bad["model_config"] = {**st["model_config"], "width": 5}
    ckpt.save_checkpoint(tmp_path / "w.pt", bad)
    with pytest.raises(BadInputError, match="not a valid localizer checkpoint"):
        loc.load(tmp_path / "w.pt", device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(BadInputError):
        loc.load(tmp_path / "junk.pt", device="cpu")


# -- CLI ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "loc"
    write_npz(folder, "train", digit_canvases(48, seed=2))
    write_npz(folder, "val", digit_canvases(16, seed=3))
    return folder


def test_cli_train_detect_eval(cli, tmp_path, tiny_dataset):
    run = tmp_path / "run"
    r = cli(["train", "localizer", "--data", tiny_dataset, "--out", run, "--epochs", "2", "--batch-size", "16",
             "--width", "4", "--threads", "1", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and Path(summary["best"]).is_file()
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["command"] == "train localizer" and manifest["args"]["width"] == 4
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "train_cls", "train_box", "train_giou", "val_accuracy", "val_mean_iou",
            "val_iou0.6", "lr", "img_per_s", "device"} <= set(header)
    # same folder again: refused (exit 2) unless --overwrite or --resume
    assert cli(["train", "localizer", "--data", tiny_dataset, "--out", run]).exit_code == 2
    r = cli(["train", "localizer", "--resume", run, "--epochs", "3", "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert ckpt.load_checkpoint(run / LAST)["epoch"] == 3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    # detect on PNGs, then eval --metric loc
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    val = digit_canvases(16, seed=3)
    for i in range(4):
        cv2.imwrite(str(imgs / f"{i}.png"), val.images[i])
    r = cli(["detect", imgs, "--model", run / "weights" / "best.pt", "--out", tmp_path / "dets", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "dets" / "detections.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(len(rec["boxes"]) == 1 and rec["category_ids"][0] in range(1, 11) for rec in recs)
    # eval --metric loc against a COCO file of the same 4 images agrees with the records computed by hand
    gt = {"images": [{"id": i + 1, "file_name": f"{i}.png", "width": 40, "height": 40} for i in range(4)],
          "categories": [{"id": c, "name": f"d{c - 1}"} for c in range(1, 11)],
          "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": int(val.labels[i]), "iscrowd": 0,
                           "bbox": [float(val.boxes[i, 0]), float(val.boxes[i, 1]), 16.0, 16.0], "area": 256.0}
                          for i in range(4)]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    r = cli(["eval", "--gt", tmp_path / "gt.json", "--pred", tmp_path / "dets" / "detections.jsonl",
             "--metric", "loc", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    from cvtool import boxes as box_ops

    by_file = {rec["file"]: rec for rec in recs}
    ious = [box_ops.iou(np.array(by_file[f"{i}.png"]["boxes"]), val.boxes[i:i + 1])[0, 0] for i in range(4)]
    acc = np.mean([by_file[f"{i}.png"]["category_ids"][0] == val.labels[i] for i in range(4)])
    def find(doc, key):
        if isinstance(doc, dict):
            if key in doc and not isinstance(doc[key], (dict, list)):
                return doc[key]
            for v in doc.values():
                if isinstance(v, dict) and (got := find(v, key)) is not None:
                    return got
        return None

    assert find(report, "mean_iou") == pytest.approx(float(np.mean(ious)), abs=1e-6)
    assert find(report, "accuracy") == pytest.approx(float(acc), abs=1e-9)


def test_cli_usage_errors(cli, tmp_path, tiny_dataset):
    r = cli(["train", "localizer", "--data", tiny_dataset, "--out", tmp_path / "x", "--device", "cuda:3"])
    if not torch.cuda.is_available():
        assert r.exit_code == 2 and "no CUDA GPU" in r.output
    r = cli(["train", "localizer", "--data", tmp_path / "missing", "--out", tmp_path / "y"])
    assert r.exit_code == 2 and "missing" in r.output  # a missing input is a usage error (#12)
    assert cli(["train", "localizer", "--resume", tmp_path / "nope"]).exit_code == 2
    assert cli(["train", "localizer", "--data", tiny_dataset, "--out", tmp_path / "z", "--arch", "big"]).exit_code == 2


def test_cli_sigterm_saves_and_exits_130(tmp_path, tiny_dataset):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cvtool", "train", "localizer", "--data", str(tiny_dataset),
                             "--out", str(run), "--epochs", "10000", "--batch-size", "16", "--width", "4",
                             "--threads", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while not (run / LAST).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    st = ckpt.load_checkpoint(run / LAST)
    assert st["kind"] == "localizer" and (st["epoch"] >= 1 or st["batch"] >= 1)

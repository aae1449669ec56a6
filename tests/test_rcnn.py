"""R-CNN: (dx, dy, dw, dh) round trip, sampling rules, warping with context, proposal cache, CLI, model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvtool.detectors import load_detector, read_model_kind
from cvtool.detectors.rcnn import (RCNNConfig, RCNNDetector, RCNNNet, ProposalSettings, cached_proposals,
                                   context_boxes, decode_boxes, encode_boxes, label_rois, rcnn_loss, sample_rois,
                                   warp_regions)
from test_single_shot import one_thread, tiny_dataset  # noqa: F401  (shared fixtures)


def test_encode_matches_the_paper_by_hand():
    p = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    g = torch.tensor([[5.0, 0.0, 15.0, 20.0]])
    d = encode_boxes(p, g)[0]
    # centres (5, 5) -> (10, 10), sizes 10x10 -> 10x20
    assert torch.allclose(d, torch.tensor([0.5, 0.5, 0.0, float(np.log(2.0))]))


def test_encode_decode_round_trip():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand((200, 2), generator=gen) * 100
    wh = torch.rand((200, 2), generator=gen) * 50 + 1
    p = torch.cat([xy, xy + wh], 1)
    xy2 = xy + torch.randn((200, 2), generator=gen) * 5
    wh2 = wh * torch.exp(torch.randn((200, 2), generator=gen) * 0.3)
    g = torch.cat([xy2, xy2 + wh2], 1)
    back = decode_boxes(p, encode_boxes(p, g))
    assert torch.allclose(back, g, atol=1e-3)
    # class-specific deltas (N, K, 4): class k decodes with its own deltas
    d = torch.stack([encode_boxes(p, g), torch.zeros_like(p)], dim=1)
    both = decode_boxes(p, d)
    assert torch.allclose(both[:, 0], g, atol=1e-3) and torch.allclose(both[:, 1], p, atol=1e-4)


def test_roi_labels_follow_the_iou_rules():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]])
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],   # IoU 1      -> foreground, class 3 (+1)
        [0.0, 0.0, 10.0, 5.0],    # IoU 0.5    -> foreground (>= 0.5)
        [0.0, 0.0, 10.0, 4.9],    # IoU 0.49   -> background
        [0.0, 0.0, 10.0, 1.0],    # IoU 0.1    -> background (>= 0.1)
        [0.0, 0.0, 10.0, 0.9],    # IoU 0.09   -> ignored
        [30.0, 30.0, 40.0, 40.0],  # IoU 0      -> ignored
        [50.0, 50.0, 70.0, 72.0],  # IoU 0.91 with the second object -> class 7 (+1)
    ])
    rl = label_rois(boxes, gt, torch.tensor([3, 7]))
    assert rl.labels.tolist() == [4, 4, 0, 0, -1, -1, 8]
    assert torch.equal(rl.matched[6], gt[1]) and torch.equal(rl.matched[0], gt[0])


def test_sampling_caps_the_foreground_fraction():
    from cvtool.detectors.rcnn import RoiLabels

    labels = torch.tensor([1] * 40 + [0] * 100 + [-1] * 10)
    rl = RoiLabels(labels=labels, matched=torch.zeros((150, 4)), max_iou=torch.zeros(150))
    rng = np.random.default_rng(0)
    idx = sample_rois(rl, num=32, fg_fraction=0.25, rng=rng)
    assert len(idx) == 32 and len(set(idx.tolist())) == 32
    assert int((labels[idx] > 0).sum()) == 8 and int((labels[idx] == 0).sum()) == 24
    few = RoiLabels(labels=torch.tensor([1, 1] + [0] * 50), matched=torch.zeros((52, 4)), max_iou=torch.zeros(52))
    idx = sample_rois(few, num=32, fg_fraction=0.25, rng=rng)
    assert int((few.labels[idx] > 0).sum()) == 2 and len(idx) == 32
    assert not np.isin(np.flatnonzero(labels.numpy() < 0), sample_rois(rl, num=150, fg_fraction=0.5, rng=rng)).any()


def test_warp_with_context_is_the_enlarged_crop():
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.random((1, 1, 64, 64)).astype(np.float32))
    # a 24-px box with 4 px of context at warp size 32 covers exactly the 32-px box around it
    box = torch.tensor([[12.0, 12.0, 36.0, 36.0]])
    assert torch.allclose(context_boxes(box, warp_size=32, context_pad=4), torch.tensor([[8.0, 8.0, 40.0, 40.0]]))
    w = warp_regions(img, torch.tensor([0]), box, warp_size=32, context_pad=4)
    assert w.shape == (1, 1, 32, 32)
    assert torch.allclose(w[0, 0], img[0, 0, 8:40, 8:40], atol=1e-5)
    # outside the image the warp is zero
    w = warp_regions(img, torch.tensor([0]), torch.tensor([[-16.0, 0.0, 16.0, 32.0]]), warp_size=32, context_pad=0)
    assert float(w[0, 0, :, :15].abs().max()) == 0.0 and torch.allclose(w[0, 0, :, 16:], img[0, 0, 0:32, 0:16])


def test_loss_and_detector_shapes():
    cfg = RCNNConfig(num_classes=3, width=4)
    net = RCNNNet(cfg)
    logits, deltas = net(torch.rand(5, 1, 32, 32))
    assert logits.shape == (5, 4) and deltas.shape == (5, 3, 4)
    labels = torch.tensor([0, 1, 3, 0, 2])
    parts = rcnn_loss(logits, deltas, labels, torch.zeros(5, 4), labels > 0)
    assert torch.isfinite(parts["loss"])
    det = RCNNDetector(net, classes=["a", "b", "c"], category_ids=[1, 2, 3], proposals=ProposalSettings())
    img = np.zeros((48, 40), np.uint8)
    out = det.classify([img], [np.array([[2, 2, 20, 20], [10, 5, 30, 40]], np.float32)], score_threshold=0.0)[0]
    assert out.boxes.shape[1] == 4 and len(out.scores) <= 6
    assert np.all(out.boxes[:, 2] <= 40) and np.all(out.boxes[:, 3] <= 48)


def test_proposal_cache_is_reused(tmp_path):
    img = np.zeros((48, 48), np.uint8)
    img[10:30, 12:40] = 200
    settings = ProposalSettings(mode="single", min_size=4)
    cache = tmp_path / "p.npz"
    first = cached_proposals(cache, [img, img], settings)
    assert cache.is_file()
    assert any(np.allclose(b, [12, 10, 40, 30]) for b in first[0])
    stamp = cache.stat().st_mtime_ns
    again = cached_proposals(cache, [img, img], settings)
    assert cache.stat().st_mtime_ns == stamp and all(np.array_equal(a, b) for a, b in zip(first, again))
    other = cached_proposals(cache, [img], settings)  # a different image count recomputes
    assert len(other) == 1


def test_cli_trains_caches_proposals_and_loads(cli, tiny_dataset, tmp_path):  # noqa: F811
    run = tmp_path / "rcnn"
    res = cli(["train", "rcnn", "--data", tiny_dataset, "--out", run, "--epochs", "1", "--width", "4",
               "--max-train", "16", "--batch-size", "4", "--max-val", "4", "--jobs", "1", "--proposals", "single", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["epochs"] == 1
    cache = run / "proposals" / "train.npz"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    assert read_model_kind(run / "weights" / "best.pt") == "rcnn"
    det = load_detector(run, device="cpu")
    assert det.kind == "rcnn" and len(det.classes) == 10 and len(det.category_ids) == 10
    assert det.proposal_settings.mode == "single"
    img = np.zeros((64, 64), np.uint8)
    img[20:44, 20:34] = 255
    assert len(det.predict([img])) == 1
    res = cli(["train", "rcnn", "--resume", run, "--epochs", "2", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert cache.stat().st_mtime_ns == stamp  # proposals reused, not recomputed
    # a single-shot run cannot be resumed as rcnn, and --svm is refused with a reason
    assert cli(["train", "single-shot", "--resume", run, "--quiet"]).exit_code == 2
    assert cli(["train", "rcnn", "--data", tiny_dataset, "--out", tmp_path / "x", "--svm"]).exit_code == 2


def test_rcnn_checkpoint_of_the_wrong_kind_is_refused(tmp_path):
    from cvtool.detectors.rcnn import load
    from cvtool.errors import BadInputError
    from cvtool.runner.checkpoint import save_checkpoint

    p = tmp_path / "m.pt"
    save_checkpoint(p, {"kind": "single-shot", "model": {}, "classes": [], "category_ids": []})
    with pytest.raises(BadInputError, match="not 'rcnn'"):
        load(p, device="cpu")

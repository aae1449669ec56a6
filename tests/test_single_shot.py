"""The single-shot detector: target assignment, box decoding, losses, overfitting, model files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvtool.detectors import load_detector, read_model_kind
from cvtool.detectors.single_shot import (STRIDE, SingleShotConfig, SingleShotDetector, SingleShotNet,
                                          assign_targets, decode_batch, decode_distances, detection_loss,
                                          encode_distances, locations, shift_batch)
from cvtool.detectors.training import Split, coco_scores
from cvtool.errors import BadInputError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the suite runs one worker per core, and spinning OpenMP threads on
    shared cores slow training steps several-fold."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_scenes(n: int, *, size: int = 64, seed: int = 0) -> Split:
    """Grey canvases with 1-3 objects: filled squares (class 0) and hollow squares (class 1)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.uint8)
    boxes, labels = [], []
    for i in range(n):
        bs, ls = [], []
        for _ in range(int(rng.integers(1, 4))):
            s = int(rng.integers(12, 22))
            for _try in range(50):
                x, y = (int(v) for v in rng.integers(0, size - s, 2))
                b = np.array([x, y, x + s, y + s], np.float32)
                if all(min(b[2], o[2]) <= max(b[0], o[0]) or min(b[3], o[3]) <= max(b[1], o[1]) for o in bs):
                    break
            else:
                continue
            k = int(rng.integers(0, 2))
            images[i, y:y + s, x:x + s] = 220
            if k == 1:
                images[i, y + 4:y + s - 4, x + 4:x + s - 4] = 0
            bs.append(b)
            ls.append(k)
        boxes.append(np.array(bs, np.float32).reshape(-1, 4))
        labels.append(np.array(ls, np.int64))
    return Split(images, boxes, labels)


# --------------------------------------------------------------------------- assignment and decoding


def test_locations_are_cell_centres():
    pts = locations(8, 12, stride=4)
    assert pts.shape == (6, 2)
    assert pts[0].tolist() == [2.0, 2.0] and pts[1].tolist() == [6.0, 2.0] and pts[3].tolist() == [2.0, 6.0]


def test_assignment_and_decoding_round_trip_exactly():
    gt = torch.tensor([[10.0, 12.0, 42.0, 50.0], [60.0, 61.0, 90.0, 101.0], [100.0, 20.0, 103.0, 22.5]])
    lab = torch.tensor([3, 1, 0])
    pts = locations(128, 128)
    t = assign_targets([gt], [lab], pts, center_fraction=0.5)
    pos = t.positive[0]
    # every object is claimed, each positive carries exactly its own box and class
    assert set(t.labels[0][pos].tolist()) == {0, 1, 3}
    for k, box in zip(lab.tolist(), gt):
        sel = pos & (t.labels[0] == k)
        assert torch.equal(t.boxes[0][sel], box.expand(int(sel.sum()), 4))
    # the 3x2.5 px object is smaller than a stride: it gets only the location nearest its centre
    tiny = pos & (t.labels[0] == 0)
    assert int(tiny.sum()) == 1 and pts[tiny][0].tolist() == [102.0, 22.0]
    # central region of the first box: |x - 26| <= 8 and |y - 31| <= 9.5 -> x in 18..34 (5 cells), y in 22..38 (5)
    assert int((pos & (t.labels[0] == 3)).sum()) == 25
    # encode -> decode returns the boxes exactly (to float rounding) at every positive inside its box
    inside = pos & ~tiny
    raw = encode_distances(t.boxes[0][inside], pts[inside])
    back = decode_distances(raw, pts[inside])
    assert torch.allclose(back, t.boxes[0][inside], atol=1e-4)
    # centre-ness is 1 at a location equidistant from all four sides, less elsewhere
    t2 = assign_targets([torch.tensor([[2.0, 2.0, 18.0, 18.0]])], [torch.tensor([0])], pts)
    c = t2.centerness[0][t2.positive[0]]
    assert c.numel() == 9  # locations 6, 10, 14 in x and y
    assert torch.isclose(c.max(), torch.tensor(1.0)) and float(c.min()) < 1.0


def test_smaller_object_wins_a_shared_location():
    big = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    small = torch.tensor([[24.0, 24.0, 40.0, 40.0]])
    pts = locations(64, 64)
    t = assign_targets([torch.cat([big, small])], [torch.tensor([0, 1])], pts, center_fraction=1.0)
    centre = int(((pts - 32.0).abs().sum(1)).argmin())
    assert int(t.labels[0, centre]) == 1
    assert torch.equal(t.boxes[0, centre], small[0])


def test_encode_refuses_points_outside_their_box():
    with pytest.raises(ValueError, match="strictly inside"):
        encode_distances(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[6.0, 2.0]]))


def test_decode_batch_recovers_hand_made_detections():
    """Put exact logits and distances at two locations: the detections are those boxes, classes, scores."""
    k, h, w = 3, 64, 48
    gh, gw = h // STRIDE, w // STRIDE
    cls = torch.full((1, k, gh, gw), -20.0)
    dist = torch.zeros((1, 4, gh, gw))
    ctr = torch.full((1, 1, gh, gw), 20.0)
    pts = locations(h, w)
    want = {(5, 4): ([6.0, 10.0, 30.0, 27.0], 2), (12, 8): ([20.0, 40.0, 45.0, 60.0], 0)}
    for (i, j), (box, c) in want.items():
        p = i * gw + j
        raw = encode_distances(torch.tensor([box]), pts[p:p + 1])[0]
        dist[0, :, i, j] = raw
        cls[0, c, i, j] = 20.0
    dets = decode_batch((cls, dist, ctr), image_sizes=[(w, h)], score_threshold=0.5)[0]
    assert len(dets.scores) == 2
    got = sorted(zip(dets.labels.tolist(), dets.boxes.tolist()))
    assert got[0][0] == 0 and np.allclose(got[0][1], [20.0, 40.0, 45.0, 60.0], atol=1e-4)
    assert got[1][0] == 2 and np.allclose(got[1][1], [6.0, 10.0, 30.0, 27.0], atol=1e-4)
    assert np.all(dets.scores > 0.99)


def test_shift_keeps_objects_whole():
    s = make_scenes(6, seed=3)
    boxes = torch.zeros((6, 3, 4))
    labels = torch.full((6, 3), -1)
    for i in range(6):
        boxes[i, :len(s.boxes[i])] = torch.from_numpy(s.boxes[i])
        labels[i, :len(s.labels[i])] = torch.from_numpy(s.labels[i])
    x = torch.from_numpy(s.images)[:, None].float()
    xs, bs = shift_batch(x, boxes, labels, generator=torch.Generator().manual_seed(0), max_shift=20)
    assert not torch.equal(bs, boxes)
    for i in range(6):
        for b, lab in zip(bs[i], labels[i]):
            if lab < 0:
                continue
            assert 0 <= float(b[0]) and float(b[2]) <= 64 and 0 <= float(b[1]) and float(b[3]) <= 64
        assert float(xs[i].sum()) == float(x[i].sum())  # nothing cut: every pixel kept


# --------------------------------------------------------------------------- learning


def test_detector_overfits_a_few_scenes_and_ap_rises():
    torch.manual_seed(0)
    data = make_scenes(12, seed=1)
    net = SingleShotNet(SingleShotConfig(num_classes=2, width=8))
    det = SingleShotDetector(net, classes=["filled", "hollow"], category_ids=[1, 2])
    before = coco_scores(det.predict(list(data.images)), data, num_classes=2)["AP50"]
    pts = locations(64, 64)
    x = torch.from_numpy(data.images)[:, None].float() / 255
    t = assign_targets([torch.from_numpy(b) for b in data.boxes], [torch.from_numpy(b) for b in data.labels], pts)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    losses = []
    for _ in range(80):
        net.train()
        parts = detection_loss(net(x), t, pts)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(float(parts["loss"].detach()))
    after = coco_scores(det.predict(list(data.images)), data, num_classes=2)
    assert losses[-1] < 0.5 * losses[0]
    assert before < 0.2 and after["AP50"] > 0.8 and after["AP"] > before


def test_predict_pads_sizes_that_are_not_multiples_and_takes_colour():
    net = SingleShotNet(SingleShotConfig(num_classes=2, width=4))
    det = SingleShotDetector(net, classes=["a", "b"], category_ids=[0, 1])
    out = det.predict([np.zeros((50, 70), np.uint8), np.zeros((50, 70, 3), np.uint8), np.zeros((64, 64), np.uint8)])
    assert len(out) == 3
    for d in out:
        assert d.boxes.shape[1] == 4 and np.all(d.boxes[:, 2] <= 70) and np.all(d.boxes[:, 3] <= 64)


# --------------------------------------------------------------------------- command line and model files


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    out = tmp_path_factory.mktemp("ssdata") / "det"
    res = CliRunner().invoke(app, ["prepare", "detection", "--out", str(out), "--count", "24", "--canvas", "64",
                                   "--objects", "1-2", "--npz", "--no-png", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    return out


def test_cli_trains_resumes_and_the_model_loads_safely(cli, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    res = cli(["train", "single-shot", "--data", tiny_dataset, "--out", run, "--epochs", "1", "--width", "4",
               "--batch-size", "4", "--max-val", "8", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1
    assert (run / "weights" / "best.pt").is_file() and (run / "metrics.csv").is_file()
    assert json.loads((run / "run.json").read_text())["kind"] == "single-shot"
    assert read_model_kind(run) == "single-shot"
    det = load_detector(run, device="cpu")
    assert det.kind == "single-shot" and det.classes == [str(d) for d in range(10)]
    assert len(det.category_ids) == 10
    out = det.predict([np.zeros((64, 64), np.uint8)])
    assert len(out) == 1
    # the same folder without --resume or --overwrite is refused (usage error)
    again = cli(["train", "single-shot", "--data", tiny_dataset, "--out", run, "--epochs", "1", "--quiet"])
    assert again.exit_code == 2
    # resume raises the epochs and continues in the same folder
    res = cli(["train", "single-shot", "--resume", run, "--epochs", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_model_files_never_unpickle(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    bad = tmp_path / "evil.pt"
    torch.save({"kind": "single-shot", "payload": Boom()}, bad)
    with pytest.raises(BadInputError):
        load_detector(bad, device="cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps({"kind": "single-shot"}))
    with pytest.raises(BadInputError):
        load_detector(junk, device="cpu")


def test_missing_data_is_a_usage_error(cli, tmp_path):
    res = cli(["train", "single-shot", "--out", tmp_path / "r", "--quiet"])
    assert res.exit_code == 2
    res = cli(["train", "single-shot", "--data", tmp_path / "nothing", "--out", tmp_path / "r", "--quiet"])
    assert res.exit_code == 2 and "nothing" in res.output  # a --data path that does not exist: usage error
    assert not (tmp_path / "r").exists()  # the refused run leaves no folder behind

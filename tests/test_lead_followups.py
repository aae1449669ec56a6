"""Follow-ups across modules (#12): dataset image sizes follow EXIF orientation; detect counts unlistable folders."""

from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image


def _phone_jpeg(path, h=40, w=64, orientation=6):
    """A JPEG stored landscape (w x h) whose EXIF says "rotate 90 degrees clockwise"."""
    rgb = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 2)
    exif = Image.Exif()
    exif[274] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def test_dataset_image_size_is_the_upright_size(tmp_path):
    """YOLO labels are relative to the upright image; their pixel boxes must use the size cv2.imread gives."""
    from cvtool.datasets import load_dataset
    from cvtool.datasets._files import image_size

    root = tmp_path / "yolo"
    _phone_jpeg(root / "images" / "train" / "p.jpg")
    h, w = cv2.imread(str(root / "images" / "train" / "p.jpg")).shape[:2]
    assert (w, h) == (40, 64)  # the reference: OpenCV applies the orientation
    assert image_size(root / "images" / "train" / "p.jpg") == (w, h)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "p.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: {0: thing}\n")
    ds = load_dataset(root, split="train")
    (img,) = ds.images
    assert (img.width, img.height) == (40, 64)
    np.testing.assert_allclose(ds.ann_boxes, [[10, 24, 30, 40]], atol=1e-9)


@pytest.fixture()
def locked_tree(tmp_path, monkeypatch):
    root = tmp_path / "in"
    for rel in ("a.png", "locked/c.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((32, 32), 128, np.uint8))
    real, locked = os.scandir, os.path.realpath(root / "locked")

    def fake(path="."):
        if isinstance(path, (str, os.PathLike)) and os.path.realpath(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", fake)
    return root


def test_detect_counts_an_unlistable_folder_and_goes_on(locked_tree, tmp_path):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    runner = CliRunner()
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "det"
    assert runner.invoke(app, ["prepare", "detection", "--out", str(data), "--count", "12", "--seed", "1",
                               "--jobs", "1", "-q"]).exit_code == 0
    res = runner.invoke(app, ["train", "hog-svm", "--data", str(data), "--out", str(run), "--mine-rounds", "0",
                              "--negatives", "2", "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["detect", str(locked_tree), "-r", "--model", str(run), "--out", str(out), "--json"])
    assert res.exit_code == 1
    assert "locked: cannot list folder (Permission denied)" in res.stderr
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["a.png"]
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["summary"]["failed"] == 1 and summary["summary"]["ok"] == 1
    assert summary["failures"][0]["path"].endswith("locked")
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"]["total"] == 2 and manifest["counts"]["failed"] == 1


COPY_SCRIPT = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
from cvtool.datasets._files import place_image
try:
    place_image(Path(sys.argv[1]), Path(sys.argv[2]), mode="copy", overwrite=False)
except OSError as exc:
    print(exc)
    sys.exit(1)
"""


def test_dataset_image_copy_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    """prepare convert --images copy: a copy cut short by the disk names the target, no temp file stays (#13)."""
    import subprocess
    import sys

    src, dst = tmp_path / "src.bin", tmp_path / "out" / "images" / "a.png"
    src.write_bytes(os.urandom(200_000))
    res = subprocess.run([sys.executable, "-c", COPY_SCRIPT, str(src), str(dst)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stdout.strip().startswith(f"cannot write {dst}"), res.stdout
    assert not dst.exists()
    assert list((tmp_path / "out" / "images").iterdir()) == []


def test_run_lock_in_a_read_only_folder_names_the_lock_file(tmp_path, monkeypatch):
    """A run folder where the lock cannot be created: one error naming the lock file, not a bare OSError (#13)."""
    import errno

    from cvtool.io.atomic import WriteError
    from cvtool.runner import lock

    real_open = os.open

    def refusing_open(path, flags, *args):
        if str(path).endswith(lock.LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(WriteError, match=r"cannot write .*\.cvtool-run\.lock: Read-only file system"):
        with lock.run_folder_lock(tmp_path / "run"):
            pass


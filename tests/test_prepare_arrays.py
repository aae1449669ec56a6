"""datasets.arrays.load_arrays: .npz and decoded datasets give the same arrays; bad files are refused."""

from __future__ import annotations

import numpy as np
import pytest

from cvtool.datasets.arrays import NPZ_KEYS, load_arrays
from cvtool.errors import BadInputError


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    root = tmp_path_factory.mktemp("arr")
    for fmt in ("coco", "yolo"):
        res = CliRunner().invoke(app, ["prepare", "detection", "--out", str(root / fmt), "--count", "8", "--npz",
                                       "--format", fmt, "--jobs", "1", "--seed", "1", "--quiet"])
        assert res.exit_code == 0, res.output
    return root


def test_npz_png_and_yolo_agree(det):
    npz = load_arrays(det / "coco" / "train.npz")
    (det / "yolo" / "train.npz").unlink()
    yolo = load_arrays(det / "yolo", split="train")
    np.testing.assert_array_equal(npz.images, yolo.images)
    np.testing.assert_array_equal(npz.box_image, yolo.box_image)
    np.testing.assert_allclose(npz.boxes, yolo.boxes, atol=1e-3)
    assert list(npz.category_names) == list(yolo.category_names)
    names = dict(zip(npz.category_ids.tolist(), npz.category_names))
    names_y = dict(zip(yolo.category_ids.tolist(), yolo.category_names))
    assert [names[i] for i in npz.labels.tolist()] == [names_y[i] for i in yolo.labels.tolist()]
    for i in range(len(npz)):
        b, lab = npz.boxes_of(i)
        assert len(b) == np.count_nonzero(npz.box_image == i) and lab.dtype == np.int64
    np.testing.assert_array_equal(npz.category_ids[npz.class_index], npz.labels)


def test_single_boxes_for_localisation(tmp_path, cli):
    assert cli(["prepare", "localization", "--out", tmp_path, "--count", "10", "--npz", "--no-png", "--jobs", "1",
                "--quiet"]).exit_code == 0
    arr = load_arrays(tmp_path, split="val")
    boxes, labels = arr.single_boxes()
    assert boxes.shape == (len(arr), 4) and labels.shape == (len(arr),)
    from cvtool.datasets.arrays import ArrayDataset

    no_boxes = ArrayDataset(arr.images, arr.boxes[:0], arr.labels[:0], arr.box_image[:0], arr.category_ids,
                            arr.category_names)
    with pytest.raises(BadInputError, match="exactly one box"):
        no_boxes.single_boxes()


def test_bad_npz_files(tmp_path, det):
    with np.load(det / "coco" / "val.npz", allow_pickle=False) as z:
        good = {k: z[k] for k in NPZ_KEYS}
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in good.items() if k != "labels"})
    with pytest.raises(BadInputError, match="missing array"):
        load_arrays(tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", **{**good, "category_names": np.array([object()] * 10, dtype=object)})
    with pytest.raises(BadInputError, match="pickled.npz"):
        load_arrays(tmp_path / "pickled.npz")
    np.savez(tmp_path / "wrong.npz", **{**good, "box_image": good["box_image"] + 1000})
    with pytest.raises(BadInputError, match="box_image"):
        load_arrays(tmp_path / "wrong.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    with pytest.raises(BadInputError, match="junk.npz"):
        load_arrays(tmp_path / "junk.npz")
    with pytest.raises(BadInputError, match="no such file"):
        load_arrays(tmp_path / "nowhere")

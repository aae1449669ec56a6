"""Property-based fuzzing of every reader and parser: only cvtool's own errors come out.

Each property feeds random or mutated input to one reader and accepts exactly
two outcomes: a valid result, or a :class:`cvtool.errors.CvtoolError` (which
the CLI prints as one line with exit 1 or 2).  Any other exception -- a
traceback for the user -- fails the test.

Profiles: ``ci`` (default, a fixed example count that keeps this file around
half a minute) and ``long`` (``HYPOTHESIS_PROFILE=long``, 20x more examples).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvtool.errors import CvtoolError

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=800, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _valid_png() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (12, 9, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def _valid_jpg() -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (16, 16), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


@st.composite
def mutated(draw, seed_bytes: bytes):
    """Bytes derived from a valid file: truncated, bit-flipped, spliced or extended."""
    data = bytearray(seed_bytes)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


def _accept(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CvtoolError as exc:
        assert str(exc), "errors must carry a message"
        return None


# ---------------------------------------------------------------- images
@given(st.one_of(st.binary(max_size=64), mutated(_valid_png()), mutated(_valid_jpg())))
def test_image_decoder(data):
    from cvtool.io.images import decode_image

    out = _accept(decode_image, data, path="fuzz.img", max_pixels=10_000)
    if out is not None:
        assert out.ndim in (2, 3) and out.size > 0


# ------------------------------------------------------------------- IDX
def _valid_idx() -> bytes:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    return struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2, 3, 4) + arr.tobytes()


@given(st.one_of(st.binary(max_size=40), mutated(_valid_idx())))
def test_idx_reader(tmp_path_factory, data):
    from cvtool.prepare.sources import read_idx

    p = tmp_path_factory.mktemp("idx") / "f-idx3-ubyte"
    p.write_bytes(data)
    out = _accept(read_idx, p)
    if out is not None:
        assert out.ndim >= 1


# ------------------------------------------------------ filter operations
_OP_ALPHABET = st.sampled_from(list("gaussianmedthrolpkcvx:=,;.-_0123456789 ") + ["sigma", "k=", "gaussian",
                                                                                   "median", "kernel", "threshold",
                                                                                   "otsu", "gamma", "noise", "nan",
                                                                                   "inf", "1e308", "-1"])


@given(st.lists(_OP_ALPHABET, min_size=0, max_size=12).map("".join))
def test_filter_operation_parser(text):
    from cvtool.filters.parse import parse_operation

    _accept(parse_operation, text)


@given(st.lists(st.sampled_from(["gaussian", "median:k=", "threshold:", "gamma:g=", "kernel:", "clahe:clip=",
                                 "stretch:low=", "noise:gaussian:sigma=", "wiener:k=", "bilateral:d="]),
                min_size=1, max_size=1),
       st.one_of(st.integers(-5, 300).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.text(max_size=6)))
def test_filter_operation_values_then_apply(prefix, value):
    """Parsed operations either run on a real image or were refused at parse time."""
    from cvtool.filters.parse import apply_pipeline, parse_pipeline

    steps = _accept(parse_pipeline, [prefix[0] + value])
    if steps is None:
        return
    img = np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8)
    out = _accept(apply_pipeline, img, steps, seed=0, key="x")
    if out is not None:
        assert out.shape[:2] == img.shape[:2]


# ------------------------------------------------------------ dataset files
def _tiny_dataset(root: Path):
    from cvtool.datasets.core import Category, Dataset, ImageRecord

    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in (1, 2):
        cv2.imwrite(str(root / "images" / f"{i}.png"), np.zeros((40, 50), np.uint8))
    return Dataset(
        images=[ImageRecord(1, "images/1.png", 50, 40), ImageRecord(2, "images/2.png", 50, 40)],
        categories=[Category(1, "cat"), Category(2, "dog")],
        ann_image_ids=np.array([1, 1, 2]), ann_boxes=np.array([[1, 2, 10, 20], [5, 5, 45, 35], [0, 0, 50, 40.0]]),
        ann_labels=np.array([1, 2, 2]), ann_iscrowd=np.zeros(3, bool), ann_difficult=np.zeros(3, bool),
        ann_ids=np.array([1, 2, 3]), root=root)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True),
                       st.text(max_size=8), st.sampled_from(["../../etc/passwd", "/etc/passwd", "images/1.png"]))
_json_value = st.recursive(_json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                           st.dictionaries(st.text(max_size=6), c, max_size=4)),
                           max_leaves=8)


@st.composite
def mutated_json(draw, doc, values=None):
    """A JSON document with a few values replaced (drawn from ``values``, default any JSON), keys dropped."""
    import copy

    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        node = doc
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        action = draw(st.sampled_from(["replace", "drop"]))
        if action == "drop" and isinstance(parent, dict):
            del parent[key]
        elif action == "drop":
            parent.pop(key)
        else:
            parent[key] = draw(_json_value if values is None else values)
    return doc


def _coco_doc(tmp: Path) -> dict:
    from cvtool.datasets.coco import coco_document

    return coco_document(_tiny_dataset(tmp))


@given(st.data())
def test_coco_reader(tmp_path_factory, data):
    from cvtool.datasets.coco import read_coco

    root = tmp_path_factory.mktemp("coco")
    doc = data.draw(mutated_json(_coco_doc(root)))
    p = root / "annotations.json"
    p.write_text(json.dumps(doc))
    ds = _accept(read_coco, p)
    if ds is not None:
        for im in ds.images:
            _accept(ds.image_path, im)  # names never escape the root


@given(st.data())
def test_coco_results_and_jsonl_readers(tmp_path_factory, data):
    from cvtool.datasets.results import read_coco_results, read_detections_jsonl

    root = tmp_path_factory.mktemp("res")
    gt = _tiny_dataset(root)
    results = [{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5},
               {"image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 40], "score": 0.9}]
    p = root / "results.json"
    p.write_text(json.dumps(data.draw(mutated_json(results))))
    _accept(read_coco_results, p, gt)
    rec = {"file": "images/1.png", "width": 50, "height": 40, "boxes": [[1, 2, 3, 4]], "scores": [0.4],
           "labels": [0], "names": ["cat"], "category_ids": [1]}
    lines = [json.dumps(data.draw(mutated_json(rec))), data.draw(st.text(max_size=20))]
    q = root / "detections.jsonl"
    q.write_text("\n".join(lines))
    _accept(read_detections_jsonl, q, gt)


@given(st.lists(st.text(alphabet="0123456789 .-e\tnaif", max_size=30), max_size=5),
       st.sampled_from(["0 0.5 0.5 0.2 0.2", "names: [a, b]", "x"]))
def test_yolo_reader(tmp_path_factory, lines, yaml_extra):
    from cvtool.datasets.yolo import read_yolo

    root = tmp_path_factory.mktemp("yolo")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((20, 30), np.uint8))
    (root / "labels" / "a.txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text(f"path: .\ntrain: images\nnames: [a, b]\n# {yaml_extra}\n")
    _accept(read_yolo, root / "data.yaml", split="train")
    (root / "data.yaml").write_text(yaml_extra + "\n" + "\n".join(lines))
    _accept(read_yolo, root / "data.yaml", split="train")


_VOC = b"""<annotation><filename>a.png</filename><size><width>30</width><height>20</height><depth>1</depth></size>
<object><name>cat</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>10</xmax><ymax>15</ymax></bndbox></object>
</annotation>"""


@given(st.one_of(mutated(_VOC), st.sampled_from([
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]><annotation>&y;</annotation>',
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><annotation>&e;</annotation>'])))
def test_voc_reader(tmp_path_factory, xml):
    from cvtool.datasets.voc import read_voc

    root = tmp_path_factory.mktemp("voc")
    (root / "Annotations").mkdir()
    (root / "JPEGImages").mkdir()
    cv2.imwrite(str(root / "JPEGImages" / "a.png"), np.zeros((20, 30), np.uint8))
    (root / "Annotations" / "a.xml").write_bytes(xml)
    ds = _accept(read_voc, root)
    if ds is not None and b"ENTITY" in xml:
        pytest.fail("an XML document declaring entities was accepted")


@given(st.lists(st.text(alphabet="catdog0123456789 .-e\tnaif", max_size=30), max_size=5),
       st.sampled_from(["xyxy", "xywh", "cxcywh"]), st.booleans())
def test_text_box_reader(tmp_path_factory, lines, box_format, relative):
    from cvtool.datasets.text import read_text_boxes

    root = tmp_path_factory.mktemp("txt")
    (root / "a.txt").write_text("\n".join(lines))
    _accept(read_text_boxes, root, box_format=box_format, relative=relative, image_size_default=(64, 48))


# ------------------------------------- dataset files: absurd values and other layouts (#13)
_extreme_leaf = st.sampled_from([2 ** 63, 2 ** 70, -(2 ** 63) - 1, 1e30, 1e300, -1e300, float("inf"),
                                 float("nan"), 0, -1, 70000, 2 ** 16, 0.5, "cat", "dog", "a\nb", " cat", "",
                                 "\u2028", "\ud800", "images/2.png", [1e300, 0, 1, 1], [0, 0, 1e-300, 1e-300]]
                                ).map(lambda v: list(v) if isinstance(v, list) else v)  # fresh lists: mutated later


def _check_valid(ds):
    """What an accepted dataset guarantees: sizes in range, ids int64, names writable, boxes in the image."""
    from cvtool.datasets.core import MAX_IMAGE_SIDE, check_name

    assert all(0 < im.width <= MAX_IMAGE_SIDE and 0 < im.height <= MAX_IMAGE_SIDE for im in ds.images)
    assert len({c.name for c in ds.categories}) == len(ds.categories)
    for c in ds.categories:
        check_name(c.name, "fuzz")
    assert ds.ann_image_ids.dtype == np.int64 and ds.ann_labels.dtype == np.int64
    if ds.num_annotations:
        by_id = ds.image_by_id
        w = np.array([by_id[int(i)].width for i in ds.ann_image_ids])
        h = np.array([by_id[int(i)].height for i in ds.ann_image_ids])
        b = ds.ann_boxes
        assert np.isfinite(b).all() and (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()


@given(st.data())
def test_coco_reader_absurd_values(tmp_path_factory, data):
    from cvtool.datasets.coco import read_coco

    root = tmp_path_factory.mktemp("coco_x")
    doc = _coco_doc(root)
    fields = ([("images", i, f) for i in (0, 1) for f in ("id", "width", "height", "file_name")]
              + [("annotations", i, f) for i in (0, 1, 2) for f in ("id", "image_id", "category_id", "bbox", "area")]
              + [("categories", i, f) for i in (0, 1) for f in ("id", "name")])
    for section, i, name in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3)):
        doc[section][i][name] = data.draw(_extreme_leaf)
    if data.draw(st.booleans()):
        doc = data.draw(mutated_json(doc, values=_extreme_leaf))
    p = root / "annotations.json"
    p.write_text(json.dumps(doc))
    ds = _accept(read_coco, p, clip=data.draw(st.booleans()))
    if ds is not None:
        _check_valid(ds)


_VOC_NUMBERS = st.sampled_from(["1e300", "-1", "0", "nan", "inf", "70000", "65536", "1.5", "", "0x10", "30",
                                "20", "99999999999999999999999"])


@given(st.lists(_VOC_NUMBERS, min_size=6, max_size=6), st.sampled_from(["a.png", "a", "../a.png", "b.png", ""]),
       st.booleans())
def test_flat_voc_reader_numbers(tmp_path_factory, numbers, filename, clip):
    from cvtool.datasets import load_dataset

    root = tmp_path_factory.mktemp("vocflat")
    (root / "annotations").mkdir()
    (root / "images").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((20, 30), np.uint8))
    w, h, x1, y1, x2, y2 = numbers
    (root / "annotations" / "a.xml").write_text(
        f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height></size>"
        f"<object><name>cat</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
        "</bndbox></object></annotation>")
    ds = _accept(load_dataset, root, clip=clip)
    if ds is not None:
        _check_valid(ds)
        for im in ds.images:
            _accept(ds.image_path, im)


_DARKNET_LINES = st.sampled_from(["data/obj_train_data/a.png", "obj_train_data/a.png", "/abs/path/a.png",
                                  "../../a.png", "data/../../etc/passwd", "", "obj_train_data/b.png", "x"])
_OBJ_DATA = st.sampled_from(["classes = 2\ntrain = data/train.txt\nnames = data/obj.names\n",
                             "train = train.txt\n", "names = ../../etc/passwd\n", "garbage\n", "",
                             "train = /etc/passwd\n", "valid = data/train.txt\n"])


@given(_OBJ_DATA, st.lists(_DARKNET_LINES, max_size=3),
       st.lists(st.text(alphabet="0123456789 .-e\tnaif", max_size=30), max_size=3), st.booleans())
def test_darknet_reader(tmp_path_factory, obj_data, listing, labels, names):
    from cvtool.datasets import load_dataset

    root = tmp_path_factory.mktemp("darknet")
    (root / "obj_train_data").mkdir()
    cv2.imwrite(str(root / "obj_train_data" / "a.png"), np.zeros((20, 30), np.uint8))
    (root / "obj_train_data" / "a.txt").write_text("\n".join(labels))
    (root / "obj.data").write_text(obj_data)
    if names:
        (root / "obj.names").write_text("car\nbus\n")
    (root / "train.txt").write_text("\n".join(listing))
    ds = _accept(load_dataset, root)
    if ds is not None:
        _check_valid(ds)
        assert all(ds.image_path(im).resolve().is_relative_to(root.resolve()) for im in ds.images)


# ------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def hog_model_bytes(tmp_path_factory) -> bytes:
    from cvtool.detectors.hog_svm import HogSvmDetector
    from cvtool.hog import HogParams

    from cvtool.hog import grid_shape

    params = HogParams(cell=(4, 4), block=(2, 2), block_stride=(1, 1), bins=9)
    rows, cols = grid_shape((16, 16), params)
    n = rows * cols * params.block_dim
    det = HogSvmDetector.from_weights(np.ones((1, n), np.float32), -1.0, window=(16, 16), hog=params,
                                      classes=["x"])
    path = tmp_path_factory.mktemp("model") / "model.npz"
    det.save(path)
    return path.read_bytes()


@given(st.data())
def test_hog_svm_model_file(tmp_path_factory, hog_model_bytes, data):
    from cvtool.detectors import load_detector

    blob = data.draw(mutated(hog_model_bytes))
    p = tmp_path_factory.mktemp("m") / "model.npz"
    p.write_bytes(blob)
    det = _accept(load_detector, p)
    if det is not None:
        _accept(det.predict, [np.zeros((32, 32), np.uint8)])


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    torch = pytest.importorskip("torch")
    from cvtool.runner.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {"kind": "localizer", "epoch": 1, "model": {"w": torch.zeros(3, 3)},
                           "classes": ["a"], "config": {"lr": 0.1}})
    return path.read_bytes()


@given(st.data())
def test_torch_checkpoint_file(tmp_path_factory, checkpoint_bytes, data):
    from cvtool.runner.checkpoint import load_checkpoint

    blob = data.draw(mutated(checkpoint_bytes))
    p = tmp_path_factory.mktemp("c") / "best.pt"
    p.write_bytes(blob)
    _accept(load_checkpoint, p)


# -------------------------------------------------------- CLI option values
_OPT_VALUES = st.one_of(st.integers(-3, 10**6).map(str), st.sampled_from(["nan", "inf", "-0", "", "1e400", "x",
                                                                        "3x3", "0x0", "..", "é"]))


@settings(max_examples=25)
@given(st.sampled_from([["edges", "{img}", "--out", "{out}", "canny", "--low"],
                        ["edges", "{img}", "--out", "{out}", "sobel", "--mode"],
                        ["filter", "{img}", "--out", "{out}", "--jobs"],
                        ["filter", "{img}", "--out", "{out}", "gaussian", "--max-pixels"],
                        ["hog", "{img}", "--out", "{out}", "--cell"],
                        ["hog", "{img}", "--out", "{out}", "--window"],
                        ["selective-search", "{img}", "--out", "{out}", "--max"],
                        ["prepare", "detection", "--out", "{out}", "--count", "2", "--objects"],
                        ["prepare", "localization", "--out", "{out}", "--count", "2", "--canvas"]]),
       _OPT_VALUES)
def test_cli_option_values(tmp_path_factory, args, value):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    tmp = tmp_path_factory.mktemp("cli")
    img = tmp / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
    argv = [a.format(img=img, out=tmp / "out") for a in args] + [value]
    res = CliRunner().invoke(app, argv, catch_exceptions=True)
    assert res.exit_code in (0, 1, 2), (argv, res.output, res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert "Traceback" not in res.output

"""YOLO, Pascal VOC and text box formats; COCO -> YOLO -> VOC -> COCO round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtool.datasets import load_dataset
from cvtool.datasets.coco import read_coco, write_coco
from cvtool.datasets.core import Category, Dataset, ImageRecord
from cvtool.datasets.text import read_text_boxes, read_text_predictions, write_text_boxes
from cvtool.datasets.voc import read_voc, write_voc
from cvtool.datasets.yolo import read_yolo, read_yolo_predictions, write_yolo
from cvtool.errors import BadInputError

SHARED = Path(__file__).resolve().parent / "data"  # copies of ../shared/reference (see tests/data/README.md)


def _coco_set(tmp_path: Path, n_images: int = 4, seed: int = 0) -> Path:
    """A prepare-style split: OUT/train/images/*.png + annotations.json with random float boxes."""
    rng = np.random.default_rng(seed)
    split = tmp_path / "src" / "train"
    (split / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(1, n_images + 1):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(split / "images" / f"{i:03d}.png")
        images.append({"id": i, "file_name": f"images/{i:03d}.png", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, w - 12), rng.uniform(0, h - 12)
            bw, bh = rng.uniform(3, w - x), rng.uniform(3, h - y)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.choice([2, 7, 9])),
                         "bbox": [x, y, bw, bh], "iscrowd": 0})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 2, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 9, "name": "cow"}]}
    (split / "annotations.json").write_text(json.dumps(doc))
    return split / "annotations.json"


def test_round_trip_coco_yolo_voc_coco(tmp_path):
    src = read_coco(_coco_set(tmp_path))
    assert src.num_annotations >= 4
    yolo_dir = tmp_path / "yolo"
    write_yolo(src, yolo_dir, images="copy")
    y = load_dataset(yolo_dir)
    assert [im.file_name for im in y.images] == [im.file_name for im in src.images]
    np.testing.assert_allclose(y.ann_boxes, src.ann_boxes, atol=1e-6, rtol=0)
    # category ids become 1.. in id order; names are kept
    assert [y.category_names[int(c)] for c in y.ann_labels] == [src.category_names[int(c)] for c in src.ann_labels]
    voc_dir = tmp_path / "voc"
    write_voc(y, voc_dir, images="link")
    v = load_dataset(voc_dir)
    # VOC holds whole pixels: x1 = rint(x1), x2 = rint(x2) -> within half a pixel
    assert np.abs(v.ann_boxes - src.ann_boxes).max() <= 0.5
    np.testing.assert_array_equal(v.ann_boxes, np.rint(src.ann_boxes))
    back = tmp_path / "back.json"
    write_coco(v, back)
    c = read_coco(back, root=voc_dir)
    np.testing.assert_array_equal(c.ann_boxes, v.ann_boxes)
    assert [c.category_names[int(k)] for k in c.ann_labels] == [src.category_names[int(k)] for k in src.ann_labels]
    assert all(c.image_path(im).is_file() for im in c.images)


def test_yolo_reader_hand_case_and_data_yaml(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(tmp_path / "images" / "train" / "a.jpg")
    Image.new("RGB", (50, 50)).save(tmp_path / "images" / "train" / "b.png")  # no label file: no objects
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.5 0.2\n\n0 0.1 0.1 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [person, car]\n")
    ds = load_dataset(tmp_path / "data.yaml")
    assert [im.file_name for im in ds.images] == ["images/train/a.jpg", "images/train/b.png"]
    assert (ds.images[0].width, ds.images[0].height) == (200, 100)
    np.testing.assert_allclose(ds.ann_boxes, [[50, 40, 150, 60], [0, 0, 40, 20]])
    np.testing.assert_array_equal(ds.ann_labels, [2, 1])
    assert ds.category_names == {1: "person", 2: "car"}
    with pytest.raises(BadInputError, match="no 'val' entry"):
        read_yolo(tmp_path / "data.yaml", split="val")
    (tmp_path / "evil.yaml").write_text("train: ../../etc\nnames: [a]\n")
    with pytest.raises(BadInputError, match="'train': .*escapes the dataset root"):
        read_yolo(tmp_path / "evil.yaml")
    (tmp_path / "labels" / "train" / "a.txt").write_text("5 0.5 0.5 0.5 0.2\n")
    with pytest.raises(BadInputError, match=r"a.txt:1: class '5' is not a class index \(0..1\)"):
        read_yolo(tmp_path)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 nan 0.2\n")
    with pytest.raises(BadInputError, match=r"a.txt:1: NaN"):
        read_yolo(tmp_path)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.9 0.5 0.5 0.2\n")
    with pytest.raises(BadInputError, match="outside"):
        read_yolo(tmp_path)
    np.testing.assert_allclose(read_yolo(tmp_path, clip=True).ann_boxes, [[130, 40, 200, 60]])
    (tmp_path / "labels" / "train" / "c.txt").write_text("")
    with pytest.raises(BadInputError, match="c.txt: label file without an image"):
        read_yolo(tmp_path)


def test_yolo_predictions(tmp_path):
    gt = Dataset(images=[ImageRecord(4, "images/x.png", 100, 50)], categories=[Category(3, "a"), Category(8, "b")])
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("1 0.5 0.5 0.2 0.2 0.75\n")
    p = read_yolo_predictions(tmp_path / "labels", gt)
    np.testing.assert_allclose(p.boxes, [[40, 20, 60, 30]])
    assert p.labels.tolist() == [8] and p.scores.tolist() == [0.75] and p.image_ids.tolist() == [4]


def _voc_xml(filename="a.png", w=100, h=80, objects=("<object><name>dog</name><difficult>1</difficult>"
                                                     "<truncated>1</truncated><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                                     "<xmax>100</xmax><ymax>40</ymax></bndbox></object>",)):
    return (f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")


def test_voc_reader_one_based_rule_and_flags(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_voc_xml())
    ds = read_voc(tmp_path)
    # pixels 1..100 inclusive -> [0, 100): the whole width
    np.testing.assert_array_equal(ds.ann_boxes, [[0, 0, 100, 40]])
    assert ds.ann_difficult.tolist() == [True] and ds.ann_truncated.tolist() == [True]
    assert ds.categories == [Category(1, "dog")]
    out = tmp_path / "written"
    write_voc(ds, out, images="none")
    assert "<xmin>1</xmin>" in (out / "Annotations" / "a.xml").read_text()
    assert "<xmax>100</xmax>" in (out / "Annotations" / "a.xml").read_text()


def test_voc_image_sets_and_size_from_image(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    Image.new("RGB", (120, 90)).save(tmp_path / "JPEGImages" / "b.png")
    (tmp_path / "Annotations" / "a.xml").write_text(_voc_xml())
    (tmp_path / "Annotations" / "b.xml").write_text(_voc_xml(filename="b.png", w=0, h=0))
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    ds = read_voc(tmp_path, split="val")
    assert [(im.file_name, im.width, im.height) for im in ds.images] == [("JPEGImages/b.png", 120, 90)]
    assert len(read_voc(tmp_path, split="train").images) == 2  # no train.txt: every file
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("c\n")
    with pytest.raises(BadInputError, match="'c' has no annotation file"):
        read_voc(tmp_path, split="test")


@pytest.mark.parametrize("xml,message", [
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]>'
     "<annotation><filename>&y;</filename></annotation>", "refused unsafe XML"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     "<annotation><filename>&e;</filename></annotation>", "refused unsafe XML"),
    ("<annotation><filename>a.png", "not valid XML"),
    (_voc_xml(filename="../../etc/passwd"), "escapes the dataset root"),
    (_voc_xml(objects=("<object><name>dog</name></object>",)), "object 0: missing <bndbox>"),
    (_voc_xml(objects=("<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax>"
                       "<ymax>4</ymax></bndbox></object>",)), r"object 0: <xmax> is not a number"),
    (_voc_xml(objects=("<object><name>dog</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>5</xmax>"
                       "<ymax>4</ymax></bndbox></object>",)), "empty or negative box"),
])
def test_voc_bad_input(tmp_path, xml, message):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(xml)
    with pytest.raises(BadInputError, match=message):
        read_voc(tmp_path)


def test_text_boxes_formats_and_reference_sample(tmp_path):
    gt = read_text_boxes(SHARED / "voc_sample" / "ground_truth", box_format="xywh", image_size_default=(200, 200))
    assert len(gt.images) == 7 and gt.num_annotations == 15
    first = (SHARED / "voc_sample" / "ground_truth" / "00001.txt").read_text().split()
    x, y, w, h = (float(v) for v in first[1:5])
    np.testing.assert_allclose(gt.ann_boxes[0], [x, y, x + w, y + h])
    pred = read_text_predictions(SHARED / "voc_sample" / "detections", gt, box_format="xywh")
    assert len(pred) == 24 and set(pred.labels.tolist()) == {1}
    # every format and the relative flag read back what was written
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "images" / "p.png")
    ds = Dataset(images=[ImageRecord(1, "images/p.png", 100, 50)], categories=[Category(1, "car")],
                 ann_image_ids=np.array([1]), ann_boxes=np.array([[10.0, 5.0, 30.5, 45.0]]),
                 ann_labels=np.array([1]), ann_iscrowd=np.zeros(1, bool), ann_difficult=np.zeros(1, bool),
                 root=tmp_path)
    for fmt in ("xyxy", "xywh", "cxcywh"):
        for rel in (False, True):
            out = tmp_path / f"{fmt}{rel}"
            write_text_boxes(ds, out, box_format=fmt, relative=rel)
            back = read_text_boxes(out, box_format=fmt, relative=rel, image_size_default=(100, 50))
            np.testing.assert_allclose(back.ann_boxes, ds.ann_boxes, atol=1e-9)
    assert (tmp_path / "xywhFalse" / "p.txt").read_text() == "car 10 5 20.5 40\n"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "q.txt").write_text("car 1 2 3\n")
    with pytest.raises(BadInputError, match=r"q.txt:1: expected 5 fields"):
        read_text_boxes(tmp_path / "bad")
    with pytest.raises(ValueError, match="'xywhn'"):
        read_text_boxes(tmp_path / "bad", box_format="xywhn")


def test_out_of_image_box_names_the_label_file_and_line(tmp_path):
    # YOLO: a box more than a pixel outside the image is refused naming the label file and its line,
    # not the labels folder and an annotation index (#12)
    yr = tmp_path / "yr"
    (yr / "images" / "train").mkdir(parents=True)
    (yr / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(yr / "images" / "train" / "x.png")
    (yr / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n\n0 0.95 0.5 0.2 0.2\n")
    with pytest.raises(BadInputError) as info:
        read_yolo(yr)
    msg = str(info.value)
    assert msg.startswith(f"{yr / 'labels' / 'train' / 'x.txt'}:3: ") and "#" not in msg
    assert "outside its 64x48 image" in msg and "--clip" in msg and "\n" not in msg
    (yr / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    (yr / "classes.txt").write_text("a\n")
    with pytest.raises(BadInputError, match=r"x\.txt:2: class '7' is not a class index"):
        read_yolo(yr)
    # VOC: the XML file and the object's index
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "voc" / "Annotations" / "a.xml").write_text(_voc_xml(objects=(
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>",
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>150</xmax><ymax>9</ymax></bndbox>"
        "</object>")))
    with pytest.raises(BadInputError) as info:
        read_voc(tmp_path / "voc")
    assert str(info.value).startswith(f"{tmp_path / 'voc' / 'Annotations' / 'a.xml'}: object 1 box ")
    # text boxes: the file and its line
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "q.txt").write_text("car 1 2 3 4\n\ncar 5 5 2 2\n")
    with pytest.raises(BadInputError, match=r"q\.txt:3: box has an empty or negative box"):
        read_text_boxes(tmp_path / "txt", image_size_default=(100, 50))

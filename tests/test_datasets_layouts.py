"""Ordinary dataset layouts (#12): flat VOC XML folders, Darknet / CVAT "YOLO 1.1" exports,
symlinked image folders, YOLO rounding at the border, Ultralytics' data.yaml."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cvtool.datasets import load_dataset
from cvtool.datasets.core import safe_join
from cvtool.errors import BadInputError


def _voc(filename: str, w: int, h: int, boxes: list[tuple[str, int, int, int, int]]) -> str:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                   f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in boxes)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename>"
            f"<path>/Users/someone/Desktop/{filename}</path><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def _labelimg_set(folder: Path, xml_dir: Path) -> dict[str, tuple[int, int, list]]:
    """Three photos of different sizes in ``folder`` with LabelImg XML in ``xml_dir``."""
    spec = {"p1.jpg": (120, 80, [("dog", 1, 1, 120, 80)]),
            "p2.png": (64, 100, [("cat", 10, 20, 30, 40), ("dog", 5, 5, 9, 9)]),
            "p3.jpg": (33, 47, [("cat", 2, 3, 33, 47)])}
    folder.mkdir(parents=True, exist_ok=True)
    xml_dir.mkdir(parents=True, exist_ok=True)
    for name, (w, h, objs) in spec.items():
        Image.new("RGB", (w, h), (90, 20, 200)).save(folder / name)
        (xml_dir / (Path(name).stem + ".xml")).write_text(_voc(name, w, h, objs))
    return spec


def _expected(spec):
    boxes = [[a - 1, b - 1, c, d] for _, (_, _, objs) in sorted(spec.items()) for _, a, b, c, d in objs]
    return np.array(boxes, np.float64)


# ------------------------------------------------------------------ flat VOC (LabelImg)
def test_flat_voc_beside_images(tmp_path):
    spec = _labelimg_set(tmp_path / "d", tmp_path / "d")
    ds = load_dataset(tmp_path / "d")
    assert [im.file_name for im in ds.images] == ["p1.jpg", "p2.png", "p3.jpg"]
    assert [(im.width, im.height) for im in ds.images] == [(120, 80), (64, 100), (33, 47)]
    np.testing.assert_array_equal(ds.ann_boxes, _expected(spec))
    assert ds.category_names == {1: "cat", 2: "dog"}
    assert all(ds.image_path(im).is_file() for im in ds.images)
    # a flat folder is one split: every split name reads all its files
    assert len(load_dataset(tmp_path / "d", split="val").images) == 3


def test_flat_voc_in_annotations_folder_beside_images(tmp_path, cli):
    spec = _labelimg_set(tmp_path / "r" / "images", tmp_path / "r" / "annotations")
    # <filename> that lost its extension: the XML's own stem finds the image
    (tmp_path / "r" / "annotations" / "p3.xml").write_text(_voc("p3", 33, 47, spec["p3.jpg"][2]))
    for path in (tmp_path / "r", tmp_path / "r" / "annotations"):
        ds = load_dataset(path)
        assert ds.root == tmp_path / "r"
        assert [im.file_name for im in ds.images] == ["images/p1.jpg", "images/p2.png", "images/p3.jpg"]
        np.testing.assert_array_equal(ds.ann_boxes, _expected(spec))
    res = cli(["prepare", "stats", tmp_path / "r", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["images"] == 3 and doc["boxes"] == 4 and doc["image_sizes"] == {"120x80": 1, "64x100": 1, "33x47": 1}


def test_flat_voc_with_images_option(tmp_path, cli):
    spec = _labelimg_set(tmp_path / "photos" / "sub", tmp_path / "xml")
    # sizes zeroed: they must come from the images found through images=
    for name, (w, h, objs) in spec.items():
        (tmp_path / "xml" / (Path(name).stem + ".xml")).write_text(_voc(name, 0, 0, objs))
    with pytest.raises(BadInputError, match="image not found"):
        load_dataset(tmp_path / "xml")
    ds = load_dataset(tmp_path / "xml", images=tmp_path / "photos" / "sub")
    assert ds.root == tmp_path / "photos" / "sub"
    assert [(im.file_name, im.width, im.height) for im in ds.images] == [
        ("p1.jpg", 120, 80), ("p2.png", 64, 100), ("p3.jpg", 33, 47)]
    np.testing.assert_array_equal(ds.ann_boxes, _expected(spec))
    out = tmp_path / "coco"
    r = cli(["prepare", "convert", tmp_path / "xml", "--to", "coco", "--out", out, "--image-dir",
             tmp_path / "photos" / "sub"])
    assert r.exit_code == 0, r.output
    back = load_dataset(out)
    np.testing.assert_array_equal(back.ann_boxes, _expected(spec))
    assert all(back.image_path(im).is_file() for im in back.images)


def test_flat_voc_name_escaping_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.xml").write_text(_voc("../../etc/passwd", 10, 10, [("x", 1, 1, 5, 5)]))
    with pytest.raises(BadInputError, match="escapes the dataset root"):
        load_dataset(tmp_path / "d")


# ------------------------------------------------------------------ YOLO rounding at the border
def _yolo_one(tmp_path: Path, line: str, size=(640, 480)) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", size).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text(line + "\n")
    return tmp_path


def test_yolo_subpixel_overshoot_is_clipped(tmp_path):
    # a box from y=400 to the bottom edge, normalised to 6 decimals as exporters write it:
    # cy = 440/480 = 0.916667, h = 80/480 = 0.166667 -> y2 = 480.00024
    root = _yolo_one(tmp_path, "0 0.5 0.916667 0.25 0.166667")
    ds = load_dataset(root)
    cy, h = 0.916667 * 480, 0.166667 * 480
    assert cy + h / 2 > 480  # the file really does overshoot
    np.testing.assert_allclose(ds.ann_boxes, [[240, cy - h / 2, 400, 480]], atol=1e-9)


def test_yolo_real_overshoot_still_refused(tmp_path):
    root = _yolo_one(tmp_path, "0 0.5 0.9 0.25 0.25")  # y2 = 492: 12 px outside
    with pytest.raises(BadInputError, match="outside"):
        load_dataset(root)
    np.testing.assert_allclose(load_dataset(root, clip=True).ann_boxes[0, 3], 480)


# ------------------------------------------------------------------ Darknet / CVAT "YOLO 1.1"
def _darknet(tmp_path: Path, *, with_images: bool) -> Path:
    root = tmp_path / "export"
    (root / "obj_train_data").mkdir(parents=True)
    (root / "obj.names").write_text("car\nbus\n")
    (root / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
    lines = []
    for name, (w, h), labels in (("f_000.jpg", (200, 100), "1 0.5 0.5 0.5 0.2\n"),
                                 ("f_001.jpg", (50, 50), "0 0.1 0.1 0.2 0.2\n0 0.5 0.5 1 1\n"),
                                 ("f_002.jpg", (40, 30), "")):
        if with_images:
            Image.new("RGB", (w, h)).save(root / "obj_train_data" / name)
        (root / "obj_train_data" / name).with_suffix(".txt").write_text(labels)
        lines.append(f"data/obj_train_data/{name}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


_DARKNET_BOXES = [[50, 40, 150, 60], [0, 0, 10, 10], [0, 0, 50, 50]]


def test_darknet_export_with_images(tmp_path):
    root = _darknet(tmp_path, with_images=True)
    ds = load_dataset(root)
    assert [im.file_name for im in ds.images] == [f"obj_train_data/f_00{i}.jpg" for i in range(3)]
    assert ds.category_names == {1: "car", 2: "bus"}
    np.testing.assert_allclose(ds.ann_boxes, _DARKNET_BOXES)
    assert ds.ann_labels.tolist() == [2, 1, 1] and ds.ann_image_ids.tolist() == [1, 2, 2]
    # obj.data written on another machine: absolute paths fall back to the export's own files
    (root / "obj.data").write_text("classes = 2\ntrain = /home/me/darknet/data/train.txt\n"
                                   "names = /home/me/darknet/data/obj.names\n")
    (root / "train.txt").write_text("".join(f"/home/me/darknet/data/obj_train_data/f_00{i}.jpg\n" for i in range(3)))
    np.testing.assert_allclose(load_dataset(root).ann_boxes, _DARKNET_BOXES)
    assert load_dataset(root).category_names == {1: "car", 2: "bus"}
    # without obj.data: obj.names + train.txt, else the obj_train_data/ folder itself
    (root / "obj.data").unlink()
    np.testing.assert_allclose(load_dataset(root).ann_boxes, _DARKNET_BOXES)
    (root / "train.txt").unlink()
    np.testing.assert_allclose(load_dataset(root).ann_boxes, _DARKNET_BOXES)
    with pytest.raises(BadInputError, match="no 'valid/val' list"):
        load_dataset(root, split="val")


def test_darknet_export_without_images_uses_images_option(tmp_path):
    root = _darknet(tmp_path, with_images=False)
    with pytest.raises(BadInputError, match="images="):
        load_dataset(root)
    photos = tmp_path / "frames"
    photos.mkdir()
    for name, size in (("f_000.jpg", (200, 100)), ("f_001.jpg", (50, 50)), ("f_002.jpg", (40, 30))):
        Image.new("RGB", size).save(photos / name)
    ds = load_dataset(root, images=photos)
    assert ds.root == photos and [im.file_name for im in ds.images] == ["f_000.jpg", "f_001.jpg", "f_002.jpg"]
    np.testing.assert_allclose(ds.ann_boxes, _DARKNET_BOXES)


# ------------------------------------------------------------------ symlinked data
def test_symlinked_image_folders_are_followed(tmp_path):
    disk = tmp_path / "other_disk"
    disk.mkdir()
    Image.new("RGB", (40, 30)).save(disk / "a.png")
    # COCO
    coco = tmp_path / "coco"
    coco.mkdir()
    os.symlink(disk, coco / "images")
    (coco / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "images/a.png", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
        "categories": [{"id": 1, "name": "x"}]}))
    ds = load_dataset(coco)
    assert ds.image_path(ds.images[0]).resolve() == (disk / "a.png").resolve()
    # YOLO
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    os.symlink(disk, yolo / "images")
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    np.testing.assert_allclose(load_dataset(yolo).ann_boxes, [[10, 7.5, 30, 22.5]])
    # VOC
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    os.symlink(disk, voc / "JPEGImages")
    (voc / "Annotations" / "a.xml").write_text(_voc("a.png", 0, 0, [("x", 1, 1, 40, 30)]))
    v = load_dataset(voc)
    assert (v.images[0].file_name, v.images[0].width) == ("JPEGImages/a.png", 40)
    # names from the annotations still cannot leave the root, nor can a file link
    with pytest.raises(BadInputError, match="escapes"):
        safe_join(coco, "images/../../secret.png")
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", disk / "link.png")
    with pytest.raises(BadInputError, match="outside the dataset root"):
        safe_join(coco, "images/link.png")


def test_data_yaml_split_naming_a_symlinked_image_folder_is_followed(tmp_path):
    """``train: images`` where ``images`` links to another disk (the layout
    ``prepare convert --to yolo`` writes, with the images kept elsewhere)."""
    disk = tmp_path / "other_disk"
    disk.mkdir()
    Image.new("RGB", (40, 30)).save(disk / "a.png")
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    os.symlink(disk, yolo / "images")
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (yolo / "data.yaml").write_text("train: images\nval: images\nnames: {0: x}\n")
    ds = load_dataset(yolo / "data.yaml", split="val")
    np.testing.assert_allclose(ds.ann_boxes, [[10, 7.5, 30, 22.5]])
    assert ds.image_path(ds.images[0]).resolve() == (disk / "a.png").resolve()
    # a file link out of the dataset is still refused
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", yolo / "b.png")
    with pytest.raises(BadInputError, match="outside the dataset root"):
        safe_join(yolo, "b.png")


# ------------------------------------------------------------------ Ultralytics' data.yaml
def _coco_splits(root: Path, rng) -> dict[str, np.ndarray]:
    boxes = {}
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        (root / split / "images").mkdir(parents=True)
        images, anns = [], []
        for i in range(1, n + 1):
            w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
            Image.new("RGB", (w, h)).save(root / split / "images" / f"{i:03d}.png")
            images.append({"id": i, "file_name": f"images/{i:03d}.png", "width": w, "height": h})
            for _ in range(2):
                x, y = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.choice([3, 8])),
                             "bbox": [x, y, rng.uniform(2, w - x), rng.uniform(2, h - y)]})
        doc = {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}, {"id": 8, "name": "dog"}]}
        (root / split / "annotations.json").write_text(json.dumps(doc))
        boxes[split] = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                  a["bbox"][1] + a["bbox"][3]] for a in anns])
    return boxes


def _ultralytics_label_path(image_path: str) -> str:
    """Ultralytics' rule (img2label_paths): the last /images/ becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(image_path.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def test_convert_to_yolo_writes_one_ultralytics_data_yaml(tmp_path, cli):
    src = tmp_path / "src"
    boxes = _coco_splits(src, np.random.default_rng(3))
    out = tmp_path / "y"
    r = cli(["prepare", "convert", src, "--to", "yolo", "--out", out])
    assert r.exit_code == 0, r.output
    assert not list(out.glob("*/data.yaml"))  # one yaml, at the root
    doc = yaml.safe_load((out / "data.yaml").read_text())
    # what Ultralytics' check_det_dataset requires: train and val, names {int: str} matching nc
    assert doc["train"] == "train/images" and doc["val"] == "val/images" and doc["test"] == "test/images"
    assert doc["names"] == {0: "cat", 1: "dog"} and doc["nc"] == 2
    assert "path" not in doc  # then Ultralytics takes the yaml's folder as the root
    for split in ("train", "val", "test"):
        imgs = sorted((out / doc[split]).glob("*.png"))
        assert len(imgs) == {"train": 3, "val": 2, "test": 1}[split]
        for img in imgs:
            assert Path(_ultralytics_label_path(str(img))).is_file()
        ds = load_dataset(out, split=split)
        np.testing.assert_allclose(ds.ann_boxes, boxes[split], atol=1e-6, rtol=0)
        assert [ds.category_names[int(k)] for k in ds.ann_labels] == [
            {3: "cat", 8: "dog"}[int(k)] for k in load_dataset(src, split=split).ann_labels]
    # and back: every split of the YOLO folder comes back out
    r = cli(["prepare", "convert", out, "--to", "coco", "--out", tmp_path / "c"])
    assert r.exit_code == 0, r.output
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(load_dataset(tmp_path / "c", split=split).ann_boxes, boxes[split], atol=1e-6)


def test_single_dataset_to_yolo_has_val_entry(tmp_path, cli):
    spec = _labelimg_set(tmp_path / "r" / "images", tmp_path / "r" / "annotations")
    r = cli(["prepare", "convert", tmp_path / "r", "--to", "yolo", "--out", tmp_path / "y"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert doc["train"] == doc["val"] == "images" and doc["names"] == {0: "cat", 1: "dog"}
    np.testing.assert_allclose(load_dataset(tmp_path / "y").ann_boxes, _expected(spec), atol=1e-6)
    # converting it on gives one dataset, not a train and a val copy
    r = cli(["prepare", "convert", tmp_path / "y", "--to", "voc", "--out", tmp_path / "v"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "v" / "Annotations").is_dir() and not (tmp_path / "v" / "val").exists()
    np.testing.assert_array_equal(load_dataset(tmp_path / "v").ann_boxes, _expected(spec))


def test_convert_voc_keeps_its_image_sets_splits(tmp_path, cli):
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for stem, box in (("a", (1, 1, 20, 10)), ("b", (3, 4, 30, 30)), ("c", (5, 5, 8, 9))):
        Image.new("RGB", (40, 32)).save(voc / "JPEGImages" / f"{stem}.jpg")
        (voc / "Annotations" / f"{stem}.xml").write_text(_voc(f"{stem}.jpg", 40, 32, [("cell", *box)]))
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("c\n")
    r = cli(["prepare", "convert", voc, "--to", "yolo", "--out", tmp_path / "y", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert {k: v["images"] for k, v in doc["splits"].items()} == {"train": 2, "val": 1}
    np.testing.assert_allclose(load_dataset(tmp_path / "y", split="val").ann_boxes, [[4, 4, 8, 9]], atol=1e-9)
    np.testing.assert_allclose(load_dataset(tmp_path / "y", split="train").ann_boxes,
                               [[0, 0, 20, 10], [2, 3, 30, 30]], atol=1e-9)


def test_symlinked_subfolders_inside_the_layout_are_walked(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    Image.new("RGB", (40, 20)).save(disk / "a.png")
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels" / "cam1").mkdir(parents=True)
    os.symlink(disk, yolo / "images" / "cam1")  # images/cam1 lives on another disk
    os.symlink(yolo / "images", yolo / "images" / "loop")  # a link loop ends
    (yolo / "labels" / "cam1" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    ds = load_dataset(yolo)
    assert [im.file_name for im in ds.images] == ["images/cam1/a.png"]
    np.testing.assert_allclose(ds.ann_boxes, [[10, 5, 30, 15]])
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml" / "a.xml").write_text(_voc("a.png", 40, 20, [("x", 1, 1, 40, 20)]))
    os.symlink(tmp_path / "xml", voc / "Annotations" / "batch1")
    assert load_dataset(voc).num_annotations == 1


def test_yolo_split_given_as_a_list_of_images(tmp_path):
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for n in names:
            Image.new("RGB", (100, 50)).save(tmp_path / "images" / split / f"{n}.jpg")
            (tmp_path / "labels" / split / f"{n}.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (tmp_path / "train.txt").write_text("./images/train/a.jpg\nimages/train/b.jpg\n")
    (tmp_path / "val.txt").write_text("images/val/c.jpg\n")
    (tmp_path / "data.yaml").write_text("train: train.txt\nval: val.txt\nnames: {0: box}\n")
    ds = load_dataset(tmp_path, split="train")
    assert [im.file_name for im in ds.images] == ["images/train/a.jpg", "images/train/b.jpg"]
    np.testing.assert_allclose(ds.ann_boxes, [[40, 15, 60, 35]] * 2)
    assert len(load_dataset(tmp_path, split="val").images) == 1
    (tmp_path / "val.txt").write_text("/etc/passwd\n")
    with pytest.raises(BadInputError, match="val.txt:1: .*absolute"):
        load_dataset(tmp_path, split="val")


def test_images_option_refused_where_the_layout_names_the_images(tmp_path):
    from cvtool.errors import UsageError

    (tmp_path / "images").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "a.png")
    (tmp_path / "data.yaml").write_text("train: images\nval: images\nnames: [a]\n")
    with pytest.raises(UsageError, match="images= does not apply to a data.yaml dataset"):
        load_dataset(tmp_path, images=tmp_path / "images")
    with pytest.raises(BadInputError, match="images folder not found"):
        load_dataset(tmp_path, images=tmp_path / "nowhere")

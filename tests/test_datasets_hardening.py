"""Hostile or garbage dataset files (#13): YAML alias bombs, absurd declared sizes and ids,
class names no writer can write back, decoded images that contradict their annotations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtool.datasets import load_dataset
from cvtool.datasets.coco import read_coco
from cvtool.datasets.core import MAX_IMAGE_SIDE, ImageRecord, check_image_shape
from cvtool.datasets.voc import read_voc
from cvtool.datasets.yolo import read_yolo
from cvtool.errors import BadInputError


def _yaml_bomb() -> str:
    """Nine levels of nine aliases: 9**9 (387 million) strings once expanded; ~400 bytes on disk."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join(["*" + prev] * 9) + "]")
        prev = name
    lines += ["names: *i", "train: images"]
    return "\n".join(lines) + "\n"


def _run_limited(args: list[str], *, mem_bytes: int = 1536 << 20, timeout: float = 120):
    """Run ``python -m cvtool ARGS`` with an address-space limit; returns the CompletedProcess."""
    code = ("import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({mem_bytes}, {mem_bytes})); "
            f"sys.argv = ['cvtool'] + {args!r}; runpy.run_module('cvtool', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_yaml_alias_bomb_is_refused_fast_and_small(tmp_path):
    root = tmp_path / "bomb"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (8, 8)).save(root / "images" / "a.png")
    (root / "data.yaml").write_text(_yaml_bomb())
    assert (root / "data.yaml").stat().st_size < 500
    (tmp_path / "preds.json").write_text("[]")
    for args in (["prepare", "stats", str(root)],
                 ["prepare", "convert", str(root), "--to", "coco", "--out", str(tmp_path / "o")],
                 ["eval", "--gt", str(root), "--pred", str(tmp_path / "preds.json")]):
        proc = _run_limited(args)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "anchors and aliases" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_yaml_size_bound_and_plain_yaml_still_read(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "a.png")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [a]\n# " + "x" * (1 << 20) + "\n")
    with pytest.raises(BadInputError, match="bytes; YAML files over"):
        read_yolo(tmp_path / "data.yaml")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [a]\n")
    assert len(read_yolo(tmp_path / "data.yaml").images) == 1


# ------------------------------------------------------------------ declared sizes and ids
def _coco(tmp_path: Path, *, image=None, ann=None, cats=None) -> Path:
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50, **(image or {})}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 20], **(ann or {})}],
           "categories": cats or [{"id": 1, "name": "cat"}]}
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("image,ann,cats,message", [
    ({"width": 1e30}, None, None, "'width' is 1000000000000000019884624838656, beyond 64-bit"),
    ({"width": 70000}, None, None, f"sides must be 1..{MAX_IMAGE_SIDE}"),
    ({"height": float("inf")}, None, None, "'height' must be an integer, got inf"),
    ({"width": float("nan")}, None, None, "'width' must be an integer, got nan"),
    ({"id": 2 ** 70}, {"image_id": 2 ** 70}, None, "'id' is 1180591620717411303424, beyond 64-bit"),
    (None, {"id": 2 ** 63 + 5}, None, "'id' is 9223372036854775813, beyond 64-bit"),
    (None, {"category_id": 2 ** 70}, [{"id": 2 ** 70, "name": "cat"}], "beyond 64-bit"),
    (None, None, [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}], "share the name 'cat'"),
    (None, None, [{"id": 1, "name": "two\nlines"}], r"holds the character '\\n'"),
    (None, None, [{"id": 1, "name": "cat "}], "leading or trailing spaces"),
    (None, None, [{"id": 1, "name": ""}], "is empty"),
])
def test_coco_absurd_values_refused(tmp_path, image, ann, cats, message):
    with pytest.raises(BadInputError, match=message):
        read_coco(_coco(tmp_path, image=image, ann=ann, cats=cats))


def test_coco_json_infinity_refused_not_overflow(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text('{"images": [{"id": Infinity, "file_name": "a.png", "width": 10, "height": 10}],'
                 '"annotations": [], "categories": []}')
    with pytest.raises(BadInputError, match="'id' must be an integer, got inf"):
        read_coco(p)


def _voc_dir(tmp_path: Path, w: str, h: str = "50") -> Path:
    (tmp_path / "Annotations").mkdir(parents=True, exist_ok=True)
    (tmp_path / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><size><width>{w}</width><height>{h}</height></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox>"
        "</object></annotation>")
    return tmp_path


@pytest.mark.parametrize("w", ["1e300", "70000", "-5"])
def test_voc_absurd_sizes_refused(tmp_path, w):
    with pytest.raises(BadInputError, match="sides must be"):
        read_voc(_voc_dir(tmp_path, w))


def test_absurd_size_never_reaches_yolo_labels(tmp_path, cli):
    _voc_dir(tmp_path / "v", "1e300")
    res = cli(["prepare", "convert", tmp_path / "v", "--to", "yolo", "--out", tmp_path / "y", "--images", "none"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and "sides must be" in res.output
    assert not (tmp_path / "y").exists()


def test_yolo_class_index_bounded_without_names(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text("100000 0.5 0.5 0.2 0.2\n")
    with pytest.raises(BadInputError, match=r"class '100000' is not a class index \(0..65535\)"):
        read_yolo(tmp_path)
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    assert [c.name for c in read_yolo(tmp_path).categories] == ["0", "1", "2", "3"]


def test_yolo_duplicate_names_refused(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "a.png")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [car, bus, car]\n")
    with pytest.raises(BadInputError, match="share the name 'car'"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------ declared vs decoded size
def test_check_image_shape():
    im = ImageRecord(3, "images/a.png", 64, 48)
    check_image_shape(im, (48, 64, 3), path="a.png")
    check_image_shape(im, (48, 64), path="a.png")
    with pytest.raises(BadInputError, match=r"a.png: image is 48x64, its annotations say 64x48"):
        check_image_shape(im, np.zeros((64, 48)).shape, path="a.png")


def test_convert_refuses_images_of_another_size_than_declared(tmp_path, cli):
    (tmp_path / "src" / "images").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "src" / "images" / "a.png")
    doc = {"images": [{"id": 1, "file_name": "images/a.png", "width": 100, "height": 50}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
           "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "src" / "annotations.json").write_text(json.dumps(doc))
    res = cli(["prepare", "convert", tmp_path / "src", "--to", "yolo", "--out", tmp_path / "y"])
    assert res.exit_code == 1 and "a.png: image is 40x30, its annotations say 100x50" in res.output
    assert not (tmp_path / "y").exists()
    # annotations only: nothing to compare against, the labels follow the declared size
    res = cli(["prepare", "convert", tmp_path / "src", "--to", "coco", "--out", tmp_path / "c", "--images", "none"])
    assert res.exit_code == 0, res.output


def _exif_jpeg(path: Path, size: tuple[int, int], orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", size, (90, 120, 30)).save(path, exif=exif)
    return path


def test_size_swapped_by_exif_orientation_is_explained(tmp_path, cli):
    # a phone photo stored 64x48 with EXIF orientation 6 decodes 48x64; a VOC <size> of 64x48 (the stored
    # size, as many labelling tools write it) used to be refused without saying why the sides swapped (#12)
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    jpg = _exif_jpeg(voc / "JPEGImages" / "a.jpg", (64, 48), 6)
    with Image.open(jpg) as pil:  # reference: Pillow reads the tag and the stored size
        assert pil.getexif()[0x0112] == 6 and pil.size == (64, 48)
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height></size><object>"
        "<name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
        "</annotation>")
    hint = ("(the annotations give the stored size; the EXIF orientation rotates it: re-save the image upright "
            "or set CVTOOL_EXIF_ORIENTATION=0)")
    im = ImageRecord(1, "JPEGImages/a.jpg", 64, 48)
    with pytest.raises(BadInputError) as info:
        check_image_shape(im, (64, 48, 3), path=jpg)
    assert str(info.value) == f"{jpg}: image is 48x64, its annotations say 64x48 {hint}"
    res = cli(["prepare", "convert", voc, "--to", "yolo", "--out", tmp_path / "y"])
    assert res.exit_code == 1 and "image is 48x64, its annotations say 64x48 " + hint in res.output
    from cvtool.detectors.hog_svm import read_split  # train hog-svm decodes the pixels: same message

    with pytest.raises(BadInputError, match=r"a\.jpg: image is 48x64, its annotations say 64x48 \(the annotations"):
        read_split(voc)
    # no hint where the orientation is not the cause: no tag, or a tag that does not turn the image
    for name, orientation in (("plain.jpg", 1), ("flipped.jpg", 3)):
        other = _exif_jpeg(tmp_path / name, (48, 64), orientation)
        with pytest.raises(BadInputError) as info:
            check_image_shape(im, (64, 48, 3), path=other)
        assert str(info.value) == f"{other}: image is 48x64, its annotations say 64x48"

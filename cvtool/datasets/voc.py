"""Pascal VOC datasets: one XML file per image under ``Annotations/``.

Box convention: VOC stores 1-based, inclusive pixel indices (a box covering
the whole W-pixel-wide image is ``xmin=1, xmax=W``).  The reader converts to
cvtool's continuous xyxy with ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax,
y2 = ymax`` (so widths are ``xmax - xmin + 1``); the writer does the inverse
and rounds to whole pixels with ``numpy.rint`` (nearest, halves to even), so
a box written to VOC moves by at most half a pixel per side.

XML is parsed with defusedxml with DTDs refused: entity expansion ("billion
laughs") and external entities raise a clear error naming the file.

Layouts (:func:`voc_layout`): ``DIR/Annotations/*.xml`` (Pascal), or a flat
folder of XML files as LabelImg writes them: beside the images, or in
``DIR/annotations/`` beside ``DIR/images/``.  Images are looked up as
``DIR/<filename>``, else ``DIR/JPEGImages/<filename>``, else
``DIR/images/<filename>``, else beside the XML file, and when ``<filename>``
names no file, by the XML file's stem with an image suffix (``<filename>``
may hold a relative path; it cannot leave ``DIR``; ``<path>``, the
annotating machine's own path, is ignored).  ``images=`` names the image
folder instead (then the dataset root).  Class names come from
``classes.txt`` (in ``DIR`` or its parent) when present, else the sorted
names found; category ids are 1.. in that order.
``ImageSets/Main/{split}.txt``, when present, selects the images of
``split``; a folder without it (every flat folder) is one split, and every
split name reads all of its files.  Declared sizes must be 0 (read from the
image) or 1..65,536 px a side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cvtool.datasets._files import (IMAGE_MODES, IMAGE_SUFFIXES, find_classes_file, image_size, place_image,
                                    read_class_names, read_text, strip_image_folder, walk_files)
from cvtool.datasets.core import MAX_IMAGE_SIDE, Category, Dataset, ImageRecord, check_relative_name, safe_join
from cvtool.errors import BadInputError


def _parse_xml(path: Path) -> Any:
    import xml.etree.ElementTree as std_et

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse

    try:
        return parse(str(path), forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException as exc:
        raise BadInputError(f"{path}: refused unsafe XML ({type(exc).__name__}: DTDs and entities are not allowed)") \
            from None
    except std_et.ParseError as exc:
        raise BadInputError(f"{path}: not valid XML ({exc})") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _text(node: Any, tag: str, where: str, *, required: bool = True) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise BadInputError(f"{where}: missing <{tag}>")
        return None
    return child.text.strip()


def _number(node: Any, tag: str, where: str) -> float:
    raw = _text(node, tag, where)
    try:
        v = float(raw)
    except ValueError:
        raise BadInputError(f"{where}: <{tag}> is not a number ({raw!r})") from None
    if not np.isfinite(v):
        raise BadInputError(f"{where}: <{tag}> is not finite ({raw!r})")
    return v


def _flag(node: Any, tag: str, where: str) -> bool:
    raw = _text(node, tag, where, required=False)
    if raw is None:
        return False
    if raw not in ("0", "1"):
        raise BadInputError(f"{where}: <{tag}> must be 0 or 1, got {raw!r}")
    return raw == "1"


IMAGE_DIRS = ("JPEGImages", "images")
"""Image folders looked in, beside ``Annotations/`` (or beside a flat folder of XML files)."""


def _resolve_image(root: Path, name: str, where: str, *, xml_path: Path | None = None,
                   ann_dir: Path | None = None, images: Path | None = None) -> str:
    """file_name relative to ``root`` for the image named in ``<filename>``.

    Looked up as ``root/<name>``, ``root/JPEGImages/<name>``, ``root/images/<name>``,
    then beside the XML file; with ``images`` (then ``root``) as
    ``images/<name>`` and ``images/<base name>``.  When ``<filename>`` names
    no file, the XML file's own stem with an image suffix is tried in the
    same places (LabelImg files whose ``<filename>`` lost its extension or was
    renamed).  Not found: the first candidate (the image may be absent when
    only the annotations are used).
    """
    try:
        pure = check_relative_name(name)
    except BadInputError as exc:
        raise BadInputError(f"{where}: {exc}") from None
    if images is not None:
        prefixes = [""]
        names = [pure.as_posix(), pure.name]
    else:
        prefixes = ["", *(d + "/" for d in IMAGE_DIRS)]
        if ann_dir is not None and ann_dir != root:
            prefixes.append(ann_dir.relative_to(root).as_posix() + "/")
        names = [pure.as_posix()]
    stems = []
    if xml_path is not None:
        stems = [xml_path.stem + s for s in IMAGE_SUFFIXES + tuple(x.upper() for x in IMAGE_SUFFIXES)]
    for group in (names, stems):
        for prefix in prefixes:
            for n in group:
                cand = prefix + n
                try:
                    p = safe_join(root, cand)
                except BadInputError as exc:
                    raise BadInputError(f"{where}: {exc}") from None
                if p.is_file():
                    return cand
    if images is None and (root / "JPEGImages").is_dir():
        return "JPEGImages/" + pure.as_posix()
    return pure.as_posix()


def parse_voc_annotation(path: Path, root: Path, *, ann_dir: Path | None = None, images: Path | None = None
                         ) -> tuple[ImageRecord, list[tuple[str, list[float], bool, bool]]]:
    """One XML file -> (image record with id 0, [(name, [xmin, ymin, xmax, ymax], difficult, truncated)])."""
    node = _parse_xml(path)
    where = str(path)
    if node.tag != "annotation":
        raise BadInputError(f"{where}: root element is <{node.tag}>, expected <annotation>")
    name = _text(node, "filename", where)
    file_name = _resolve_image(root, name, where, xml_path=path, ann_dir=ann_dir, images=images)
    size = node.find("size")
    w = h = 0
    if size is not None and size.find("width") is not None:
        fw, fh = _number(size, "width", where), _number(size, "height", where)
        if not (0 <= fw <= MAX_IMAGE_SIDE and 0 <= fh <= MAX_IMAGE_SIDE):
            raise BadInputError(f"{where}: <size> is {fw:g}x{fh:g}; sides must be 1..{MAX_IMAGE_SIDE} "
                                "(0 means: read the size from the image)")
        w, h = int(fw), int(fh)
    if w <= 0 or h <= 0:
        image_path = safe_join(root, file_name)
        if images is None and not image_path.exists():  # the usual cause: XML kept apart from the images
            raise BadInputError(f"{where}: <size> is 0x0 and {name}: image not found to read it from (pass "
                                "the folder holding the images: images=, --image-dir on the command line)")
        w, h = image_size(image_path)
    objects = []
    for j, obj in enumerate(node.findall("object")):
        ow = f"{where}: object {j}"
        cls = _text(obj, "name", ow)
        box = obj.find("bndbox")
        if box is None:
            raise BadInputError(f"{ow}: missing <bndbox>")
        coords = [_number(box, t, ow) for t in ("xmin", "ymin", "xmax", "ymax")]
        objects.append((cls, coords, _flag(obj, "difficult", ow), _flag(obj, "truncated", ow)))
    return ImageRecord(0, file_name, w, h), objects


def voc_layout(path: str | os.PathLike[str], *, split: str | None = None) -> tuple[Path, Path, bool] | None:
    """``(root, annotation folder, flat)`` of a VOC dataset at ``path``, or None when it is not one.

    * ``path/Annotations/`` (or ``path/{split}/Annotations/``): the Pascal layout;
    * ``path/annotations/`` holding ``.xml`` files: LabelImg's flat folder in
      its own subfolder (images in ``path/images/``, ``path/JPEGImages/`` or
      beside the XML);
    * ``.xml`` files directly in ``path``: a flat folder; the root is
      ``path``, or its parent when ``path`` has no images and the parent has
      an ``images/`` or ``JPEGImages/`` folder.
    """
    root = Path(path)
    if not root.is_dir():
        return None
    if split is not None and not (root / "Annotations").is_dir() and (root / split / "Annotations").is_dir():
        root = root / split
    if (root / "Annotations").is_dir():
        return root, root / "Annotations", False
    if (root / "annotations").is_dir() and any((root / "annotations").glob("*.xml")):
        return root, root / "annotations", True
    if any(root.glob("*.xml")):
        has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
        if not has_images and root.name not in IMAGE_DIRS and any((root.parent / d).is_dir() for d in IMAGE_DIRS):
            return root.parent, root, True
        return root, root, True
    return None


def read_voc(path: str | os.PathLike[str], *, split: str | None = None, clip: bool = False,
             images: str | os.PathLike[str] | None = None) -> Dataset:
    """Read a Pascal VOC folder (``Annotations/*.xml``) or a flat folder of VOC XML files.

    Parameters
    ----------
    path : path-like
        The folder holding ``Annotations/`` (or ``{split}/Annotations``), or
        a flat folder of XML files as LabelImg writes them (beside the
        images, or in ``annotations/`` beside ``images/``); see :func:`voc_layout`.
    split : str, optional
        Use ``ImageSets/Main/{split}.txt`` when it exists.  A folder without
        that file is one split: every split name reads all its files.
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.
    images : path-like, optional
        Folder holding the images (looked up as ``<filename>``, then by base
        name, then by the XML file's stem); it becomes ``Dataset.root``.

    Returns
    -------
    Dataset
        Image ids 1.. in sorted annotation order; ``ann_difficult`` and
        ``ann_truncated`` from the files; boxes in cvtool's xyxy (see module).

    Raises
    ------
    BadInputError
        Unsafe or malformed XML, missing fields, unknown class names (with
        ``classes.txt``), bad boxes (naming the file and object).
    """
    layout = voc_layout(path, split=split)
    if layout is None:
        raise BadInputError(f"{path}: no Annotations/ folder and no .xml annotation files")
    root, ann_dir, flat = layout
    images_path = Path(images) if images is not None else None
    if images_path is not None and not images_path.is_dir():
        raise BadInputError(f"{images_path}: images folder not found")
    files = sorted(ann_dir.glob("*.xml")) if flat else walk_files(ann_dir, (".xml",))
    listing = root / "ImageSets" / "Main" / f"{split}.txt" if split else None
    if listing is not None and listing.is_file():
        stems = [ln.split()[0] for ln in read_text(listing).splitlines() if ln.strip()]
        files = []
        for s in stems:
            p = safe_join(ann_dir, s + ".xml")
            if not p.is_file():
                raise BadInputError(f"{listing}: {s!r} has no annotation file {p}")
            files.append(p)
    if not files:
        raise BadInputError(f"{ann_dir}: no .xml annotation files")
    classes = find_classes_file(root if not flat or ann_dir == root else ann_dir)
    names = read_class_names(classes) if classes is not None else None
    img_root = images_path if images_path is not None else root
    parsed = [parse_voc_annotation(f, img_root, ann_dir=ann_dir if images_path is None else None,
                                   images=images_path) for f in files]
    if names is None:
        names = sorted({o[0] for _, objs in parsed for o in objs})
    cat_of = {n: k + 1 for k, n in enumerate(names)}
    images_out, ids, boxes, labels, diff, trunc = [], [], [], [], [], []
    origin: list[tuple[Path, int]] = []  # (XML file, object index) of each annotation, for messages
    for i, ((rec, objs), f) in enumerate(zip(parsed, files), start=1):
        images_out.append(ImageRecord(i, rec.file_name, rec.width, rec.height))
        for j, (cls, (x1, y1, x2, y2), d, t) in enumerate(objs):
            if cls not in cat_of:
                raise BadInputError(f"{f}: object {j} has class {cls!r}, not in {classes} ({', '.join(names)})")
            ids.append(i)
            origin.append((f, j))
            boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])
            labels.append(cat_of[cls])
            diff.append(d)
            trunc.append(t)
    k = len(ids)
    ds = Dataset(images=images_out, categories=[Category(cat_of[n], n) for n in names],
                 ann_image_ids=np.array(ids, np.int64), ann_boxes=np.array(boxes, np.float64).reshape(k, 4),
                 ann_labels=np.array(labels, np.int64), ann_iscrowd=np.zeros(k, bool),
                 ann_difficult=np.array(diff, bool), ann_truncated=np.array(trunc, bool), root=img_root)
    return ds.validate(source=str(ann_dir), clip=clip, where=lambda j: f"{origin[j][0]}: object {origin[j][1]}")


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def annotation_xml(im: ImageRecord, filename: str, objects: list[tuple[str, np.ndarray, bool, bool]],
                   *, folder: str = "") -> str:
    """VOC XML text of one image; ``objects``: (name, xyxy box, difficult, truncated)."""
    lines = ["<annotation>", f"  <folder>{_xml_escape(folder)}</folder>",
             f"  <filename>{_xml_escape(filename)}</filename>",
             "  <size>", f"    <width>{im.width}</width>", f"    <height>{im.height}</height>",
             "    <depth>3</depth>", "  </size>", "  <segmented>0</segmented>"]
    for name, box, difficult, truncated in objects:
        x1, y1, x2, y2 = (int(v) for v in np.rint(np.asarray(box, np.float64)))
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)  # a box never rounds to nothing
        lines += ["  <object>", f"    <name>{_xml_escape(name)}</name>", "    <pose>Unspecified</pose>",
                  f"    <truncated>{int(truncated)}</truncated>", f"    <difficult>{int(difficult)}</difficult>",
                  "    <bndbox>", f"      <xmin>{x1 + 1}</xmin>", f"      <ymin>{y1 + 1}</ymin>",
                  f"      <xmax>{x2}</xmax>", f"      <ymax>{y2}</ymax>", "    </bndbox>", "  </object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def write_voc(ds: Dataset, out: str | os.PathLike[str], *, overwrite: bool = False, images: str = "link") -> Path:
    """Write ``ds`` as a VOC folder: ``OUT/Annotations/*.xml``, ``OUT/JPEGImages/``, ``OUT/classes.txt``.

    Parameters
    ----------
    images : {'link', 'copy', 'none'}
        Hard-link (copy where impossible) or copy the images into
        ``OUT/JPEGImages/`` (a leading ``images/`` folder of ``file_name``
        dropped), or leave them: then ``<filename>`` keeps ``file_name``
        relative to ``OUT`` (e.g. ``images/a.png``, for the ``prepare`` layout).

    Returns
    -------
    Path
        ``OUT/Annotations``.

    Notes
    -----
    Boxes are rounded to whole pixels (see the module docstring); crowd
    flags are dropped; category ids become 1.. in id order on reading back.
    """
    from cvtool.io.atomic import atomic_write_text

    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {', '.join(IMAGE_MODES)}, got {images!r}")
    out = Path(out)
    names = ds.category_names
    truncated = ds.ann_truncated if ds.ann_truncated is not None else np.zeros(ds.num_annotations, bool)
    order = np.argsort(ds.ann_image_ids, kind="stable")
    sorted_ids = ds.ann_image_ids[order]
    for im in ds.images:
        rel = strip_image_folder(im.file_name)
        if images == "none":
            filename = im.file_name
        else:
            filename = rel.as_posix()
            place_image(ds.image_path(im), out / "JPEGImages" / rel, mode=images, overwrite=overwrite)
        idx = order[np.searchsorted(sorted_ids, im.id, "left"):np.searchsorted(sorted_ids, im.id, "right")]
        objs = [(names[int(ds.ann_labels[i])], ds.ann_boxes[i], bool(ds.ann_difficult[i]), bool(truncated[i]))
                for i in idx]
        atomic_write_text(out / "Annotations" / rel.with_suffix(".xml"),
                          annotation_xml(im, filename, objs, folder=out.name), overwrite=overwrite)
    cats = sorted(ds.categories, key=lambda c: c.id)
    atomic_write_text(out / "classes.txt", "".join(f"{c.name}\n" for c in cats), overwrite=overwrite)
    return out / "Annotations"

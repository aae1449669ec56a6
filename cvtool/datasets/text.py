"""Plain text box files: one ``NAME.txt`` per image, one box per line.

Ground truth lines are ``class a b c d``; detection lines ``class score a b c d``
(``layout='text'``) or, as YOLO tools write them (``detect --format yolo``,
Ultralytics ``save_txt`` + ``save_conf``), ``class cx cy w h score`` relative
to the image (``layout='yolo'``).
``a b c d`` follow a stated ``box_format`` (``xyxy``, ``xywh`` or ``cxcywh``),
in pixels or, with ``relative=True``, divided by the image width/height.

Detection files whose columns do not fit the stated layout are refused, never
scored: a score outside [0, 1], a box reaching more than a pixel outside its
image, a negative width, or (pixel boxes) every box within the first pixel
of large images raise a ``BadInputError`` naming the file, the line and the
layout that would fit better.
``class`` is a class name, or a 0-based index into ``classes`` /
``classes.txt`` when it is an integer that is not itself a name.

Image sizes come from an image with the same stem (beside the text file or
in a sibling ``images/`` folder, read from its header), else from
``image_size``; without either, pixel boxes get the smallest size that holds
them (relative boxes need a size and are refused).  Category ids are 1.. in
the order of ``classes`` (or the sorted names found).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvtool import boxes as box_ops
from cvtool.datasets._files import (IMAGE_SUFFIXES, find_classes_file, fmt_num, image_size, read_class_names,
                                    read_text)
from cvtool.datasets.core import Category, Dataset, ImageRecord, Predictions
from cvtool.errors import BadInputError

TEXT_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
PRED_LAYOUTS = ("text", "yolo")
_LAYOUT_TEXT = {"text": "'class score a b c d' (--pred-format text)",
                "yolo": "YOLO 'class cx cy w h score', relative to the image (--pred-format yolo)"}



def _is_index(tok: str) -> bool:
    """An ASCII class index ('²'.isdigit() is true, yet int('²') fails)."""
    return tok.isascii() and tok.isdigit()

def _check_format(box_format: str) -> None:
    if box_format not in TEXT_BOX_FORMATS:
        raise ValueError(f"unknown box format {box_format!r}; valid: {', '.join(TEXT_BOX_FORMATS)}")


def _text_files(path: Path) -> tuple[Path, list[Path]]:
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise BadInputError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*.txt") if p.name != "classes.txt")
    if not files:
        raise BadInputError(f"{path}: no .txt box files")
    return path, files


def _parse_lines(path: Path, *, with_scores: bool | None, score_last: bool = False,
                 line_numbers: list[int] | None = None) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Class tokens, (L, 4) values and (L,) scores (None without scores); line numbers appended to ``line_numbers``."""
    tokens, vals, scores = [], [], []
    width = None if with_scores is None else (6 if with_scores else 5)
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if width is None:
            width = len(parts) if len(parts) in (5, 6) else 5
        if len(parts) != width:
            want = ("class cx cy w h score; Ultralytics writes the score with save_conf" if score_last
                    else "class score a b c d") if width == 6 else "class a b c d"
            raise BadInputError(f"{path}:{n}: expected {width} fields ({want}), got {len(parts)}")
        try:
            nums = [float(p) for p in parts[1:]]
        except ValueError:
            raise BadInputError(f"{path}:{n}: not a number in field {_first_bad(parts[1:]) + 2}") from None
        if not all(math.isfinite(v) for v in nums):
            raise BadInputError(f"{path}:{n}: NaN or infinite value")
        tokens.append(parts[0])
        if line_numbers is not None:
            line_numbers.append(n)
        if width == 6:
            scores.append(nums[-1] if score_last else nums[0])
        vals.append(nums[:4] if score_last else nums[-4:])
    arr = np.array(vals, np.float64).reshape(-1, 4)
    return tokens, arr, (np.array(scores, np.float64) if width == 6 else None)


def _first_bad(fields: list[str]) -> int:
    for i, f in enumerate(fields):
        try:
            float(f)
        except ValueError:
            return i
    return 0


def _find_image(txt: Path, base: Path) -> Path | None:
    rel = txt.relative_to(base).with_suffix("")
    for folder in (base, base.parent / "images", base / "images"):
        for suffix in IMAGE_SUFFIXES:
            cand = folder / rel.with_suffix(suffix)
            if cand.is_file():
                return cand
    return None


def _class_ids(tokens: list[str], names: list[str], where: Path, *, grow: bool) -> list[int]:
    out = []
    for tok in tokens:
        if tok in names:
            out.append(names.index(tok) + 1)
        elif _is_index(tok) and int(tok) < len(names):
            out.append(int(tok) + 1)
        elif grow:
            names.append(tok)
            out.append(len(names))
        else:
            raise BadInputError(f"{where}: class {tok!r} is neither a class name nor an index "
                                f"(classes: {', '.join(names)})")
    return out


def read_text_boxes(path: str | os.PathLike[str], *, box_format: str = "xyxy", relative: bool = False,
                    image_size_default: tuple[int, int] | None = None, classes: Sequence[str] | None = None,
                    clip: bool = False) -> Dataset:
    """Read ground-truth text box files (``class a b c d`` per line).

    Parameters
    ----------
    path : path-like
        One ``.txt`` file or a folder of them (recursive; ``classes.txt`` skipped).
    box_format : {'xyxy', 'xywh', 'cxcywh'}
    relative : bool
        Values are divided by the image width/height.
    image_size_default : (width, height), optional
        Size of images that cannot be found.
    classes : sequence of str, optional
        Class names (default: ``classes.txt`` beside the files, else the
        sorted names found).
    clip : bool
        Clip boxes sticking out of their image instead of refusing them.

    Raises
    ------
    ValueError
        Unknown ``box_format``.
    BadInputError
        Malformed lines (naming file and line), unknown classes, bad boxes.
    """
    _check_format(box_format)
    path = Path(path)
    base, files = _text_files(path)
    if classes is None:
        cf = find_classes_file(base)
        classes = read_class_names(cf) if cf is not None else None
    names = list(classes) if classes is not None else []
    lines: list[list[int]] = [[] for _ in files]
    parsed = [(f, *_parse_lines(f, with_scores=False, line_numbers=ln)) for f, ln in zip(files, lines)]
    origin = [(f, n) for f, ln in zip(files, lines) for n in ln]  # file and line of each box, for messages
    if classes is None:  # sorted names found, so ids do not depend on file order
        names = sorted({t for _, toks, _, _ in parsed for t in toks})
    src = box_format + ("n" if relative else "")
    found = [_find_image(f, base) for f, *_ in parsed]
    root = base if all(img is None or img.is_relative_to(base) for img in found) else base.parent
    images, ids, boxes, labels = [], [], [], []
    for i, ((f, toks, vals, _), img) in enumerate(zip(parsed, found), start=1):
        if img is not None:
            w, h = image_size(img)
            file_name = img.relative_to(root).as_posix()
        else:
            file_name = f.relative_to(root).with_suffix("").as_posix()
            if image_size_default is not None:
                w, h = (int(v) for v in image_size_default)
            elif relative:
                raise BadInputError(f"{f}: relative boxes need the image size (no image found; give one)")
            else:
                xyxy = box_ops.convert(vals, box_format, "xyxy") if len(vals) else np.ones((1, 4))
                w, h = max(1, math.ceil(xyxy[:, 2].max())), max(1, math.ceil(xyxy[:, 3].max()))
        images.append(ImageRecord(i, file_name, w, h))
        b = box_ops.convert(vals, src, "xyxy", image_size=(w, h)) if relative else box_ops.convert(vals, src, "xyxy")
        boxes.append(b)
        ids.append(np.full(len(b), i, np.int64))
        labels += _class_ids(toks, names, f, grow=False)
    k = len(labels)
    ds = Dataset(images=images, categories=[Category(j + 1, n) for j, n in enumerate(names)],
                 ann_image_ids=np.concatenate(ids), ann_boxes=np.concatenate(boxes).reshape(k, 4),
                 ann_labels=np.array(labels, np.int64), ann_iscrowd=np.zeros(k, bool),
                 ann_difficult=np.zeros(k, bool), root=root)
    return ds.validate(source=str(path), clip=clip, where=lambda j: f"{origin[j][0]}:{origin[j][1]}: box")


def read_text_predictions(path: str | os.PathLike[str], gt: Dataset, *, box_format: str = "xyxy",
                          relative: bool = False, layout: str = "text", classes: Sequence[str] | None = None,
                          unknown: dict[str, int] | None = None) -> Predictions:
    """Read detection text files against ``gt``.

    Parameters
    ----------
    path : path-like
        One ``.txt`` file or a folder of them (recursive; ``classes.txt`` skipped).
    gt : Dataset
        Files are matched to its images by stem (``dir/NAME.txt`` <-> the
        image whose ``file_name`` stem is ``NAME``; stems must be unique).
    box_format : {'xyxy', 'xywh', 'cxcywh'}
        ``layout='text'`` only.
    relative : bool
        ``layout='text'`` only: values are divided by the image size.
    layout : {'text', 'yolo'}
        ``text``: ``class score a b c d``; ``yolo``: ``class cx cy w h score``
        with relative values (``box_format`` and ``relative`` are then fixed).
    classes : sequence of str, optional
        Names of the class indices in the files (e.g. the detector's classes);
        default: the ground-truth categories sorted by id.  A class token is a
        name, else an index into these.
    unknown : dict, optional
        When given, lines of classes the ground truth lacks are dropped and
        counted here (class -> count); else refused.

    Raises
    ------
    ValueError
        Unknown ``box_format`` or ``layout``.
    BadInputError
        Malformed lines, files matching no image, classes the ground truth
        lacks (without ``unknown``), and columns that do not fit ``layout``:
        a score outside [0, 1], a box more than a pixel outside its image
        (when its size is known: an image file, or relative values), a
        negative width or height, pixel boxes all inside the first pixel of
        large images (each naming the file, line and the likely layout).
    """
    if layout not in PRED_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(PRED_LAYOUTS)}")
    if layout == "yolo":
        box_format, relative = "cxcywh", True
    _check_format(box_format)
    path = Path(path)
    _, files = _text_files(path)
    by_stem: dict[str, list[ImageRecord]] = {}
    for im in gt.images:
        by_stem.setdefault(Path(im.file_name).stem, []).append(im)
    cats = sorted(gt.categories, key=lambda c: c.id)
    gt_ids = {c.name: c.id for c in cats}
    names = list(classes) if classes is not None else [c.name for c in cats]
    src = box_format + ("n" if relative else "")
    other = "yolo" if layout == "text" else "text"
    parts, tiny, big = [], True, False
    for f in files:
        hits = by_stem.get(f.stem, [])
        if len(hits) != 1:
            raise BadInputError(f"{f}: matches {len(hits)} ground-truth images by name {f.stem!r}")
        im = hits[0]
        lines: list[int] = []
        toks, vals, scores = _parse_lines(f, with_scores=True, score_last=layout == "yolo", line_numbers=lines)

        def refuse(i: int, what: str) -> BadInputError:
            return BadInputError(f"{f}:{lines[i]}: {what}: read as {_LAYOUT_TEXT[layout]}; these columns do not "
                                 f"fit it (a {_LAYOUT_TEXT[other]} file?)")

        b = box_ops.convert(vals, src, "xyxy", image_size=(im.width, im.height)) if relative else \
            box_ops.convert(vals, src, "xyxy")
        bad = np.flatnonzero((scores < 0) | (scores > 1))
        if bad.size:
            raise refuse(int(bad[0]), f"score {scores[bad[0]]:g} is outside [0, 1]")
        bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
        if bad.size:
            raise refuse(int(bad[0]), "negative box width or height")
        # image sizes are known from an image file (or are what relative values refer to); text ground truth
        # without images only gives a lower bound (the smallest size holding its boxes)
        sized = relative or Path(im.file_name).suffix.lower() in IMAGE_SUFFIXES
        outside = (b[:, 0] < -1) | (b[:, 1] < -1) | (b[:, 2] > im.width + 1) | (b[:, 3] > im.height + 1)
        bad = np.flatnonzero(outside & sized)
        if bad.size:
            i = int(bad[0])
            raise refuse(i, f"box {[round(float(v), 3) for v in b[i]]} (xyxy pixels) lies more than a pixel "
                            f"outside the {im.width}x{im.height} image")
        if len(b):
            tiny &= bool((b[:, 2:] <= 1.0).all())
            big |= min(im.width, im.height) > 8
        ids = np.array([_pred_class(t, names, gt_ids) for t in toks], np.int64)
        lost = ids < 0
        if lost.any():
            from cvtool.datasets.results import count_unknown

            count_unknown(unknown, [_class_key(t, names) for t, x in zip(toks, lost) if x],
                          f"{f}:{lines[int(np.flatnonzero(lost)[0])]}")
        keep = ~lost
        parts.append((np.full(int(keep.sum()), im.id, np.int64), b[keep], scores[keep], ids[keep]))
    if not relative and tiny and big and any(len(p[0]) for p in parts):
        raise BadInputError(f"{path}: every box lies within the first pixel of its image: the values look "
                            "relative to the image size, not pixels; for YOLO files (class cx cy w h score) pass "
                            "--pred-format yolo, for 'class score a b c d' in fractions pass --relative")
    ids, b, s, c = (np.concatenate(x) for x in zip(*parts))
    return Predictions(image_ids=ids, boxes=b.reshape(-1, 4), scores=s, labels=c)


def _pred_class(tok: str, names: list[str], gt_ids: dict[str, int]) -> int:
    """Ground-truth category id of a class token (a name, else an index into ``names``); -1 when unknown."""
    if tok in gt_ids:
        return gt_ids[tok]
    if _is_index(tok) and int(tok) < len(names):
        return gt_ids.get(names[int(tok)], -1)
    return -1


def _class_key(tok: str, names: list[str]) -> str:
    if _is_index(tok) and int(tok) < len(names) and tok not in names:
        return f"{names[int(tok)]} (index {tok})"
    return f"class index {tok}" if _is_index(tok) else tok


def write_text_boxes(ds: Dataset, out: str | os.PathLike[str], *, box_format: str = "xyxy",
                     relative: bool = False, overwrite: bool = False) -> Path:
    """Write ``OUT/<image stem path>.txt`` (``class_name a b c d``) for every image, and ``OUT/classes.txt``."""
    from cvtool.datasets._files import strip_image_folder
    from cvtool.io.atomic import atomic_write_text

    _check_format(box_format)
    out = Path(out)
    names = ds.category_names
    dst = box_format + ("n" if relative else "")
    for im in ds.images:
        idx = ds.annotations_of(im.id)
        b = ds.ann_boxes[idx]
        vals = box_ops.convert(b, "xyxy", dst, image_size=(im.width, im.height)) if len(b) else b
        text = "".join(f"{names[int(ds.ann_labels[i])]} " + " ".join(fmt_num(v) for v in row) + "\n"
                       for i, row in zip(idx, vals))
        rel = strip_image_folder(im.file_name)
        atomic_write_text(out / rel.with_suffix(".txt"), text, overwrite=overwrite)
    cats = sorted(ds.categories, key=lambda c: c.id)
    atomic_write_text(out / "classes.txt", "".join(f"{c.name}\n" for c in cats), overwrite=overwrite)
    return out

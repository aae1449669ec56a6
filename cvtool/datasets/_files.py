"""File helpers the format modules share: JSON/text reading with clear errors,
image sizes from headers, class-name lists, and copying images into a layout."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from cvtool.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_MODES = ("copy", "link", "none")
"""How writers place images: copy the files, hard-link them (copy where links fail), or leave them."""


def read_text(path: Path) -> str:
    """UTF-8 text of ``path``; BadInputError naming it when unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a folder, expected a file") from None


MAX_YAML_BYTES = 1 << 20
"""Largest YAML file read (a ``data.yaml`` is a few hundred bytes)."""


def read_yaml(path: Path) -> Any:
    """Parsed YAML of ``path`` with safe types only, no anchors or aliases, at most 1 MiB.

    Aliases are how a few hundred bytes expand to gigabytes ("billion
    laughs"); plain ``data.yaml`` files never need them, so they are refused
    while parsing, before anything expands.

    Raises
    ------
    BadInputError
        Unreadable, too large, not YAML, or using anchors/aliases.
    """
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise BadInputError(f"{path}: YAML anchors and aliases (& and *) are not allowed "
                                    f"(line {event.start_mark.line + 1})")
            return super().compose_node(parent, index)

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size > MAX_YAML_BYTES:
        raise BadInputError(f"{path}: {size} bytes; YAML files over {MAX_YAML_BYTES} bytes are refused")
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise BadInputError(f"{path}: YAML nested too deeply") from None


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; empty or malformed files raise BadInputError naming the line."""
    text = read_text(path)
    if not text.strip():
        raise BadInputError(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadInputError(f"{path}: JSON nested too deeply") from None
    except ValueError:  # an integer literal beyond Python's digit limit (4300 digits)
        raise BadInputError(f"{path}: JSON number with too many digits") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image as ``read_image`` returns it, from its header.

    EXIF orientation is applied (a portrait phone photo stored landscape gives its
    upright size), so normalised boxes agree with the decoded pixels; special files
    (FIFOs, devices) are refused without blocking.
    """
    from cvtool.io.images import read_image_size

    if not path.exists():
        raise BadInputError(f"{path}: image not found (needed for its size)")
    return read_image_size(path)


def walk_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``folder`` whose suffix (any case) is in ``suffixes``, sorted, following symlinked folders.

    ``Path.rglob`` does not enter symlinked sub-folders (an ``images/train``
    link to another disk); this walk does, once per real folder (link loops
    end).  Paths are returned under ``folder`` as written, not resolved.
    """
    out: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        out.extend(Path(dirpath) / f for f in filenames if os.path.splitext(f)[1].lower() in suffixes)
    return sorted(out)


def check_image_sizes(ds: Any) -> None:
    """Compare every image's declared size with its file's header (Pillow; pixels not decoded).

    Writers that normalise boxes by the declared size (YOLO) or carry it on
    (COCO, VOC) would otherwise write labels for another image.

    Raises
    ------
    BadInputError
        An image is missing, unreadable, or of another size than declared.
    """
    from cvtool.datasets.core import check_image_shape

    for im in ds.images:
        path = ds.image_path(im)
        w, h = image_size(path)
        check_image_shape(im, (h, w), path=path)


def find_classes_file(folder: Path) -> Path | None:
    """``classes.txt`` in ``folder`` or its parent (the prepare layout keeps it at OUT/)."""
    for cand in (folder / "classes.txt", folder.parent / "classes.txt"):
        if cand.is_file():
            return cand
    return None


def read_class_names(path: Path) -> list[str]:
    """One class name per non-empty line; duplicates refused."""
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not names:
        raise BadInputError(f"{path}: no class names")
    seen: set[str] = set()
    for n, name in enumerate(names, start=1):
        if name in seen:
            raise BadInputError(f"{path}: class name {name!r} appears twice (line {n})")
        seen.add(name)
    return names


def strip_image_folder(file_name: str) -> PurePosixPath:
    """``images/a/b.png`` -> ``a/b.png`` (also ``JPEGImages/``); other names unchanged."""
    p = PurePosixPath(file_name.replace("\\", "/"))
    if len(p.parts) > 1 and p.parts[0] in ("images", "JPEGImages"):
        return PurePosixPath(*p.parts[1:])
    return p


def place_image(src: Path, dst: Path, *, mode: str, overwrite: bool) -> None:
    """Copy or hard-link ``src`` to ``dst`` (``mode='link'`` copies where links are impossible)."""
    if mode == "none":
        return
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{dst} exists; pass --overwrite to replace it")
        if os.path.samefile(src, dst):
            return
        dst.unlink()
    if not src.is_file():
        raise BadInputError(f"{src}: image not found")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    from cvtool.io.atomic import atomic_open

    # a failed copy (disk full) names dst and leaves neither dst nor a temp file behind
    with open(src, "rb") as fin, atomic_open(dst, "wb", overwrite=overwrite) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def fmt_num(v: float) -> str:
    """Shortest text that reads back as the same float (integers without '.0')."""
    v = float(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)

"""Input expansion, image reading limits, atomic writes and manifests."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pytest

from cvtool.errors import BadInputError, UsageError
from cvtool.io.atomic import atomic_open, atomic_write_bytes, leftover_temp_files
from cvtool.io.images import image_size_from_header, read_image, write_image
from cvtool.io.manifest import write_manifest
from cvtool.io.paths import expand_inputs


def _png(path: Path, shape=(8, 10), dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = (np.arange(np.prod(shape)) % 200).astype(dtype).reshape(shape)
    assert cv2.imwrite(str(path), img)
    return path


# ----------------------------------------------------------------- expand_inputs

def test_folder_sorted_filtered_and_relative(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.PNG")
    (tmp_path / "notes.txt").write_text("x")
    _png(tmp_path / "sub" / "c.png")
    flat = expand_inputs([str(tmp_path)])
    assert [str(f.rel) for f in flat] == ["a.PNG", "b.png"]
    deep = expand_inputs([str(tmp_path)], recursive=True)
    assert [str(f.rel) for f in deep] == ["a.PNG", "b.png", "sub/c.png"]


def test_glob_list_stdin_and_dedup(tmp_path):
    a = _png(tmp_path / "x" / "a.png")
    b = _png(tmp_path / "x" / "y" / "b.png")
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\nx/a.png\n\n")
    got = expand_inputs([str(tmp_path / "x" / "**" / "*.png"), f"@{lst}", "-"],
                        stdin=io.StringIO(f"{b}\n"))
    # a.png reached by glob and list, b.png by glob and stdin: each kept once
    assert sorted(os.path.realpath(f.path) for f in got) == sorted([os.path.realpath(a), os.path.realpath(b)])
    rels = {str(f.rel) for f in got}
    assert "y/b.png" in rels or "b.png" in rels


def test_unicode_names(tmp_path):
    p = _png(tmp_path / "résumé ünïcode 画像.png")
    [f] = expand_inputs([str(tmp_path)])
    assert f.rel == PurePosixPath(p.name)
    assert read_image(f.path).shape == (8, 10)


def test_missing_and_empty_inputs_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        expand_inputs([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(UsageError, match="pattern"):
        expand_inputs([str(tmp_path / "*.jpg")])


def test_explicit_file_taken_whatever_its_extension(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"abc")
    [f] = expand_inputs([str(p)])
    assert f.path == p


# ------------------------------------------------------------------ read_image

def test_read_keeps_depth_channels_and_alpha(tmp_path):
    g16 = _png(tmp_path / "g16.png", (6, 7), np.uint16)
    assert read_image(g16).dtype == np.uint16
    rgba = np.zeros((5, 4, 4), np.uint8)
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert read_image(tmp_path / "rgba.png").shape == (5, 4, 4)


def test_bad_files_raise_bad_input(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    ok, enc = cv2.imencode(".jpg", np.full((64, 64, 3), 100, np.uint8))
    (tmp_path / "trunc.jpg").write_bytes(enc.tobytes()[: len(enc) // 2])
    ok, encp = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    (tmp_path / "trunc.png").write_bytes(encp.tobytes()[: len(encp) // 2])
    for name, reason in [("empty.png", "empty file"), ("text.png", "not a recognised"),
                         ("trunc.jpg", "truncated JPEG"), ("trunc.png", "truncated PNG"),
                         ("missing.png", "cannot read")]:
        with pytest.raises(BadInputError, match=reason) as exc:
            read_image(tmp_path / name)
        assert name in str(exc.value)


def test_pixel_limit_checked_from_header(tmp_path):
    p = _png(tmp_path / "big.png", (100, 200))
    assert image_size_from_header(p.read_bytes()) == (200, 100)
    with pytest.raises(BadInputError, match="20000 pixels exceeds the limit of 19999"):
        read_image(p, max_pixels=19_999)
    assert read_image(p, max_pixels=20_000).shape == (100, 200)


def test_bomb_header_refused_before_decoding(tmp_path):
    # A PNG whose IHDR claims 100000 x 100000 but carries no real data: refused
    # from the header (decoding would need 10 GB).
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(BadInputError, match="exceeds the limit"):
        read_image(tmp_path / "bomb.png")


def test_jpeg_header_size(tmp_path):
    ok, enc = cv2.imencode(".jpg", np.zeros((33, 47, 3), np.uint8))
    assert image_size_from_header(enc.tobytes()) == (47, 33)


# --------------------------------------------------------------- atomic writes

def test_atomic_write_refuses_overwrite_and_cleans_up(tmp_path):
    p = tmp_path / "a" / "f.bin"
    atomic_write_bytes(p, b"one")
    with pytest.raises(FileExistsError, match="--overwrite"):
        atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"one"
    atomic_write_bytes(p, b"two", overwrite=True)
    assert p.read_bytes() == b"two"
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "a" / "g.bin") as fh:
            fh.write(b"partial")
            raise RuntimeError("boom")
    assert not (tmp_path / "a" / "g.bin").exists()
    assert leftover_temp_files(tmp_path) == []


def test_write_image_roundtrip(tmp_path, real_gray):
    write_image(tmp_path / "x.png", real_gray)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), real_gray)


def test_manifest_fields(tmp_path):
    path = write_manifest(tmp_path, command="filter", args={"out": tmp_path, "ops": ["a"]}, seed=3,
                          counts={"ok": 2})
    m = json.loads(path.read_text())
    from cvtool import __version__

    assert m["cvtool_version"] == __version__
    assert m["command"] == "filter" and m["seed"] == 3 and m["counts"] == {"ok": 2}
    assert m["args"]["out"] == str(tmp_path) and "python" in m["libraries"]

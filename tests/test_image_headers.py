"""Image headers: EXIF orientation, corrupt JPEG data, decompression bombs (#12, #13).

References: ``cv2.imread`` (OpenCV's own orientation handling), Pillow's
``ImageOps.exif_transpose``, ``tifffile`` for stored TIFF pixels, and the sizes
the decoder actually returns for mutated files.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from cvtool.errors import BadInputError
from cvtool.io.headers import HeaderError, parse_header
from cvtool.io.images import decode_image, image_size_from_header, read_image, read_image_size

RNG = np.random.default_rng(12)
PATTERN = RNG.integers(0, 255, (12, 20, 3), dtype=np.uint8)  # RGB, not symmetric under any flip


def _pil_bytes(rgb: np.ndarray, fmt: str, orientation: int | None = None, **kw) -> bytes:
    im = Image.fromarray(rgb)
    if orientation is not None:
        if fmt == "TIFF":
            kw["tiffinfo"] = {274: orientation}
        else:
            exif = Image.Exif()
            exif[274] = orientation
            kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (9, 9), 3)


# ------------------------------------------------------------- EXIF orientation

FORMATS = [("JPEG", ".jpg", {"quality": 100}), ("PNG", ".png", {}), ("WEBP", ".webp", {"lossless": True})]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt,ext,kw", FORMATS, ids=[f[0] for f in FORMATS])
def test_exif_orientation_matches_cv2_imread_and_pillow(tmp_path, fmt, ext, kw, orientation):
    data = _pil_bytes(PATTERN, fmt, orientation, **kw)
    path = tmp_path / f"phone{ext}"
    path.write_bytes(data)
    got = read_image(path)
    ref = cv2.imread(str(path))  # OpenCV applies the tag when reading colour
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    pil = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]
    assert got.shape == pil.shape
    assert np.abs(got.astype(int) - pil).max() <= (8 if fmt == "JPEG" else 0)
    # header-only size is the size read_image returns
    assert image_size_from_header(data) == read_image_size(path) == (got.shape[1], got.shape[0])
    # turned off: the pixels as stored
    raw = read_image(path, exif_orientation=False)
    stored = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]
    assert raw.shape == stored.shape == (12, 20, 3)
    assert image_size_from_header(data, exif_orientation=False) == (20, 12)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_applied_like_opencv_and_undone_on_request(orientation):
    import tifffile

    data = _pil_bytes(PATTERN, "TIFF", orientation)
    got = decode_image(data)
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(got, ref)
    pil = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[:, :, ::-1]
    np.testing.assert_array_equal(got, pil)
    assert image_size_from_header(data) == (got.shape[1], got.shape[0])
    raw = decode_image(data, exif_orientation=False)
    np.testing.assert_array_equal(raw[:, :, ::-1], tifffile.imread(io.BytesIO(data)))


def test_phone_photo_through_filter_and_detect_sizes(tmp_path, cli):
    # A "portrait" phone photo: stored landscape 64x48 with orientation 6.
    rgb = _smooth(48, 64)
    data = _pil_bytes(rgb, "JPEG", 6, quality=95)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "phone.jpg").write_bytes(data)
    res = cli(["filter", tmp_path / "in", "--out", tmp_path / "out", "gray", "--format", "png", "-j", "1"])
    assert res.exit_code == 0, res.output
    out = cv2.imread(str(tmp_path / "out" / "phone.png"), cv2.IMREAD_UNCHANGED)
    ref = cv2.cvtColor(cv2.imread(str(tmp_path / "in" / "phone.jpg")), cv2.COLOR_BGR2GRAY)
    assert out.shape == (64, 48)
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_orientation_off_by_environment(tmp_path, monkeypatch):
    data = _pil_bytes(PATTERN, "PNG", 8)
    monkeypatch.setenv("CVTOOL_EXIF_ORIENTATION", "0")
    assert decode_image(data).shape == (12, 20, 3)
    assert image_size_from_header(data) == (20, 12)
    monkeypatch.setenv("CVTOOL_EXIF_ORIENTATION", "1")
    assert decode_image(data).shape == (20, 12, 3)


# --------------------------------------------------- truncated / valid JPEG data


def _jpeg(rgb: np.ndarray, **kw) -> bytes:
    return _pil_bytes(rgb, "JPEG", **kw)


def test_truncated_jpeg_closed_with_end_marker_is_refused():
    data = _jpeg(_smooth(480, 640), quality=90)
    cut = data[: len(data) // 2] + b"\xff\xd9"
    with pytest.raises(BadInputError, match="corrupt or truncated JPEG data .*premature end of data segment"):
        decode_image(cut, path="half.jpg")


def test_truncated_jpeg_refused_from_cli_exit_1(tmp_path, cli):
    data = _jpeg(_smooth(120, 160), quality=90)
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    res = cli(["filter", tmp_path / "half.jpg", "--out", tmp_path / "o", "gray", "-j", "1"])
    assert res.exit_code == 1
    assert "half.jpg" in res.output and "premature end" in res.output
    assert not (tmp_path / "o" / "half.jpg").exists()


@pytest.mark.parametrize("kind", ["baseline", "progressive", "restart", "trailer", "grey", "subsample444"])
def test_valid_jpegs_still_decode_like_opencv(kind):
    rgb = _smooth(97, 131, seed=3)
    if kind == "baseline":
        data = _jpeg(rgb, quality=85)
    elif kind == "progressive":
        data = _jpeg(rgb, quality=85, progressive=True)
    elif kind == "restart":
        ok, enc = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
        data = enc.tobytes()
        assert b"\xff\xd0" in data and b"\xff\xdd" in data
    elif kind == "trailer":
        # Phones append data after EOI (Samsung "SEFH" trailers, MPF second images):
        # a whole second JPEG with a huge frame header must be ignored.
        big = bytearray(_jpeg(rgb[:8, :8], quality=50))
        j = big.index(b"\xff\xc0")
        big[j + 5:j + 9] = struct.pack(">HH", 60000, 60000)
        data = _jpeg(rgb, quality=85) + b"\x00\x00SEFHtrailer" + bytes(big) + b"SEFT"
    elif kind == "grey":
        data = _pil_bytes(rgb[:, :, 0], "JPEG", quality=85)
    else:
        data = _jpeg(rgb, quality=85, subsampling=0)
    got = decode_image(data, max_pixels=1_000_000)
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(got, ref)


def test_real_photo_decodes(china_bgr):
    ok, enc = cv2.imencode(".jpg", china_bgr)
    np.testing.assert_array_equal(decode_image(enc.tobytes()), cv2.imdecode(enc, cv2.IMREAD_UNCHANGED))


# ------------------------------------------------------------ decompression bombs


def _jpeg_bomb(width: int, height: int, colour: bool) -> bytes:
    """A small JPEG whose real SOF declares width x height, hidden from a naive
    parser: FF 00 before it (a stuffed byte libjpeg discards, not a marker with a
    length) jumps a naive parser into an APP15 segment holding a fake 16x16 SOF."""
    tiny = _jpeg(np.zeros((8, 8, 3), np.uint8), quality=50) if colour else \
        _pil_bytes(np.zeros((8, 8), np.uint8), "JPEG", quality=50)
    j = tiny.index(b"\xff\xc0")
    seg_len = struct.unpack(">H", tiny[j + 2:j + 4])[0]
    sof = bytearray(tiny[j:j + 2 + seg_len])
    sof[5:9] = struct.pack(">HH", height, width)
    fake = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 16, 16, 1) + b"\x01\x11\x00"
    app15 = b"\xff\xef" + struct.pack(">H", 2 + len(fake)) + fake
    decoy = b"\xff\x00" + struct.pack(">H", len(sof) + 6)  # old parser: 2 + 0x.. bytes on, into APP15
    rest = tiny[2:j] + tiny[j + 2 + seg_len:]
    return b"\xff\xd8" + decoy + bytes(sof) + app15 + rest


def test_bomb_jpeg_real_frame_found_behind_decoy():
    data = _jpeg_bomb(30000, 30000, colour=False)
    assert len(data) < 1000
    h = parse_header(data)
    assert (h.max_width, h.max_height) == (30000, 30000)
    assert image_size_from_header(data) == (30000, 30000)
    with pytest.raises(BadInputError, match="30000x30000 = 900000000 pixels exceeds the limit of 1000000"):
        decode_image(data, path="bomb.jpg", max_pixels=1_000_000)


def _run_limited(args: list[str], *, cwd: Path, mem_bytes: int, timeout: float) -> tuple[subprocess.CompletedProcess, int]:
    """Run a command with RLIMIT_AS; return the result and the child's peak RSS in KiB."""
    code = (
        "import resource, subprocess, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({mem_bytes}, {mem_bytes}))\n"
        f"p = subprocess.run({args!r}, capture_output=True, text=True, timeout={timeout})\n"
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "sys.stderr.write(f'\\nPEAK_RSS_KIB={peak}\\n'); sys.exit(p.returncode)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout + 30, env={**os.environ, "NO_COLOR": "1"})
    peak = int(res.stderr.rsplit("PEAK_RSS_KIB=", 1)[1].split()[0])
    return res, peak


@pytest.mark.parametrize("command", [["filter", "bomb.jpg", "--out", "o", "gray"],
                                     ["edges", "bomb.jpg", "sobel", "--out", "o"],
                                     ["hog", "bomb.jpg", "--out", "o"]], ids=["filter", "edges", "hog"])
def test_bomb_refused_from_cli_without_allocating(tmp_path, command):
    (tmp_path / "bomb.jpg").write_bytes(_jpeg_bomb(18000, 18000, colour=True))
    cvtool = str(Path(sys.executable).parent / "cvtool")
    args = [cvtool, *command, "--max-pixels", "1000000", "-j", "1"]
    res, peak_kib = _run_limited(args, cwd=tmp_path, mem_bytes=3 << 30, timeout=120)
    err = res.stderr.split("\nPEAK_RSS_KIB=")[0].strip()
    assert res.returncode == 1, err
    assert "bomb.jpg: 18000x18000 = 324000000 pixels exceeds the limit of 1000000" in err
    assert "Traceback" not in err and "bad_alloc" not in err
    assert peak_kib < 600 * 1024  # decoding would need 18000*18000*3 bytes = 927 MiB more


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png_bytes(w: int, h: int) -> bytes:
    raw = b"".join(b"\x00" + bytes(w) for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def test_png_ihdr_must_be_first_and_apng_frames_count():
    good = _png_bytes(4, 3)
    assert parse_header(good).size() == (4, 3)
    # a chunk before IHDR: libpng refuses it, so do we (the old parser gave None -> PIL)
    moved = good[:8] + _png_chunk(b"tEXt", b"a\x00b") + good[8:]
    with pytest.raises(HeaderError, match="IHDR is not the first chunk"):
        parse_header(moved)
    # APNG: a frame control chunk declaring a larger frame is counted
    actl = _png_chunk(b"acTL", struct.pack(">II", 1, 0))
    fctl = _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, 5000, 4000, 10, 10, 1, 1, 0, 0))
    apng = good[:33] + actl + fctl + good[33:]
    h = parse_header(apng)
    assert (h.width, h.height) == (4, 3) and h.max_pixels == 5010 * 4010
    with pytest.raises(BadInputError, match="exceeds the limit of 1000000"):
        decode_image(apng, max_pixels=1_000_000)


def _tiff_multipage(sizes: list[tuple[int, int]], tiles: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    import tifffile

    with tifffile.TiffWriter(buf) as tw:
        for w, h in sizes:
            tw.write(np.zeros((h, w), np.uint8), tile=tiles, photometric="minisblack")
    return buf.getvalue()


def test_tiff_every_page_and_tile_counts():
    data = _tiff_multipage([(16, 8), (3000, 2000)])
    h = parse_header(data)
    assert (h.width, h.height) == (16, 8)
    assert h.max_pixels == 6_000_000
    assert decode_image(data).shape == (8, 16)
    with pytest.raises(BadInputError, match="3000x2000"):
        decode_image(data, max_pixels=1_000_000)
    tiled = _tiff_multipage([(32, 32)], tiles=(16, 16))
    assert parse_header(tiled).size() == (32, 32) and parse_header(tiled).max_pixels == 32 * 32
    # a tile declared far larger than the image counts (the tile buffer is what gets allocated)
    import tifffile

    with tifffile.TiffFile(io.BytesIO(tiled)) as tf:
        tag = tf.pages[0].tags["TileWidth"]
        offset = tag.valueoffset
    patched = bytearray(tiled)
    patched[offset:offset + 2] = struct.pack("<H", 4096)
    assert parse_header(bytes(patched)).max_pixels == 4096 * 16
    import tifffile

    big = io.BytesIO()
    tifffile.imwrite(big, np.zeros((16, 16), np.uint8), bigtiff=True)
    assert parse_header(big.getvalue()).size() == (16, 16)


def test_bmp_gif_pnm_pam_pfm_webp_sun_hdr_jp2_sizes_match_decoder():
    cases = {}
    img = _smooth(21, 34)
    cases["bmp"] = cv2.imencode(".bmp", img)[1].tobytes()
    top_down = bytearray(cases["bmp"])
    top_down[22:26] = struct.pack("<i", -21)
    cases["bmp-topdown"] = bytes(top_down)
    cases["pgm"] = b"P5\n# a comment\n34 # trailing\n21\n255\n" + bytes(34 * 21)
    cases["ppm"] = cv2.imencode(".ppm", img)[1].tobytes()
    cases["pbm"] = b"P1\n34 21\n" + b"0 " * (34 * 21)
    cases["pam"] = cv2.imencode(".pam", img)[1].tobytes()
    cases["pfm"] = cv2.imencode(".pfm", img.astype(np.float32))[1].tobytes()
    cases["webp-lossy"] = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
    cases["webp-lossless"] = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    cases["webp-vp8x"] = _pil_bytes(img, "WEBP", 1, lossless=True)
    cases["gif"] = _pil_bytes(img, "GIF")
    cases["sun"] = cv2.imencode(".ras", img)[1].tobytes()
    cases["hdr"] = cv2.imencode(".hdr", img.astype(np.float32))[1].tobytes()
    cases["jp2"] = _pil_bytes(img, "JPEG2000", num_resolutions=2)
    cases["j2k"] = _pil_bytes(img, "JPEG2000", num_resolutions=2, no_jp2=True)
    for name, data in cases.items():
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded is not None, name
        assert parse_header(data).size() == (34, 21), name
        assert decode_image(data).shape[:2] == (21, 34), name


def test_gif_frame_beyond_screen_counts():
    data = bytearray(_pil_bytes(_smooth(4, 4), "GIF"))
    j = data.index(b"\x2c", 13)  # first image descriptor after the colour table
    data[j + 5:j + 9] = struct.pack("<HH", 3000, 3000)
    assert parse_header(bytes(data)).max_pixels == 9_000_000


def test_webp_vp8x_canvas_counts():
    data = bytearray(_pil_bytes(_smooth(4, 4), "WEBP", 1, lossless=True))  # EXIF: a VP8X container
    j = data.index(b"VP8X")
    data[j + 12:j + 18] = bytes([0xFF, 0x0F, 0, 0xFF, 0x0F, 0])  # canvas 4096 x 4096
    assert parse_header(bytes(data)).max_pixels == 4096 * 4096


@pytest.mark.parametrize("data,reason", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9", "no image"),
    (b"\xff\xd8\xff\xdb\x00\x43" + bytes(65), "no start-of-scan"),
    (b"RIFF\x20\x00\x00\x00WEBPJUNK\x04\x00\x00\x00abcd" + bytes(12), "no VP8X, VP8 or VP8L"),
    (b"\x00\x00\x00\x1cftypavif", "not a recognised image format"),
    (b"II*\x00\x08\x00\x00\x00\x00\x00", "first page has no ImageWidth"),
    (b"P5\n-3 4\n255\n", "expected a size"),
    (b"BM" + bytes(12) + struct.pack("<Iii", 40, 0, 5) + bytes(20), "empty image"),
])
def test_headers_without_a_size_are_refused(data, reason):
    with pytest.raises(HeaderError, match=reason):
        parse_header(data)
    with pytest.raises(BadInputError):
        decode_image(data, path="x")


# ------------------------------------------------------------------------ fuzzing

_FUZZ_SCRIPT = Path(__file__).with_name("_header_fuzz.py")


def test_fuzzed_headers_never_under_declare_what_the_decoder_allocates():
    """Mutated valid files: the parser refuses, or the decoder's output has at most
    the pixels the parser declared.  Run in a child limited to 3 GiB of address space
    so a parser bug cannot take the machine down."""
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": str(1 << 26)}
    res = subprocess.run([sys.executable, str(_FUZZ_SCRIPT)], capture_output=True, text=True, timeout=300,
                         env=env, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "fuzz ok" in res.stdout


def test_read_image_size_reads_the_head_or_the_whole_file_when_needed(tmp_path):
    # libtiff writes the image directory after the strips: past the first 256 KiB here
    img = _smooth(400, 300)
    tif = tmp_path / "big.tif"
    assert cv2.imwrite(str(tif), img, [cv2.IMWRITE_TIFF_COMPRESSION, 1])
    assert tif.stat().st_size > 1 << 18 and struct.unpack("<I", tif.read_bytes()[4:8])[0] > 1 << 18
    assert read_image_size(tif) == (300, 400)
    # a phone JPEG: EXIF first, then a large APP2 (ICC/MPF) pushing the frame header past 256 KiB
    data = _pil_bytes(img[:, :, ::-1], "JPEG", 6, quality=90)
    j = data.index(b"\xff\xdb")
    app2 = b"".join(b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533) for _ in range(5))
    phone = tmp_path / "phone.jpg"
    phone.write_bytes(data[:j] + app2 + data[j:])
    assert read_image_size(phone) == (400, 300) == read_image(phone).shape[1::-1]
    assert read_image_size(phone, exif_orientation=False) == (300, 400)
    with pytest.raises(BadInputError, match="not a recognised image format"):
        (tmp_path / "x.txt").write_text("hello")
        read_image_size(tmp_path / "x.txt")


@pytest.fixture(scope="module")
def hog_model(tmp_path_factory):
    """A tiny HOG+SVM model (about 5 s of CPU) so `detect` can be run on phone photos and bombs."""
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    base = tmp_path_factory.mktemp("model")
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", "detection", "--out", str(base / "data"), "--count", "12", "--seed", "7",
                              "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "hog-svm", "--data", str(base / "data"), "--out", str(base / "run"),
                              "--mine-rounds", "0", "--negatives", "2", "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    return base / "run" / "model.npz"


def test_detect_reports_upright_size_and_refuses_bomb_in_one_line(tmp_path, hog_model):
    # stored 64 wide x 48 high, EXIF orientation 6: upright it is 48 x 64
    (tmp_path / "phone.jpg").write_bytes(_pil_bytes(_smooth(48, 64), "JPEG", 6, quality=95))
    (tmp_path / "bomb.jpg").write_bytes(_jpeg_bomb(18000, 18000, colour=True))
    cvtool = str(Path(sys.executable).parent / "cvtool")
    res, peak_kib = _run_limited([cvtool, "detect", "phone.jpg", "bomb.jpg", "--model", str(hog_model),
                                  "--out", "det", "--max-pixels", "1000000"],
                                 cwd=tmp_path, mem_bytes=3 << 30, timeout=180)
    err = res.stderr.split("\nPEAK_RSS_KIB=")[0]
    assert res.returncode == 1, err
    assert "bomb.jpg: 18000x18000 = 324000000 pixels exceeds the limit of 1000000" in err
    assert "Traceback" not in err and "bad_alloc" not in err
    [rec] = [json.loads(line) for line in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert (rec["file"], rec["width"], rec["height"]) == ("phone.jpg", 48, 64)
    assert peak_kib < 900 * 1024  # the bomb alone would need 18000*18000*3 bytes = 927 MiB


def test_corrupt_jpeg_attributed_right_when_threads_decode_at_once(capfd):
    """Several threads share the stderr capture: each truncated file is refused, each good one
    decodes, and what other code writes to stderr meanwhile is not lost."""
    import threading

    good = _jpeg(_smooth(120, 160), quality=90)
    bad = good[: len(good) // 2] + b"\xff\xd9"
    ref = cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_UNCHANGED)
    errors: list[str] = []

    def work(k: int) -> None:
        for i in range(25):
            if (i + k) % 3 == 0:
                try:
                    decode_image(bad, path=f"bad{k}-{i}.jpg")
                    errors.append(f"bad{k}-{i} decoded")
                except BadInputError as exc:
                    if "premature end of data segment" not in str(exc):
                        errors.append(str(exc))
            else:
                if not np.array_equal(decode_image(good), ref):
                    errors.append(f"good{k}-{i} differs")
            os.write(2, f"note {k}-{i}\n".encode())

    before = os.fstat(2)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)  # stderr restored
    err = capfd.readouterr().err
    assert all(f"note {k}-{i}\n" in err for k in range(4) for i in range(25))
    assert "premature end" not in err  # turned into errors, not printed


def test_png_with_bytes_after_iend_decodes_and_truncated_png_refused():
    ok, enc = cv2.imencode(".png", _smooth(30, 40))
    data = enc.tobytes()
    trailed = data + b"trailer written by some tool" * 3
    np.testing.assert_array_equal(decode_image(trailed), cv2.imdecode(enc, cv2.IMREAD_UNCHANGED))
    with pytest.raises(BadInputError, match="truncated PNG"):
        decode_image(data[:-12] + b"IEND" * 2)


@pytest.mark.parametrize("global_table", [False, True])
def test_gif_frames_found_with_or_without_colour_tables(global_table):
    """A 4x4 logical screen whose second frame declares 3000x3000 (with and without a
    global colour table, with a local one on the big frame)."""
    flags = 0x80 if global_table else 0x00  # 2-entry global table when set
    head = b"GIF89a" + struct.pack("<HHBBB", 4, 4, flags, 0, 0) + (bytes(6) if global_table else b"")
    small = b"\x2c" + struct.pack("<HHHHB", 0, 0, 4, 4, 0 if global_table else 0x80) \
        + (b"" if global_table else bytes(6)) + b"\x02\x02\x44\x01\x00"
    big = b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 3000, 3000, 0x80) \
        + bytes(6) + b"\x02\x02\x44\x01\x00"
    h = parse_header(head + small + big + b"\x3b")
    assert (h.width, h.height) == (4, 4)
    assert h.max_pixels == 9_000_000


def test_quoted_libjpeg_text_on_stderr_does_not_fail_good_jpegs(capfd):
    """cvtool's own error lines quote libjpeg's warning; written by another thread while a good
    JPEG decodes, they must neither fail that decode nor be swallowed from stderr."""
    import threading

    good = _jpeg(_smooth(120, 160), quality=90)
    ref = cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_UNCHANGED)
    stop = threading.Event()
    errors: list[str] = []

    def shout() -> None:
        i = 0
        while not stop.is_set():
            os.write(2, f"error: x{i}.jpg: corrupt or truncated JPEG data (libjpeg: Corrupt JPEG data: "
                        f"premature end of data segment)\n".encode())
            i += 1

    def decode_good() -> None:
        for _ in range(60):
            try:
                if not np.array_equal(decode_image(good), ref):
                    errors.append("differs")
            except BadInputError as exc:
                errors.append(str(exc))

    shouter = threading.Thread(target=shout)
    shouter.start()
    workers = [threading.Thread(target=decode_good) for _ in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    shouter.join()
    assert errors == []
    assert "error: x0.jpg: corrupt or truncated JPEG data" in capfd.readouterr().err


@pytest.mark.parametrize("jobs", [["-j", "1"], ["-j", "2", "--backend", "threading"]])
def test_folder_with_some_corrupt_jpegs_fails_exactly_those(tmp_path, cli, jobs):
    """The error line printed for one corrupt file must not be taken for the next file's warning."""
    good = _jpeg(_smooth(120, 160), quality=90)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes(good[: len(good) // 2] + b"\xff\xd9" if i in (1, 3) else good)
    res = cli(["edges", folder, "--out", tmp_path / "out", "canny", *jobs, "--json"])
    assert res.exit_code == 1
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["summary"]["ok"] == 4 and summary["summary"]["failed"] == 2, res.output
    assert sorted(Path(f["path"]).name for f in summary["failures"]) == ["1.jpg", "3.jpg"]
    written = sorted(p.stem for p in (tmp_path / "out").iterdir() if p.name != "run.json")
    assert written == ["0", "2", "4", "5"]

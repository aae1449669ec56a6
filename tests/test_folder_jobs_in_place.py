"""Folder jobs never replace their own inputs unless asked with --in-place (#12)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture()
def photos(tmp_path):
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "coins.png"), data.coins()[:60, :70])
    cv2.imwrite(str(folder / "camera.png"), data.camera()[:50, :40])
    return folder


def _originals(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.mark.parametrize("argv", [
    ["filter", "{in}", "--out", "{out}", "median:k=3", "--overwrite"],
    ["edges", "{in}", "--out", "{out}", "sobel", "--overwrite"],
    ["filter", "{in}/coins.png", "--out", "{out}", "gaussian", "--overwrite"],
])
@pytest.mark.parametrize("out_is", ["same", "link"])
def test_out_at_the_inputs_is_refused(cli, photos, tmp_path, argv, out_is):
    before = _originals(photos)
    out = photos
    if out_is == "link":
        out = tmp_path / "link"
        out.symlink_to(photos, target_is_directory=True)
    res = cli([a.replace("{in}", str(photos)).replace("{out}", str(out)) for a in argv] + ["--jobs", "1"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--in-place" in lines[0]
    assert _originals(photos) == before
    assert not (photos / "run.json").exists()


def test_in_place_replaces_when_asked(cli, photos):
    before = _originals(photos)
    res = cli(["filter", photos, "--out", photos, "invert", "--overwrite", "--in-place", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    after = _originals(photos)
    for name, data in before.items():
        want = 255 - cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.imread(str(photos / name), cv2.IMREAD_UNCHANGED), want)
        assert after[name] != data


def test_other_outputs_beside_the_inputs_are_allowed(cli, photos):
    """--out at the input folder is fine when no output lands on an input (other extension)."""
    res = cli(["edges", photos, "--out", photos, "canny", "--format", "tif", "--jobs", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (photos / "coins.tif").is_file() and (photos / "camera.tif").is_file()


def test_selective_search_drawings_over_inputs_refused(cli, tmp_path):
    from skimage import data

    draw = tmp_path / "out" / "draw"
    draw.mkdir(parents=True)
    cv2.imwrite(str(draw / "coins.png"), data.coins()[:60, :70])
    before = (draw / "coins.png").read_bytes()
    res = cli(["selective-search", draw, "--out", tmp_path / "out", "--draw", "3", "--overwrite", "--jobs", "1"])
    assert res.exit_code == 2 and "--in-place" in res.stderr
    assert (draw / "coins.png").read_bytes() == before

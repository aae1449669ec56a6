"""A folder job on a real dask.distributed cluster gives byte-identical outputs to the local run."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as lc:
        yield lc


@pytest.fixture()
def folder(tmp_path, real_color_bgr, real_gray):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(src / f"c{i}.png"), np.roll(real_color_bgr[::4, ::4], 17 * i, axis=1))
        cv2.imwrite(str(src / "sub" / f"g{i}.png"), np.roll(real_gray[::4, ::4], 11 * i, axis=0))
    cv2.imwrite(str(src / "deep.png"), real_gray[::4, ::4].astype(np.uint16) * 257)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return src


def _outputs(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


@pytest.mark.parametrize("command", [
    ["filter", "noise:gaussian:sigma=15", "gaussian:sigma=1.2", "clahe", "--seed", "3"],
    ["edges", "canny"],
])
def test_dask_backend_matches_local_run(cli, cluster, folder, tmp_path, command):
    name, *rest = command
    local, remote = tmp_path / "local", tmp_path / "dask"
    res_local = cli([name, folder, "--out", local, "-r", *rest, "--jobs", "1", "-q"])
    res_dask = cli([name, folder, "--out", remote, "-r", *rest, "--backend", "dask",
                    "--scheduler", cluster.scheduler_address, "-q"])
    assert res_local.exit_code == res_dask.exit_code == 1  # broken.png fails in both
    assert "broken.png" in res_dask.stderr
    a, b = _outputs(local), _outputs(remote)
    assert len(a) == 7 and a == b


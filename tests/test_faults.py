"""Faults: file-size limits while writing, concurrent writers, killed folder jobs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cvtool.io.atomic import leftover_temp_files

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX resource limits and signals")


def _run_py(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_file_size_limit_leaves_no_truncated_file(tmp_path):
    target = tmp_path / "big.bin"
    res = _run_py(f"""
        import resource, sys
        from cvtool.io.atomic import atomic_write_bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
        try:
            atomic_write_bytes({str(target)!r}, b"x" * 100_000)
        except OSError as exc:
            print("OSError", exc.errno)
            sys.exit(1)
    """)
    assert res.returncode == 1 and "OSError 27" in res.stdout  # EFBIG
    assert not target.exists()
    assert leftover_temp_files(tmp_path) == []


def test_file_size_limit_in_a_cli_job_is_a_clear_error(tmp_path):
    import cv2
    import numpy as np

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "noise.png"), rng.integers(0, 255, (300, 300), dtype=np.uint8))
    out = tmp_path / "out"
    code = f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        from cvtool.cli.app import main
        sys.argv = ["cvtool", "filter", {str(src)!r}, "--out", {str(out)!r}, "--jobs", "1", "invert"]
        main()
    """
    res = _run_py(code)
    assert res.returncode == 1, res.stderr
    assert "noise.png" in res.stderr and "Traceback" not in res.stderr
    assert not (out / "noise.png").exists()
    assert leftover_temp_files(tmp_path) == []


def test_two_writers_never_corrupt_a_file(tmp_path):
    target = tmp_path / "shared.bin"
    code = """
        import sys
        from cvtool.io.atomic import atomic_write_bytes
        payload = sys.argv[1].encode() * 200_000
        try:
            atomic_write_bytes(sys.argv[2], payload)
            print("wrote")
        except FileExistsError:
            print("refused")
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), tag, str(target)],
                              stdout=subprocess.PIPE, text=True) for tag in ("A", "B", "C", "D")]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs).count("wrote") == 1 and outs.count("refused") == 3
    data = target.read_bytes()
    assert len(data) == 200_000 and len(set(data)) == 1  # one writer's bytes, whole
    assert leftover_temp_files(tmp_path) == []


def test_killed_folder_job_resumes_to_identical_output(tmp_path):
    """SIGKILL half-way, rerun with --skip-existing: byte-identical to an uninterrupted run."""
    import signal
    import time

    import cv2
    import numpy as np

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(60):
        cv2.imwrite(str(src / f"{i:03d}.png"), rng.integers(0, 255, (300, 300, 3), dtype=np.uint8))
    ops = ["gaussian:sigma=2", "noise:gaussian:sigma=10", "median:k=5"]
    cmd = [sys.executable, "-m", "cvtool", "filter", str(src), "--jobs", "1", "--quiet", "--seed", "3"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(cmd + ["--out", str(ref)] + ops, check=True, timeout=300)
    proc = subprocess.Popen(cmd + ["--out", str(out)] + ops)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 10:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(out.glob("*.png")))
    assert 0 < done_before < 60, "the job should have been killed half-way"
    # what a kill during a write leaves: a temp file of a dead process (PID 2**22 + 1 never runs here)
    (out / f".{done_before:03d}.png.cvtool-tmp-{2**22 + 1}-deadbeef").write_bytes(b"partial")
    res = subprocess.run(cmd + ["--out", str(out), "--skip-existing"] + ops, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in ref.glob("*.png"))
    assert sorted(p.name for p in out.glob("*.png")) == names
    for name in names:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert leftover_temp_files(out) == []

"""Faults: file-size limits while writing, concurrent writers, killed folder jobs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

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
            print("OSError", exc.errno, exc)
            sys.exit(1)
    """)
    assert res.returncode == 1 and "OSError 27" in res.stdout  # EFBIG
    assert f"cannot write {target}: File too large" in res.stdout  # the final name, not the temp file's
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
    assert f"cannot write {out / 'noise.png'}: File too large" in res.stderr  # names the output
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


# ---------------------------------------------------------------------------
# Helpers for the signal tests
# ---------------------------------------------------------------------------


def _group_processes(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, read from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _noise_folder(folder, n: int, shape) -> None:
    import cv2
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, shape, dtype=np.uint8))


def _outputs(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png")) if folder.exists() else []


def test_workers_of_a_killed_parent_stop(tmp_path):
    """SIGKILL the parent of a loky job: its workers exit and write nothing more (#13)."""
    src, out = tmp_path / "in", tmp_path / "out"
    _noise_folder(src, 40, (96, 96, 3))
    cmd = [sys.executable, "-m", "cvtool", "filter", str(src), "--out", str(out), "--jobs", "2",
           "--backend", "loky", "--quiet", "nlmeans:search=61"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: len(_outputs(out)) >= 2, 120), "the job never started writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # every worker (and loky's resource tracker) leaves within seconds, not after the queue drains
        assert _wait_until(lambda: not _group_processes(proc.pid), 15), _group_processes(proc.pid)
        written = _outputs(out)
        assert len(written) < 40
        time.sleep(1.0)
        assert _outputs(out) == written
        assert leftover_temp_files(out) == []
    finally:
        _kill_group(proc.pid)


@pytest.mark.parametrize("jobs,backend", [("1", "loky"), ("2", "loky"), ("2", "threading")])
def test_sigterm_interrupts_a_long_call(tmp_path, jobs, backend):
    """SIGTERM while workers sit in a long OpenCV call: exit 130 promptly, nothing left (#13)."""
    src, out = tmp_path / "in", tmp_path / "out"
    _noise_folder(src, 3, (700, 700, 3))  # nlmeans with a 101-pixel search: minutes per image
    cmd = [sys.executable, "-m", "cvtool", "filter", str(src), "--out", str(out), "--jobs", jobs,
           "--backend", backend, "nlmeans:search=101"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        # the output folder appears once the job is planned (signal handlers are set by then)
        assert _wait_until(lambda: out.exists(), 60)
        time.sleep(1.0)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM was not handled while a long call ran")
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert _wait_until(lambda: not _group_processes(proc.pid), 15), _group_processes(proc.pid)
        assert list(out.iterdir()) == []  # no output, no temp file, no run.json
    finally:
        _kill_group(proc.pid)


@pytest.mark.parametrize("jobs,backend", [(1, "loky"), (2, "loky"), (2, "threading")])
def test_interrupt_removes_temp_files_of_writers_caught_mid_write(tmp_path, jobs, backend):
    """Ctrl-C while every worker is inside an atomic write: no temp file, no output survives."""
    res = _run_py(f"""
        import functools, os, signal, threading, time
        from pathlib import Path, PurePosixPath
        from cvtool.batch import plan_tasks, run_batch
        from cvtool.io.paths import InputFile
        from tests.test_faults import _stuck_writer

        root = Path({str(tmp_path)!r})
        items = [InputFile(PurePosixPath(f"{{i}}.bin"), root / f"{{i}}.bin") for i in range(4)]
        tasks, _ = plan_tasks(items, root / "out")
        def interrupt():  # once each worker has its temp file open
            while len(list((root / "out").glob(".*"))) < {jobs}:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            list(run_batch(_stuck_writer, tasks, jobs={jobs}, backend={backend!r}))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        time.sleep(0.5)  # an abandoned thread must not write after the interruption either
        print(sorted(p.name for p in (root / "out").iterdir()))
        os._exit(0)
    """, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["interrupted", "[]"], res.stdout + res.stderr


def _stuck_writer(task) -> None:
    """A per-image job that hangs half-way through writing its output (a slow encoder)."""
    from cvtool.io.atomic import atomic_open

    with atomic_open(task.out, "wb") as fh:
        fh.write(b"x" * 1000)
        fh.flush()
        for _ in range(300):  # 60 s in short sleeps, like a long computation
            time.sleep(0.2)


# ---------------------------------------------------------------------------
# Disk full: every writer names the file it could not write (#13)
# ---------------------------------------------------------------------------

_EFBIG = "File too large (the file-size limit, ulimit -f)"


def _limited(argv: list[str], limit: int, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI under RLIMIT_FSIZE=limit bytes, SIGXFSZ ignored (so write() fails with EFBIG)."""
    return _run_py(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from cvtool.cli.app import main
        sys.argv = ["cvtool"] + {argv!r}
        main()
    """, **kwargs)


def test_a_failing_stream_names_its_final_file(tmp_path):
    target = tmp_path / "records.jsonl"
    res = _run_py(f"""
        import resource, signal
        from cvtool.io.atomic import atomic_open
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        try:
            with atomic_open({str(target)!r}, "w") as fh:
                for i in range(10_000):
                    fh.write('{{"i": %d}}\\n' % i)
        except OSError as exc:
            print(type(exc).__name__, exc.errno, exc)
    """)
    assert res.stdout.strip() == f"WriteError 27 cannot write {target}: {_EFBIG}"
    assert not target.exists() and leftover_temp_files(tmp_path) == []


def test_run_json_that_cannot_be_written_is_named(tmp_path):
    import cv2
    import numpy as np

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.zeros((4, 4), np.uint8))  # ~70 bytes; run.json is ~1 kB
    res = _limited(["filter", str(src), "--out", str(out), "--jobs", "1", "-q", "invert"], 400)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip() == f"error: cannot write {out / 'run.json'}: {_EFBIG}"
    assert (out / "a.png").exists() and not (out / "run.json").exists()
    assert leftover_temp_files(tmp_path) == []


@pytest.mark.parametrize("extra,name", [([], "train/images/000000.png"),
                                        (["--npz", "--no-png"], "train.npz")])
def test_prepare_detection_on_a_full_disk_names_the_file(tmp_path, extra, name):
    out = tmp_path / "data"
    res = _limited(["prepare", "detection", "--out", str(out), "--count", "6", "--seed", "1", "--jobs", "1",
                    "-q"] + extra, 2048)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert f"cannot write {out / name}: File too large" in res.stderr
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no split, no npz, no temp file


@pytest.fixture(scope="module")
def hog_model(tmp_path_factory):
    from typer.testing import CliRunner

    from cvtool.cli.app import app

    base = tmp_path_factory.mktemp("faults-detect")
    data, run = base / "data", base / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", "detection", "--out", str(data), "--count", "12", "--seed", "7",
                              "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "hog-svm", "--data", str(data), "--out", str(run),
                              "--mine-rounds", "0", "--negatives", "2", "--jobs", "1", "-q"])
    assert res.exit_code == 0, res.output
    return data, run


def test_detect_on_a_full_disk_names_the_jsonl(tmp_path, hog_model):
    data, run = hog_model
    out = tmp_path / "det"
    res = _limited(["detect", str(data / "train" / "images"), "--model", str(run), "--out", str(out),
                    "-q"], 1024)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip() == f"error: cannot write {out / 'detections.jsonl'}: {_EFBIG}"
    assert [p for p in out.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------
# SIGTERM at each stage of a folder job, then a resumed run (#13)
# ---------------------------------------------------------------------------

_STAGE_OPS = ["gaussian:sigma=2", "noise:gaussian:sigma=10"]

# Patches that send SIGTERM to the process from inside one stage of the job.
_STAGE_PATCHES = {
    "plan": """
        import cvtool.batch as target
        original = target.plan_tasks
        def patched(*a, **k):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return original(*a, **k)
        target.plan_tasks = patched
    """,
    "write": """
        import cvtool.io.images as target
        original, calls = target.write_image, []
        def patched(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)
            return original(*a, **k)
        target.write_image = patched
    """,
    "run.json": """
        import cvtool.io.manifest as target
        from cvtool.io.atomic import atomic_open
        def patched(path, text, *, overwrite=False):
            with atomic_open(path, "w", overwrite=overwrite) as fh:
                fh.write(text[:100])
                fh.flush()
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                fh.write(text[100:])
        target.atomic_write_text = patched
    """,
}


@pytest.fixture(scope="module")
def stage_job(tmp_path_factory):
    base = tmp_path_factory.mktemp("stages")
    src, ref = base / "in", base / "ref"
    _noise_folder(src, 8, (64, 80, 3))
    cmd = [sys.executable, "-m", "cvtool", "filter", str(src), "--out", str(ref), "--seed", "4", "-q",
           *_STAGE_OPS]
    subprocess.run(cmd, check=True, timeout=120)
    return src, ref


@pytest.mark.parametrize("stage,jobs,backend", [("plan", "1", "loky"), ("write", "1", "loky"),
                                                ("write", "2", "threading"), ("run.json", "1", "loky")])
def test_sigterm_at_each_stage_then_resume(tmp_path, stage_job, stage, jobs, backend):
    """Interrupted anywhere: exit 130, no temp file, only complete outputs; resumed: a clean run's bytes."""
    src, ref = stage_job
    out = tmp_path / "out"
    argv = ["filter", str(src), "--out", str(out), "--seed", "4", "-q", "--jobs", jobs, "--backend", backend]
    res = _run_py("import os, signal, sys, time\n" + textwrap.dedent(_STAGE_PATCHES[stage]) + textwrap.dedent(f"""
        from cvtool.cli.app import main
        sys.argv = ["cvtool"] + {argv + _STAGE_OPS!r}
        main()
    """))
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip() == "error: interrupted"
    assert leftover_temp_files(tmp_path) == [] and not (out / "run.json").exists()
    done = _outputs(out)
    assert len(done) < 8 if stage != "run.json" else len(done) == 8
    for name in done:  # whatever was written is complete
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    res = _run_py(f"""
        import sys
        from cvtool.cli.app import main
        sys.argv = ["cvtool"] + {argv + ["--skip-existing"] + _STAGE_OPS!r}
        main()
    """)
    assert res.returncode == 0, res.stderr
    assert _outputs(out) == _outputs(ref)
    for name in _outputs(ref):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert (out / "run.json").exists() and leftover_temp_files(tmp_path) == []


def test_prepare_augment_on_a_full_disk_names_the_file(tmp_path, hog_model):
    data, _ = hog_model
    out = tmp_path / "aug"
    res = _limited(["prepare", "augment", str(data), "--out", str(out), "--jobs", "1", "-q"], 2048)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip() == f"error: cannot write {out / 'train' / 'images' / '000000.png'}: {_EFBIG}"
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_prepare_workers_of_a_killed_parent_stop(tmp_path):
    """prepare maps its own chunks with loky: those workers also stop with their parent (#13)."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cvtool", "prepare", "detection", "--count", "3000", "--canvas", "256x256",
           "--out", str(out), "--jobs", "2", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        # workers are running once the scratch folders fill with PNGs
        assert _wait_until(lambda: len(list(tmp_path.rglob("*.png"))) >= 5, 120), "no worker started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _wait_until(lambda: not _group_processes(proc.pid), 15), _group_processes(proc.pid)
    finally:
        _kill_group(proc.pid)


RCNN_SCRIPT = """
import sys, numpy as np
from cvtool.detectors.rcnn import ProposalSettings, proposals_for
rng = np.random.default_rng(0)
images = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(32)]
while True:
    proposals_for(images, ProposalSettings(mode="fast"), jobs=2)
    print("round", flush=True)  # every worker has run a task by now
"""


def test_rcnn_proposal_workers_stop_with_a_killed_parent(tmp_path):
    """R-CNN maps selective search over its own loky pool: those workers must not outlive the parent (#13)."""
    proc = subprocess.Popen([sys.executable, "-c", RCNN_SCRIPT], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "round"
        assert len(_group_processes(proc.pid)) >= 3, "no worker process"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _wait_until(lambda: not _group_processes(proc.pid), 60), _group_processes(proc.pid)
    finally:
        _kill_group(proc.pid)

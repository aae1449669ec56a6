"""Untrusted files never run code and never reach outside the dataset root."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cvtool.datasets.core import safe_join
from cvtool.errors import BadInputError


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../b.png", "", "C:\\x.png",
                                  "..\\..\\x.png"])
def test_names_escaping_the_root_are_refused(tmp_path, name):
    with pytest.raises(BadInputError):
        safe_join(tmp_path, name)


def test_symlink_pointing_outside_is_refused(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "images" / "link.png")
    with pytest.raises(BadInputError, match="outside the dataset root"):
        safe_join(root, "images/link.png")
    (root / "images" / "ok.png").write_bytes(b"x")
    assert safe_join(root, "images/ok.png") == root / "images" / "ok.png"


def _npz_with_pickle(path: Path, marker: Path) -> None:
    """An .npz whose 'kind' member is a pickled object array carrying the payload."""
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("kind.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array([_Payload(str(marker))], dtype=object),
                                      allow_pickle=True)


def test_model_npz_with_pickle_payload_is_refused(tmp_path):
    from cvtool.detectors import load_detector, read_model_kind

    marker = tmp_path / "PWNED"
    model = tmp_path / "model.npz"
    _npz_with_pickle(model, marker)
    with pytest.raises(BadInputError, match="not a cvtool model file"):
        read_model_kind(model)
    with pytest.raises(BadInputError):
        load_detector(tmp_path)  # run folder holding model.npz
    assert not marker.exists()


def test_torch_checkpoint_with_pickle_payload_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from cvtool.detectors import read_model_kind

    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "weights" / "best.pt"
    ckpt.parent.mkdir()
    torch.save({"kind": "localizer", "evil": _Payload(str(marker))}, ckpt)
    with pytest.raises(BadInputError) as exc:
        read_model_kind(tmp_path)
    assert not marker.exists()
    # the message must not relay torch's advice to re-run with weights_only=False
    assert "weights_only" not in str(exc.value) and "refused without running any code" in str(exc.value)
    # and a plain pickle file renamed .pt
    with open(tmp_path / "plain.pt", "wb") as fh:
        pickle.dump(_Payload(str(marker)), fh)
    with pytest.raises(BadInputError):
        read_model_kind(tmp_path / "plain.pt")
    assert not marker.exists()


def test_atomic_write_never_follows_a_link_planted_at_its_temp_name(tmp_path, monkeypatch):
    """A link at the (guessed) temp name must not redirect the write to another file."""
    import secrets

    from cvtool.io import atomic

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(secrets, "token_hex", lambda n: "deadbeef")
    planted = atomic.temp_path_for(out / "result.bin")
    os.symlink(victim, planted)
    with pytest.raises(OSError, match="cannot write .*result.bin"):
        atomic.atomic_write_bytes(out / "result.bin", b"attacker-controlled name, our bytes")
    assert victim.read_text() == "precious"
    assert not (out / "result.bin").exists()


def test_run_lock_never_follows_a_link_planted_at_its_name(tmp_path):
    """A run folder whose lock name is a symlink: the lock refuses it, the link's target is untouched (#13)."""
    from cvtool.io.atomic import WriteError
    from cvtool.runner.lock import LOCK_NAME, run_folder_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).symlink_to(victim)
    with pytest.raises(WriteError, match=LOCK_NAME):
        with run_folder_lock(run):
            pass
    assert victim.read_text() == "precious"

"""Checkpoints: plain dictionaries of tensors, numbers, strings, lists and dicts.

A cvtool checkpoint is what :func:`save_checkpoint` writes: a ``dict`` with

==================  ==========================================================
key                 meaning
==================  ==========================================================
``format``          ``"cvtool-checkpoint"`` (what makes the file ours)
``format_version``  ``1``
``kind``            detector kind (``localizer``, ``single-shot``, ``rcnn``)
``classes``         class names (labels index this list)
``category_ids``    the dataset category id of each class
``model``           the model's ``state_dict``
``model_config``    what the kind needs to rebuild the network
``optimizer``,      their ``state_dict`` (empty dicts when not saved)
``scheduler``,
``scaler``
``epoch``           completed epochs; ``batch``: batches done in the next one
``config``          the training settings (``TrainConfig`` as a dict)
``cvtool_version``  the version that wrote it
==================  ==========================================================

Files are read with ``torch.load(weights_only=True)``, which never runs code
from the file, and only such plain values may be saved (checked before writing,
so a checkpoint that saves is a checkpoint that loads).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cvtool.errors import BadInputError, CvtoolError

FORMAT = "cvtool-checkpoint"
FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None))


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise ``TypeError`` unless ``value`` holds only tensors, numbers, strings, lists, tuples and dicts."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; use str or int keys")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only tensors, numbers, "
                    "strings, lists and dicts (loadable with torch.load(weights_only=True))")


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + rename; replaces an older file).

    Parameters
    ----------
    path : path-like
        Destination, e.g. ``RUN/weights/last.pt``; parent folders are created.
    state : mapping
        Must hold ``kind``; ``format`` and ``format_version`` are added.

    Raises
    ------
    TypeError
        ``state`` holds something other than plain values (see :func:`check_plain`).
    CvtoolError
        The write failed (full disk, file-size limit, permissions); the message
        names the file, and nothing is left under ``path`` or beside it.
    """
    from cvtool.io.atomic import atomic_open

    if "kind" not in state:
        raise ValueError("checkpoint state needs a 'kind'")
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    check_plain(full)
    path = Path(path)
    # Serialised in memory first (checkpoints here are megabytes), so a failing disk
    # surfaces as the OSError of a plain write, with its errno, not as a zip-writer error.
    buf = io.BytesIO()
    torch.save(full, buf)
    try:
        with atomic_open(path, "wb", overwrite=True) as fh:
            fh.write(buf.getbuffer())
    except OSError as exc:  # the temp file is gone; nothing appears under ``path``
        reason = exc.strerror or type(exc).__name__
        if exc.errno == errno.EFBIG:
            reason += " (the file-size limit, ulimit -f)"
        raise CvtoolError(f"{path}: cannot save the checkpoint: {reason}") from None
    return path


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a cvtool checkpoint safely (``torch.load(weights_only=True)``).

    Parameters
    ----------
    path : path-like
        A ``.pt`` file written by :func:`save_checkpoint`.
    map_location : str or torch.device
        Where tensors land (default the CPU, so CPU-only machines read GPU checkpoints).

    Returns
    -------
    dict
        The saved state (see the module docstring).

    Raises
    ------
    BadInputError
        The file is missing, truncated, not a torch file, contains anything that
        would need code to unpickle (refused, never run), or is not a cvtool checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: no such checkpoint file")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise BadInputError(f"{p}: not a cvtool checkpoint (checkpoints are torch zip archives; "
                            "this file is something else)")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, TypeError, KeyError, IndexError, UnicodeDecodeError,
            OSError) as exc:
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc):
            # torch's own text suggests loading unsafely; never pass that on.
            reason = "it holds objects other than tensors and plain values; refused without running any code"
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = f"{type(exc).__name__}: {first[:200]}"
        raise BadInputError(f"{p}: not a loadable cvtool checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadInputError(f"{p}: a torch file but not a cvtool checkpoint (no format={FORMAT!r} entry)")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BadInputError(f"{p}: checkpoint format version {version!r} is newer than this cvtool "
                            f"reads ({FORMAT_VERSION}); upgrade cvtool")
    return state

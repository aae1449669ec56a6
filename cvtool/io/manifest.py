"""The ``run.json`` manifest written beside every command's outputs."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cvtool import __version__
from cvtool.io.atomic import atomic_write_text

_LIBRARIES = ("numpy", "cv2", "scipy", "skimage", "sklearn", "torch", "joblib", "dask")


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions of the heavy libraries this process has imported (imports nothing)."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "unknown"))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):
        return value.value  # Enum
    if hasattr(value, "item"):
        return value.item()  # numpy scalar
    return str(value)


def build_manifest(*, command: str, args: Mapping[str, Any], seed: int | None = None,
                   device: str | None = None, started: str | None = None,
                   finished: str | None = None, counts: Mapping[str, Any] | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the manifest dictionary (pure; see :func:`write_manifest`)."""
    manifest: dict[str, Any] = {
        "cvtool_version": __version__,
        "command": command,
        "args": _jsonable(args),
        "seed": seed,
        "device": device or "cpu",
        "started": started,
        "finished": finished or now_iso(),
        "counts": _jsonable(counts or {}),
        "libraries": library_versions(),
        "platform": platform.platform(),
        "argv": sys.argv[1:],
    }
    if extra:
        manifest.update(_jsonable(extra))
    return manifest


def write_manifest(out_dir: str | os.PathLike[str], **fields: Any) -> Path:
    """Write ``OUT/run.json`` atomically and return its path.

    The manifest describes the latest run into ``out_dir`` and is replaced by
    each run (it is cvtool's own bookkeeping, not a user output).  Keyword
    arguments are those of :func:`build_manifest`.
    """
    path = Path(out_dir) / "run.json"
    text = json.dumps(build_manifest(**fields), indent=2, sort_keys=False) + "\n"
    atomic_write_text(path, text, overwrite=True)
    return path

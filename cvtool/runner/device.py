"""Device resolution, mixed precision, seeding and determinism.

These are the only places where CPU and CUDA differ; everything else in the
runner and in the models runs one code path on whatever ``torch.device`` comes
out of :func:`resolve_device`.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from typing import Any

import torch

from cvtool.errors import UsageError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``--device`` into a ``torch.device``.

    Parameters
    ----------
    spec : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        ``auto`` picks ``cuda`` when a GPU is present, else ``cpu``.  ``cpu``
        never touches the CUDA runtime.

    Returns
    -------
    torch.device

    Raises
    ------
    UsageError
        An unknown spec, or a GPU was asked for and is not there (there is
        never a silent fallback to the CPU).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    m = _CUDA_RE.match(text)
    if not m:
        raise UsageError(f"--device {spec!r} is not valid; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: no CUDA GPU is available on this machine "
                         "(use --device cpu or auto)")
    index = int(m.group(1)) if m.group(1) is not None else None
    if index is not None and index >= torch.cuda.device_count():
        raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) present "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def describe_device(device: torch.device) -> str:
    """A short human name: ``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype for ``--amp``: bf16 where supported, fp16 on older GPUs, None when off."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``device`` when ``dtype`` is set, else a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 autocast (bf16 needs none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def seed_everything(seed: int, *, deterministic: bool = False, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels.

    ``deterministic`` sets ``torch.use_deterministic_algorithms(True)`` (ops without
    a deterministic implementation then raise), disables cuDNN benchmarking and,
    on CUDA, sets ``CUBLAS_WORKSPACE_CONFIG`` as cuBLAS requires.
    """
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        if device is not None and device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for honest timings); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

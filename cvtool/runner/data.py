"""Training batches: tensors held in memory, or a DataLoader with workers.

Both sources shard and shuffle exactly as ``torch.utils.data.DistributedSampler``
does (the same permutation for a given seed and epoch, rank ``r`` taking every
``world_size``-th index), so a 2-process run with per-process batch ``B/2``
sees, batch for batch, the same samples as a 1-process run with batch ``B``.

A batch is a ``dict`` of tensors on the training device whose first dimension
is the batch; it always holds ``"index"``, the samples' positions in the
dataset (tasks use it for per-sample, world-size-independent randomness).

Example
-------
>>> import torch
>>> from cvtool.runner.data import TensorBatches
>>> src = TensorBatches({"x": torch.arange(10.0)}, batch_size=4, seed=0)
>>> [b["x"].shape[0] for b in src.epoch_batches(0)]
[4, 4, 2]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cvtool.runner.distributed import DistContext


class BatchSource(Protocol):
    """What :func:`cvtool.runner.loop.fit` iterates over."""

    def __len__(self) -> int:
        """Batches per epoch in this process."""

    def epoch_batches(self, epoch: int, *, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of ``epoch`` from batch number ``start`` on (resume mid-epoch)."""


def epoch_indices(n: int, *, epoch: int, seed: int, shuffle: bool, ctx: DistContext | None = None) -> list[int]:
    """This process's sample order for ``epoch`` (DistributedSampler's rule, also for one process)."""
    ctx = ctx or DistContext()
    sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=shuffle, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


class TensorBatches:
    """Batches cut from tensors already in memory (ideally on the training device).

    Parameters
    ----------
    tensors : mapping of str to (N, ...) tensor
        Equal first dimensions.  Kept where they are; each batch is indexed
        there and moved to ``device``.
    batch_size : int
        Per-process batch size.
    shuffle : bool
    seed : int
        Shuffling seed (the order depends on seed and epoch only).
    ctx : DistContext, optional
        Rank and world size for sharding.
    device : torch.device, optional
        Where batches go (default: where the tensors are).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, batch_size: int, shuffle: bool = True,
                 seed: int = 0, ctx: DistContext | None = None, device: torch.device | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sizes = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors have different lengths: {sizes}")
        self.tensors = dict(tensors)
        self.n = next(iter(sizes.values()))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.ctx = ctx or DistContext()
        self.device = device

    @property
    def samples_per_process(self) -> int:
        return -(-self.n // self.ctx.world_size)

    def __len__(self) -> int:
        return -(-self.samples_per_process // self.batch_size)

    def epoch_batches(self, epoch: int, *, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.tensor(epoch_indices(self.n, epoch=epoch, seed=self.seed, shuffle=self.shuffle,
                                           ctx=self.ctx), dtype=torch.int64)
        for lo in range(start * self.batch_size, order.numel(), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            batch = {}
            for k, t in self.tensors.items():
                part = t[idx.to(t.device)]
                batch[k] = part.to(self.device, non_blocking=True) if self.device is not None else part
            batch["index"] = idx.to(self.device) if self.device is not None else idx
            yield batch


def draw_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for the draws of ``(seed, epoch, stream)`` (distinct triples, distinct seeds)."""
    import numpy as np

    ss = np.random.SeedSequence([seed & (2**64 - 1), epoch, stream, 0x63767464])  # "cvtd"
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


class SampleDraws:
    """A :class:`BatchSource` whose batches also carry per-sample random draws.

    Each batch gets ``"u"``, ``(B, k)`` uniform floats in ``[0, 1)``, and
    ``"epoch"``, ``(B,)`` int64.  A sample's draws depend only on ``seed``, the
    epoch and the sample's index, never on the batch, the process or how many
    batches ran before, so a run resumed mid-epoch (or split across DDP
    processes) draws exactly what the uninterrupted run drew, with no random
    generator state to save.

    Parameters
    ----------
    base : BatchSource
        Batches holding ``"index"``.
    n : int
        Samples in the dataset.
    k : int
        Draws per sample and epoch (0: only ``"epoch"`` is added).
    seed : int
    """

    def __init__(self, base: Any, *, n: int, k: int, seed: int) -> None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.base, self.n, self.k, self.seed = base, n, k, seed

    def __len__(self) -> int:
        return len(self.base)

    def epoch_batches(self, epoch: int, *, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        u = None
        if self.k:
            g = torch.Generator().manual_seed(draw_seed(self.seed, epoch))
            u = torch.rand(self.n, self.k, generator=g)
        for batch in self.base.epoch_batches(epoch, start=start):
            idx = batch["index"]
            if u is not None:
                batch["u"] = u[idx.cpu()].to(idx.device)
            batch["epoch"] = torch.full_like(idx, epoch)
            yield batch


class _Indexed(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.dataset[i])
        item["index"] = i
        return item


class LoaderBatches:
    """Batches from a map-style ``Dataset`` of dicts through a ``DataLoader`` with workers.

    For data that does not fit in memory (decoded per item, in worker processes).
    Shuffling and sharding use ``DistributedSampler``; each batch is moved to ``device``.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 ctx: DistContext | None = None, device: torch.device | None = None, workers: int = 2,
                 collate_fn=None) -> None:
        self.ctx = ctx or DistContext()
        self.dataset = _Indexed(dataset)
        self.sampler = DistributedSampler(self.dataset, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                          shuffle=shuffle, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.device = device
        pin = device is not None and device.type == "cuda"
        self.loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                                 collate_fn=collate_fn)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch_batches(self, epoch: int, *, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        for i, batch in enumerate(self.loader):
            if i < start:
                continue
            yield {k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) and self.device
                       is not None else v) for k, v in batch.items()}


def fits_on_device(nbytes: int, device: torch.device, *, fraction: float = 0.4) -> bool:
    """Whether ``nbytes`` of training tensors may live on ``device`` (under ``fraction`` of free memory)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return nbytes <= fraction * free
    try:
        import psutil

        return nbytes <= fraction * psutil.virtual_memory().available
    except Exception:  # pragma: no cover - psutil is a dependency, but never fail on this
        return True

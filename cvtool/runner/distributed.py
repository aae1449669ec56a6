"""Multi-process training with ``torch.distributed`` and DistributedDataParallel.

``torchrun --nproc_per_node N -m cvtool train KIND ...`` starts N copies of the
command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set.  :func:`setup` reads them, joins the process group (nccl
for CUDA devices, gloo for the CPU) and gives each process its device
(``cuda:LOCAL_RANK`` on GPU machines).  A plain run is a world of one and goes
through the same code with no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cvtool.errors import UsageError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job.

    Attributes
    ----------
    rank, world_size, local_rank : int
    device : torch.device
    initialized : bool
        Whether this process joined a process group (``world_size > 1``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and logs."""
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (0, 1, 0 when absent)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise UsageError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world, local


def setup(device: torch.device) -> DistContext:
    """Join the process group when launched by torchrun; pick this process's device.

    Parameters
    ----------
    device : torch.device
        The resolved ``--device``.  Under torchrun on CUDA each process uses
        ``cuda:LOCAL_RANK`` (an explicit index is ignored).
    """
    rank, world, local = env_world()
    if world == 1:
        return DistContext(device=device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPU(s) present")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device, initialized=True)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (no-op for a world of one)."""
    if ctx.initialized and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` in a process group; ``model`` itself otherwise."""
    if not ctx.initialized:
        return model
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # 1x1 convolutions get gradients whose size-1 dimensions have arbitrary strides; DDP warns
    # about the layout on every backward although the result is exact
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all processes (returned unchanged for a world of one)."""
    if ctx.initialized:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_flag(flag: bool, ctx: DistContext) -> bool:
    """True when ``flag`` is set in any process (all processes get the same answer)."""
    if not ctx.initialized:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op for a world of one)."""
    if ctx.initialized:
        dist.barrier()


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` on every process."""
    if not ctx.initialized:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]

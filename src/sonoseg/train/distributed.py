"""DistributedDataParallel on PyTorch's own engine, started by ``torchrun``.

Semantics (documented in README, checked by tests/test_ddp.py):
- each of N processes holds a full replica; a DistributedSampler gives every rank a disjoint 1/N
  shard of the training split each epoch (shuffled by (seed, epoch), same permutation on all ranks);
- gradients are averaged across ranks after every step (DDP all-reduce), so replicas stay identical;
  the effective batch size is N x data.batch_size; BatchNorm statistics stay per process (no SyncBN);
- validation runs on rank 0 over the whole validation split and its Dice is broadcast, so scheduler,
  early stopping and best-checkpoint decisions are identical on every rank; on CPU rank 0 validates
  with the threads of all ranks (the others only wait for the broadcast meanwhile);
- only rank 0 logs, writes checkpoints, metrics CSV and plots.
Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str = "auto") -> DistContext:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1), else a no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_spec in ("auto",) or device_spec.startswith("cuda")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(True, rank, world, local_rank)


def plan_shards(n_train: int, world_size: int, batch_size: int) -> tuple[bool, str | None]:
    """(drop_last, note) for the training loader of each rank.

    With N ranks every rank sees ceil(n/N) images per epoch. Dropping the last partial batch is right
    when a rank has more than one batch, but with 6 images, batch 4 and 2 ranks it drops everything
    (3 < 4 per rank): zero optimiser steps, loss 0.0000, weights unchanged. Then each rank trains on
    one smaller batch instead (said in ``note``). Fewer images than ranks cannot be split at all."""
    from sonoseg.errors import ConfigError

    if n_train < world_size:
        raise ConfigError(f"{n_train} training image(s) cannot be shared by {world_size} processes: every process "
                          f"needs at least one (use fewer processes or more images)")
    per_rank = -(-n_train // world_size)
    if per_rank > batch_size:
        return True, None
    return False, (f"each of the {world_size} processes gets {per_rank} training image(s) per epoch, fewer than "
                   f"the batch size {batch_size}: training on one batch of {per_rank} per process per epoch")


def broadcast_float(value: float, ctx: DistContext, device: torch.device) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def all_reduce_mean(value: float, ctx: DistContext, device: torch.device) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def validation_threads(ctx: DistContext, device: torch.device, threads: int):
    """Rank 0 of a CPU run borrows the idle ranks' threads while it validates alone (the others block
    in the score broadcast), then gives them back."""
    if not ctx.enabled or device.type != "cpu" or not ctx.is_main:
        yield threads
        return
    torch.set_num_threads(threads * ctx.world_size)
    try:
        yield threads * ctx.world_size
    finally:
        torch.set_num_threads(threads)

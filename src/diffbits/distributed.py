"""Several processes, one training run, through torchrun and DistributedDataParallel.

``torchrun --nproc_per_node=N -m diffbits train ...`` starts N copies of the command; each
joins the process group from torchrun's environment (NCCL on CUDA, gloo on CPU). Multi-node
runs use torchrun's own flags (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``).

The global batch is the unit of training: its examples (one permutation per epoch), its
times (antithetic over the whole global batch) and its noise depend only on (seed, step).
Rank r of W, running A micro-batches per step, takes slices r*A .. r*A + A - 1 of the global
batch cut into W*A equal pieces, so a run continues on another number of processes, with
the same global batch, from any checkpoint.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor
from torch import distributed as dist

__all__ = ["pick_device", "World", "init", "shutdown", "micro_slices", "all_sum", "from_main", "barrier"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU; ``cuda`` means ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def init(device: str = "auto") -> tuple[World, torch.device]:
    """Join torchrun's process group when there is one; else a world of one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if size == 1:
        return World(), dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank), dev


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def micro_slices(global_batch: int, micro_batch: int, world: World) -> list[slice]:
    """This rank's micro-batches, as slices of the global batch (``micro_batch`` 0: one
    micro-batch per process). The global batch must split evenly."""
    micro = micro_batch or global_batch // world.size
    if micro <= 0 or global_batch % (micro * world.size):
        raise ValueError(
            f"train.batch_size {global_batch} must be a multiple of processes x train.micro_batch "
            f"({world.size} x {micro_batch or 'batch_size/processes'}); change one of them")
    accumulate = global_batch // (micro * world.size)
    first = world.rank * accumulate
    return [slice((first + i) * micro, (first + i + 1) * micro) for i in range(accumulate)]


def all_sum(v: Tensor, world: World) -> Tensor:
    if world.distributed:
        dist.all_reduce(v)
    return v


def from_main(values: list[float], world: World, device: torch.device) -> list[float]:
    """The main process's values, on every process (one small broadcast)."""
    if not world.distributed:
        return values
    v = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(v, 0)
    return v.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()

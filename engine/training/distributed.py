"""PyTorch's own distributed engine for both trainers: `torchrun --nproc_per_node=N -m engine ...`.

torchrun (or any launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT)
starts one process per device; each runs the same job. Rank 0 alone records the run and writes
checkpoints; every rank trains on its shard of each global batch and DistributedDataParallel
averages the gradients. A plain `python` process is a world of one and none of this costs anything.

Batch size convention: TrainConfig.batch_size is the GLOBAL batch of one optimiser step; each rank
takes every world_size-th item of it. Steps per epoch, the learning-rate schedule and the data order
therefore do not depend on the number of processes, so a run resumes exactly on a different world
size and a 2-process run follows the 1-process run of the same batch size.
"""

from __future__ import annotations

import atexit
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world() -> World:
    """This process's place: from the process group once it exists, else from torchrun's env."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), local)
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local)


def is_main() -> bool:
    return world().is_main


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device: torch.device) -> World:
    """Join the process group torchrun describes (idempotent; nothing to do in a world of one).

    nccl for CUDA devices (each rank on cuda:LOCAL_RANK), gloo for CPU.
    """
    place = world()
    if not place.distributed or dist.is_initialized():
        return place
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run one process")
    if device.type == "cuda":
        torch.cuda.set_device(place.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", place.local_rank))
    else:
        dist.init_process_group("gloo")
    atexit.register(cleanup)
    return world()


def local_device(device: torch.device) -> torch.device:
    """A bare "cuda" becomes this rank's GPU under torchrun; anything else is kept."""
    if device.type == "cuda" and device.index is None and is_distributed():
        return torch.device("cuda", world().local_rank)
    return device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean over ranks, in place (the one collective per logged step: values already on device)."""
    if is_distributed():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn on rank 0 and hand its result to every rank (e.g. the new run id, the evaluation).

    An exception on rank 0 is raised on every rank, so no rank waits forever for the others.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn(*args, **kwargs))
        except Exception as exc:
            box[0] = ("error", f"{type(exc).__name__}: {exc}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def shard(items: np.ndarray) -> np.ndarray:
    """This rank's share of a global batch: every world_size-th item, like DistributedSampler."""
    place = world()
    return items[place.rank::place.world_size]


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the model when there are several ranks, else the model.

    Only a mixture of experts can leave parameters without gradient in a step (an expert no token
    chose), which DDP must be told about; other models skip that per-step graph walk.
    """
    if not is_distributed():
        return model
    moe = getattr(getattr(model, "cfg", None), "ffn", None) == "moe"
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=moe, gradient_as_bucket_view=True,
        **_no_buffer_sync())


def _no_buffer_sync() -> dict[str, bool]:
    """The only buffers are constant rotary tables: no broadcast per forward (the keyword was
    renamed in PyTorch 2.13)."""
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    return ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
            else {"broadcast_buffers": False})


def main_rank_store(store: Any) -> Any:
    """The store itself on rank 0 (or in a world of one); its write-muted view on the others."""
    return store if is_main() or store.muted else store.muted_view()


__all__ = [
    "World",
    "all_reduce_mean",
    "cleanup",
    "init_distributed",
    "is_distributed",
    "is_main",
    "local_device",
    "main_rank_store",
    "on_main",
    "shard",
    "world",
    "wrap_model",
]

"""Scale-out on torchrun: one process per device, joined by a torch.distributed process group.

torchrun (``torchrun --nproc_per_node N --no-python dsviewer eval ...``, multi-node through its
rendezvous) starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them this is one process.

Each rank is pinned before the model loads: on GPUs to ``cuda:<LOCAL_RANK>`` (NCCL), on CPU to
its own block of the node's cores with as many torch threads (gloo), so that ranks on one node
never compete for a core. The group only carries small messages (the plan, the shard counts,
the end of the run); each rank writes its own per-scene records.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

# A rank waits at the final barrier for the slowest one; a test set takes hours on few GPUs.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: str  # "cpu", "cuda" (one process) or "cuda:<local rank>"
    threads: int | None  # torch intra-op threads set for this process (None: torch's default)
    cores: tuple[int, ...] | None  # CPU cores this process is pinned to (None: not pinned)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def start(device: str, threads: int | None) -> Placement:
    """Join the process group (when run by torchrun), pin this process, return where it runs.

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` as the user asked.
        threads: torch threads per process; None: the node's cores divided among its ranks
            (one process alone keeps torch's default).
    """
    import torch

    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1)
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and world_size > 1:
        torch.cuda.set_device(local_rank % max(1, torch.cuda.device_count()))
        device = f"cuda:{torch.cuda.current_device()}"
    elif not use_cuda:
        device = "cpu"
    cores = None
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if local_world > 1 and len(available) >= local_world:
        share = threads or len(available) // local_world
        first = local_rank * share
        if first + share <= len(available):
            cores = tuple(available[first:first + share])
            os.sched_setaffinity(0, cores)
        threads = share
    if threads is not None:
        torch.set_num_threads(threads)
    if world_size > 1:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=BARRIER_TIMEOUT)  # fmt: skip
    return Placement(rank, world_size, local_rank, local_world, device, threads, cores)


def broadcast(placement: Placement, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (picklable)."""
    if not placement.distributed:
        return value
    import torch.distributed as dist

    box = [value if placement.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(placement: Placement, value: Any) -> list[Any]:
    """Every rank's ``value`` in rank order, on every rank."""
    if not placement.distributed:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * placement.world_size
    dist.all_gather_object(values, value)
    return values


def gather(placement: Placement, value: Any) -> list[Any] | None:
    """Every rank's ``value`` in rank order on rank 0 (None elsewhere); waits for all ranks."""
    if not placement.distributed:
        return [value]
    import torch.distributed as dist

    values = [None] * placement.world_size if placement.is_main else None
    dist.gather_object(value, values, dst=0)
    return values


def finish(placement: Placement) -> None:
    if placement.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()

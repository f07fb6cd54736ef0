"""Scale-out on torchrun: one process per device, joined by a torch.distributed process group.

torchrun (``torchrun --nproc_per_node N --no-python dsviewer eval ...``, multi-node through its
rendezvous) starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them this is one process.

Each rank is pinned before the model loads: on GPUs to ``cuda:<LOCAL_RANK>`` (NCCL), on CPU to
its own block of the node's cores with as many torch threads (gloo), so that ranks on one node
never compete for a core. The group only carries small messages (the plan, the shard counts,
the end of the run); each rank writes its own per-scene records. The progress of every rank
goes through the group's key-value store (:class:`RunCounter`), so rank 0 shows the whole run.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsviewer.errors import SetupError

# A rank waits at the final barrier for the slowest one; a test set takes hours on few GPUs.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)
POLL_SECONDS = 0.5  # rank 0, done with its own share, reads the others' counts this often
COUNTER_PREFIX = "dsviewer-eval/"


class PlacementError(SetupError):
    """The processes torchrun started do not fit this machine."""


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
    gpus = torch.cuda.device_count() if use_cuda else 0
    if use_cuda and world_size > 1 and local_world > gpus:
        raise PlacementError(
            f"torchrun started {local_world} processes on this node, but it has {gpus} GPU(s) "
            "visible (CUDA_VISIBLE_DEVICES may hide some), and NCCL needs a GPU of its own per "
            f"process. Start at most {max(gpus, 1)} per node (torchrun --nproc_per_node "
            f"{max(gpus, 1)}), or pass --device cpu to run every process on CPU (gloo)."
        )
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


class RunCounter:
    """Scenes finished and failed over every rank, for rank 0's one progress bar.

    Under torchrun the counts are integers in the process group's key-value store (its
    ``add`` is atomic on the store's server), so they work alike with NCCL and gloo and cost
    one small round trip per scene. A rank that stops early (an error) raises ``stop``; the
    others see it before their next scene.
    """

    def __init__(self, placement: Placement, scope: str = "") -> None:
        self._prefix = f"{COUNTER_PREFIX}{scope}/"  # one evaluation's counts (--ckpt-dir: a step)
        self._store = None
        self._local = {"done": 0, "failed": 0, "finished": 0, "stop": 0}
        self.world_size = 1  # ranks whose end rank 0 waits for through the store
        if placement.distributed:
            import torch.distributed.distributed_c10d as c10d

            # The group's own store (no new port). _get_default_store is private to torch: if a
            # release drops it, each rank counts alone (rank 0's bar shows its own share, an
            # error on another rank no longer stops the rest early); the results are the same.
            get_store = getattr(c10d, "_get_default_store", None)
            try:
                self._store = get_store() if get_store is not None else None
            except (RuntimeError, ValueError):
                self._store = None
            if self._store is not None:
                self.world_size = placement.world_size

    def _add(self, name: str, amount: int) -> int:
        if self._store is None:
            self._local[name] += amount
            return self._local[name]
        return int(self._store.add(self._prefix + name, amount))

    def scene_done(self, failed: bool) -> tuple[int, int]:
        """Count one finished scene of this rank; returns every rank's (done, failed) so far."""
        failures = self._add("failed", int(failed))
        return self._add("done", 1), failures

    def totals(self) -> tuple[int, int]:
        return self._add("done", 0), self._add("failed", 0)

    def rank_finished(self) -> None:
        self._add("finished", 1)

    def stop(self) -> None:
        self._add("stop", 1)

    def stopped(self) -> bool:
        return self._add("stop", 0) > 0

    def wait_for_all(self, show: Callable[[int, int], None]) -> None:
        """Until every rank has finished its share, pass the totals to ``show`` now and then."""
        while self._add("finished", 0) < self.world_size:
            show(*self.totals())
            time.sleep(POLL_SECONDS)
        show(*self.totals())


def finish(placement: Placement) -> None:
    if placement.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()

"""The encoder against the machine: counted FLOPs, matmul throughput, and a profile by part.

Used by ``bench/encoder.py`` (``--profile`` prints the part table). Three measurements:

* :func:`count_gflop`: the forward's floating-point operations as torch's ``FlopCounterMode``
  counts them (matrix products, convolutions, attention), on the model's own algorithm: the
  cost volume through the warping path (as the official code computes it; the correlation
  path, :func:`dsviewer.model.encoder.unimatch.matching.correlate_warped`, does more counted
  products to move fewer bytes, and must not be credited for them). Two CPU kernels the
  counter does not know are given their formulas: oneDNN's fused linear and SDPA's CPU flash
  attention (4 * B * heads * L * S * d). Elementwise work (norms, softmax, grid sampling) is
  not counted, for ours and the official code alike.
* :func:`matmul_gflops`: a 2048 x 2048 fp32 matrix product on the same device and threads, the
  roofline the forward is held against.
* :func:`profile_parts`: wall and CPU time and GFLOP per part of the model (forward hooks on
  its modules, the cost volume by wrapping its function), and torch.profiler's self-CPU table
  of the heaviest operators.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from dsviewer.model.encoder.unimatch import matching, mv_unimatch

# (label, module-name prefixes inside the encoder); "cost_volume" is the function, not a module.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CNN backbone", ("depth_predictor.backbone",)),
    ("multi-view Transformer", ("depth_predictor.transformer",)),
    ("DINOv2 ViT", ("depth_predictor.pretrained",)),
    ("feature pyramids", ("depth_predictor.mv_pyramid", "depth_predictor.mono_pyramid")),
    ("cost volume", ("cost_volume",)),
    ("depth regressor (UNet)", ("depth_predictor.regressor", "depth_predictor.regressor_residual")),
    ("depth head", ("depth_predictor.depth_head",)),
    ("DPT depth upsampler", ("depth_predictor.upsampler",)),
    ("DPT feature upsampler", ("feature_upsampler",)),
    ("Gaussian regressor + head", ("gaussian_regressor", "gaussian_head")),
    ("Gaussian adapter", ("gaussian_adapter",)),
)


def _linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]


def _cpu_attention_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    *batch, length, dim = q_shape
    return 4 * math.prod(batch) * length * k_shape[-2] * dim  # Q K^T and P V


def flop_counter() -> FlopCounterMode:
    """torch's counter with the two CPU kernels it does not know."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        mapping[torch.ops.mkldnn._linear_pointwise] = _linear_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


@contextlib.contextmanager
def warping_cost_volume() -> Iterator[None]:
    """The cost volume through the warping path (the official algorithm), for counting."""
    saved = matching.GATHER_RATIO
    matching.GATHER_RATIO = 0
    try:
        yield
    finally:
        matching.GATHER_RATIO = saved


def count_gflop(forward: Callable[[], object]) -> float:
    """GFLOP of one call of ``forward`` (see the module docstring for what counts)."""
    with warping_cost_volume(), flop_counter() as counter:
        forward()
    return counter.get_total_flops() / 1e9


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(device: str, size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of a size x size matrix product over ``repeats`` (after a warm-up)."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=g).to(device)
    b = torch.rand(size, size, generator=g).to(device)
    out = torch.empty(size, size, device=device)
    torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@dataclass
class Part:
    label: str
    wall: float = 0.0  # seconds
    cpu: float = 0.0  # process CPU seconds
    gflop: float = 0.0


class _PartClock:
    """Times one part: nested calls inside it (a block inside the ViT) count once."""

    def __init__(self, part: Part, counter: FlopCounterMode | None, device: str):
        self.part, self.counter, self.device, self.depth = part, counter, device, 0
        self.start = (0.0, 0.0, 0)

    def enter(self, *_) -> None:
        if self.depth == 0:
            synchronize(self.device)
            flops = self.counter.get_total_flops() if self.counter else 0
            self.start = (time.perf_counter(), time.process_time(), flops)
        self.depth += 1

    def leave(self, *_) -> None:
        self.depth -= 1
        if self.depth == 0:
            synchronize(self.device)
            wall, cpu, flops = self.start
            self.part.wall += time.perf_counter() - wall
            self.part.cpu += time.process_time() - cpu
            if self.counter:
                self.part.gflop += (self.counter.get_total_flops() - flops) / 1e9


@contextlib.contextmanager
def part_clocks(
    encoder: torch.nn.Module, device: str, counter: FlopCounterMode | None
) -> Iterator[list[Part]]:
    """Hooks on every module of each part of :data:`PARTS` (and the cost-volume function)."""
    parts = [Part(label) for label, _ in PARTS]
    clocks = {p.label: _PartClock(p, counter, device) for p in parts}
    handles = []
    for label, prefixes in PARTS:
        clock = clocks[label]
        for name, module in encoder.named_modules():
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                handles.append(module.register_forward_pre_hook(clock.enter))
                handles.append(module.register_forward_hook(clock.leave))
    original = mv_unimatch.cost_volume
    clock = clocks["cost volume"]

    def timed_cost_volume(*args, **kwargs):
        clock.enter()
        try:
            return original(*args, **kwargs)
        finally:
            clock.leave()

    mv_unimatch.cost_volume = timed_cost_volume
    try:
        yield parts
    finally:
        mv_unimatch.cost_volume = original
        for handle in handles:
            handle.remove()


def profile_parts(
    encoder: torch.nn.Module, forward: Callable[[], object], device: str
) -> tuple[list[Part], Part, str]:
    """(parts, the whole forward, torch.profiler's operator table) of one call of ``forward``.

    Times come from a plain call with the hooks (no profiler running); GFLOP from a second,
    counted call; the operator table from a third under torch.profiler.
    """
    with part_clocks(encoder, device, None) as parts:
        synchronize(device)
        start = time.perf_counter(), time.process_time()
        forward()
        synchronize(device)
        wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    total = Part("whole forward", wall, cpu)
    counter = flop_counter()
    with warping_cost_volume(), counter, part_clocks(encoder, device, counter) as counted:
        forward()
    for part, flops in zip(parts, counted):
        part.gflop = flops.gflop
    total.gflop = counter.get_total_flops() / 1e9
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        forward()
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=key, row_limit=15)
    return parts, total, table


def parts_table(parts: list[Part], total: Part) -> str:
    """Markdown: per part its wall and CPU seconds, share of the forward, GFLOP and GFLOP/s."""
    lines = [
        "| part | wall s | CPU s | share of wall | GFLOP | GFLOP/s |",
        "|---|---|---|---|---|---|",
    ]
    rest = Part(
        "rest (glue: views, concatenations, interpolation, softmax)",
        total.wall - sum(p.wall for p in parts),
        total.cpu - sum(p.cpu for p in parts),
        total.gflop - sum(p.gflop for p in parts),
    )
    for p in sorted(parts, key=lambda p: -p.wall) + [rest, total]:
        rate = f"{p.gflop / p.wall:.0f}" if p.wall > 0 and p.gflop > 0.05 else "-"
        lines.append(
            f"| {p.label} | {p.wall:.3f} | {p.cpu:.3f} | {100 * p.wall / total.wall:.1f} % | "
            f"{p.gflop:.1f} | {rate} |"
        )
    return "\n".join(lines)

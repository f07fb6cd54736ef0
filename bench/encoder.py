"""Time our DepthSplat encoder per architecture at checkpoint resolution.

Weights follow the reference's deterministic recipe (seed 0), inputs are a random two-view
scene. Each timing is 1 warm-up call then ``--runs`` timed calls, ``torch.inference_mode``,
float32 on the CPU with ``--threads`` threads (2, as the official anchor). Printed next to the
official CPU medians from ``shared/reference/README.md`` where those exist, with the ratio.

    python bench/encoder.py                       # the two architectures with an official anchor
    python bench/encoder.py --arch gs_base_u2l4 depth_base_u4l8 --device cpu cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.model import DepthSplat, load_config
from src.model.weight_recipe import load_manifest, recipe_state_dict

# Official encoder, CPU, 2 threads, median of 3 after a warm-up (reference README).
OFFICIAL_CPU_SECONDS = {
    ("gs_small_u4l4", (1, 2, 256, 256)): 6.11,
    ("gs_base_u4l8", (1, 2, 256, 448)): 8.30,
}
# One released checkpoint per architecture: its preset gives the resolution.
PRESET_OF = {
    "gs_small_u4l4": "depthsplat-gs-small-re10k-256x256-view2-cfeab6b1",
    "gs_small_u8l8": "depthsplat-gs-small-re10kdl3dv-448x768-randview4-10-c08188db",
    "gs_base_u2l4": "depthsplat-gs-base-re10k-256x256-view2-ca7b6795",
    "gs_base_u4l8": "depthsplat-gs-base-re10k-256x448-view2-fea94f65",
    "gs_large_u2l4": "depthsplat-gs-large-re10k-256x256-view2-e0f0f27a",
    "depth_small_u8l8": "depthsplat-depth-small-352x640-randview2-8-e807bd82",
    "depth_base_u4l8": "depthsplat-depth-base-352x640-randview2-8-65a892c5",
}


def default_reference() -> Path:
    return REPO.parent / "shared" / "reference"


def build_model(architecture: str, reference: Path) -> DepthSplat:
    config = load_config(PRESET_OF[architecture])
    manifest = load_manifest(reference / f"manifest_{architecture}.json")
    state = recipe_state_dict(manifest, seed=0)
    model = DepthSplat(config)
    if manifest["key_prefix"] == "encoder.":
        model.load_state_dict(state, strict=True)
    else:
        model.encoder.depth_predictor.load_state_dict(state, strict=True)
    return model.eval()


def make_context(shape: tuple[int, int, int, int], near: float, far: float) -> dict:
    """A random scene: B x V views on a horizontal line, all looking down +z."""
    b, v, h, w = shape
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9 * w / h, 0.5], [0.0, 0.0, 1.0]])
    extrinsics = torch.eye(4).repeat(b, v, 1, 1)
    extrinsics[:, :, 0, 3] = 0.1 * torch.arange(v) + 0.01 * torch.arange(v) ** 2
    return {
        "image": torch.rand(b, v, 3, h, w, generator=g),
        "intrinsics": K.expand(b, v, 3, 3).clone(),
        "extrinsics": extrinsics,
        "near": torch.full((b, v), near),
        "far": torch.full((b, v), far),
    }


def time_forward(
    model: DepthSplat, context: dict, runs: int, device: str
) -> tuple[list[float], list[float]]:
    """Wall-clock seconds per call, and process CPU seconds per call (all threads).

    CPU seconds barely change when other jobs share the cores, so on a busy machine they are
    the better hint: an idle 2-thread run takes at least CPU seconds / 2 of wall time.
    """
    context = {k: t.to(device) for k, t in context.items()}

    def once() -> tuple[float, float]:
        if device == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            model.encoder(context, global_step=0, visualization_dump={})
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - start_cpu

    once()  # warm-up
    wall, cpu = zip(*(once() for _ in range(runs)))
    return list(wall), list(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=["gs_small_u4l4", "gs_base_u4l8"],
                        choices=sorted(PRESET_OF), help="architectures to time")  # fmt: skip
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"],
                        help="devices (cuda is skipped when unavailable)")  # fmt: skip
    parser.add_argument("--views", type=int, default=2, help="context views")
    parser.add_argument("--runs", type=int, default=3, help="timed calls after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--reference", type=Path, default=default_reference(),
                        help="folder with the manifests (shared/reference)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for architecture in args.arch:
        config = load_config(PRESET_OF[architecture])
        multiple = max(config.shim_patch, config.min_image_multiple)
        h, w = (s - s % multiple for s in config.image_shape)
        shape = (1, args.views, h, w)
        model = build_model(architecture, args.reference)
        context = make_context(shape, config.near, config.far)
        for device in args.device:
            if device == "cuda" and not torch.cuda.is_available():
                continue
            times, cpu_times = time_forward(model.to(device), context, args.runs, device)
            median = statistics.median(times)
            cpu_median = statistics.median(cpu_times)
            official = OFFICIAL_CPU_SECONDS.get((architecture, shape)) if device == "cpu" else None
            rows.append((architecture, device, shape, times, median, cpu_median, official))
            print(f"{architecture} {device} {'x'.join(map(str, shape))}: "
                  + ", ".join(f"{t:.2f}" for t in times), flush=True)  # fmt: skip
        model.to("cpu")

    print()
    header = f"{'architecture':<18}{'device':<7}{'B x V x H x W':<18}{'runs (s)':<24}"
    print(header + f"{'median':>8}{'cpu-s':>8}{'official':>10}{'ours/off.':>11}")
    for architecture, device, shape, times, median, cpu_median, official in rows:
        runs = ", ".join(f"{t:.2f}" for t in times)
        official_text = f"{official:.2f}" if official else "-"
        ratio = f"{median / official:.2f}" if official else "-"
        print(f"{architecture:<18}{device:<7}{' x '.join(map(str, shape)):<18}{runs:<24}"
              f"{median:>8.2f}{cpu_median:>8.2f}{official_text:>10}{ratio:>11}")  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nCPU threads: {args.threads}; torch {torch.__version__}; 1-min load average {load:.1f} "
          f"on {os.cpu_count()} cores. Official medians: idle 2-core machine (reference README); "
          "ratios are only meaningful when this machine was idle too.")  # fmt: skip


if __name__ == "__main__":
    main()

"""Time our DepthSplat encoder, and with ``--official PATH`` the official one, in the same run.

Weights follow the reference's deterministic recipe (seed 0) from the manifests shipped in
``tests/reference`` (else ``$DSVIEWER_REFERENCE`` or ``../shared/reference``), written once as a
checkpoint named like the released file, so both backends load the same file with the same
preset. Inputs are one random scene at the preset's resolution. With ``--official``, the official
encoder runs through the extension backend (``src/backends/extension.py``; the checkout needs
the exposure, see ``dsviewer patch-depthsplat``) and the two alternate: each round times both
on the same inputs, in swapped order every other round, so load on a shared machine hits both
alike. Printed: per-round times and ratios (ours / official; below 1 = ours faster), their min
and median, model load times, threads and the load average, as a markdown table; then the
roofline table: the forward's GFLOP (counted by torch's FlopCounterMode, see
``bench/encoder_profile.py``), the GFLOP/s each encoder achieved, and a 2048 x 2048 fp32 matrix
product timed in every round of the same run, with the ratio of the two.

    python bench/encoder.py --official ~/depthsplat            # the two reference sizes
    python bench/encoder.py --official ~/depthsplat --placeholder-packages torchvision
    python bench/encoder.py --arch gs_base_u2l4 --rounds 3     # ours only
    python bench/encoder.py --profile --rounds 0               # time and GFLOP per model part
    python bench/encoder.py --device cuda                      # fp32 and bf16 autocast on a GPU
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from encoder_profile import count_gflop, matmul_gflops, parts_table, profile_parts, synchronize

from dsviewer.backends.builtin import BuiltinBackend
from dsviewer.backends.presets import load_preset
from dsviewer.dataset.types import ViewSet
from dsviewer.model.predict import predict
from dsviewer.model.weight_recipe import load_manifest, recipe_state_dict

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


def manifest_path(architecture: str, reference: Path | None) -> Path:
    """The manifest shipped in the repository, else the one in the reference folder."""
    candidates = [reference] if reference else []
    candidates += [REPO / "tests" / "reference"]
    if os.environ.get("DSVIEWER_REFERENCE"):
        candidates.append(Path(os.environ["DSVIEWER_REFERENCE"]))
    candidates.append(REPO.parent / "shared" / "reference")
    for folder in candidates:
        for name in (f"manifest_{architecture}.json", f"manifest_{architecture}.json.gz"):
            if (folder / name).is_file():
                return folder / name
    raise SystemExit(
        f"No manifest_{architecture}.json(.gz) in {', '.join(str(c) for c in candidates)}. Run "
        "from a clone that ships tests/reference, or pass --reference FOLDER."
    )


def write_checkpoint(architecture: str, reference: Path | None, folder: Path) -> Path:
    """Recipe weights (seed 0) saved as the released file of ``architecture``."""
    path = manifest_path(architecture, reference)
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            manifest = json.load(f)
    else:
        manifest = load_manifest(path)
    state = recipe_state_dict(manifest, seed=0)
    path = folder / f"{PRESET_OF[architecture]}.pth"
    torch.save(state if manifest["key_prefix"] == "encoder." else {"model": state}, path)
    return path


def preset_input(architecture: str) -> tuple[int, int, float, float]:
    """(H, W, near, far) of the released checkpoint's preset: its image shape cropped to the
    model's patch multiple."""
    preset = load_preset(PRESET_OF[architecture])
    preprocess = preset.preprocess
    multiple = max(preprocess.patch_multiple, preset.architecture.min_image_multiple)
    height, width = (s - s % multiple for s in preprocess.image_shape)
    return height, width, preprocess.near, preprocess.far


def random_views(views: int, height: int, width: int, near: float, far: float) -> ViewSet:
    """Views on a horizontal line, all looking down +z, random images (seeded)."""
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9 * width / height, 0.5], [0.0, 0.0, 1.0]])
    extrinsics = torch.eye(4).repeat(views, 1, 1)
    extrinsics[:, 0, 3] = 0.1 * torch.arange(views) + 0.01 * torch.arange(views) ** 2
    return ViewSet(
        image=torch.rand(views, 3, height, width, generator=g),
        intrinsics=K.expand(views, 3, 3).clone(),
        extrinsics=extrinsics,
        near=torch.full((views,), near),
        far=torch.full((views,), far),
        index=torch.arange(views),
    )


@dataclass
class Row:
    architecture: str
    shape: tuple[int, int, int, int]
    precision: str = "fp32"
    gflop: float = 0.0  # counted, one forward
    matmul: list[float] = field(default_factory=list)  # fp32 matmul GFLOP/s per round
    ours: list[float] = field(default_factory=list)  # wall seconds per round
    official: list[float] = field(default_factory=list)
    ours_cpu: list[float] = field(default_factory=list)  # process CPU seconds per round
    official_cpu: list[float] = field(default_factory=list)
    load_ours: float = 0.0
    load_official: float | None = None

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours, self.official)]

    @property
    def first_result_ratio(self) -> float:
        """(load + median forward) of ours over the official's: the wait for a first result."""
        assert self.load_official is not None
        ours = self.load_ours + statistics.median(self.ours)
        return ours / (self.load_official + statistics.median(self.official))

    @property
    def cpu_ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours_cpu, self.official_cpu)]


def time_ours(
    backend: BuiltinBackend, views: ViewSet, precision: str = "fp32"
) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one prediction."""
    autocast = None if precision == "fp32" else precision
    synchronize(backend.device)
    start, start_cpu = time.perf_counter(), time.process_time()
    predict(backend.model, views, autocast_dtype=autocast)
    synchronize(backend.device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def time_official(backend, views: ViewSet) -> tuple[float, float]:
    backend.predict(views)
    return backend.forward_seconds, backend.forward_cpu_seconds  # measured in the worker


def bench(architecture: str, args: argparse.Namespace, folder: Path) -> list[Row]:
    """One row per precision: ours (and, in fp32, the official encoder) in alternating rounds,
    a matmul roofline measurement in each round."""
    height, width, near, far = preset_input(architecture)
    views = random_views(args.views, height, width, near, far)
    checkpoint = write_checkpoint(architecture, args.reference, folder)
    ours = BuiltinBackend(checkpoint, device=args.device)
    official = None
    if args.official is not None:
        from dsviewer.backends.extension import ExtensionBackend

        official = ExtensionBackend(checkpoint, repo=args.official, device=args.device)
    rows = []
    try:
        gflop = count_gflop(lambda: predict(ours.model, views))
        if args.profile:
            print_profile(architecture, ours, views)
        for precision in args.precision:
            row = Row(architecture, (1, args.views, height, width), precision, gflop)
            row.load_ours = ours.load_seconds
            compare = official if precision == "fp32" else None
            if compare is not None:
                row.load_official = compare.load_seconds
            time_rounds(row, ours, compare, views, args)
            rows.append(row)
    finally:
        if official is not None:
            official.close()
    checkpoint.unlink()
    return rows


def time_rounds(row: Row, ours, official, views: ViewSet, args: argparse.Namespace) -> None:
    """Warm-up, then ``args.rounds`` rounds of (ours, official, matmul) in alternating order."""
    time_ours(ours, views, row.precision)
    if official is not None:
        time_official(official, views)
    for round_index in range(args.rounds):
        order = ["ours", "official"] if round_index % 2 == 0 else ["official", "ours"]
        for who in order:
            if who == "ours":
                wall, cpu = time_ours(ours, views, row.precision)
                row.ours.append(wall)
                row.ours_cpu.append(cpu)
            elif official is not None:
                wall, cpu = time_official(official, views)
                row.official.append(wall)
                row.official_cpu.append(cpu)
        row.matmul.append(matmul_gflops(args.device))
        line = (
            f"{row.architecture} {row.precision} round {round_index + 1}: ours "
            f"{row.ours[-1]:.2f} s ({row.gflop / row.ours[-1]:.0f} GFLOP/s, matmul "
            f"{row.matmul[-1]:.0f})"
        )
        if official is not None:
            line += (
                f", official {row.official[-1]:.2f} s, ratio {row.ratios[-1]:.2f} "
                f"(CPU seconds {row.ours_cpu[-1]:.2f} / {row.official_cpu[-1]:.2f})"
            )
        print(line, flush=True)


def print_profile(architecture: str, backend: BuiltinBackend, views: ViewSet) -> None:
    """Time and GFLOP per part of our encoder (one forward), and the heaviest operators."""
    predict(backend.model, views)  # warm-up
    parts, total, operators = profile_parts(
        backend.model.encoder, lambda: predict(backend.model, views), backend.device
    )
    print(f"\n{architecture}, {' x '.join(map(str, views.image.shape))}, by part:\n")
    print(parts_table(parts, total))
    print(f"\nOperators (torch.profiler, one more forward):\n{operators}", flush=True)


def table(rows: list[Row], threads: int, loads: tuple[float, float], machine: str) -> str:
    """The markdown table and its footnote."""
    with_official = any(r.official for r in rows)
    head = "| architecture | B x V x H x W | ours, median s |"
    rule = "|---|---|---|"
    if with_official:
        head += (
            " official, median s | ours / official per round | median | min |"
            " CPU-s ratio, median | load ours / official s | load + forward, ratio |"
        )
        rule += "---|---|---|---|---|---|---|"
    else:
        head += " load s |"
        rule += "---|"
    lines = [head, rule]
    for r in rows:
        shape = " x ".join(map(str, r.shape))
        name = r.architecture if r.precision == "fp32" else f"{r.architecture}, {r.precision}"
        line = f"| {name} | {shape} | {statistics.median(r.ours):.2f} |"
        if r.official:
            ratios = ", ".join(f"{x:.2f}" for x in r.ratios)
            line += (
                f" {statistics.median(r.official):.2f} | {ratios} | "
                f"**{statistics.median(r.ratios):.2f}x** | {min(r.ratios):.2f}x | "
                f"{statistics.median(r.cpu_ratios):.2f}x | "
                f"{r.load_ours:.1f} / {r.load_official:.1f} | {r.first_result_ratio:.2f}x |"
            )
        else:
            line += f" {r.load_ours:.1f} |"
        lines.append(line)
    lines.append("")
    lines.append(
        f"{machine}, {threads} threads for each encoder, torch {torch.__version__}, "
        f"{os.cpu_count()} cores, 1-min load average {loads[0]:.1f} before / {loads[1]:.1f} "
        "after. Same weights (recipe, seed 0) and inputs; rounds alternate the order; "
        "ratio below 1 = ours faster; the CPU-seconds ratio (process CPU time of each "
        "forward) is steadier on a busy machine. Load = checkpoint to ready model (the "
        "official one includes its worker start and imports)."
    )
    return "\n".join(lines)


def roofline_table(rows: list[Row]) -> str:
    """Counted GFLOP, achieved GFLOP/s (medians over rounds) against the same run's matmul."""
    lines = [
        "| architecture | GFLOP | ours GFLOP/s | official GFLOP/s | fp32 matmul GFLOP/s |"
        + " ours / matmul per round | median |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r.architecture if r.precision == "fp32" else f"{r.architecture}, {r.precision}"
        ours = [r.gflop / t for t in r.ours]
        fractions = [a / m for a, m in zip(ours, r.matmul)]
        official = f"{r.gflop / statistics.median(r.official):.0f}" if r.official else "-"
        lines.append(
            f"| {name} | {r.gflop:.1f} | {statistics.median(ours):.0f} | {official} | "
            f"{statistics.median(r.matmul):.0f} | {', '.join(f'{x:.2f}' for x in fractions)} | "
            f"**{statistics.median(fractions):.2f}** |"
        )
    lines.append("")
    lines.append(
        "GFLOP: one forward's matrix products, convolutions and attention (torch's "
        "FlopCounterMode, cost volume counted as the official warping computes it; elementwise "
        "work not counted). Matmul: a 2048 x 2048 fp32 product on the same device and threads, "
        "best of 5, timed after ours and the official encoder in every round."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=["gs_small_u4l4", "gs_base_u4l8"],
                        choices=sorted(PRESET_OF), help="architectures to time")  # fmt: skip
    parser.add_argument("--official", type=Path, default=None,
                        help="a DepthSplat checkout with the exposure, timed in the same "
                        "run")  # fmt: skip
    parser.add_argument("--views", type=int, default=2, help="context views")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after a warm-up")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (each encoder)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where both encoders run")  # fmt: skip
    parser.add_argument("--precision", nargs="+", default=None, choices=("fp32", "bf16", "fp16"),
                        help="fp32 and/or autocast dtypes (CUDA only); default fp32 on the CPU, "
                        "fp32 and bf16 on CUDA; the official encoder runs in fp32")  # fmt: skip
    parser.add_argument("--placeholder-packages", nargs="*", default=(),
                        help="packages the official code imports but that cannot be installed "
                        "(torchvision here), as in bench/backend_parity.py")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="also print time and GFLOP per model part (ours)")  # fmt: skip
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder with manifest_<arch>.json (default: "
                        "tests/reference)")  # fmt: skip
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"No CUDA device: torch {torch.__version__} sees no GPU here; nothing timed.")
        raise SystemExit(2)
    if args.precision is None:
        args.precision = ["fp32"] if args.device == "cpu" else ["fp32", "bf16"]
    if args.device == "cpu" and args.precision != ["fp32"]:
        parser.error("autocast (bf16, fp16) is CUDA only; on the CPU use --precision fp32")
    torch.set_num_threads(args.threads)
    machine = (
        f"CUDA, {torch.cuda.get_device_name()}" if args.device == "cuda" else "CPU"
    ) + f" ({', '.join(args.precision)})"
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dsviewer-bench-") as folder:
        if args.placeholder_packages:
            from backend_parity import write_placeholder_packages

            write_placeholder_packages(args.placeholder_packages, Path(folder) / "placeholders")
        for architecture in args.arch:
            rows += bench(architecture, args, Path(folder))
    if args.rounds == 0:
        return
    print()
    print(table(rows, args.threads, (load_before, os.getloadavg()[0]), machine))
    print()
    print(roofline_table(rows))


if __name__ == "__main__":
    main()

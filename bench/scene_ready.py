"""Time to "Scene ready" in the viewer, for real-size checkpoints at their own resolutions.

For each released file name (default: small at 256x256 and base at 256x448, the encoder
benchmark's sizes), the recipe weights (seed 0) are saved under that name, so the viewer takes
the file's preset (architecture, image shape, near/far) as it would the released checkpoint.
``dsviewer --ckpt FILE --scene synthetic:0 --port 0`` then starts in a fresh process; the time
is read from its "Scene ready in X s (stages)" line (the viewer's own clock, from before
importing torch to the scene sent to the server) next to the wall time from the process start
(Python and the CLI's imports included). Checkpoints alternate across rounds.

    python bench/scene_ready.py
    python bench/scene_ready.py --ckpt depthsplat-gs-base-re10k-256x256-view2-ca7b6795 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoder import PRESET_OF, preset_input, write_checkpoint

ARCH_OF = {name: arch for arch, name in PRESET_OF.items()}
READY = re.compile(r"Scene ready in ([\d.]+) s \(([^)]*)\)")


def time_viewer(checkpoint: Path, threads: int, timeout: float) -> tuple[float, float, str]:
    """(viewer's own seconds, wall seconds from the process start, its stage list)."""
    # A wide console: rich wraps its lines at 80 columns when stderr is not a terminal.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "COLUMNS": "1000"}
    command = [sys.executable, "-m", "dsviewer.viewer.cli", "--ckpt", str(checkpoint),
               "--scene", "synthetic:0", "--port", "0"]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lines: list[str] = []
    found = threading.Event()
    wall = 0.0

    def read() -> None:
        nonlocal wall
        for line in process.stderr:
            lines.append(line)
            if READY.search(line):
                wall = time.perf_counter() - start
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        found.wait(timeout)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    match = next((m for m in map(READY.search, lines) if m), None)
    if match is None:
        raise SystemExit(f"no 'Scene ready' from {checkpoint.name}:\n{''.join(lines)[-3000:]}")
    return float(match.group(1)), wall, match.group(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", nargs="+", choices=sorted(ARCH_OF),
                        default=[PRESET_OF["gs_small_u4l4"], PRESET_OF["gs_base_u4l8"]],
                        help="released file names (without .pth)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the viewer")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per start")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, list[tuple[float, float, str]]] = {name: [] for name in args.ckpt}
    with tempfile.TemporaryDirectory(prefix="dsviewer-ready-") as folder:
        files = {n: write_checkpoint(ARCH_OF[n], None, Path(folder)) for n in args.ckpt}
        for round_index in range(args.rounds):
            order = args.ckpt if round_index % 2 == 0 else args.ckpt[::-1]
            for name in order:
                results[name].append(time_viewer(files[name], args.threads, args.timeout))
                own, wall, stages = results[name][-1]
                print(f"round {round_index + 1} {name}: {own:.1f} s ({stages}); "
                      f"{wall:.1f} s from the process start", flush=True)  # fmt: skip
    print()
    print("| checkpoint (recipe weights) | architecture | image | Scene ready, median s | "
          "from process start, median s | rounds |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        height, width, _, _ = preset_input(ARCH_OF[name])
        own = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        rounds = ", ".join(f"{r[0]:.1f}" for r in runs)
        print(f"| {name} | {ARCH_OF[name]} | {height}x{width} | **{own:.1f}** | {wall:.1f} | "
              f"{rounds} |")  # fmt: skip
    print(f"\nCPU, {args.threads} threads (OMP_NUM_THREADS), scene synthetic:0, {os.cpu_count()} "
          f"cores, 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after. "
          "Scene ready: the viewer's own clock (imports, model load, scene, forward, layers, "
          "upload); the stages are those the viewer prints.")  # fmt: skip


if __name__ == "__main__":
    main()

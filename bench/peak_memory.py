"""Peak memory of one encoder forward on the CPU, each measurement in a fresh process.

The released configuration with the largest forward is base with 6 views at 448x768
(``gs_base_u4l8``, DL3DV-style). In a fresh Python process, this loads the recipe weights
(seed 0, saved under the released file's name), builds the views, resets the kernel's
high-water mark of the process's resident memory (``/proc/self/clear_refs``) and reads it
again (``VmHWM``) after the forward: the peak of the forward alone, over the model and inputs
already resident. ``--compare PYTHON`` measures the dsviewer installed for another interpreter
(e.g. the venv of a worktree of an older commit) the same way, alternating, so before and after
come from one run.

    python bench/peak_memory.py                                  # base, 6 x 448 x 768
    python bench/peak_memory.py --arch gs_small_u4l4 --views 2 --height 256 --width 256
    python bench/peak_memory.py --compare ../old/.venv/bin/python

Needs about 10 GB free for the default; Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, os.path.join(sys.argv[1], "bench"))
import torch
import encoder as bench
from dsviewer.backends.builtin import BuiltinBackend
from dsviewer.model.predict import predict

arch, views, height, width, threads = sys.argv[2], *map(int, sys.argv[3:7])
torch.set_num_threads(threads)


def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB -> bytes


_, _, near, far = bench.preset_input(arch)
context = bench.random_views(views, height, width, near, far)
with tempfile.TemporaryDirectory() as folder:
    checkpoint = bench.write_checkpoint(arch, None, Path(folder))
    model = BuiltinBackend(checkpoint, device="cpu").model
resident = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
start = time.perf_counter()
prediction = predict(model, context)
seconds = time.perf_counter() - start
print(json.dumps({"before": resident, "peak": status("VmHWM"), "seconds": seconds,
                  "model": sys.modules["dsviewer"].__file__}))
"""


def measure(python: str, args: argparse.Namespace) -> dict:
    """One forward in a fresh process of ``python`` (with its own installed dsviewer)."""
    command = [python, "-c", CHILD, str(REPO), args.arch, str(args.views), str(args.height),
               str(args.width), str(args.threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measurement with {python} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="gs_base_u4l8")
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--height", type=int, default=448)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="measurements per checkout")
    parser.add_argument("--compare", default=None,
                        help="the Python of an environment where another dsviewer checkout is "
                        "installed, measured alternately ('before')")  # fmt: skip
    args = parser.parse_args()
    pythons = {"this": sys.executable}
    if args.compare is not None:
        pythons = {"compared": args.compare, **pythons}
    results: dict[str, list[dict]] = {name: [] for name in pythons}
    for _ in range(args.rounds):
        for name, python in pythons.items():
            results[name].append(measure(python, args))
    gib = 1024**3
    print(f"\n{args.arch}, {args.views} views at {args.height} x {args.width}, CPU fp32, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| dsviewer | resident before the forward, GiB | peak during it, GiB | "
          "forward's own peak, GiB | forward s |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        for r in runs:
            code = Path(r["model"]).parent
            print(f"| {name} ({code}) | {r['before'] / gib:.2f} | {r['peak'] / gib:.2f} | "
                  f"{(r['peak'] - r['before']) / gib:.2f} | {r['seconds']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
